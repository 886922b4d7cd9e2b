package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/clink-mcp/clink-mcp/policy"
	"net/url"
	"os"
	"path/filepath"
	"time"

	// The pure-Go SQLite driver: the binary needs no cgo.
	_ "modernc.org/sqlite"
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
}

// The statements the store runs, prepared once per handle.
const (
	qPruneEntries      = `DELETE FROM counter_entries WHERE expires <= ?`
	qPruneReservations = `DELETE FROM reservations WHERE expires <= ?`
	qUsed              = `SELECT COALESCE(SUM(amount), 0) FROM counter_entries WHERE key = ? AND at > ?`
	qCounting          = `SELECT at, amount FROM counter_entries WHERE key = ? AND at > ? ORDER BY at`
	qInsertReservation = `INSERT INTO reservations (id, at, expires) VALUES (?, ?, ?)`
	qInsertEntry       = `INSERT INTO counter_entries (reservation, key, kind, at, amount, expires) VALUES (?, ?, ?, ?, ?, ?)`
	qOutcome           = `SELECT outcome FROM reservations WHERE id = ?`
	qSetOutcome        = `UPDATE reservations SET outcome = ? WHERE id = ? AND outcome = 0`
	qRelease           = `DELETE FROM counter_entries WHERE reservation = ? AND kind = ?`
	qPruneClaims       = `DELETE FROM claims WHERE expires <= ? AND (state = 2 OR at <= ?)`
	qGetClaim          = `SELECT fingerprint, at, expires, state, result FROM claims WHERE key = ?`
	qPutClaim          = `INSERT OR REPLACE INTO claims (key, fingerprint, at, expires, state, result) VALUES (?, ?, ?, ?, 1, NULL)`
	qFinishClaim       = `UPDATE claims SET state = 2, result = ? WHERE key = ?`
	qDropClaim         = `DELETE FROM claims WHERE key = ?`
	qHead              = `SELECT audit_seq, audit_hash FROM meta WHERE id = 1`
	qSetHead           = `UPDATE meta SET audit_seq = ?, audit_hash = ? WHERE id = 1`
	qAppendAudit       = `INSERT INTO audit (seq, time, tool, decision, amount, currency, email_masked, email_hash, session_id, duration_ns, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qScanAudit         = `SELECT seq, time, tool, decision, amount, currency, email_masked, email_hash, session_id, duration_ns, prev_hash, hash FROM audit ORDER BY seq`
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
// Durability: WAL with synchronous=NORMAL. A committed call survives the
// process crashing or being killed; a power loss or OS crash may lose the
// last transactions before a checkpoint (never corrupting the file), so
// the limits may briefly forget the last calls made before the machine
// went down. That trade buys write transactions of a few hundred
// microseconds instead of an fsync each.
type SQLite struct {
	db    *sql.DB
	path  string
	wlock chan struct{} // one writer per handle at a time
	stmts map[string]*sql.Stmt
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the store at path, creating it if needed, and brings its
// schema up to date.
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
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: no store path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := prepareFile(abs); err != nil {
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
	s := &SQLite{db: db, path: abs, wlock: make(chan struct{}, 1), stmts: make(map[string]*sql.Stmt)}
	if err := s.init(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Path returns the absolute path of the store's file.
func (s *SQLite) Path() string { return s.path }

// dsn is the driver's name for the file at abs, with the settings every
// connection needs. The path is escaped into a file: URI, so no character
// in it can be taken for a parameter.
func dsn(abs string) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	// Every read-write transaction begins with BEGIN IMMEDIATE.
	q.Set("_txlock", "immediate")
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String()
}

// prepareFile creates path's directory (0700) and the file (0600) if they
// are missing, and restricts an existing file to its owner.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
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

// init checks the file and migrates its schema.
func (s *SQLite) init(ctx context.Context) error {
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
	if err := s.migrate(ctx); err != nil {
		return err
	}
	for _, q := range []string{
		qPruneEntries, qPruneReservations, qUsed, qCounting, qInsertReservation, qInsertEntry,
		qOutcome, qSetOutcome, qRelease, qPruneClaims, qGetClaim, qPutClaim, qFinishClaim,
		qDropClaim, qHead, qSetHead, qAppendAudit, qScanAudit,
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
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version, appID, tables int64
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
		return errors.New("the file is a SQLite database of another program, not a clink-mcp store")
	case version > int64(len(migrations)):
		return fmt.Errorf("the store has schema version %d, newer than this clink-mcp understands (%d): upgrade clink-mcp",
			version, len(migrations))
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
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(&txn{ctx: ctx, tx: tx, s: s}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// txn runs the prepared statements inside one transaction.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
	s   *SQLite
}

func (t *txn) stmt(q string) *sql.Stmt { return t.tx.StmtContext(t.ctx, t.s.stmts[q]) }

func (t *txn) exec(q string, args ...any) (sql.Result, error) {
	res, err := t.stmt(q).ExecContext(t.ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return res, nil
}

func (t *txn) row(q string, args ...any) *sql.Row { return t.stmt(q).QueryRowContext(t.ctx, args...) }

// Reserve implements [Store].
func (s *SQLite) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	if err := checkLimits(at, limits); err != nil {
		return "", err
	}
	now := at.UnixNano()
	id, err := newReservationID()
	if err != nil {
		return "", err
	}
	err = s.write(ctx, func(t *txn) error {
		if _, err := t.exec(qPruneEntries, now-int64(pruneGrace)); err != nil {
			return err
		}
		if _, err := t.exec(qPruneReservations, now-int64(reservationRetention)); err != nil {
			return err
		}
		for i, l := range limits {
			from := windowStart(now, l)
			var used int64
			if err := t.row(qUsed, l.Key, from).Scan(&used); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if fits(l, used) {
				continue
			}
			counting, err := t.counting(l.Key, from)
			if err != nil {
				return err
			}
			return denial(i, l, used, counting)
		}
		if _, err := t.exec(qInsertReservation, id, now, expiry(now, limits)); err != nil {
			return err
		}
		for _, l := range limits {
			if _, err := t.exec(qInsertEntry, id, l.Key, int64(l.Kind), now, l.Add, now+int64(l.Window)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// counting returns key's entries that count after from.
func (t *txn) counting(key string, from int64) ([]entry, error) {
	rows, err := t.stmt(qCounting).QueryContext(t.ctx, key, from)
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

// Settle implements [Store].
func (s *SQLite) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	if err := checkOutcome(outcome); err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
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
		if outcome == policy.Released {
			if _, err := t.exec(qRelease, id, int64(policy.KindBudget)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Claim implements [Store].
func (s *SQLite) Claim(ctx context.Context, c Claim) (Prior, error) {
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	now := c.At.UnixNano()
	var p Prior
	err := s.write(ctx, func(t *txn) error {
		if _, err := t.exec(qPruneClaims, now-int64(pruneGrace), now-int64(pruneGrace)-int64(InFlightLease)); err != nil {
			return err
		}
		var (
			fingerprint        string
			at, expires, state int64
			result             []byte
		)
		switch err := t.row(qGetClaim, c.Key).Scan(&fingerprint, &at, &expires, &state, &result); {
		case err == nil && now < claimLiveUntil(at, expires, state == claimDone):
			switch {
			case fingerprint != c.Fingerprint:
				p = Prior{State: ClaimConflict}
			case state == claimDone:
				p = Prior{State: ClaimDone, Result: cloneBytes(result)}
			default:
				p = Prior{State: ClaimInFlight}
			}
			return nil
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: %w", err)
		}
		if _, err := t.exec(qPutClaim, c.Key, c.Fingerprint, now, now+int64(c.Window)); err != nil {
			return err
		}
		p = Prior{State: ClaimNew}
		return nil
	})
	if err != nil {
		return Prior{}, err
	}
	return p, nil
}

// Finish implements [Store].
func (s *SQLite) Finish(ctx context.Context, key string, result []byte) error {
	return s.write(ctx, func(t *txn) error {
		return mustAffect(t.exec(qFinishClaim, cloneBytes(result), key))
	})
}

// Drop implements [Store].
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

// AppendAudit implements [Store].
func (s *SQLite) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	r := *rec
	r.Time = r.Time.UTC()
	err := s.write(ctx, func(t *txn) error {
		if err := t.row(qHead).Scan(&r.Seq, &r.PrevHash); err != nil {
			return fmt.Errorf("store: audit head: %w", err)
		}
		r.Seq++
		r.Hash = r.ComputeHash()
		if _, err := t.exec(qAppendAudit, r.Seq, r.Time.Format(time.RFC3339Nano), r.Tool, r.Decision,
			r.Amount, r.Currency, r.EmailMasked, r.EmailHash, r.SessionID, int64(r.Duration), r.PrevHash, r.Hash); err != nil {
			return err
		}
		_, err := t.exec(qSetHead, r.Seq, r.Hash)
		return err
	})
	if err != nil {
		return err
	}
	*rec = r
	return nil
}

// ScanAudit implements [Store]. It reads one consistent snapshot of the
// trail; fn may call s.
func (s *SQLite) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	rows, err := s.stmts[qScanAudit].QueryContext(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r        AuditRecord
			at       string
			duration int64
		)
		if err := rows.Scan(&r.Seq, &at, &r.Tool, &r.Decision, &r.Amount, &r.Currency, &r.EmailMasked,
			&r.EmailHash, &r.SessionID, &duration, &r.PrevHash, &r.Hash); err != nil {
			return fmt.Errorf("store: reading the audit record after %d: %w", r.Seq, err)
		}
		r.Duration = time.Duration(duration)
		if r.Time, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return fmt.Errorf("store: audit record %d has an unreadable time %q", r.Seq, at)
		}
		r.Time = r.Time.UTC()
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// AuditHead implements [Store].
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

// Close implements [Store].
func (s *SQLite) Close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	return s.db.Close()
}
