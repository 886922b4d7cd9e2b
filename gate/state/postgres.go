package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clink-mcp/clink-mcp/policy"
)

// Defaults of a [Postgres] handle.
const (
	// postgresLease is how long an owner stays alive without renewing its
	// lease; see [PostgresLease].
	postgresLease = 30 * time.Second
	// postgresConns is the pool's size when the URL does not set
	// pool_max_conns. Every write locks the same rows (the audit head and
	// the counters of a global budget), so more connections add lock
	// waits rather than throughput: measured with BenchmarkReplicasPostgres
	// on a 2-core machine, a pool of 4 gave one replica 907-986 calls/s
	// against 693-746 with 16 (and three replicas of 2 each 915-958 against
	// 763-857 with 4 each). Fewer than 4 may cap a replica whose database
	// is a network round trip away, since each write holds its connection
	// for that round trip too.
	postgresConns = 4
	// claimChannel is the LISTEN/NOTIFY channel on which finished and
	// dropped claims are announced, by a hash of their key.
	claimChannel = "clink_claims"
	// listenDownWait is how long WaitClaim waits while the handle has no
	// LISTEN connection, before its caller looks again.
	listenDownWait = 250 * time.Millisecond
	// listenRetryMin and listenRetryMax bound the pause between attempts
	// to reconnect the LISTEN connection.
	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
	// listenPing is how long the LISTEN connection may stay silent before
	// it is pinged.
	listenPing = 30 * time.Second
	// ownerRetention is how long an owner that is gone, and holds no open
	// intent, is remembered.
	ownerRetention = time.Hour
	// cleanupTimeout bounds a rollback and the closing of a handle, which
	// run detached from their caller's context.
	cleanupTimeout = 5 * time.Second
	// commitRetention is how long a write transaction's commit token is
	// kept: a write whose COMMIT's answer was lost is resolved well within.
	commitRetention = 24 * time.Hour
	// txAttempts is how many times a transaction is tried when PostgreSQL
	// aborts it to break a deadlock or a serialization conflict.
	txAttempts = 5
)

// Postgres is the [Store] that replicas share: one PostgreSQL database,
// through a pgx connection pool. Every handle (one per server process) is
// an owner of the intents it holds, with a lease in the database.
//
// Time comes from the database: windows, claim expiry, leases and
// retention are judged by the database's clock, never by the time a caller
// passes, so that no replica's clock can stretch or erase a window.
// [PostgresClientClock] switches this off, for tests only. A transaction
// reads the time when it begins, and a hold reads it again once its
// counters are locked, judging their windows and recording its entries at
// that time: the holders of a counter see times that only go up, so none
// judges by a time earlier than one that trimmed the counter before it got
// the lock, and no window ever holds more than its maximum.
//
// Atomicity across replicas comes from row locks in READ COMMITTED
// transactions, not from SERIALIZABLE: every transaction that reads or
// changes a counter first makes sure its row exists (INSERT ... ON
// CONFLICT DO NOTHING) and locks it (SELECT ... FOR UPDATE), in key order,
// before reading its total; a claim is taken by one INSERT ... ON CONFLICT
// DO UPDATE that replaces only a claim no longer live, and locks it either
// way; an approval request locks its call key's row in approval_keys, and
// whatever decides, expires or uses an approval locks its row; an append
// locks the audit head row. Locks are always taken in the order intent,
// claim, approval key, approvals (by ID), counters (by key), audit head,
// so transactions wait for each other instead of deadlocking. Row locks make the calls on one
// budget queue, each doing its work once, where serializable transactions
// would run them side by side and abort and retry all but one of those
// that met: under the contention a budget sees (every call of a tenant on
// one counter) that wastes round trips and grows the tail, and a retry
// loop would be needed around every call. A transaction PostgreSQL aborts
// all the same (a deadlock, say) is tried again.
//
// Counters are running totals, exact at window edges, as in [SQLite]: a
// call on a counter removes the entries that have left its window from the
// total, each entry once, so the cost of a call does not grow with the
// entries a window holds. Statements are sent in batches, a transaction's
// last with its COMMIT; one whose work is one batch is sent alone, as the
// implicit transaction PostgreSQL makes of it. Hold and Complete, the two
// writes of every call, each run in one round trip whose work is one
// statement, a PL/pgSQL function (clink_hold, clink_complete: schema
// migration 3; clink_hold as migration 5 redefined it) that also computes the audit record's hash: the rows every
// call locks (the audit head, a global budget's counters) are held while
// the database works, never across a client round trip. Every so many
// calls, a sweep deletes what has expired, skipping the rows calls hold.
//
// Every write transaction records a token of its own (table commits; the
// functions only when they do their work): a writer that loses the answer
// to its COMMIT looks the token up, which tells whether it committed (and
// with which audit record, read back so that the call returns what the
// answer would have said), and takes it if it did not, so that it never
// will; the write is then tried again.
//
// Claims finished or dropped are announced with NOTIFY; [Postgres.WaitClaim]
// wakes on them, on every handle. The audit trail is one hash chain for
// all handles, in the same format as SQLite's; a trigger refuses updates
// and deletes.
//
// The database going away makes every operation fail with an error (the
// gate then refuses calls); the pool reconnects by itself when it returns.
// The URL's password never appears in an error, nor in String.
type Postgres struct {
	pool    *pgxpool.Pool
	owner   string
	cfg     postgresConfig
	secrets []string // what errors must not show: the URL and its password
	desc    string   // the database, without its password

	listen    *claimListener
	closed    atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Lease renewal and, with a client clock, publishing, paced: times
	// are durations since started (monotonic).
	started     time.Time
	renewMu     sync.Mutex
	renewed     atomic.Int64
	published   atomic.Int64
	publishedAt atomic.Int64
	// A renewal that failed (the database out of reach) makes the handle
	// judge no other owner dead from then until a lease after its next
	// success (judgeFrom): the others lost the database too, and their
	// leases passed without their processes ending. See Intents.
	renewFailed atomic.Bool
	judgeFrom   atomic.Int64

	writes atomic.Int64 // timed write transactions: sweeps run every sweepEvery

	unsureMu sync.Mutex
	unsure   map[string]unsureWrite
}

var _ Store = (*Postgres)(nil)

// postgresConfig is what the options set.
type postgresConfig struct {
	clientClock bool
	lease       time.Duration
	noMigrate   bool
	// tracer, for tests, sees every statement the handle's connections
	// send.
	tracer pgx.QueryTracer
}

// PostgresOption configures [OpenPostgres].
type PostgresOption func(*postgresConfig)

// PostgresClientClock makes the store judge windows, claims and retention
// by the time each caller passes, as [Memory] and [SQLite] do, bounded by
// the earliest time another open handle has published through Clock,
// instead of by the database's clock. It is for tests only, so that the
// conformance suite's cases that travel in time run unchanged: in
// production a replica whose clock is wrong would stretch or shorten
// every window. Leases stay in database time. The default is the
// database's clock.
func PostgresClientClock() PostgresOption {
	return func(c *postgresConfig) { c.clientClock = true }
}

// PostgresLease sets how long a handle stays the live owner of its
// intents after it last renewed its lease (by Clock, which the gate calls
// every few seconds, and by its writes). When a handle's process dies, its
// open intents become orphaned, to be resolved by another replica, once
// the lease has passed. The default is 30 seconds; d must be at least a
// second.
func PostgresLease(d time.Duration) PostgresOption {
	return func(c *postgresConfig) { c.lease = d }
}

// PostgresNoMigrate makes [OpenPostgres] open only a database that holds
// a clink-mcp store of this code's schema, as the commands that work
// beside the replicas (audit, approvals) need: a newer binary used to read
// the store must not upgrade it under the older replicas that serve it. A
// database without the store's schema is refused, and one of an older
// schema is refused with an [*OldSchemaError]; neither is written to. The
// default is to create or migrate the schema.
func PostgresNoMigrate() PostgresOption {
	return func(c *postgresConfig) { c.noMigrate = true }
}

// Lease implements [Leaser].
func (p *Postgres) Lease() time.Duration { return p.cfg.lease }

var _ Leaser = (*Postgres)(nil)

// OpenPostgres connects to the database at url (a postgres:// URL or a
// keyword/value string, as pgx accepts), brings its schema up to date
// (unless [PostgresNoMigrate]) and returns a handle: one owner of intents,
// with its lease.
//
// Migrations are versioned in the table schema_migrations and applied
// under a transaction-level advisory lock, so that replicas starting
// together migrate once (through a pooler in transaction mode too);
// a database whose schema is newer than this code is refused. The schema's
// tables are created in the first schema of the connection's search_path:
// give clink-mcp a database, or a schema (options=-csearch_path=...), of
// its own.
//
// The pool holds at most 4 connections unless the URL sets
// pool_max_conns, plus one for LISTEN. url holds a password: no error
// OpenPostgres returns, nor any error or String of the handle, shows it.
func OpenPostgres(ctx context.Context, url string, opts ...PostgresOption) (*Postgres, error) {
	cfg := postgresConfig{lease: postgresLease}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.lease < time.Second {
		return nil, fmt.Errorf("store: the owner lease %v is shorter than a second", cfg.lease)
	}
	if strings.TrimSpace(url) == "" {
		return nil, errors.New("store: no database URL given")
	}
	secrets := urlSecrets(url)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, parseError(err, secrets)
	}
	if pw := pcfg.ConnConfig.Password; pw != "" {
		secrets = append(secrets, pw)
	}
	if !strings.Contains(url, "pool_max_conns") {
		pcfg.MaxConns = postgresConns
	}
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "clink-mcp"
	}
	// Transactions sent without BEGIN (one batch, an implicit transaction)
	// run at the session's default isolation: the store's locking is
	// designed for READ COMMITTED, whatever the server's default.
	pcfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	if cfg.tracer != nil {
		pcfg.ConnConfig.Tracer = cfg.tracer
	}
	listenCfg := pcfg.ConnConfig.Copy()
	listenCfg.RuntimeParams["application_name"] += " listener"
	p := &Postgres{
		owner:   newOwnerID(),
		cfg:     cfg,
		secrets: secrets,
		desc:    describe(pcfg.ConnConfig),
		closing: make(chan struct{}),
		started: time.Now(),
		unsure:  make(map[string]unsureWrite),
	}
	p.publishedAt.Store(-int64(publishEvery))
	openErr := func(err error) error {
		return p.redact(fmt.Errorf("store: open %s: %w", p.desc, err))
	}
	if p.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, openErr(err)
	}
	if err := p.open(ctx, listenCfg); err != nil {
		p.pool.Close()
		return nil, openErr(err)
	}
	return p, nil
}

