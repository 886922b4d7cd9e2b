package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	// The pure-Go SQLite driver: the binary needs no cgo.
	_ "modernc.org/sqlite"

	"github.com/clink-mcp/clink-mcp/policy"
)

// applicationID marks a SQLite file as a clink-mcp store ("Clnk"), so that
// another program's database is refused rather than written into.
const applicationID = 0x436c6e6b

// busyTimeout is how long a write waits for another process holding the
// file's write lock before failing.
const busyTimeout = 10 * time.Second

// migrations are the schema steps, in order: the database's PRAGMA
// user_version is how many have been applied. Append new steps; never edit
// one that has shipped.
var migrations = []string{
	// 1: counters, reservations, claims, the audit trail and its head.
	`
CREATE TABLE reservations (
	id      TEXT PRIMARY KEY,
	at      INTEGER NOT NULL,           -- unix ns
	expires INTEGER NOT NULL,           -- unix ns: when its longest window passes
	outcome INTEGER NOT NULL DEFAULT 0  -- 0 until settled, then an policy.Settlement
) WITHOUT ROWID;
CREATE INDEX reservations_expires ON reservations (expires);

CREATE TABLE counter_entries (
	key         TEXT NOT NULL,
	at          INTEGER NOT NULL,       -- unix ns
	reservation TEXT NOT NULL,
	kind        INTEGER NOT NULL,       -- a policy.Kind
	amount      INTEGER NOT NULL,
	expires     INTEGER NOT NULL,       -- unix ns: at + the limit's window
	PRIMARY KEY (key, at, reservation)
) WITHOUT ROWID;
CREATE INDEX counter_entries_reservation ON counter_entries (reservation);
CREATE INDEX counter_entries_expires ON counter_entries (expires);

CREATE TABLE claims (
	key         TEXT PRIMARY KEY,
	fingerprint TEXT NOT NULL,
	at          INTEGER NOT NULL,       -- unix ns
	expires     INTEGER NOT NULL,       -- unix ns: at + window
	state       INTEGER NOT NULL,       -- 1 in flight, 2 done
	result      BLOB
) WITHOUT ROWID;
CREATE INDEX claims_expires ON claims (expires);

CREATE TABLE audit (
	seq          INTEGER PRIMARY KEY,
	time         TEXT NOT NULL,         -- RFC 3339, UTC, to the nanosecond
	tool         TEXT NOT NULL,
	decision     TEXT NOT NULL,
	amount       TEXT NOT NULL,
	currency     TEXT NOT NULL,
	email_masked TEXT NOT NULL,
	email_hash   TEXT NOT NULL,
	session_id   TEXT NOT NULL,
	duration_ns  INTEGER NOT NULL,
	prev_hash    TEXT NOT NULL,
	hash         TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;

CREATE TABLE meta (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	audit_seq  INTEGER NOT NULL,        -- Seq of the last record appended
	audit_hash TEXT NOT NULL            -- its Hash
);
INSERT INTO meta (id, audit_seq, audit_hash) VALUES (1, 0, '');
`,
	// 2: running totals per counter, the audit trail's second format, the
	// call a claim belongs to, and open intents.
	`
CREATE TABLE counters (
	key     TEXT PRIMARY KEY,
	total   INTEGER NOT NULL,       -- the sum of the key's counter_entries
	window  INTEGER NOT NULL,       -- ns
	expires INTEGER NOT NULL,       -- unix ns: when its newest entry stops counting
	oldest  INTEGER NOT NULL        -- unix ns: no entry is older (a bound: it may be lower)
) WITHOUT ROWID;
INSERT INTO counters (key, total, window, expires, oldest)
	SELECT key, SUM(amount), MAX(expires - at), MAX(expires), MIN(at) FROM counter_entries GROUP BY key;

-- Every index a call writes costs it a page in the WAL: the hot path keeps
-- only primary keys. Expired rows are swept every sweepEvery writes by a
-- scan, and a release finds its entries by the keys its reservation lists.
DROP INDEX counter_entries_expires;
DROP INDEX counter_entries_reservation;
DROP INDEX reservations_expires;
DROP INDEX claims_expires;
ALTER TABLE reservations ADD COLUMN keys TEXT NOT NULL DEFAULT '';  -- JSON array of its counter keys

ALTER TABLE claims ADD COLUMN call TEXT NOT NULL DEFAULT '';

ALTER TABLE audit ADD COLUMN format           INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN kind             TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN call             TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN caller           TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN amounts          TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN customer_id_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN reference_hash   TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN reservation      TEXT NOT NULL DEFAULT '';

-- A held call's reservation lives in its intent until Complete settles it:
-- one row fewer to write, and to rewrite, per call.
-- Each handle's clock, as it last published it: no process prunes what
-- another live process still counts by its own time.
CREATE TABLE owners (
	owner TEXT PRIMARY KEY,
	now   INTEGER NOT NULL          -- unix ns
) WITHOUT ROWID;

CREATE TABLE intents (
	call        TEXT PRIMARY KEY,
	seq         INTEGER NOT NULL,   -- the intent's audit record
	owner       TEXT NOT NULL,      -- the handle holding it; see ownerLock
	claim_key   TEXT NOT NULL,
	reservation TEXT NOT NULL,
	at          INTEGER NOT NULL,   -- unix ns: the reservation's entries' time
	keys        TEXT NOT NULL       -- JSON array of its counter keys
) WITHOUT ROWID;
`,
	// 3: approvals, and the audit trail's index of Clink sessions.
	`
-- SessionCreated looks a session up by it; most records have none.
CREATE INDEX audit_session ON audit (session_id) WHERE session_id <> '';

-- An approval's reservation lives in it, as a held call's lives in its
-- intent, until the call is held on it (the intent takes it over) or it is
-- denied or expires (it is released).
CREATE TABLE approvals (
	seq          INTEGER PRIMARY KEY,  -- the order approvals were requested in
	id           TEXT NOT NULL UNIQUE,
	key          TEXT NOT NULL,        -- the call key identical calls share
	fingerprint  TEXT NOT NULL,
	caller       TEXT NOT NULL,
	tool         TEXT NOT NULL,
	amount       TEXT NOT NULL,
	currency     TEXT NOT NULL,
	amounts      TEXT NOT NULL,
	email_masked TEXT NOT NULL,
	reservation  TEXT NOT NULL,
	reserved_at  INTEGER NOT NULL,     -- unix ns: the reservation's entries' time
	keys         TEXT NOT NULL,        -- JSON array of its counter keys
	state        TEXT NOT NULL,        -- pending, approved, denied, expired, used
	requested_at INTEGER NOT NULL,     -- unix ns
	expires_at   INTEGER NOT NULL,     -- unix ns: the deadline to decide, or once approved to use it
	decided_by   TEXT NOT NULL,
	decided_at   INTEGER NOT NULL      -- unix ns, 0 while pending
);
CREATE INDEX approvals_key ON approvals (key, seq);
CREATE INDEX approvals_requested ON approvals (requested_at, seq);
CREATE INDEX approvals_state ON approvals (state, requested_at, seq);
CREATE INDEX approvals_live ON approvals (expires_at) WHERE state IN ('pending', 'approved');
`,
}