// open migrates the schema, registers the owner and starts listening.
func (p *Postgres) open(ctx context.Context, listenCfg *pgx.ConnConfig) error {
	if err := p.pool.Ping(ctx); err != nil {
		return err
	}
	if err := p.migrate(ctx); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, pqRenew, p.owner, int64(0), int64(p.cfg.lease)); err != nil {
		return fmt.Errorf("registering the owner: %w", err)
	}
	p.renewed.Store(int64(time.Since(p.started)))
	l, err := startListener(ctx, listenCfg)
	if err != nil {
		return fmt.Errorf("listening for claims: %w", err)
	}
	p.listen = l
	return nil
}

// String describes the database (user, host, port, database), never its
// password.
func (p *Postgres) String() string { return "postgres store " + p.desc }

// GoString is String, so that %#v does not print the handle's fields.
func (p *Postgres) GoString() string { return p.String() }

// describe names the database a configuration connects to.
func describe(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", User: url.User(c.User), Host: c.Host, Path: "/" + c.Database}
	if c.Port != 0 {
		u.Host = c.Host + ":" + strconv.Itoa(int(c.Port))
	}
	if strings.HasPrefix(c.Host, "/") { // a unix socket directory
		u.Host = ""
		return u.String() + "?host=" + c.Host
	}
	return u.String()
}

// The statements the store runs. pgx prepares each once per connection.
// Times are unix ns; clink_now(x) is x, or the transaction's time in the
// database when x is NULL.
const (
	pqRenew = `INSERT INTO owners (owner, published, lease_until) VALUES ($1, $2, clink_now(NULL) + $3)
ON CONFLICT (owner) DO UPDATE SET published = GREATEST(owners.published, excluded.published), lease_until = excluded.lease_until
WHERE NOT owners.closed`
	pqCloseOwner = `UPDATE owners SET closed = true, lease_until = LEAST(lease_until, clink_now(NULL)) WHERE owner = $1`
	pqOthers     = `SELECT COALESCE(min(published), 9223372036854775807), COALESCE(max(published), 0) FROM owners
WHERE owner <> $1 AND published <> 0 AND NOT closed AND lease_until > clink_now(NULL)`
	pqNow = `SELECT clink_now(NULL)`
	// pqCommitToken records a write transaction's token, sent with its
	// COMMIT, so that a COMMIT whose answer is lost can be resolved with
	// pqProbeToken: a transaction committed if and only if its token is
	// in commits, not as a probe. The probe takes a token that is not
	// there, so that the transaction, were it still running, cannot commit
	// after it; it waits for one that is being inserted.
	pqCommitToken = `INSERT INTO commits (token, at, seq) VALUES ($1, clink_now(NULL), (SELECT seq FROM audit_head WHERE id = 1))`
	pqProbeToken  = `INSERT INTO commits AS c (token, at, probe) VALUES ($1, clink_now(NULL), true)
ON CONFLICT (token) DO UPDATE SET at = c.at RETURNING c.probe, c.seq`
	pqRecordAt = `SELECT ` + auditColumns + ` FROM audit WHERE seq = $1`
	// pqSweepCommits deletes old tokens, a bounded number at a time: a
	// sweep that falls behind catches up over the next ones.
	pqSweepCommits = `DELETE FROM commits WHERE token IN (SELECT token FROM commits WHERE at <= clink_now(NULL) - $1 ORDER BY at LIMIT 20000)`
	pqClaim        = `INSERT INTO claims AS c (key, call, fingerprint, at, expires, state, result)
VALUES ($1, $2, $3, clink_now($4), clink_now($4) + $5, 1, NULL)
ON CONFLICT (key) DO UPDATE SET call = excluded.call, fingerprint = excluded.fingerprint, at = excluded.at,
	expires = excluded.expires, state = 1, result = NULL, waited = false
WHERE CASE WHEN c.state = 2 THEN c.expires ELSE GREATEST(c.expires, c.at + $7) END <= clink_now($6)
RETURNING true`
	pqPriorClaim = `SELECT fingerprint, state, result FROM claims WHERE key = $1`
	pqWaitOn     = `UPDATE claims SET waited = true WHERE key = $1 AND state = 1 RETURNING true`
	pqLookClaim  = `SELECT fingerprint, state, result FROM claims
WHERE key = $1 AND CASE WHEN state = 2 THEN expires ELSE GREATEST(expires, at + $3) END > clink_now($2)`
	pqClaimLive = `SELECT true FROM claims
WHERE key = $1 AND CASE WHEN state = 2 THEN expires ELSE GREATEST(expires, at + $3) END > clink_now($2)`
	pqEnsureCounters = `INSERT INTO counters (key, total, win, expires)
SELECT k, 0, 0, 0 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING`
	pqLockCounters = `SELECT key, total FROM counters WHERE key = ANY($1) ORDER BY key FOR UPDATE`
	pqExpire       = `WITH gone AS (DELETE FROM counter_entries WHERE key = $1 AND at <= clink_now($2) - $3 RETURNING amount)
SELECT COALESCE(sum(amount), 0)::bigint FROM gone`
	// pqLockedNow reads the database's clock once the counters are locked
	// (see queueAdmit), and keeps it for pqExpireLocked, in the same batch.
	pqLockedNow = `SELECT set_config('clink.locked_now', ((extract(epoch FROM clock_timestamp()) * 1000000000)::bigint)::text, true)::bigint`
	// pqExpireLocked is pqExpire by the time pqLockedNow read.
	pqExpireLocked = `WITH gone AS (DELETE FROM counter_entries WHERE key = $1 AND at <= current_setting('clink.locked_now')::bigint - $2 RETURNING amount)
SELECT COALESCE(sum(amount), 0)::bigint FROM gone`
	pqCounting      = `SELECT at, amount FROM counter_entries WHERE key = $1 AND at > $2 ORDER BY at`
	pqInsertEntries = `INSERT INTO counter_entries (reservation, key, kind, at, amount)
SELECT $1, v.key, v.kind, $2, v.amount FROM unnest($3::text[], $4::smallint[], $5::bigint[]) AS v(key, kind, amount)`
	// c.key = ANY($1) makes the plan look the counters up by key: a join
	// with the arrays alone may be planned as a scan of every counter.
	pqUpdateCounters = `UPDATE counters AS c SET total = v.total, win = v.win, expires = GREATEST(c.expires, v.expires)
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(key, total, win, expires)
WHERE c.key = ANY($1) AND c.key = v.key`
	pqInsertReservation = `INSERT INTO reservations (id, at, expires, keys) VALUES ($1, $2, $3, $4)`
	pqSetOutcome        = `UPDATE reservations SET outcome = $2 WHERE id = $1 AND outcome = 0 RETURNING at, keys`
	pqReservationExists = `SELECT true FROM reservations WHERE id = $1`
	pqLockKeys          = `SELECT 1 FROM counters WHERE key = ANY($1) ORDER BY key FOR UPDATE`
	pqRelease           = `WITH gone AS (DELETE FROM counter_entries WHERE key = ANY($1) AND at = $2 AND reservation = $3 AND kind = $4 RETURNING key, amount)
UPDATE counters AS c SET total = c.total - g.amount FROM gone AS g WHERE c.key = g.key`
	pqMove = `WITH gone AS (DELETE FROM counter_entries WHERE key = ANY($1) AND at = $2 AND reservation = $3 RETURNING key, amount)
UPDATE counters AS c SET total = c.total - g.amount FROM gone AS g WHERE c.key = g.key`
	pqFinish    = `WITH u AS (UPDATE claims SET state = 2, result = $2 WHERE key = $1 RETURNING key) SELECT pg_notify('` + claimChannel + `', $3) FROM u`
	pqDrop      = `WITH d AS (DELETE FROM claims WHERE key = $1 RETURNING key) SELECT pg_notify('` + claimChannel + `', $2) FROM d`
	pqHead      = `SELECT seq, hash FROM audit_head WHERE id = 1`
	pqScanAudit = `SELECT ` + auditColumns + ` FROM audit ORDER BY seq`
	// pqAddIntent adds the intent whose record the transaction has just
	// appended: the audit head, which it holds locked.
	pqAddIntent = `INSERT INTO intents (call, seq, owner, claim_key, reservation, at, keys)
VALUES ($1, (SELECT seq FROM audit_head WHERE id = 1), $2, $3, $4, $5, $6)`
	// pqIntents marks an intent orphaned when its owner (another handle)
	// closed, or its lease has passed while the database has been up for a
	// lease ($2, the reader's) or more: leases that passed while it was
	// down (a restart) are given one to be renewed. The last column says
	// the owner closed (or is gone from owners).
	pqIntents = `SELECT i.call, i.owner, i.claim_key, i.reservation,
	i.owner <> $1 AND NOT EXISTS (SELECT 1 FROM owners AS o WHERE o.owner = i.owner AND NOT o.closed
		AND (o.lease_until > clink_now(NULL) OR clink_now(NULL) - $2 < (extract(epoch FROM pg_postmaster_start_time()) * 1000000000)::bigint)),
	i.owner <> $1 AND NOT EXISTS (SELECT 1 FROM owners AS o WHERE o.owner = i.owner AND NOT o.closed),
	` + auditColumnsOfA + ` FROM intents AS i JOIN audit AS a ON a.seq = i.seq ORDER BY i.seq`
	pqCheck = `SELECT n.now, COALESCE(c.total, 0),
	COALESCE((SELECT sum(e.amount) FROM counter_entries AS e WHERE e.key = v.key AND e.at <= n.now - v.win), 0)::bigint
FROM (SELECT clink_now($1) AS now) AS n
CROSS JOIN unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS v(key, win, i)
LEFT JOIN counters AS c ON c.key = v.key
ORDER BY v.i`
	pqSweepReservations = `DELETE FROM reservations WHERE id IN (SELECT id FROM reservations
WHERE expires <= clink_now($1) - $2 FOR UPDATE SKIP LOCKED)`
	pqSweepClaims = `DELETE FROM claims WHERE key IN (SELECT key FROM claims
WHERE expires <= clink_now($1) - $2 AND (state = 2 OR at <= clink_now($1) - $2 - $3) FOR UPDATE SKIP LOCKED)`
	pqSweepCounters = `WITH idle AS (SELECT key FROM counters WHERE expires <= clink_now($1) - $2 ORDER BY key FOR UPDATE SKIP LOCKED),
	gone AS (DELETE FROM counters AS c USING idle WHERE c.key = idle.key RETURNING c.key)
DELETE FROM counter_entries AS e USING gone WHERE e.key = gone.key`
	// The session index is partial: the query must say session_id <> ''.
	pqSessionTool = `SELECT tool FROM audit WHERE session_id = $1 AND session_id <> '' AND kind = '` + KindOutcome +
		`' AND decision = '` + createdDecision + `' AND caller = $2 ORDER BY seq LIMIT 1`
	pqSweepOwners = `DELETE FROM owners WHERE owner IN (SELECT o.owner FROM owners AS o WHERE o.lease_until <= clink_now(NULL) - $1
AND NOT EXISTS (SELECT 1 FROM intents AS i WHERE i.owner = o.owner) FOR UPDATE SKIP LOCKED)`
)

// The statements that call the functions of schema migration 3, which
// write an audit record each: its arguments (recordArgs) end theirs.
var (
	pqAppend = `SELECT a_seq, a_prev_hash, a_hash FROM clink_append(` + recordParams(1) + `)`
	pqHold   = `SELECT o_state, o_fingerprint, o_claim_state, o_result, o_limit, o_used, o_now, o_clock, a_seq, a_prev_hash, a_hash
FROM clink_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, ` + recordParams(19) + `)`
	// pqExtendFinishedClaim moves the end of a claim that clink_complete
	// has just finished to a window after the call ended ($3, or the
	// database's time), if later; only when the completion wrote (its
	// token $4 is recorded): one that found its call resolved by another
	// process writes nothing.
	pqExtendFinishedClaim = `UPDATE claims AS c SET expires = GREATEST(c.expires, clink_now($3) + (c.expires - c.at))
		WHERE c.key = $1 AND c.call = $2 AND c.state = 2 AND EXISTS (SELECT 1 FROM commits AS k WHERE k.token = $4)`
	pqComplete = `SELECT o_open, a_seq, a_prev_hash, a_hash FROM clink_complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ` + recordParams(11) + `)`
)

// pgTx is one write transaction on a connection of the pool, sent as
// batches: BEGIN goes with the first, COMMIT with the last.
type pgTx struct {
	ctx  context.Context
	p    *Postgres
	conn *pgxpool.Conn

	begun      bool
	token      string // recorded with COMMIT: see pqCommitToken
	commitSent bool
	committed  bool
	// rollback ends the transaction without committing, although its
	// function returned nil: it found what it needed and wrote nothing.
	rollback bool
	// lost reports that the connection was found closed when the
	// transaction ended.
	lost bool

	// The transaction's time, once known, in unix ns: now stamps what it
	// records, clock judges windows and leases, earliest is the earliest
	// time another live handle published (client clock only). In the
	// database's time, now and clock are the time the transaction began,
	// read with its first batch.
	timed bool
	known bool
	// selfTimed is set when the transaction's statements read its time
	// themselves (clink_hold): send does not query it.
	selfTimed bool
	// unseen, if set, is called when the transaction turns out to have
	// committed although its answer was lost, with the audit head as it
	// committed (its last record, if it appended one): it recovers what
	// the answer would have told.
	unseen func(seq int64) error
	// tokenInside is set when the transaction's statements record its
	// commit token themselves, only when they do their work (clink_hold,
	// clink_complete): a transaction of one batch then adds none.
	tokenInside bool
	now         int64
	clock       int64
	earliest    int64
}

// arg is v, or NULL (the transaction's time, in SQL) while the
// transaction's time is not known yet.
func (t *pgTx) arg(v int64) any {
	if !t.known {
		return nil
	}
	return v
}