// The statements the store runs, prepared once per handle.
const (
	qExpireEntries     = `DELETE FROM counter_entries WHERE key = ? AND at <= ? RETURNING amount`
	qExpiredSum        = `SELECT COALESCE(SUM(amount), 0) FROM counter_entries WHERE key = ? AND at <= ?`
	qCounterTotal      = `SELECT total FROM counters WHERE key = ?`
	qOldest            = `SELECT COALESCE(MIN(at), ?) FROM counter_entries WHERE key = ?`
	qSubtract          = `UPDATE counters SET total = total - ? WHERE key = ?`
	qIdleCounters      = `DELETE FROM counters WHERE expires <= ? RETURNING key`
	qDropEntries       = `DELETE FROM counter_entries WHERE key = ?`
	qReservationKeys   = `SELECT at, keys FROM reservations WHERE id = ?`
	qReleaseEntry      = `DELETE FROM counter_entries WHERE key = ? AND at = ? AND reservation = ? AND kind = ? RETURNING amount`
	qMoveEntry         = `DELETE FROM counter_entries WHERE key = ? AND at = ? AND reservation = ? RETURNING amount`
	qPruneReservations = `DELETE FROM reservations WHERE expires <= ?`
	qCounting          = `SELECT at, amount FROM counter_entries WHERE key = ? AND at > ? ORDER BY at`
	qInsertReservation = `INSERT INTO reservations (id, at, expires, keys) VALUES (?, ?, ?, ?)`
	qInsertEntry       = `INSERT INTO counter_entries (reservation, key, kind, at, amount, expires) VALUES (?, ?, ?, ?, ?, ?)`
	qOutcome           = `SELECT outcome FROM reservations WHERE id = ?`
	qSetOutcome        = `UPDATE reservations SET outcome = ? WHERE id = ? AND outcome = 0`
	qRelease           = `DELETE FROM counter_entries WHERE reservation = ? AND kind = ? RETURNING key, amount`
	qPruneClaims       = `DELETE FROM claims WHERE expires <= ? AND (state = 2 OR at <= ?)`
	qGetClaim          = `SELECT fingerprint, at, expires, state, result FROM claims WHERE key = ?`
	qPutClaim          = `INSERT OR REPLACE INTO claims (key, call, fingerprint, at, expires, state, result) VALUES (?, ?, ?, ?, ?, 1, NULL)`
	qFinishClaim       = `UPDATE claims SET state = 2, result = ? WHERE key = ?`
	qDropClaim         = `DELETE FROM claims WHERE key = ?`
	qFinishCallClaim   = `UPDATE claims SET state = 2, result = ?, expires = MAX(expires, ? + (expires - at)) WHERE key = ? AND call = ?`
	qDropCallClaim     = `DELETE FROM claims WHERE key = ? AND call = ?`
	qHead              = `SELECT audit_seq, audit_hash FROM meta WHERE id = 1`
	qSetHead           = `UPDATE meta SET audit_seq = ?, audit_hash = ? WHERE id = 1`
	qPublish           = `INSERT INTO owners (owner, now) VALUES (?, ?) ON CONFLICT (owner) DO UPDATE SET now = max(now, excluded.now)`
	qOwners            = `SELECT owner, now FROM owners`
	qDropOwner         = `DELETE FROM owners WHERE owner = ?`
	qMoveHead          = `UPDATE meta SET audit_seq = ?, audit_hash = ? WHERE id = 1 AND audit_seq = ? AND audit_hash = ?`
	qAppendAudit       = `INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts, email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qScanAudit         = `SELECT ` + auditColumns + ` FROM audit ORDER BY seq`
	qInsertIntent      = `INSERT INTO intents (call, seq, owner, claim_key, reservation, at, keys) VALUES (?, ?, ?, ?, ?, ?, ?)`
	qCloseIntent       = `DELETE FROM intents WHERE call = ? RETURNING reservation, at, keys`
	qIntents           = `SELECT i.call, i.owner, i.claim_key, i.reservation, ` + auditColumnsOfA + ` FROM intents i JOIN audit a ON a.seq = i.seq ORDER BY i.seq`
	// The session index is partial: the query must say session_id <> ''.
	qSessionTool = `SELECT tool FROM audit WHERE session_id = ? AND session_id <> '' AND kind = '` + KindOutcome +
		`' AND decision = '` + createdDecision + `' AND caller = ? ORDER BY seq LIMIT 1`
	qLatestApproval = `SELECT ` + approvalColumns + ` FROM approvals WHERE key = ? ORDER BY seq DESC LIMIT 1`
	qApproval       = `SELECT ` + approvalColumns + ` FROM approvals WHERE id = ?`
	qDueApprovals   = `SELECT ` + approvalColumns + ` FROM approvals WHERE state IN ('pending', 'approved') AND expires_at <= ? ORDER BY seq`
	qInsertApproval = `INSERT INTO approvals (id, key, fingerprint, caller, tool, amount, currency, amounts, email_masked, reservation, reserved_at, keys, state, requested_at, expires_at, decided_by, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qDecideApproval = `UPDATE approvals SET state = ?, expires_at = ?, decided_by = ?, decided_at = ? WHERE id = ?`
	qUseApproval    = `UPDATE approvals SET state = 'used' WHERE id = ?`
)

// approvalColumns are an approval's columns, in scanApproval's order.
const approvalColumns = `id, key, fingerprint, caller, tool, amount, currency, amounts, email_masked, reservation, reserved_at, keys, state, requested_at, expires_at, decided_by, decided_at`

// auditColumns are an audit record's columns, in scanRecord's order.
const (
	auditColumns    = `seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts, email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash`
	auditColumnsOfA = `a.seq, a.format, a.time, a.kind, a.call, a.caller, a.tool, a.decision, a.amount, a.currency, a.amounts, a.email_masked, a.email_hash, a.customer_id_hash, a.reference_hash, a.reservation, a.session_id, a.duration_ns, a.prev_hash, a.hash`
)

// claimInFlight and claimDone are the claims table's states.
const (
	claimInFlight = 1
	claimDone     = 2
)

// SQLite is the embedded, durable [Store]: one SQLite file, in WAL mode,
// that several processes may share.
//
// Reserve, Settle, Claim, Finish, Drop and AppendAudit each run in one
// write transaction begun with BEGIN IMMEDIATE, which takes the file's
// write lock before reading anything: no other handle, in this process or
// another, can slip a write between a check and the insert that follows
// it. Within one handle, writers also queue on a Go lock, so they wait
// for each other without polling SQLite's busy handler.
//
// Durability: WAL with synchronous=FULL. Every write transaction is on
// disk when its commit returns (the WAL is synced), so a call's intent and
// reservation survive a power loss or an OS crash, not only the process
// dying, before Clink is called: nothing Clink may have created is missing
// from the trail, and no limit forgets a call. It costs an fsync a
// transaction (about 0.12 ms each on the build machine's disk; more on
// some disks), two a created call.
type SQLite struct {
	db    *sql.DB
	path  string
	wlock chan struct{} // one writer per handle at a time
	stmts map[string]*sql.Stmt
	owner *ownerLock // this handle's, held until Close

	// owners is the directory of the owner locks of every handle on the
	// file (see ownersDir), named after the file with its symlinks
	// resolved: handles that opened the file by different paths agree on
	// it, and so on which owners are alive.
	owners string

	writes int                  // write transactions begun, under wlock: sweeps run every sweepEvery
	wconn  *sql.Conn            // the connection writes run on, under wlock
	wstmts map[string]*sql.Stmt // statements prepared on wconn, under wlock

	// This handle's clock as last published, under wlock: see clock.
	published   int64
	publishedAt time.Time

	// Other owners' liveness, checked at most once per livenessTTL.
	livenessMu sync.Mutex
	liveness   map[string]liveness

	// The audit head this handle last wrote, under wlock: see append.
	headSeq   int64
	headHash  string
	headKnown bool
}

var _ Store = (*SQLite)(nil)

// sqliteConfig is what the options set.
type sqliteConfig struct {
	noMigrate bool
}

// SQLiteOption configures [OpenSQLite].
type SQLiteOption func(*sqliteConfig)

// SQLiteNoMigrate makes [OpenSQLite] open only a clink-mcp store that
// exists and whose schema is this code's, as the commands that work beside
// a server (audit, approvals) need: a newer binary used to read a store
// must not upgrade it under the older server that serves it, which would
// then refuse to restart. A missing file is not created; a file that is
// not a clink-mcp store (an empty one, or a SQLite database of another
// program) is refused before SQLite's settings are applied to it; a store
// of an older schema is refused with an [*OldSchemaError]. The default is
// to create the file if needed and migrate its schema.
func SQLiteNoMigrate() SQLiteOption {
	return func(c *sqliteConfig) { c.noMigrate = true }
}

// OpenSQLite opens the store at path, creating it if needed, and brings its
// schema up to date (see [SQLiteNoMigrate] for neither).
//
// A missing parent directory is created with mode 0700 (an existing one is
// left as it is), and a missing file with mode 0600. An existing file that
// others may read or write is restricted to its owner (its mode is never
// loosened); if that fails, so does OpenSQLite. A file that is not a
// SQLite database, another program's database, a database that fails
// SQLite's quick_check, or one written by a newer clink-mcp (a higher
// schema version) is refused, as is a location that cannot be written:
// every error names path, so that the server stops with a clear message
// rather than running without its limits.
func OpenSQLite(path string, opts ...SQLiteOption) (*SQLite, error) {
	var cfg sqliteConfig
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" {
		return nil, errors.New("store: no store path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := prepareFile(abs, !cfg.noMigrate); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if cfg.noMigrate {
		if err := probeStore(abs); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	// The file exists now: resolve the links to it.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Writers queue on wlock, so more connections serve only readers
	// (ScanAudit, AuditHead) running alongside them; keep them all open so
	// that none pays the connection setup again.
	const conns = 4
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	s := &SQLite{db: db, path: abs, owners: ownersDir(resolved), wlock: make(chan struct{}, 1), stmts: make(map[string]*sql.Stmt), liveness: make(map[string]liveness)}
	if err := s.init(context.Background(), !cfg.noMigrate); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if s.owner, err = lockOwner(s.owners); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Path returns the absolute path of the store's file, made from the path
// given to [OpenSQLite]: symlinks in it are not resolved.
func (s *SQLite) Path() string { return s.path }

// dsn is the driver's name for the file at abs, with the settings every
// connection needs. The path is escaped into a file: URI, so no character
// in it can be taken for a parameter.
func dsn(abs string) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	// Every read-write transaction begins with BEGIN IMMEDIATE.
	q.Set("_txlock", "immediate")
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String()
}

// prepareFile creates path's directory (0700) and the file (0600) if they
// are missing and create is set, and restricts an existing file to its
// owner.
func prepareFile(path string, create bool) error {
	flag := os.O_RDWR
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if !create && fi.Size() == 0 {
		return errors.New("the file is empty, not a clink-mcp store")
	}
	if err := restrict(f.Name(), fi.Mode()); err != nil {
		return err
	}
	// SQLite creates these with the database's mode; tighten leftovers.
	for _, suffix := range []string{"-wal", "-shm"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			if err := restrict(path+suffix, fi.Mode()); err != nil {
				return err
			}
		}
	}
	return f.Close()
}

// restrict removes group and other permissions from the file at name.
func restrict(name string, mode os.FileMode) error {
	perm := mode.Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(name, perm&^0o077); err != nil {
		return fmt.Errorf("%s is open to other users (mode %#o) and cannot be restricted: %w", name, perm, err)
	}
	return nil
}

// probeStore checks, on a read-only connection that applies none of the
// store's settings (WAL mode would be written into another program's
// database), that the file at abs is a clink-mcp store of this code's
// schema.
func probeStore(abs string) error {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return checkSchema(context.Background(), db)
}

// schemaOf reads the schema version and the application ID of the
// database.
func schemaOf(ctx context.Context, db queryRower) (version, appID int64, err error) {
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return 0, 0, err
	}
	if err := db.QueryRowContext(ctx, `PRAGMA application_id`).Scan(&appID); err != nil {
		return 0, 0, err
	}
	return version, appID, nil
}

// queryRower is a database, a connection or a transaction.
type queryRower interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// checkSchema refuses, for a handle that does not migrate, a database that
// is not a clink-mcp store or whose schema is not this code's.
func checkSchema(ctx context.Context, db queryRower) error {
	version, appID, err := schemaOf(ctx, db)
	if err != nil {
		return err
	}
	var tables int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
		return err
	}
	switch {
	case version == 0 && tables == 0:
		return errors.New("the file is an empty SQLite database, not a clink-mcp store")
	case version == 0, appID != applicationID:
		return errNotAStore
	case version > int64(len(migrations)):
		return newerSchema(version)
	case version < int64(len(migrations)):
		return &OldSchemaError{Version: int(version), Current: len(migrations)}
	}
	return nil
}

// errNotAStore refuses a file that is not a clink-mcp store.
var errNotAStore = errors.New("the file is a SQLite database of another program, not a clink-mcp store")

// newerSchema refuses a schema newer than this code knows.
func newerSchema(version int64) error {
	return fmt.Errorf("the store has schema version %d, newer than this clink-mcp understands (%d): upgrade clink-mcp",
		version, len(migrations))
}

// init checks the file and, if migrate is set, migrates its schema; if
// not, it refuses a schema that is not this code's.
func (s *SQLite) init(ctx context.Context, migrate bool) error {
	// The first connection applies WAL mode, which reads the header: a file
	// that is not a database fails here.
	if err := s.db.PingContext(ctx); err != nil {
		return err
	}
	var check string
	if err := s.db.QueryRowContext(ctx, `PRAGMA quick_check(1)`).Scan(&check); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if check != "ok" {
		return fmt.Errorf("the database is corrupt: %s", check)
	}
	if migrate {
		if err := s.migrate(ctx); err != nil {
			return err
		}
	} else {
		// Checked again with the store's settings: another process may
		// have migrated the file since the probe.
		if err := checkSchema(ctx, s.db); err != nil {
			return err
		}
	}
	for _, q := range []string{
		qExpireEntries, qExpiredSum, qCounterTotal, qOldest, qSubtract, qIdleCounters, qDropEntries,
		qPruneReservations, qCounting, qInsertReservation, qInsertEntry, qOutcome, qSetOutcome,
		qRelease, qReservationKeys, qReleaseEntry, qMoveEntry, qPruneClaims, qGetClaim, qPutClaim, qFinishClaim, qDropClaim, qFinishCallClaim,
		qDropCallClaim, qHead, qSetHead, qMoveHead, qPublish, qOwners, qDropOwner, qAppendAudit, qScanAudit, qInsertIntent, qCloseIntent, qIntents,
		qSessionTool, qLatestApproval, qApproval, qDueApprovals, qInsertApproval, qDecideApproval, qUseApproval,
	} {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

// migrate applies the migrations the file lacks, in one transaction, or
// refuses a file that is not a clink-mcp store or is newer than this code.
func (s *SQLite) migrate(ctx context.Context) error {
	// A store that is up to date needs no write lock to open, so the audit
	// commands and a starting server are not held up by another process
	// writing; the check is made again under the lock before migrating.
	version, appID, err := schemaOf(ctx, s.db)
	if err != nil {
		return err
	}
	if version == int64(len(migrations)) && appID == applicationID {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var tables int64
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `PRAGMA application_id`).Scan(&appID); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
		return err
	}
	switch {
	case version == 0 && tables > 0, version > 0 && appID != applicationID:
		return errNotAStore
	case version > int64(len(migrations)):
		return newerSchema(version)
	case version == int64(len(migrations)):
		return nil
	}
	for v := version; v < int64(len(migrations)); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("schema migration %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA application_id = %d`, applicationID)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