// send sends b in one round trip, after BEGIN (and the query of the
// transaction's time, unless the transaction's statements read it
// themselves) if the transaction has not begun, and followed by COMMIT
// when commit is set. read, if not nil, reads b's results in order; those
// it leaves are read when the batch closes, by the callbacks queued with
// them (pgx.QueuedQuery.QueryRow), their errors returned.
func (t *pgTx) send(b *pgx.Batch, commit bool, read func(pgx.BatchResults) error) error {
	if commit && !t.begun && (!t.timed || t.known || t.selfTimed) {
		return t.sendWhole(b, read)
	}
	full := &pgx.Batch{}
	first := !t.begun
	readTime := first && t.timed && !t.known && !t.selfTimed
	if first {
		full.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
		if readTime {
			full.Queue(pqNow)
		}
	}
	if b != nil {
		full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	}
	if commit {
		if !t.tokenInside {
			full.Queue(pqCommitToken, t.token)
		}
		full.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" {
				return errors.New("the transaction was rolled back")
			}
			t.committed = true
			return nil
		})
		t.commitSent = true
	}
	br := t.conn.SendBatch(t.ctx, full)
	err := func() error {
		if first {
			if _, err := br.Exec(); err != nil {
				return err
			}
			t.begun = true
			if readTime {
				if err := br.QueryRow().Scan(&t.now); err != nil {
					return err
				}
				t.clock, t.known = t.now, true
			}
		}
		if read != nil {
			return read(br)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if answered(err) {
		t.commitSent = false // the statements after the failed one, COMMIT included, were skipped
	}
	return err
}

// sendWhole sends b, the whole transaction, with its commit token, as one
// batch without BEGIN and COMMIT: PostgreSQL runs a batch (one Sync) as one
// implicit transaction, committed when its last statement succeeds and
// rolled back whole when one fails. read is as for send.
func (t *pgTx) sendWhole(b *pgx.Batch, read func(pgx.BatchResults) error) error {
	full := &pgx.Batch{}
	if b != nil {
		full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	}
	if !t.tokenInside {
		full.Queue(pqCommitToken, t.token)
	}
	t.begun, t.commitSent = true, true
	br := t.conn.SendBatch(t.ctx, full)
	var err error
	if read != nil {
		err = read(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	// Close has read the batch's end: every statement ran and the
	// transaction committed; or the database answered with an error, and
	// nothing did.
	t.committed = err == nil
	if answered(err) {
		t.commitSent = false
	}
	return err
}

// answered reports whether err is the database's answer to a statement
// (then a transaction it ends committed nothing), rather than a lost
// connection or a cancelled wait.
func answered(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// exec sends b, committing if commit is set; its results are read by
// their callbacks, if any, and otherwise only for their errors.
func (t *pgTx) exec(b *pgx.Batch, commit bool) error {
	return t.send(b, commit, nil)
}

// write runs fn in a write transaction, committing if it returns nil (and
// has not committed itself) and rolling back otherwise. With timed set, the
// transaction's time is known before fn's first batch is read: at (the
// caller's clock, bounded by the others') with a client clock, else the
// database's. A transaction PostgreSQL aborts to break a deadlock or a
// serialization conflict is tried again, as is one whose connection turned
// out dead before COMMIT was sent: after the database restarts, the pool's
// idle connections are dead, and the first call must not fail for it.
func (p *Postgres) write(ctx context.Context, timed bool, at time.Time, fn func(t *pgTx) error) error {
	if p.closed.Load() {
		return errClosed
	}
	for attempt := 1; ; attempt++ {
		t, err := p.writeOnce(ctx, timed, at, fn)
		var pgErr *pgconn.PgError
		if err != nil && t != nil && t.commitSent && !t.committed && !errors.As(err, &pgErr) {
			// COMMIT was sent and its answer lost with the connection: ask
			// the database how the transaction ended.
			switch status, seq := p.commitStatus(ctx, t.token); status {
			case "committed":
				err = nil
				if t.unseen != nil {
					err = t.unseen(seq)
				}
			case "aborted":
				if attempt < txAttempts && ctx.Err() == nil {
					continue // nothing was written: write it again
				}
			default:
				err = &commitUnknownError{token: t.token, err: err}
			}
		}
		switch {
		case err == nil || attempt == txAttempts || ctx.Err() != nil:
		case errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001"):
			continue
		case t != nil && t.lost && !t.commitSent:
			// The connection was dead (the server restarted, or ended it)
			// before COMMIT was sent: nothing was committed, and the pool
			// has dropped it.
			continue
		}
		if err == nil && timed && p.writes.Add(1)%sweepEvery == 0 {
			p.sweep(ctx, t)
		}
		return p.fail(err)
	}
}

// commitUnknownError is a write whose COMMIT was sent and whose answer was
// lost, the database not saying yet whether the transaction of token
// committed.
type commitUnknownError struct {
	token string
	err   error
}

func (e *commitUnknownError) Error() string {
	return "store: the database may or may not have committed the write (its answer was lost): " + e.err.Error()
}

func (e *commitUnknownError) Unwrap() error { return e.err }

// commitStatus asks the database whether the write transaction of token
// committed: "committed", with the audit head's seq as it committed;
// "aborted" (then it never will: its token is taken); or "" when the
// database cannot be asked. A transaction still running is waited for.
func (p *Postgres) commitStatus(ctx context.Context, token string) (string, int64) {
	var (
		probe bool
		seq   int64
	)
	err := p.read(ctx, func(c *pgxpool.Conn) error { return c.QueryRow(ctx, pqProbeToken, token).Scan(&probe, &seq) })
	switch {
	case err != nil:
		return "", 0
	case probe:
		return "aborted", 0
	default:
		return "committed", seq
	}
}

// recover returns a pgTx.unseen that sets *r to the record at the head
// the transaction committed with: r's append was its last. It is best
// effort: when the record cannot be read, r keeps what was sent (without
// its Seq and hashes) and the write still reports success, which it is:
// reporting a failure would have it written again.
func (p *Postgres) recover(ctx context.Context, r *AuditRecord) func(seq int64) error {
	call := r.Call
	return func(seq int64) error {
		if rec, err := p.recordAt(ctx, seq); err == nil && rec.Call == call {
			*r = *rec
		}
		return nil
	}
}

// intentStatus says how a write of call that ended long ago ended, by its
// intent: "committed" or "aborted", or "" when the database cannot be
// asked.
func (p *Postgres) intentStatus(ctx context.Context, call string, complete bool) string {
	var open bool
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM intents WHERE call = $1)`, call).Scan(&open)
	})
	switch {
	case err != nil:
		return ""
	case open != complete:
		return "committed"
	default:
		return "aborted"
	}
}

// recordAt reads the audit record at seq.
func (p *Postgres) recordAt(ctx context.Context, seq int64) (*AuditRecord, error) {
	r := &AuditRecord{}
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, pqRecordAt, seq)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return fmt.Errorf("store: audit record %d not found", seq)
		}
		return scanRecord(rows, r)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Writes of a call whose COMMIT's answer was lost, by call ID, until the
// database says how they ended: a later Complete of the call asks first,
// so that a retried completion is not recorded twice and a hold that did
// commit is settled.
type unsureWrite struct {
	token    string
	complete bool      // a Complete (else a Hold)
	at       time.Time // when it was written: its token is kept commitRetention
}

// remember notes a write of call that failed with err, if its COMMIT's
// answer was lost.
func (p *Postgres) remember(call string, complete bool, err error) {
	var unknown *commitUnknownError
	if !errors.As(err, &unknown) {
		return
	}
	p.unsureMu.Lock()
	defer p.unsureMu.Unlock()
	if prev, ok := p.unsure[call]; ok && prev.complete && !complete {
		return
	}
	p.unsure[call] = unsureWrite{token: unknown.token, complete: complete, at: time.Now()}
}

// settleUnsure resolves an earlier write of call whose COMMIT's answer was
// lost, before the call is completed: landed reports an earlier Complete
// that did commit (this one must then do nothing); an error, that the
// database cannot say yet.
func (p *Postgres) settleUnsure(ctx context.Context, call string) (landed bool, err error) {
	p.unsureMu.Lock()
	w, ok := p.unsure[call]
	p.unsureMu.Unlock()
	if !ok {
		return false, nil
	}
	var status string
	if time.Since(w.at) < commitRetention/2 {
		status, _ = p.commitStatus(ctx, w.token)
	} else {
		// Its token may have been swept: the call's intent tells. A hold
		// that landed added it, a completion that landed removed it (and
		// nothing can still be running this long after).
		status = p.intentStatus(ctx, call, w.complete)
	}
	if status != "committed" && status != "aborted" {
		return false, p.fail(fmt.Errorf("store: an earlier write of call %s may or may not have committed, and the database cannot say yet", call))
	}
	p.unsureMu.Lock()
	delete(p.unsure, call)
	p.unsureMu.Unlock()
	return w.complete && status == "committed", nil
}

func (p *Postgres) writeOnce(ctx context.Context, timed bool, at time.Time, fn func(t *pgTx) error) (*pgTx, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	t := &pgTx{ctx: ctx, p: p, conn: conn, timed: timed, token: rand.Text()}
	defer func() {
		t.lost = conn.Conn().IsClosed()
		// A connection left inside a transaction would hold its locks:
		// roll back (detached from ctx, which may be what ended it). One
		// that cannot is destroyed by Release.
		if c := conn.Conn(); !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_, _ = c.Exec(rctx, `ROLLBACK`)
			cancel()
		}
		conn.Release()
	}()
	if timed && p.cfg.clientClock {
		// The caller's clock, bounded by the earliest another live handle
		// has published: no handle prunes what another still counts. It
		// is read before the transaction begins (a transaction of one
		// batch has no round trip before its statements).
		if err := conn.QueryRow(ctx, pqOthers, p.owner).Scan(&t.earliest, new(int64)); err != nil {
			return t, err
		}
		t.now = at.UnixNano()
		t.clock, t.known = min(t.now, t.earliest), true
	}
	if err := fn(t); err != nil {
		return t, err
	}
	if t.committed || t.rollback {
		return t, nil
	}
	return t, t.send(nil, true, nil)
}

// read runs fn on a connection of the pool. fn reads, or writes what may
// be written twice: when its connection turns out dead, it runs once more
// on another.
func (p *Postgres) read(ctx context.Context, fn func(c *pgxpool.Conn) error) error {
	for attempt := 1; ; attempt++ {
		conn, err := p.pool.Acquire(ctx)
		if err != nil {
			return p.fail(err)
		}
		err = fn(conn)
		lost := conn.Conn().IsClosed()
		conn.Release()
		if err != nil && lost && attempt < 2 && ctx.Err() == nil {
			continue
		}
		return p.fail(err)
	}
}

// renew renews the handle's lease (and, with a client clock, publishes
// at) when it is due, or at once with force: the lease every sixth of
// itself, the clock at most once per publishEvery.
func (p *Postgres) renew(ctx context.Context, at int64, force bool) error {
	if p.closed.Load() {
		return errClosed
	}
	due := func() bool {
		now := int64(time.Since(p.started))
		return now-p.renewed.Load() >= int64(p.cfg.lease/6) ||
			p.cfg.clientClock && at > p.published.Load() && now-p.publishedAt.Load() >= int64(publishEvery)
	}
	if !force && !due() {
		return nil
	}
	p.renewMu.Lock()
	defer p.renewMu.Unlock()
	if !force && !due() {
		return nil
	}
	var pub int64
	if p.cfg.clientClock {
		pub = at
	}
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, pqRenew, p.owner, pub, int64(p.cfg.lease))
		return err
	})
	if err != nil {
		// Only the database out of reach counts: not a caller that gave
		// up (its context cancelled) on a database that answers. A
		// deadline that passed is the database not answering in the
		// time given (the gate's beat gives its renewal one): a network
		// that drops packets fails every renewal so, never refusing.
		if !errors.Is(ctx.Err(), context.Canceled) {
			p.renewFailed.Store(true)
		}
		return err
	}
	now := int64(time.Since(p.started))
	if p.renewFailed.Swap(false) {
		p.judgeFrom.Store(now + int64(p.cfg.lease))
	}
	p.renewed.Store(now)
	if pub > p.published.Load() {
		p.published.Store(pub)
		p.publishedAt.Store(now)
	}
	return nil
}

// sweep forgets what has expired by t's clock (with pruneGrace for the
// others'): reservations past retention, claims whose window and lease
// have passed, counters none of whose entries counts any more (with their
// entries), and owners long gone that hold no intent. It runs after every
// sweepEvery timed write transactions, in a transaction of its own that
// skips the rows others have locked (it never waits for a call, nor makes
// one wait long); it fails silently, to run again later.
func (p *Postgres) sweep(ctx context.Context, t *pgTx) {
	at := any(nil)
	if p.cfg.clientClock && t != nil {
		at = t.clock
	}
	b := &pgx.Batch{}
	b.Queue(pqSweepReservations, at, int64(reservationRetention))
	b.Queue(pqSweepClaims, at, int64(pruneGrace), int64(InFlightLease))
	b.Queue(pqSweepCounters, at, int64(pruneGrace))
	b.Queue(pqSweepOwners, int64(ownerRetention))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = p.pool.SendBatch(ctx, b).Close()
	// Apart: a batch is one transaction, and the others need not wait
	// for it, nor fail with it.
	_, _ = p.pool.Exec(ctx, pqSweepCommits, int64(commitRetention))
}

// fail turns err into what a caller sees: the store's own errors as they
// are, others prefixed, and never the URL's password.
func (p *Postgres) fail(err error) error {
	var denied *policy.Denied
	switch {
	case err == nil:
		return nil
	case errors.As(err, &denied), errors.Is(err, ErrNotFound), errors.Is(err, errClosed), errors.Is(err, ErrApprovalNotPending):
		return err
	case !strings.HasPrefix(err.Error(), "store:"):
		err = fmt.Errorf("store: %w", err)
	}
	return p.redact(err)
}

// holdsConfig reports whether err wraps an error that carries the
// connection's configuration, password included.
func holdsConfig(err error) bool {
	var (
		ce *pgconn.ConnectError
		pe *pgconn.ParseConfigError
	)
	return errors.As(err, &ce) || errors.As(err, &pe)
}

// redact returns err, or, when its text shows a secret or it wraps the
// connection's configuration, an error with the same text, secrets masked,
// that unwraps to nothing but a context's error.
func (p *Postgres) redact(err error) error {
	msg := err.Error()
	if !containsAny(msg, p.secrets) && !holdsConfig(err) {
		return err
	}
	return &redactedError{msg: mask(msg, p.secrets), cause: contextCause(err)}
}

// redactedError is an error whose text had a secret masked. It does not
// unwrap to the original, whose text shows the secret.
type redactedError struct {
	msg   string
	cause error // context.Canceled, context.DeadlineExceeded or nil
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// contextCause is the context error err wraps, or nil.
func contextCause(err error) error {
	for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

func containsAny(s string, secrets []string) bool {
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			return true
		}
	}
	return false
}

// mask replaces every secret in s, longest first.
func mask(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return s
}

// kvPassword finds password=... in a keyword/value connection string.
var kvPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// urlSecrets returns what in a connection string is secret, as far as it
// can be told before pgx parses it: the string itself, the userinfo
// password and password parameters.
func urlSecrets(s string) []string {
	secrets := []string{s}
	if u, err := url.Parse(s); err == nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw, url.UserPassword("", pw).String()[1:])
		}
		for _, k := range []string{"password", "sslpassword"} {
			if v := u.Query().Get(k); v != "" {
				secrets = append(secrets, v)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(s, -1) {
		secrets = append(secrets, strings.Trim(m[1], "'"))
	}
	// The userinfo's password as written, even in a URL too broken to
	// parse.
	if _, rest, ok := strings.Cut(s, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				secrets = append(secrets, pw)
			}
		}
	}
	return secrets
}

// parseError reports a connection string pgx cannot parse without quoting
// it: it holds the password.
func parseError(err error, secrets []string) error {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// "cannot parse `<the string, redacted as well as pgx can>`: why"
		if _, why, ok := strings.Cut(msg, "`: "); ok {
			msg = why
		}
	}
	return errors.New("store: the database URL is not valid: " + mask(msg, secrets))
}

// Ping reports whether the database answers.
func (p *Postgres) Ping(ctx context.Context) error {
	if p.closed.Load() {
		return errClosed
	}
	return p.read(ctx, func(c *pgxpool.Conn) error { return c.Ping(ctx) })
}

// Clock implements [Ledger]. It renews the handle's lease. With the
// database's clock, it returns how far the database's clock is ahead of
// at, so that a replica whose clock is wrong hears of it; with a client
// clock, as [SQLite] does, how far the latest time another live handle has
// published is ahead of at.
func (p *Postgres) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	now := at.UnixNano()
	if err := p.renew(ctx, now, true); err != nil {
		return 0, err
	}
	if p.cfg.clientClock {
		var latest int64
		err := p.read(ctx, func(c *pgxpool.Conn) error {
			return c.QueryRow(ctx, pqOthers, p.owner).Scan(new(int64), &latest)
		})
		if err != nil || latest == 0 {
			return 0, err
		}
		return time.Duration(latest - now), nil
	}
	var db int64
	if err := p.read(ctx, func(c *pgxpool.Conn) error { return c.QueryRow(ctx, pqNow).Scan(&db) }); err != nil {
		return 0, err
	}
	return time.Duration(db - now), nil
}