// write runs fn in a write transaction (BEGIN IMMEDIATE), committing if fn
// returns nil and rolling back otherwise.
func (s *SQLite) write(ctx context.Context, fn func(w *txn) error) error {
	select {
	case s.wlock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wlock }()
	// Writes run on one connection kept for them, with statements prepared
	// on it once: no pool checkout and no per-transaction statement
	// wrappers on the path every call takes.
	if s.wconn == nil {
		if err := s.openWriteConn(ctx); err != nil {
			return err
		}
	}
	// The driver can report a cancelled context for a statement that ran,
	// BEGIN and COMMIT included: whatever they report, the transaction is
	// rolled back unless COMMIT succeeded, and COMMIT runs detached from
	// ctx, so that what it reports is what happened. A panic in fn rolls
	// back too.
	committed := false
	defer func() {
		if !committed {
			s.rollback()
		}
	}()
	if _, err := s.wconn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	s.writes++
	t := &txn{ctx: ctx, s: s, sweepDue: s.writes%sweepEvery == 0}
	if err := fn(t); err != nil {
		return err
	}
	if _, err := s.wconn.ExecContext(context.WithoutCancel(ctx), `COMMIT`); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	committed = true
	return nil
}

// rollback ends whatever transaction the write connection is in: a
// connection left inside one would hold the file's write lock and fail
// every later write. One that cannot roll back is dropped.
func (s *SQLite) rollback() {
	if s.wconn == nil {
		return
	}
	if _, err := s.wconn.ExecContext(context.Background(), `ROLLBACK`); err != nil &&
		!strings.Contains(err.Error(), "no transaction is active") {
		s.dropWriteConn()
	}
}