// Check implements [Ledger]. It reads; it writes nothing.
func (p *Postgres) Check(ctx context.Context, at time.Time, limits []policy.Limit) error {
	if err := checkLimits(at, limits); err != nil {
		return err
	}
	if p.closed.Load() {
		return errClosed
	}
	if len(limits) == 0 {
		return nil
	}
	keys, windows := make([]string, len(limits)), make([]int64, len(limits))
	for i, l := range limits {
		keys[i], windows[i] = l.Key, int64(l.Window)
	}
	var denied *policy.Denied
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		now, used, err := p.usageOn(ctx, c, at, keys, windows)
		if err != nil {
			return err
		}
		for i, l := range limits {
			if fits(l, used[i]) {
				continue
			}
			es, err := queryEntries(ctx, c, l.Key, windowStart(now, l))
			if err != nil {
				return err
			}
			denied = denial(i, l, used[i], es)
			return nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	if denied != nil {
		return denied
	}
	return nil
}

// readClock is the clock a read on c judges by, as the statements take it
// (clink_now's argument): nil for the database's, or with a client clock
// at bounded by the earliest time another live handle has published, as
// a write judges by.
func (p *Postgres) readClock(ctx context.Context, c *pgxpool.Conn, at time.Time) (any, error) {
	if !p.cfg.clientClock {
		return nil, nil
	}
	var earliest int64
	if err := c.QueryRow(ctx, pqOthers, p.owner).Scan(&earliest, new(int64)); err != nil {
		return nil, err
	}
	return min(at.UnixNano(), earliest), nil
}

// usageOn returns what the counters of keys, with their windows, hold at
// at on c: the transaction's time (the database's, or with a client clock
// at bounded by the earliest time another live handle has published) and
// each counter's total within its window.
func (p *Postgres) usageOn(ctx context.Context, c *pgxpool.Conn, at time.Time, keys []string, windows []int64) (int64, []int64, error) {
	clock, err := p.readClock(ctx, c, at)
	if err != nil {
		return 0, nil, err
	}
	var now, total, expired int64
	used := make([]int64, 0, len(keys))
	rows, err := c.Query(ctx, pqCheck, clock, keys, windows)
	if err != nil {
		return 0, nil, err
	}
	_, err = pgx.ForEachRow(rows, []any{&now, &total, &expired}, func() error {
		used = append(used, total-expired)
		return nil
	})
	return now, used, err
}

// Usage implements [Ledger]. It reads; it writes nothing.
func (p *Postgres) Usage(ctx context.Context, at time.Time, limits []policy.Limit) ([]int64, error) {
	if err := checkLimits(at, limits); err != nil {
		return nil, err
	}
	if p.closed.Load() {
		return nil, errClosed
	}
	used := make([]int64, len(limits))
	if len(limits) == 0 {
		return used, nil
	}
	keys, windows := make([]string, len(limits)), make([]int64, len(limits))
	for i, l := range limits {
		keys[i], windows[i] = l.Key, int64(l.Window)
	}
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		_, u, err := p.usageOn(ctx, c, at, keys, windows)
		if err == nil && len(u) != len(used) {
			err = fmt.Errorf("store: usage of %d limits returned %d totals", len(used), len(u))
		}
		if err != nil {
			return err
		}
		copy(used, u)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return used, nil
}

// querier is what runs a query: the pool, a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryEntries returns key's entries that count after from, oldest first.
func queryEntries(ctx context.Context, q querier, key string, from int64) ([]entry, error) {
	rows, err := q.Query(ctx, pqCounting, key, from)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var es []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.at, &e.amount); err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, rows.Err()
}

// Reserve implements [Ledger], in one transaction of two round trips.
func (p *Postgres) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	if err := checkLimits(at, limits); err != nil {
		return "", err
	}
	if err := p.renew(ctx, at.UnixNano(), false); err != nil {
		return "", err
	}
	var id string
	err := p.write(ctx, true, at, func(t *pgTx) error {
		b := &pgx.Batch{}
		lock := t.queueAdmit(b, limits)
		var counters map[string]int64
		err := t.send(b, false, func(br pgx.BatchResults) (err error) {
			counters, err = lock.read(br)
			return err
		})
		if err != nil {
			return err
		}
		if err := t.admit(limits, lock.keys, counters); err != nil {
			return err
		}
		rid, err := newReservationID()
		if err != nil {
			return err
		}
		b = &pgx.Batch{}
		queueEntries(b, rid, t.now, limits, counters)
		b.Queue(pqInsertReservation, rid, t.now, expiry(t.now, limits), lock.keys)
		// Set before the commit: a commit whose answer is lost, found
		// committed, returns it.
		id = rid
		return t.exec(b, true)
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// admission is what queueAdmit queued: the limits' counters, in key order.
type admission struct {
	limits []policy.Limit
	keys   []string
	// t, when set, takes the time read once the counters were locked
	// (pqLockedNow) as its now and clock.
	t *pgTx
}

// queueAdmit queues the statements that create the missing counters of
// limits, lock them all in key order, and drop from each the entries that
// have left its window by the transaction's clock, so that each entry
// leaves its counter's total once: the cost does not grow with the entries
// a window holds.
func (t *pgTx) queueAdmit(b *pgx.Batch, limits []policy.Limit) admission {
	keys := make([]string, len(limits))
	for i, l := range limits {
		keys[i] = l.Key
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		return admission{limits: limits, keys: keys}
	}
	b.Queue(pqEnsureCounters, keys)
	b.Queue(pqLockCounters, keys)
	if t.p.cfg.clientClock {
		for _, l := range limits {
			b.Queue(pqExpire, l.Key, t.arg(t.clock), int64(l.Window))
		}
		return admission{limits: limits, keys: keys}
	}
	// In the database's time, the windows are judged, and the entries
	// recorded, at the time the counters are held, not the time the
	// transaction began: a transaction that waited for a lock must not
	// judge by a time earlier than one that trimmed the counter meanwhile
	// (migration 5 does the same in clink_hold).
	b.Queue(pqLockedNow)
	for _, l := range limits {
		b.Queue(pqExpireLocked, l.Key, int64(l.Window))
	}
	return admission{limits: limits, keys: keys, t: t}
}

// read reads what queueAdmit queued: each counter's total, its expired
// entries dropped. A counter missing is one a sweep deleted between its
// creation and its lock; admit creates it again.
func (a admission) read(br pgx.BatchResults) (map[string]int64, error) {
	counters := make(map[string]int64, len(a.keys))
	if len(a.keys) == 0 {
		return counters, nil
	}
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	var (
		key   string
		total int64
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &total}, func() error {
		counters[key] = total
		return nil
	})
	if err != nil {
		return nil, err
	}
	if a.t != nil {
		var now int64
		if err := br.QueryRow().Scan(&now); err != nil {
			return nil, err
		}
		a.t.now, a.t.clock, a.t.known = now, now, true
	}
	for _, l := range a.limits {
		var expired int64
		if err := br.QueryRow().Scan(&expired); err != nil {
			return nil, err
		}
		if total, ok := counters[l.Key]; ok {
			counters[l.Key] = total - expired
		}
	}
	return counters, nil
}

// admit locks again, as new, the counters of keys that a sweep deleted
// after they were created, and checks every limit in turn, returning the
// first denial. On success counters hold the totals with the call added.
func (t *pgTx) admit(limits []policy.Limit, keys []string, counters map[string]int64) error {
	for try := 0; len(counters) < len(keys); try++ {
		if try == 10 {
			return errors.New("counters keep vanishing under a sweep")
		}
		b := &pgx.Batch{}
		b.Queue(pqEnsureCounters, keys)
		b.Queue(pqLockCounters, keys)
		err := t.send(b, false, func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return err
			}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var (
				key   string
				total int64
			)
			_, err = pgx.ForEachRow(rows, []any{&key, &total}, func() error {
				if _, ok := counters[key]; !ok {
					counters[key] = total
				}
				return nil
			})
			return err
		})
		if err != nil {
			return err
		}
	}
	for i, l := range limits {
		used := counters[l.Key]
		if !fits(l, used) {
			es, err := queryEntries(t.ctx, t.conn, l.Key, windowStart(t.clock, l))
			if err != nil {
				return err
			}
			return denial(i, l, used, es)
		}
		counters[l.Key] = used + l.Add
	}
	return nil
}