// openWriteConn takes the connection writes run on and prepares the
// store's statements on it.
func (s *SQLite) openWriteConn(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.wconn, s.wstmts = conn, make(map[string]*sql.Stmt, len(s.stmts))
	for q := range s.stmts {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			s.dropWriteConn()
			return fmt.Errorf("store: prepare: %w", err)
		}
		s.wstmts[q] = st
	}
	return nil
}

// dropWriteConn closes the write connection and its statements; the next
// write opens another.
func (s *SQLite) dropWriteConn() {
	for _, st := range s.wstmts {
		st.Close()
	}
	s.wconn.Raw(func(any) error { return driver.ErrBadConn }) // do not return it to the pool
	s.wconn.Close()
	s.wconn, s.wstmts = nil, nil
}

// txn runs the prepared statements inside one write transaction, on the
// write connection.
type txn struct {
	ctx      context.Context
	s        *SQLite
	sweepDue bool // the first operation that knows the time sweeps

	// The others' bound, read once per transaction (a hold asks for it
	// three times: claim, reservation, claim).
	bounded bool
	bound   int64
}

// maybeSweep sweeps at now if this transaction is due to.
func (t *txn) maybeSweep(now int64) error {
	if !t.sweepDue {
		return nil
	}
	t.sweepDue = false
	return t.sweep(now)
}

// stmt is q, one of the store's constant statements, as prepared on the
// write connection when it was opened.
func (t *txn) stmt(q string) *sql.Stmt { return t.s.wstmts[q] }