// queueEntries queues the statements that record reservation id's
// entries at now and the counters' new totals.
func queueEntries(b *pgx.Batch, id string, now int64, limits []policy.Limit, counters map[string]int64) {
	if len(limits) == 0 {
		return
	}
	n := len(limits)
	keys, kinds, amounts := make([]string, n), make([]int16, n), make([]int64, n)
	totals, windows, expires := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, l := range limits {
		keys[i], kinds[i], amounts[i] = l.Key, int16(l.Kind), l.Add
		totals[i], windows[i], expires[i] = counters[l.Key], int64(l.Window), now+int64(l.Window)
	}
	b.Queue(pqInsertEntries, id, now, keys, kinds, amounts)
	b.Queue(pqUpdateCounters, keys, totals, windows, expires)
}

// queueRelease queues the statements that lock the counters of keys and
// remove reservation id's budget entries, made at at, from them: its rate
// limits keep counting the call. With rates, its rate entries go too: a
// reservation that moves to a new time (an approval's, when its call is
// made).
func queueRelease(b *pgx.Batch, id string, at int64, keys []string, rates bool) {
	if len(keys) == 0 {
		return
	}
	keys = slices.Sorted(slices.Values(keys))
	b.Queue(pqLockKeys, keys)
	if rates {
		b.Queue(pqMove, keys, at, id)
		return
	}
	b.Queue(pqRelease, keys, at, id, int16(policy.KindBudget))
}