// dynStmt is the statement q prepared on the write connection on first
// use and kept for the connection's life: the store's constant statements,
// and those built for a number of limits.
func (t *txn) dynStmt(q string) (*sql.Stmt, error) {
	st, ok := t.s.wstmts[q]
	if !ok {
		var err error
		if st, err = t.s.wconn.PrepareContext(t.ctx, q); err != nil {
			return nil, fmt.Errorf("store: prepare: %w", err)
		}
		t.s.wstmts[q] = st
	}
	return st, nil
}

// placeholders returns n groups of group, comma-separated: "(?, ?), (?, ?)".
func placeholders(n int, group string) string {
	return strings.TrimSuffix(strings.Repeat(group+", ", n), ", ")
}

func (t *txn) exec(q string, args ...any) (sql.Result, error) {
	res, err := t.stmt(q).ExecContext(t.ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return res, nil
}

func (t *txn) row(q string, args ...any) *sql.Row { return t.stmt(q).QueryRowContext(t.ctx, args...) }

// Publishing and liveness pacing for clock: a busy handle publishes its
// time at most once per publishEvery; another handle's liveness is
// checked (a lock file probe) at most once per livenessTTL.
const (
	publishEvery = time.Second
	livenessTTL  = time.Second
)

// liveness is what a handle last learned of another owner.
type liveness struct {
	alive bool
	at    time.Time
}

// clock publishes now as this handle's time (at most once per
// publishEvery) and returns the time windows and leases are judged by: now,
// or the earliest time another live handle has published, if that is
// earlier. No process prunes an entry that another live process, by its
// own clock, still counts; a clock ahead of the others cannot reset their
// budgets. Within one process, or with every clock in step, it is now.
func (t *txn) clock(now int64) (int64, error) {
	s := t.s
	if now > s.published && time.Since(s.publishedAt) >= publishEvery {
		if _, err := t.exec(qPublish, s.owner.id, now); err != nil {
			return 0, err
		}
		s.published, s.publishedAt = now, time.Now()
	}
	if !t.bounded {
		bound, _, gone, err := s.others(t.ctx, t.stmt(qOwners))
		if err != nil {
			return 0, err
		}
		for _, o := range gone {
			if _, err := t.exec(qDropOwner, o); err != nil {
				return 0, err
			}
		}
		t.bounded, t.bound = true, bound
	}
	return min(now, t.bound), nil
}

// bound is clock for a reader: now, or the earliest time another live
// handle has published. It publishes nothing.
func (s *SQLite) bound(ctx context.Context, st *sql.Stmt, now int64) (int64, error) {
	bound, _, _, err := s.others(ctx, st)
	return min(now, bound), err
}

// others returns the earliest and the latest time another live handle has
// published (math.MaxInt64 and 0 when there is none), and the owners
// found gone.
func (s *SQLite) others(ctx context.Context, st *sql.Stmt) (earliest, latest int64, gone []string, err error) {
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	earliest = math.MaxInt64
	for rows.Next() {
		var (
			owner string
			at    int64
		)
		if err := rows.Scan(&owner, &at); err != nil {
			return 0, 0, nil, fmt.Errorf("store: %w", err)
		}
		switch {
		case owner == s.owner.id:
		case s.alive(owner):
			earliest, latest = min(earliest, at), max(latest, at)
		default:
			gone = append(gone, owner)
		}
	}
	return earliest, latest, gone, rows.Err()
}

// alive reports whether owner's handle is open, probing its lock file at
// most once per livenessTTL.
func (s *SQLite) alive(owner string) bool {
	s.livenessMu.Lock()
	defer s.livenessMu.Unlock()
	if l, ok := s.liveness[owner]; ok && time.Since(l.at) < livenessTTL {
		return l.alive
	}
	alive := ownerAlive(s.owners, owner)
	s.liveness[owner] = liveness{alive: alive, at: time.Now()}
	return alive
}

// Clock implements [Ledger].
func (s *SQLite) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	now := at.UnixNano()
	var ahead time.Duration
	err := s.write(ctx, func(t *txn) error {
		if _, err := t.exec(qPublish, s.owner.id, now); err != nil {
			return err
		}
		s.published, s.publishedAt = max(s.published, now), time.Now()
		_, latest, _, err := s.others(t.ctx, t.stmt(qOwners))
		if latest != 0 {
			ahead = time.Duration(latest - now)
		}
		return err
	})
	return ahead, err
}

// Check implements [Ledger]. It reads; it writes nothing.
func (s *SQLite) Check(ctx context.Context, at time.Time, limits []policy.Limit) error {
	if err := checkLimits(at, limits); err != nil {
		return err
	}
	now, err := s.bound(ctx, s.stmts[qOwners], at.UnixNano())
	if err != nil {
		return err
	}
	for i, l := range limits {
		used, err := s.used(ctx, now, l)
		if err != nil {
			return err
		}
		if !fits(l, used) {
			counting, err := counting(ctx, s.stmts[qCounting], l.Key, windowStart(now, l))
			if err != nil {
				return err
			}
			return denial(i, l, used, counting)
		}
	}
	return nil
}

// used returns what l's counter holds within its window at now.
func (s *SQLite) used(ctx context.Context, now int64, l policy.Limit) (int64, error) {
	var total, expired int64
	if err := s.stmts[qCounterTotal].QueryRowContext(ctx, l.Key).Scan(&total); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: %w", err)
	}
	if err := s.stmts[qExpiredSum].QueryRowContext(ctx, l.Key, windowStart(now, l)).Scan(&expired); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return total - expired, nil
}

// Usage implements [Ledger]. It reads; it writes nothing.
func (s *SQLite) Usage(ctx context.Context, at time.Time, limits []policy.Limit) ([]int64, error) {
	if err := checkLimits(at, limits); err != nil {
		return nil, err
	}
	now, err := s.bound(ctx, s.stmts[qOwners], at.UnixNano())
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(limits))
	for i, l := range limits {
		if out[i], err = s.used(ctx, now, l); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Reserve implements [Ledger].
func (s *SQLite) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	if err := checkLimits(at, limits); err != nil {
		return "", err
	}
	var id string
	err := s.write(ctx, func(t *txn) error {
		var err error
		id, err = t.reserve(at.UnixNano(), limits)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// reserve is Reserve inside a write transaction. Each counter's running
// total drops the entries that have left its window (each entry leaves
// once), then the call is checked against it: the cost does not grow with
// the entries a window holds.
func (t *txn) reserve(now int64, limits []policy.Limit) (string, error) {
	id, _, err := t.reserveEntries("", now, limits, true)
	return id, err
}

// reserveEntries is reserve, under reservation id ("" for a new one);
// with row false the reservation itself is not written (a hold keeps it in
// its intent), and its keys are returned as JSON for the caller to keep.
func (t *txn) reserveEntries(id string, now int64, limits []policy.Limit, row bool) (string, string, error) {
	if id == "" {
		var err error
		if id, err = newReservationID(); err != nil {
			return "", "", err
		}
	}
	clock, err := t.clock(now)
	if err != nil {
		return "", "", err
	}
	if err := t.maybeSweep(clock); err != nil {
		return "", "", err
	}
	// One statement reads every counter, one writes every entry and one
	// every counter: a statement costs more than the rows it touches.
	type counter struct{ total, oldest int64 }
	counters := make(map[string]counter, len(limits))
	args := make([]any, 0, 7*len(limits))
	for _, l := range limits {
		args = append(args, l.Key)
	}
	st, err := t.dynStmt(`SELECT key, total, oldest FROM counters WHERE key IN (` + placeholders(len(limits), "?") + `)`)
	if err != nil {
		return "", "", err
	}
	rows, err := st.QueryContext(t.ctx, args...)
	if err != nil {
		return "", "", fmt.Errorf("store: %w", err)
	}
	for rows.Next() {
		var (
			key string
			c   counter
		)
		if err := rows.Scan(&key, &c.total, &c.oldest); err != nil {
			rows.Close()
			return "", "", fmt.Errorf("store: %w", err)
		}
		counters[key] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", "", fmt.Errorf("store: %w", err)
	}
	for i, l := range limits {
		c, seen := counters[l.Key]
		from := windowStart(clock, l)
		if seen && c.oldest <= from {
			// Entries have left the window: drop them from the total.
			expired, err := t.sumRows(qExpireEntries, l.Key, from)
			if err != nil {
				return "", "", err
			}
			c.total -= expired
			if err := t.row(qOldest, now, l.Key).Scan(&c.oldest); err != nil {
				return "", "", fmt.Errorf("store: %w", err)
			}
		}
		if !seen {
			c.oldest = now
		}
		if !fits(l, c.total) {
			counting, err := counting(t.ctx, t.stmt(qCounting), l.Key, from)
			if err != nil {
				return "", "", err
			}
			return "", "", denial(i, l, c.total, counting)
		}
		counters[l.Key] = counter{total: c.total + l.Add, oldest: min(c.oldest, now)}
	}
	keys := make([]string, len(limits))
	for i, l := range limits {
		keys[i] = l.Key
	}
	keysJSON, err := json.Marshal(keys)
	if err != nil {
		return "", "", err
	}
	if row {
		if _, err := t.exec(qInsertReservation, id, now, expiry(now, limits), string(keysJSON)); err != nil {
			return "", "", err
		}
	}
	if len(limits) == 0 {
		return id, string(keysJSON), nil
	}
	args = args[:0]
	for _, l := range limits {
		args = append(args, id, l.Key, int64(l.Kind), now, l.Add, now+int64(l.Window))
	}
	if st, err = t.dynStmt(`INSERT INTO counter_entries (reservation, key, kind, at, amount, expires) VALUES ` +
		placeholders(len(limits), "(?, ?, ?, ?, ?, ?)")); err != nil {
		return "", "", err
	}
	if _, err := st.ExecContext(t.ctx, args...); err != nil {
		return "", "", fmt.Errorf("store: %w", err)
	}
	args = args[:0]
	for _, l := range limits {
		c := counters[l.Key]
		args = append(args, l.Key, c.total, int64(l.Window), now+int64(l.Window), c.oldest)
	}
	if st, err = t.dynStmt(`INSERT INTO counters (key, total, window, expires, oldest) VALUES ` +
		placeholders(len(limits), "(?, ?, ?, ?, ?)") +
		` ON CONFLICT (key) DO UPDATE SET total = excluded.total, window = excluded.window, expires = max(expires, excluded.expires), oldest = excluded.oldest`); err != nil {
		return "", "", err
	}
	if _, err := st.ExecContext(t.ctx, args...); err != nil {
		return "", "", fmt.Errorf("store: %w", err)
	}
	return id, string(keysJSON), nil
}

// sweep forgets what has expired at now (by this process's clock, with
// pruneGrace for the others'): counters none of whose entries counts any
// more, with their entries; reservations past retention; claims whose
// window and lease have passed. It scans, so it runs once every sweepEvery
// write transactions rather than on every call.
func (t *txn) sweep(now int64) error {
	if _, err := t.exec(qPruneReservations, now-int64(reservationRetention)); err != nil {
		return err
	}
	if _, err := t.exec(qPruneClaims, now-int64(pruneGrace), now-int64(pruneGrace)-int64(InFlightLease)); err != nil {
		return err
	}
	return t.dropIdleCounters(now - int64(pruneGrace))
}

// dropIdleCounters forgets counters none of whose entries has counted since
// before until, with their entries.
func (t *txn) dropIdleCounters(until int64) error {
	rows, err := t.stmt(qIdleCounters).QueryContext(t.ctx, until)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return fmt.Errorf("store: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, k := range keys {
		if _, err := t.exec(qDropEntries, k); err != nil {
			return err
		}
	}
	return nil
}

// sumRows runs a statement returning one amount a row and sums them.
func (t *txn) sumRows(q string, args ...any) (int64, error) {
	rows, err := t.stmt(q).QueryContext(t.ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var sum int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("store: %w", err)
		}
		sum += n
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	return sum, nil
}

// counting returns key's entries that count after from, oldest first.
func counting(ctx context.Context, st *sql.Stmt, key string, from int64) ([]entry, error) {
	rows, err := st.QueryContext(ctx, key, from)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var es []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.at, &e.amount); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return es, nil
}

// Settle implements [Ledger].
func (s *SQLite) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	if err := checkOutcome(outcome); err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error { return t.settle(id, outcome) })
}

// settle is Settle inside a write transaction.
func (t *txn) settle(id string, outcome policy.Settlement) error {
	res, err := t.exec(qSetOutcome, int64(outcome), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: %w", err)
	} else if n == 0 {
		// Settled before (the first outcome stands), or unknown.
		var prior int64
		if err := t.row(qOutcome, id).Scan(&prior); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}
	if outcome != policy.Released {
		return nil
	}
	var (
		at       int64
		keysJSON string
	)
	if err := t.row(qReservationKeys, id).Scan(&at, &keysJSON); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if keysJSON == "" {
		// A reservation of the first schema, which did not list its keys.
		return t.releaseByScan(id)
	}
	return t.release(id, at, keysJSON)
}

// release removes the budget entries of reservation id, made at at for
// the counters keysJSON lists, and takes them off the running totals: its
// rate limits keep counting the call.
func (t *txn) release(id string, at int64, keysJSON string) error {
	return t.remove(id, at, keysJSON, false)
}