// Settle implements [Ledger].
func (p *Postgres) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	if err := checkOutcome(outcome); err != nil {
		return err
	}
	if err := p.renew(ctx, 0, false); err != nil {
		return err
	}
	return p.write(ctx, false, time.Time{}, func(t *pgTx) error {
		b := &pgx.Batch{}
		b.Queue(pqSetOutcome, id, int16(outcome))
		var (
			at      int64
			keys    []string
			settled bool
		)
		err := t.send(b, false, func(br pgx.BatchResults) error {
			switch err := br.QueryRow().Scan(&at, &keys); {
			case err == nil:
				settled = true
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !settled {
			// Settled before (the first outcome stands), or unknown.
			var exists bool
			if err := t.conn.QueryRow(t.ctx, pqReservationExists, id).Scan(&exists); errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			} else if err != nil {
				return err
			}
			t.rollback = true
			return nil
		}
		if outcome != policy.Released {
			return nil
		}
		b = &pgx.Batch{}
		queueRelease(b, id, at, keys, false)
		return t.exec(b, true)
	})
}

// claimHash names claim key in notifications: keys may be long, and a
// payload is not.
func claimHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// queueClaim queues the statement that takes c's key unless a live claim
// holds it.
func (t *pgTx) queueClaim(b *pgx.Batch, c Claim) {
	at, clock := any(nil), any(nil) // the transaction's time
	if t.p.cfg.clientClock {
		a := c.At.UnixNano()
		at, clock = a, min(a, t.earliest)
	}
	b.Queue(pqClaim, c.Key, c.Call, c.Fingerprint, at, int64(c.Window), clock, int64(InFlightLease))
}

// readClaim reads what queueClaim queued: whether the claim was taken.
func readClaim(br pgx.BatchResults) (bool, error) {
	var taken bool
	err := br.QueryRow().Scan(&taken)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return taken, err
}

// prior reports the live claim that holds key, which the transaction has
// locked.
func (t *pgTx) prior(c Claim) (Prior, error) {
	var (
		fingerprint string
		state       int16
		result      []byte
	)
	if err := t.conn.QueryRow(t.ctx, pqPriorClaim, c.Key).Scan(&fingerprint, &state, &result); err != nil {
		return Prior{}, err
	}
	return claimPrior(fingerprint, c.Fingerprint, state == claimDone, result), nil
}

// LookClaim implements [Claims], in one read: the claim is judged live by
// the database's clock, or with a client clock by c.At bounded by the
// earliest time another live handle has published, as Claim judges it.
func (p *Postgres) LookClaim(ctx context.Context, c Claim) (Prior, error) {
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	if p.closed.Load() {
		return Prior{}, errClosed
	}
	prior := Prior{State: ClaimNew}
	err := p.read(ctx, func(conn *pgxpool.Conn) error {
		clock, err := p.readClock(ctx, conn, c.At)
		if err != nil {
			return err
		}
		var (
			fingerprint string
			state       int16
			result      []byte
		)
		err = conn.QueryRow(ctx, pqLookClaim, c.Key, clock, int64(InFlightLease)).Scan(&fingerprint, &state, &result)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		prior = claimPrior(fingerprint, c.Fingerprint, state == claimDone, result)
		return nil
	})
	if err != nil {
		return Prior{}, err
	}
	return prior, nil
}

// Claim implements [Claims].
func (p *Postgres) Claim(ctx context.Context, c Claim) (Prior, error) {
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	if err := p.renew(ctx, c.At.UnixNano(), false); err != nil {
		return Prior{}, err
	}
	var prior Prior
	err := p.write(ctx, true, c.At, func(t *pgTx) error {
		b := &pgx.Batch{}
		t.queueClaim(b, c)
		var taken bool
		err := t.send(b, false, func(br pgx.BatchResults) (err error) {
			taken, err = readClaim(br)
			return err
		})
		if err != nil {
			return err
		}
		if taken {
			prior = Prior{State: ClaimNew}
			return nil
		}
		t.rollback = true
		prior, err = t.prior(c)
		return err
	})
	if err != nil {
		return Prior{}, err
	}
	return prior, nil
}

// Finish implements [Claims]. Handles waiting for key are woken.
func (p *Postgres) Finish(ctx context.Context, key string, result []byte) error {
	return p.claimDone(ctx, pqFinish, key, cloneBytes(result), claimHash(key))
}

// Drop implements [Claims]. Handles waiting for key are woken.
func (p *Postgres) Drop(ctx context.Context, key string) error {
	return p.claimDone(ctx, pqDrop, key, claimHash(key))
}

// claimDone runs Finish's or Drop's statement, which announces the change.
func (p *Postgres) claimDone(ctx context.Context, q string, args ...any) error {
	if err := p.renew(ctx, 0, false); err != nil {
		return err
	}
	if p.closed.Load() {
		return errClosed
	}
	tag, err := p.pool.Exec(ctx, q, args...)
	if err != nil {
		return p.fail(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// auditHead is the audit trail's last record, as locked.
type auditHead struct {
	seq  int64
	hash string
}

// queueAppend queues the append of r after the audit head (clink_append,
// which locks the head and computes r's hash) and assigns r's Seq,
// PrevHash and Hash from its result when the batch is read.
func queueAppend(b *pgx.Batch, r *AuditRecord) {
	b.Queue(pqAppend, recordArgs(r)...).QueryRow(func(row pgx.Row) error {
		return row.Scan(&r.Seq, &r.PrevHash, &r.Hash)
	})
}

// recordArgs readies r to be appended (this version's format, its time in
// UTC) and returns the arguments of clink_append that describe it (its
// hash input but for Seq and PrevHash, then its columns but for those and
// Hash), which clink_hold and clink_complete end with too.
func recordArgs(r *AuditRecord) []any {
	r.Time = r.Time.UTC()
	r.Open = false
	r.Format = auditFormat
	r.Seq, r.PrevHash, r.Hash = 0, "", ""
	head, body := r.hashInput()
	return []any{head, body, r.Format, r.Time.Format(time.RFC3339Nano), r.Kind, r.Call, r.Caller,
		r.Tool, r.Decision, r.Amount, r.Currency, r.Amounts, r.EmailMasked, r.EmailHash, r.CustomerIDHash,
		r.ReferenceHash, r.Reservation, r.SessionID, int64(r.Duration)}
}

// recordParams are recordArgs' placeholders from $n on.
func recordParams(n int) string {
	ps := make([]string, recordArgCount)
	for i := range ps {
		ps[i] = "$" + strconv.Itoa(n+i)
	}
	return strings.Join(ps, ", ")
}

// recordArgCount is how many arguments recordArgs returns.
var recordArgCount = len(recordArgs(&AuditRecord{}))

// AppendAudit implements [Journal].
func (p *Postgres) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	if err := p.renew(ctx, 0, false); err != nil {
		return err
	}
	var r AuditRecord
	err := p.write(ctx, false, time.Time{}, func(t *pgTx) error {
		r = *rec
		t.unseen = p.recover(ctx, &r)
		b := &pgx.Batch{}
		queueAppend(b, &r)
		return t.exec(b, true)
	})
	if err != nil {
		return err
	}
	*rec = r
	return nil
}

// ScanAudit implements [Journal]. It reads one consistent snapshot of the
// trail, on one connection of the pool; fn may call p.
func (p *Postgres) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	if p.closed.Load() {
		return errClosed
	}
	for attempt := 1; ; attempt++ {
		delivered, err := p.scanAudit(ctx, fn)
		var fnErr *scanError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case err != nil && !delivered && attempt < 2 && ctx.Err() == nil:
			continue // perhaps a dead connection of the pool: try another, once
		}
		return p.fail(err)
	}
}

// scanError is an error of ScanAudit's callback, returned as it is.
type scanError struct{ err error }

func (e *scanError) Error() string { return e.err.Error() }

// scanAudit is one attempt of ScanAudit; it reports whether fn was called.
func (p *Postgres) scanAudit(ctx context.Context, fn func(*AuditRecord) error) (delivered bool, err error) {
	rows, err := p.pool.Query(ctx, pqScanAudit)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	var last int64
	for rows.Next() {
		r := AuditRecord{Seq: last}
		if err := scanRecord(rows, &r); err != nil {
			return delivered, err
		}
		last = r.Seq
		delivered = true
		if err := fn(&r); err != nil {
			return true, &scanError{err}
		}
	}
	return delivered, rows.Err()
}

// AuditHead implements [Journal].
func (p *Postgres) AuditHead(ctx context.Context) (int64, string, error) {
	if p.closed.Load() {
		return 0, "", errClosed
	}
	var head auditHead
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		if err := c.QueryRow(ctx, pqHead).Scan(&head.seq, &head.hash); err != nil {
			return fmt.Errorf("store: audit head: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	return head.seq, head.hash, nil
}

// SessionTool implements [Journal], by the audit trail's session index.
func (p *Postgres) SessionTool(ctx context.Context, sessionID, caller string) (string, error) {
	if p.closed.Load() {
		return "", errClosed
	}
	if sessionID == "" {
		return "", nil
	}
	var tool string
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		err := c.QueryRow(ctx, pqSessionTool, sessionID, caller).Scan(&tool)
		if errors.Is(err, pgx.ErrNoRows) {
			tool, err = "", nil
		}
		return err
	})
	if err != nil {
		return "", err
	}
	return tool, nil
}

// Intents implements [Journal]. An intent is orphaned when its owner
// closed its handle, or its lease (in database time) has passed: its
// process ended, or has lost the database for longer than the lease.
func (p *Postgres) Intents(ctx context.Context) ([]Intent, error) {
	if p.closed.Load() {
		return nil, errClosed
	}
	var out []Intent
	// This handle lost the database a moment ago: so did the others,
	// whose leases may have passed meanwhile although their processes live
	// on. They get a lease to renew before any is judged dead; only a
	// handle that closed is. That holds from the renewal that failed on:
	// the database may answer this read before this handle has renewed
	// again (the gate resolves orphans after its renewal, failed or not).
	grace := p.renewFailed.Load() || int64(time.Since(p.started)) < p.judgeFrom.Load()
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		out = nil
		rows, err := c.Query(ctx, pqIntents, p.owner, int64(p.cfg.lease))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				in     Intent
				closed bool
			)
			if err := scanRecord(rows, &in.Record, &in.Call, &in.Owner, &in.ClaimKey, &in.Reservation, &in.Orphaned, &closed); err != nil {
				return err
			}
			if grace {
				in.Orphaned = closed
			}
			out = append(out, in)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errOpenIntent is a Hold of a call that holds an open intent already.
var errOpenIntent = errors.New("already holds an open intent")

// Hold implements [Store]. A hold on an approval, or of the claim only,
// is one transaction of two round trips (holdOnApproval); any other, one
// transaction of one round trip whose work is one statement (clink_hold):
// the claim, the counters and the audit head are locked, in that order,
// only while the database runs it, never across a round trip.
func (p *Postgres) Hold(ctx context.Context, h *Hold) (*Held, error) {
	if err := checkHold(h); err != nil {
		return nil, err
	}
	// A hold renews a lease that is due (every sixth of it): an intent is
	// never written under a lease about to pass.
	if err := p.renew(ctx, h.At.UnixNano(), false); err != nil {
		return nil, err
	}
	hold := p.holdLimits
	if h.Approval != "" || h.ClaimOnly {
		hold = p.holdOnApproval
	}
	var held *Held
	err := p.write(ctx, true, h.At, func(t *pgTx) (err error) {
		// A hold that committed unseen: its intent record is the
		// audit head it committed with.
		t.unseen = func(seq int64) error {
			rec, err := p.recordAt(ctx, seq)
			if err == nil && (rec.Kind != KindIntent || rec.Call != h.Intent.Call) {
				err = fmt.Errorf("store: the hold of call %s committed, but record %d is not its intent", h.Intent.Call, seq)
			}
			if err != nil {
				return err
			}
			held = &Held{Prior: Prior{State: ClaimNew}, Reservation: rec.Reservation, Intent: *rec}
			return nil
		}
		held, err = hold(t, h)
		return err
	})
	if err != nil {
		p.remember(h.Intent.Call, false, err)
		return nil, err
	}
	return held, nil
}

// holdLimits is Hold of a call not held on an approval: clink_hold alone,
// an implicit transaction of one round trip, which records the commit
// token when it holds.
func (p *Postgres) holdLimits(t *pgTx, h *Hold) (*Held, error) {
	t.selfTimed = true
	id, err := newReservationID()
	if err != nil {
		return nil, err
	}
	held := &Held{Prior: Prior{State: ClaimNew}, Reservation: id, Intent: h.Intent}
	held.Intent.Reservation = id
	n := len(h.Limits)
	keys, kinds, adds := make([]string, n), make([]int16, n), make([]int64, n)
	maxes, windows := make([]int64, n), make([]int64, n)
	for i, l := range h.Limits {
		keys[i], kinds[i], adds[i], maxes[i], windows[i] = l.Key, int16(l.Kind), l.Add, l.Max, int64(l.Window)
	}
	sorted := slices.Sorted(slices.Values(keys))
	var claimKey, claimCall, claimFP, claimAt, claimWindow, claimClock any
	if c := h.Claim; c != nil {
		claimKey, claimCall, claimFP, claimWindow = c.Key, c.Call, c.Fingerprint, int64(c.Window)
		if p.cfg.clientClock {
			a := c.At.UnixNano()
			claimAt, claimClock = a, min(a, t.earliest)
		}
	}
	args := []any{claimKey, claimCall, claimFP, claimAt, claimWindow, claimClock, int64(InFlightLease),
		keys, kinds, adds, maxes, windows, t.arg(t.now), t.arg(t.clock), id, p.owner, sorted, t.token}
	args = append(args, recordArgs(&held.Intent)...)
	var (
		state       int16
		claimState  *int16
		fingerprint *string
		result      []byte
		limit       *int32
		used        *int64
		seq         *int64
		prev, hash  *string
	)
	b := &pgx.Batch{}
	b.Queue(pqHold, args...).QueryRow(func(row pgx.Row) error {
		return row.Scan(&state, &fingerprint, &claimState, &result, &limit, &used, &t.now, &t.clock, &seq, &prev, &hash)
	})
	t.tokenInside = true
	err = t.send(b, true, nil)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "intents" {
		return nil, fmt.Errorf("store: call %s %w", h.Intent.Call, errOpenIntent)
	}
	if err != nil {
		return nil, err
	}
	t.known = true
	switch state {
	case holdClaimed:
		held = &Held{}
		switch {
		case fingerprint == nil || *fingerprint != h.Claim.Fingerprint:
			held.Prior.State = ClaimConflict
		case claimState != nil && *claimState == claimDone:
			held.Prior = Prior{State: ClaimDone, Result: cloneBytes(result)}
		default:
			held.Prior.State = ClaimInFlight
		}
		return held, nil
	case holdDenied:
		if limit == nil || used == nil || int(*limit) < 0 || int(*limit) >= n {
			return nil, errors.New("store: clink_hold denied the call without saying by which limit")
		}
		l := h.Limits[*limit]
		es, err := queryEntries(t.ctx, t.conn, l.Key, windowStart(t.clock, l))
		if err != nil {
			return nil, err
		}
		return nil, denial(int(*limit), l, *used, es)
	case holdHeld:
	default:
		return nil, fmt.Errorf("store: clink_hold answered with an unknown state %d", state)
	}
	if seq == nil || prev == nil || hash == nil {
		return nil, errors.New("store: clink_hold appended no intent record")
	}
	held.Intent.Seq, held.Intent.PrevHash, held.Intent.Hash = *seq, *prev, *hash
	return held, nil
}

// What clink_hold did (its o_state). Only a hold records the commit
// token: a transaction that committed with it, its answer lost, is a hold
// (pgTx.unseen reads it back); one without it is tried again.
const (
	holdHeld    = 0 // held: the claim taken, the limits reserved, the intent recorded
	holdClaimed = 1 // nothing written: a live claim holds the key
	holdDenied  = 2 // nothing written but expired entries dropped: a limit denies the call
)

// holdOnApproval is Hold of a call held on an approval, or of the claim
// only, in one transaction of two round trips: the first locks the claim
// and the approval, in that order; the second uses the approval, appends
// the intent record, adds the intent and commits.
func (p *Postgres) holdOnApproval(t *pgTx, h *Hold) (*Held, error) {
	held := &Held{Prior: Prior{State: ClaimNew}}
	b := &pgx.Batch{}
	if h.Claim != nil {
		t.queueClaim(b, *h.Claim)
	}
	if h.Approval != "" {
		b.Queue(pqLockApproval, h.Approval)
	}
	var (
		taken    bool
		approval *pgApproval
	)
	err := t.send(b, false, func(br pgx.BatchResults) (err error) {
		if h.Claim != nil {
			if taken, err = readClaim(br); err != nil {
				return err
			}
		}
		if h.Approval != "" {
			if approval, err = scanPgApproval(br.QueryRow()); errors.Is(err, pgx.ErrNoRows) {
				approval, err = nil, nil
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if h.Claim != nil && !taken {
		t.rollback = true
		held.Prior, err = t.prior(*h.Claim)
		return held, err
	}
	if h.ClaimOnly {
		t.rollback = true // the claim just taken, and nothing else
		return held, nil
	}
	switch {
	case approval == nil:
		return nil, ErrNotFound
	case approval.State != ApprovalApproved || approval.ExpiresAt.UnixNano() <= t.clock:
		return nil, ErrApprovalNotPending
	}
	// The approval's limits were reserved when it was requested; the call
	// is made now. The reservation's entries, budgets' and rate limits',
	// move to now, checked again against the limits (the request's may
	// have left a window since, and other calls used what it left).
	// Counters are locked in key order, as every hold locks them: the
	// approval's and the hold's together, made if missing, before the
	// move, so that queueAdmit then locks nothing new. (Locking the
	// approval's first would take a hold's key out of order when it sorts
	// before one of them: a limit added since the request, or a counter
	// swept since; and deadlock with a hold taking them in order.)
	keys := slices.Clone(approval.keys)
	for _, l := range h.Limits {
		keys = append(keys, l.Key)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	b = &pgx.Batch{}
	moved := len(keys) > 0
	if moved {
		b.Queue(pqEnsureCounters, keys)
	}
	queueRelease(b, approval.Reservation, approval.reservedAt, keys, true)
	lock := t.queueAdmit(b, h.Limits)
	var counters map[string]int64
	err = t.send(b, false, func(br pgx.BatchResults) (err error) {
		if moved {
			for range 3 { // pqEnsureCounters, pqLockKeys, pqMove
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
		}
		counters, err = lock.read(br)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := t.admit(h.Limits, lock.keys, counters); err != nil {
		return nil, err
	}
	held.Reservation = approval.Reservation
	held.Intent = h.Intent
	held.Intent.Reservation = approval.Reservation
	claimKey := ""
	if h.Claim != nil {
		claimKey = h.Claim.Key
	}
	b = &pgx.Batch{}
	queueEntries(b, approval.Reservation, t.now, h.Limits, counters)
	b.Queue(pqUseApproval, approval.ID)
	queueAppend(b, &held.Intent)
	b.Queue(pqAddIntent, h.Intent.Call, p.owner, claimKey, approval.Reservation, t.now, lock.keys)
	err = t.exec(b, true)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "intents" {
		return nil, fmt.Errorf("store: call %s %w", h.Intent.Call, errOpenIntent)
	}
	if err != nil {
		return nil, err
	}
	return held, nil
}

// Complete implements [Store], in one round trip: clink_complete, an
// implicit transaction which records the commit token when it completes,
// then the finished claim's new end (pqExtendFinishedClaim).
// clink_complete locks the intent, the claim
// (finishing or dropping it), the counters (releasing the intent's
// reservation) and the audit head, in that order, closes the intent and
// appends the record. Handles waiting for the claim are woken when it
// commits.
func (p *Postgres) Complete(ctx context.Context, c *Completion) error {
	if err := checkOutcome(c.Settlement); err != nil {
		return err
	}
	if err := p.renew(ctx, 0, false); err != nil {
		return err
	}
	if landed, err := p.settleUnsure(ctx, c.Call); landed || err != nil {
		return err
	}
	var rec AuditRecord
	err := p.write(ctx, false, time.Time{}, func(t *pgTx) error {
		rec = c.Record
		t.unseen = p.recover(ctx, &rec)
		var claimKey, payload any
		if c.ClaimKey != "" {
			claimKey, payload = c.ClaimKey, claimHash(c.ClaimKey)
		}
		args := []any{c.Call, claimKey, c.Replay != nil, cloneBytes(c.Replay), claimChannel, payload,
			c.Settlement == policy.Released, int16(policy.KindBudget), c.OnlyIfOpen, t.token}
		args = append(args, recordArgs(&rec)...)
		var (
			open       bool
			seq        *int64
			prev, hash *string
		)
		b := &pgx.Batch{}
		b.Queue(pqComplete, args...).QueryRow(func(row pgx.Row) error {
			return row.Scan(&open, &seq, &prev, &hash)
		})
		if c.ClaimKey != "" && c.Replay != nil {
			// A window after the call ended, if later
			// (finishedClaimExpires), once clink_complete has finished
			// the claim: in the database's time unless the caller's.
			ended := any(nil)
			if t.p.cfg.clientClock {
				ended = callEnded(&rec)
			}
			b.Queue(pqExtendFinishedClaim, c.ClaimKey, c.Call, ended, t.token)
		}
		t.tokenInside = true
		if err := t.send(b, true, nil); err != nil {
			return err
		}
		if !open && c.OnlyIfOpen {
			// Resolved by another process first: nothing was written.
			return ErrNotFound
		}
		if seq == nil || prev == nil || hash == nil {
			return errors.New("store: clink_complete appended no record")
		}
		rec.Seq, rec.PrevHash, rec.Hash = *seq, *prev, *hash
		return nil
	})
	if err != nil {
		p.remember(c.Call, true, err)
		return err
	}
	c.Record = rec
	return nil
}

// WaitClaim returns when a claim on key is finished or dropped, by any
// handle on the database (it is told by NOTIFY), or when ctx ends, with
// ctx's error. It marks the claim waited on (only such a claim's end is
// announced: most calls have no identical call waiting, and a NOTIFY
// wakes every handle's listener), and returns at once when no claim on
// key is in flight. A notification sent before WaitClaim is called is not seen:
// callers bound each wait and look at the claim again. While the handle's
// LISTEN connection is down it returns after a short pause (and when the
// connection comes back, every waiter is woken), so that callers look
// again.
func (p *Postgres) WaitClaim(ctx context.Context, key string) error {
	if p.closed.Load() {
		return errClosed
	}
	h := claimHash(key)
	w := p.listen.register(h)
	if w == nil {
		timer := time.NewTimer(listenDownWait)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closing:
			return errClosed
		case <-timer.C:
			return nil
		}
	}
	defer p.listen.unregister(h, w)
	// Mark the claim waited on, so that its end is announced; once its
	// row is locked, a claim already ended is seen as such (no row in
	// flight): then there is nothing to wait for.
	err := p.read(ctx, func(c *pgxpool.Conn) error { return c.QueryRow(ctx, pqWaitOn, key).Scan(new(bool)) })
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return errClosed
	case <-w.ch:
		return nil
	}
}

// Close implements [Store]: the owner is marked gone, so its open intents
// are orphaned at once, and the connections are closed. It does not wait
// longer than a few seconds for a database that does not answer; the
// owner's lease then runs out instead. Closing twice is harmless.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.closing)
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		err := p.read(ctx, func(c *pgxpool.Conn) error {
			_, err := c.Exec(ctx, pqCloseOwner, p.owner)
			return err
		})
		if err != nil {
			p.closeErr = p.fail(fmt.Errorf("marking the owner gone: %w", err))
		}
		p.listen.stop()
		p.pool.Close()
	})
	return p.closeErr
}

// claimListener is a handle's LISTEN connection: it wakes the WaitClaim
// callers of the claims announced on claimChannel, reconnecting when the
// connection drops.
type claimListener struct {
	cfg    *pgx.ConnConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	connected bool
	waiters   map[string]*claimWaiters // by claimHash
}

// claimWaiters are the callers waiting for one claim: ch is closed to wake
// them all.
type claimWaiters struct {
	ch chan struct{}
	n  int
}

// startListener connects and listens, then keeps listening until stop.
func startListener(ctx context.Context, cfg *pgx.ConnConfig) (*claimListener, error) {
	conn, err := listenConn(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &claimListener{cfg: cfg, cancel: cancel, done: make(chan struct{}), connected: true,
		waiters: make(map[string]*claimWaiters)}
	go l.run(lctx, conn)
	return l, nil
}

func listenConn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+claimChannel); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func (l *claimListener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	for {
		for l.listen(ctx, conn) {
		}
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		conn.Close(cctx)
		cancel()
		l.setConnected(false)
		pause := listenRetryMin
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, err := listenConn(cctx, l.cfg)
			cancel()
			if err == nil {
				conn = c
				break
			}
			pause = min(2*pause, listenRetryMax)
		}
		// What was announced while the connection was down is lost:
		// every waiter looks again.
		l.setConnected(true)
	}
}

// listen waits for one notification, or listenPing, and reports whether
// the connection still works: a connection that went silent (its peer gone
// without a word) is found by a ping.
func (l *claimListener) listen(ctx context.Context, conn *pgx.Conn) bool {
	wctx, cancel := context.WithTimeout(ctx, listenPing)
	n, err := conn.WaitForNotification(wctx)
	cancel()
	switch {
	case err == nil:
		l.wake(n.Payload)
		return true
	case ctx.Err() != nil || wctx.Err() == nil:
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	return conn.Ping(pctx) == nil
}

// register adds a waiter for the claim hashed h, or returns nil while the
// listener is not connected.
func (l *claimListener) register(h string) *claimWaiters {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return nil
	}
	w := l.waiters[h]
	if w == nil {
		w = &claimWaiters{ch: make(chan struct{})}
		l.waiters[h] = w
	}
	w.n++
	return w
}

// unregister removes a waiter that register returned.
func (l *claimListener) unregister(h string, w *claimWaiters) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiters[h] != w {
		return // woken: already removed
	}
	if w.n--; w.n == 0 {
		delete(l.waiters, h)
	}
}

// wake wakes the waiters of the claim hashed h.
func (l *claimListener) wake(h string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.waiters[h]; w != nil {
		close(w.ch)
		delete(l.waiters, h)
	}
}

// setConnected records whether the listener is connected, and wakes every
// waiter.
func (l *claimListener) setConnected(c bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected = c
	for h, w := range l.waiters {
		close(w.ch)
		delete(l.waiters, h)
	}
}

// stop closes the connection and waits for the listener to end.
func (l *claimListener) stop() {
	if l == nil {
		return
	}
	l.cancel()
	<-l.done
}