// remove is release, removing the reservation's rate entries too with
// rates: a reservation that moves to a new time (an approval's, when its
// call is made).
func (t *txn) remove(id string, at int64, keysJSON string, rates bool) error {
	var keys []string
	if err := json.Unmarshal([]byte(keysJSON), &keys); err != nil {
		return fmt.Errorf("store: reservation %s: %w", id, err)
	}
	for _, key := range keys {
		var (
			amount int64
			err    error
		)
		if rates {
			amount, err = t.sumRows(qMoveEntry, key, at, id)
		} else {
			amount, err = t.sumRows(qReleaseEntry, key, at, id, int64(policy.KindBudget))
		}
		if err != nil {
			return err
		}
		if amount != 0 {
			if _, err := t.exec(qSubtract, amount, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseByScan releases the budget entries of a reservation that does not
// list its keys, finding them by a scan.
func (t *txn) releaseByScan(id string) error {
	rows, err := t.stmt(qRelease).QueryContext(t.ctx, id, int64(policy.KindBudget))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	type released struct {
		key    string
		amount int64
	}
	var rs []released
	for rows.Next() {
		var r released
		if err := rows.Scan(&r.key, &r.amount); err != nil {
			rows.Close()
			return fmt.Errorf("store: %w", err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, r := range rs {
		if _, err := t.exec(qSubtract, r.amount, r.key); err != nil {
			return err
		}
	}
	return nil
}

// Claim implements [Claims].
func (s *SQLite) Claim(ctx context.Context, c Claim) (Prior, error) {
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	var p Prior
	err := s.write(ctx, func(t *txn) error {
		var err error
		p, err = t.claim(c, true)
		return err
	})
	if err != nil {
		return Prior{}, err
	}
	return p, nil
}

// claim is Claim inside a write transaction; with take false, it only
// reports what holds the key, taking nothing.
func (t *txn) claim(c Claim, take bool) (Prior, error) {
	at := c.At.UnixNano()
	// Whether a claim still holds its key is judged by the clock no live
	// handle is behind, like a window.
	now, err := t.clock(at)
	if err != nil {
		return Prior{}, err
	}
	if err := t.maybeSweep(now); err != nil {
		return Prior{}, err
	}
	if p, err := liveClaim(t.row(qGetClaim, c.Key), c, now); err != nil || p.State != ClaimNew {
		return p, err
	}
	if take {
		if _, err := t.exec(qPutClaim, c.Key, c.Call, c.Fingerprint, at, at+int64(c.Window)); err != nil {
			return Prior{}, err
		}
	}
	return Prior{State: ClaimNew}, nil
}

// LookClaim implements [Claims]. It reads; it writes nothing.
func (s *SQLite) LookClaim(ctx context.Context, c Claim) (Prior, error) {
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	now, err := s.bound(ctx, s.stmts[qOwners], c.At.UnixNano())
	if err != nil {
		return Prior{}, err
	}
	return liveClaim(s.stmts[qGetClaim].QueryRowContext(ctx, c.Key), c, now)
}

// liveClaim reads row, a qGetClaim, and returns what the claim it holds
// answers c at now: ClaimNew when there is none or it no longer holds
// its key.
func liveClaim(row *sql.Row, c Claim, now int64) (Prior, error) {
	var (
		fingerprint             string
		claimed, expires, state int64
		result                  []byte
	)
	switch err := row.Scan(&fingerprint, &claimed, &expires, &state, &result); {
	case errors.Is(err, sql.ErrNoRows):
		return Prior{State: ClaimNew}, nil
	case err != nil:
		return Prior{}, fmt.Errorf("store: %w", err)
	case now >= claimLiveUntil(claimed, expires, state == claimDone):
		return Prior{State: ClaimNew}, nil
	}
	return claimPrior(fingerprint, c.Fingerprint, state == claimDone, result), nil
}

// Finish implements [Claims].
func (s *SQLite) Finish(ctx context.Context, key string, result []byte) error {
	return s.write(ctx, func(t *txn) error {
		return mustAffect(t.exec(qFinishClaim, cloneBytes(result), key))
	})
}

// Drop implements [Claims].
func (s *SQLite) Drop(ctx context.Context, key string) error {
	return s.write(ctx, func(t *txn) error {
		return mustAffect(t.exec(qDropClaim, key))
	})
}

// mustAffect turns a statement that changed no row into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// AppendAudit implements [Journal].
func (s *SQLite) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	r := *rec
	err := s.write(ctx, func(t *txn) error { return t.append(&r) })
	if err != nil {
		return err
	}
	*rec = r
	return nil
}

// append is AppendAudit inside a write transaction.
func (t *txn) append(r *AuditRecord) error {
	r.Time = r.Time.UTC()
	r.Open = false
	r.Format = auditFormat
	// The head this handle wrote last is most likely still the head: move
	// it on only if it is (one statement), else read it first. A cached
	// head that a rolled-back transaction left ahead only costs the read.
	s := t.s
	moved := false
	if s.headKnown {
		r.Seq, r.PrevHash = s.headSeq+1, s.headHash
		r.Hash = r.ComputeHash()
		res, err := t.exec(qMoveHead, r.Seq, r.Hash, s.headSeq, s.headHash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		moved = n == 1
	}
	if !moved {
		if err := t.row(qHead).Scan(&r.Seq, &r.PrevHash); err != nil {
			return fmt.Errorf("store: audit head: %w", err)
		}
		r.Seq++
		r.Hash = r.ComputeHash()
		if _, err := t.exec(qSetHead, r.Seq, r.Hash); err != nil {
			return err
		}
	}
	s.headSeq, s.headHash, s.headKnown = r.Seq, r.Hash, true
	_, err := t.exec(qAppendAudit, r.Seq, r.Format, r.Time.Format(time.RFC3339Nano), r.Kind, r.Call, r.Caller,
		r.Tool, r.Decision, r.Amount, r.Currency, r.Amounts, r.EmailMasked, r.EmailHash, r.CustomerIDHash,
		r.ReferenceHash, r.Reservation, r.SessionID, int64(r.Duration), r.PrevHash, r.Hash)
	return err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRecord reads auditColumns, after the leading dest, into r.
func scanRecord(sc scanner, r *AuditRecord, lead ...any) error {
	var (
		at       string
		duration int64
	)
	dest := append(lead, &r.Seq, &r.Format, &at, &r.Kind, &r.Call, &r.Caller, &r.Tool, &r.Decision, &r.Amount,
		&r.Currency, &r.Amounts, &r.EmailMasked, &r.EmailHash, &r.CustomerIDHash, &r.ReferenceHash, &r.Reservation, &r.SessionID,
		&duration, &r.PrevHash, &r.Hash)
	if err := sc.Scan(dest...); err != nil {
		return fmt.Errorf("store: reading the audit record after %d: %w", r.Seq, err)
	}
	r.Duration = time.Duration(duration)
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return fmt.Errorf("store: audit record %d has an unreadable time %q", r.Seq, at)
	}
	r.Time = t.UTC()
	return nil
}

// ScanAudit implements [Journal]. It reads one consistent snapshot of the
// trail; fn may call s.
func (s *SQLite) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	rows, err := s.stmts[qScanAudit].QueryContext(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var last int64
	for rows.Next() {
		r := AuditRecord{Seq: last}
		if err := scanRecord(rows, &r); err != nil {
			return err
		}
		last = r.Seq
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// AuditHead implements [Journal].
func (s *SQLite) AuditHead(ctx context.Context) (int64, string, error) {
	var (
		seq  int64
		hash string
	)
	if err := s.stmts[qHead].QueryRowContext(ctx).Scan(&seq, &hash); err != nil {
		return 0, "", fmt.Errorf("store: audit head: %w", err)
	}
	return seq, hash, nil
}

// SessionTool implements [Journal], by the audit trail's session index.
func (s *SQLite) SessionTool(ctx context.Context, sessionID, caller string) (string, error) {
	if sessionID == "" {
		return "", nil
	}
	var tool string
	switch err := s.stmts[qSessionTool].QueryRowContext(ctx, sessionID, caller).Scan(&tool); {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("store: %w", err)
	}
	return tool, nil
}

// Intents implements [Journal]. An intent is orphaned when its owner's lock
// file is gone or no longer locked: the handle was closed, or its process
// ended, however it ended.
func (s *SQLite) Intents(ctx context.Context) ([]Intent, error) {
	rows, err := s.stmts[qIntents].QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []Intent
	for rows.Next() {
		var in Intent
		if err := scanRecord(rows, &in.Record, &in.Call, &in.Owner, &in.ClaimKey, &in.Reservation); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	alive := map[string]bool{}
	for i := range out {
		owner := out[i].Owner
		live, seen := alive[owner]
		if !seen {
			live = owner == s.owner.id || ownerAlive(s.owners, owner)
			alive[owner] = live
		}
		out[i].Orphaned = !live
	}
	return out, nil
}

// Hold implements [Store], in one write transaction.
func (s *SQLite) Hold(ctx context.Context, h *Hold) (*Held, error) {
	if err := checkHold(h); err != nil {
		return nil, err
	}
	held := &Held{Prior: Prior{State: ClaimNew}}
	err := s.write(ctx, func(t *txn) error {
		if h.Claim != nil {
			p, err := t.claim(*h.Claim, false)
			if err != nil {
				return err
			}
			if p.State != ClaimNew {
				held.Prior = p
				return nil
			}
		}
		if h.ClaimOnly {
			return nil
		}
		at := h.At.UnixNano()
		var (
			id, keysJSON string
			err          error
		)
		if h.Approval != "" {
			// Held on the approval, whose limits were reserved when it was
			// requested: the call is made now. The reservation's entries,
			// budgets' and rate limits', move to now, checked again
			// against the limits (the request's may have left a window
			// since, and other calls used what it left).
			a, err := t.approval(qApproval, h.Approval)
			if err != nil {
				return err
			}
			clock, err := t.clock(at)
			if err != nil {
				return err
			}
			if a.State != ApprovalApproved || a.ExpiresAt.UnixNano() <= clock {
				return ErrApprovalNotPending
			}
			if err := t.remove(a.Reservation, a.reservedAt, a.keys, true); err != nil {
				return err
			}
			if id, keysJSON, err = t.reserveEntries(a.Reservation, at, h.Limits, false); err != nil {
				return err
			}
			if _, err := t.exec(qUseApproval, a.ID); err != nil {
				return err
			}
		} else if id, keysJSON, err = t.reserveEntries("", at, h.Limits, false); err != nil {
			return err
		}
		held.Reservation = id
		key := ""
		if h.Claim != nil {
			key = h.Claim.Key
			if _, err := t.claim(*h.Claim, true); err != nil {
				return err
			}
		}
		held.Intent = h.Intent
		held.Intent.Reservation = held.Reservation
		if err := t.append(&held.Intent); err != nil {
			return err
		}
		_, err = t.exec(qInsertIntent, h.Intent.Call, held.Intent.Seq, s.owner.id, key, held.Reservation, at, keysJSON)
		return err
	})
	if err != nil {
		return nil, err
	}
	return held, nil
}

// Complete implements [Store], in one write transaction.
func (s *SQLite) Complete(ctx context.Context, c *Completion) error {
	if err := checkOutcome(c.Settlement); err != nil {
		return err
	}
	rec := c.Record
	err := s.write(ctx, func(t *txn) error {
		var (
			reservation, keysJSON string
			at                    int64
		)
		switch err := t.row(qCloseIntent, c.Call).Scan(&reservation, &at, &keysJSON); {
		case errors.Is(err, sql.ErrNoRows):
			// Resolved already (this is a late outcome: the first
			// settlement stands), or a call that held nothing.
			if c.OnlyIfOpen {
				return ErrNotFound
			}
		case err != nil:
			return fmt.Errorf("store: %w", err)
		case c.Settlement == policy.Released && reservation != "":
			if err := t.release(reservation, at, keysJSON); err != nil {
				return err
			}
		}
		if c.ClaimKey != "" {
			var err error
			if c.Replay == nil {
				_, err = t.exec(qDropCallClaim, c.ClaimKey, c.Call)
			} else {
				// A window after the call ended, if later (finishedClaimExpires).
				_, err = t.exec(qFinishCallClaim, cloneBytes(c.Replay), callEnded(&rec), c.ClaimKey, c.Call)
			}
			if err != nil {
				return err
			}
		}
		return t.append(&rec)
	})
	if err != nil {
		return err
	}
	c.Record = rec
	return nil
}

// Close implements [Store]: the handle's open intents become orphaned. It
// waits for a write in progress.
func (s *SQLite) Close() error {
	s.wlock <- struct{}{}
	defer func() { <-s.wlock }()
	for _, st := range s.stmts {
		st.Close()
	}
	if s.wconn != nil {
		for _, st := range s.wstmts {
			st.Close()
		}
		s.wconn.Close()
	}
	err := s.db.Close()
	if s.owner != nil {
		s.owner.release()
	}
	return err
}
