package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/policy"
)

// rawDB opens the store's file directly, as a tamperer or an operator's
// sqlite3 shell would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestSQLiteAuditTamperingIsNamed(t *testing.T) {
	ctx := context.Background()
	// dropGuards removes the triggers that refuse updates and deletes, as
	// a tamperer with write access to the file can.
	dropGuards := func(t *testing.T, db *sql.DB) {
		mustExec(t, db, `DROP TRIGGER audit_no_update`)
		mustExec(t, db, `DROP TRIGGER audit_no_delete`)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, recs []AuditRecord)
		want   BrokenRecord
	}{
		{"an updated field names the record", func(t *testing.T, db *sql.DB, _ []AuditRecord) {
			mustExec(t, db, `UPDATE audit SET amount = '9999.00' WHERE seq = 3`)
		}, BrokenRecord{Seq: 3, Reason: "record 3 was altered: its hash does not match its content"}},
		{"an updated time names the record", func(t *testing.T, db *sql.DB, _ []AuditRecord) {
			mustExec(t, db, `UPDATE audit SET time = '2025-03-02T00:00:00Z' WHERE seq = 2`)
		}, BrokenRecord{Seq: 2, Reason: "record 2 was altered: its hash does not match its content"}},
		{"a deleted middle record names it", func(t *testing.T, db *sql.DB, _ []AuditRecord) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 3`)
		}, BrokenRecord{Seq: 3, Reason: "record 3 is missing (the next stored record is 4)"}},
		{"a deleted last record is caught through the head", func(t *testing.T, db *sql.DB, _ []AuditRecord) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 5`)
		}, BrokenRecord{Seq: 5, Reason: "record 5 is missing: the trail ends at record 4 but 5 records were appended (the last records were deleted)"}},
		{"an edit with a recomputed hash breaks the next link", func(t *testing.T, db *sql.DB, recs []AuditRecord) {
			r := recs[2]
			r.Decision = "created"
			mustExec(t, db, `UPDATE audit SET decision = ?, hash = ? WHERE seq = 3`, r.Decision, r.ComputeHash())
		}, BrokenRecord{Seq: 4, Reason: "record 4 does not follow record 3: its previous hash does not match (a record was altered or replaced)"}},
		{"a rewritten last record is caught through the head", func(t *testing.T, db *sql.DB, recs []AuditRecord) {
			r := recs[4]
			r.SessionID = "sess_forged"
			mustExec(t, db, `UPDATE audit SET session_id = ?, hash = ? WHERE seq = 5`, r.SessionID, r.ComputeHash())
		}, BrokenRecord{Seq: 5, Reason: "record 5 was replaced: its hash does not match the one recorded when it was appended"}},
		{"a record inserted past the head is caught", func(t *testing.T, db *sql.DB, recs []AuditRecord) {
			r := recs[4]
			r.Seq, r.PrevHash = 6, r.Hash
			r.Hash = r.ComputeHash()
			mustExec(t, db, `INSERT INTO audit (seq, format, time, kind, call, caller, tool, decision, amount, currency, amounts,
				email_masked, email_hash, customer_id_hash, reference_hash, reservation, session_id, duration_ns, prev_hash, hash)
				SELECT 6, format, time, kind, call, caller, tool, decision, amount, currency, amounts, email_masked, email_hash,
				customer_id_hash, reference_hash, reservation, session_id, duration_ns, ?, ? FROM audit WHERE seq = 5`, r.PrevHash, r.Hash)
		}, BrokenRecord{Seq: 6, Reason: "record 6 was not appended by the store: the store recorded only 5 records"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s := openSQLite(t, path)
			recs := sampleRecords(5)
			appendAll(t, s, recs)
			db := rawDB(t, path)
			dropGuards(t, db)
			tt.tamper(t, db, recs)
			rep, err := VerifyAudit(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, rep.Broken); diff != "" {
				t.Fatalf("Broken (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("the trail refuses updates and deletes until its guards are dropped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		appendAll(t, openSQLite(t, path), sampleRecords(2))
		db := rawDB(t, path)
		for _, q := range []string{`UPDATE audit SET tool = 'x' WHERE seq = 1`, `DELETE FROM audit WHERE seq = 2`} {
			if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v, want an append-only error", q, err)
			}
		}
	})
	t.Run("an unreadable time is an error naming the record", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		s := openSQLite(t, path)
		appendAll(t, s, sampleRecords(2))
		db := rawDB(t, path)
		dropGuards(t, db)
		mustExec(t, db, `UPDATE audit SET time = 'yesterday' WHERE seq = 2`)
		if _, err := VerifyAudit(ctx, s); err == nil || !strings.Contains(err.Error(), "record 2") {
			t.Fatalf("VerifyAudit = %v, want an error naming record 2", err)
		}
	})
}

func TestOpenSQLiteCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "clink-mcp")
	path := filepath.Join(dir, "state.db")
	s := openSQLite(t, path)
	if _, err := s.Reserve(context.Background(), day, []policy.Limit{rate("r", time.Minute, 1)}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		dir: os.ModeDir | 0o700, filepath.Dir(dir): os.ModeDir | 0o700,
		path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600,
	} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("%s has mode %v, want %v", name, got, want)
		}
	}
	if s.Path() != path {
		t.Errorf("Path = %q, want %q", s.Path(), path)
	}
}

func TestOpenSQLiteRestrictsAnExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openSQLite(t, path).Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openSQLite(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopening = %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenSQLiteRefuses(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares dir and returns the path to open.
		setup func(t *testing.T, dir string) string
		want  string
	}{
		{"a file of random bytes", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			garbage := make([]byte, 8192)
			rand.Read(garbage)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, "not a database"},
		{"a text file", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			if err := os.WriteFile(path, []byte("budgets: []\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, "not a database"},
		{"a path under a regular file", func(t *testing.T, dir string) string {
			file := filepath.Join(dir, "file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(file, "sub", "state.db")
		}, "not a directory"},
		{"a directory", func(t *testing.T, dir string) string {
			return dir
		}, "is a directory"},
		{"a database from a newer clink-mcp", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "state.db")
			openSQLite(t, path).Close()
			mustExec(t, rawDB(t, path), `PRAGMA user_version = 99`)
			return path
		}, "schema version 99, newer than this clink-mcp understands (" + strconv.Itoa(len(migrations)) + ")"},
		{"another program's database", func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "other.db")
			mustExec(t, rawDB(t, path), `CREATE TABLE notes (body TEXT)`)
			return path
		}, "another program"},
	}
	for _, tt := range tests {
		t.Run("it refuses "+tt.name+" with an error naming the path", func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			s, err := OpenSQLite(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tt.want) {
				t.Fatalf("OpenSQLite error %q, want it to name %s and say %q", msg, path, tt.want)
			}
		})
	}
	t.Run("it refuses an empty path", func(t *testing.T) {
		if _, err := OpenSQLite(""); err == nil {
			t.Fatal("OpenSQLite succeeded")
		}
	})
	t.Run("a refused file is left as it was", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, []byte("budgets: []\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSQLite(path); err == nil {
			t.Fatal("OpenSQLite succeeded")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "budgets: []\n" {
			t.Fatalf("file now holds %q, %v", b, err)
		}
	})
}

func TestOpenSQLiteHandlesAwkwardPaths(t *testing.T) {
	root := t.TempDir()
	const awkward = "a dir?x=1#frag%20&_txlock=deferred"
	path := filepath.Join(root, awkward, "state.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(context.Background(), day, []policy.Limit{rate("r", time.Minute, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("the database is not at the path given: %v", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != awkward {
		t.Fatalf("%s holds %v, want only %q", root, entries, awkward)
	}
}

func TestOpenSQLiteMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openSQLite(t, path).Close()
	openSQLite(t, path).Close()
	var version, appID int
	db := rawDB(t, path)
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA application_id`).Scan(&appID); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) || appID != applicationID || mode != "wal" {
		t.Fatalf("user_version %d, application_id %#x, journal_mode %s; want %d, %#x, wal",
			version, appID, mode, len(migrations), applicationID)
	}
}

func TestSQLiteConnectionsAreSetUp(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := context.Background()
	// Hold several connections at once, so each one's settings are read.
	var conns []*sql.Conn
	for range 3 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		var mode string
		var sync, timeout int
		if err := c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&timeout); err != nil {
			t.Fatal(err)
		}
		// synchronous=FULL syncs the WAL at every commit: a hold is on disk
		// before Clink is called, whatever happens to the machine after.
		if mode != "wal" || sync != 2 || timeout != int(busyTimeout.Milliseconds()) {
			t.Errorf("connection %d: journal_mode %s, synchronous %d, busy_timeout %d; want wal, 2 (FULL), %d",
				i, mode, sync, timeout, busyTimeout.Milliseconds())
		}
	}
}

// TestSQLiteMigratesAStoreOfTheFirstSchema opens a store written by the
// first schema: its counters become running totals that still count, and
// its audit records still verify beside new ones.
func TestSQLiteMigratesAStoreOfTheFirstSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := rawDB(t, path)
	mustExec(t, db, migrations[0])
	mustExec(t, db, fmt.Sprintf(`PRAGMA application_id = %d`, applicationID))
	mustExec(t, db, `PRAGMA user_version = 1`)
	hour := int64(time.Hour)
	for i, amount := range []int64{700, 800} {
		at := day.UnixNano() + int64(i)*int64(time.Minute)
		mustExec(t, db, `INSERT INTO counter_entries (key, at, reservation, kind, amount, expires) VALUES (?, ?, ?, ?, ?, ?)`,
			"budget|*|USD|1h0m0s|", at, fmt.Sprint("r", i), int64(policy.KindBudget), amount, at+hour)
	}
	old := AuditRecord{Seq: 1, Time: day, Tool: "create_checkout_session", Decision: "created", Amount: "7.00", Currency: "USD"}
	old.Hash = old.ComputeHash()
	mustExec(t, db, `INSERT INTO audit (seq, time, tool, decision, amount, currency, email_masked, email_hash, session_id, duration_ns, prev_hash, hash)
		VALUES (1, ?, ?, ?, ?, ?, '', '', '', 0, '', ?)`, day.Format(time.RFC3339Nano), old.Tool, old.Decision, old.Amount, old.Currency, old.Hash)
	mustExec(t, db, `UPDATE meta SET audit_seq = 1, audit_hash = ?`, old.Hash)
	db.Close()

	s := openSQLite(t, path)
	ctx := context.Background()
	l := []policy.Limit{budget("budget|*|USD|1h0m0s|", time.Hour, 2000, 600)}
	var d *policy.Denied
	if _, err := s.Reserve(ctx, day.Add(2*time.Minute), l); !errors.As(err, &d) || d.Used != 1500 {
		t.Fatalf("Reserve after the migration = %v, want a denial with Used 1500", err)
	}
	// The first entry leaves at day+1h exactly.
	if _, err := s.Reserve(ctx, day.Add(time.Hour), l); err != nil {
		t.Fatalf("Reserve when the first entry has left = %v", err)
	}
	appendAll(t, s, sampleRecords(2))
	rep, err := VerifyAudit(ctx, s)
	if err != nil || !rep.OK() || rep.Records != 3 {
		t.Fatalf("VerifyAudit = %+v, %v; want 3 intact records", rep, err)
	}
	recs := scanAll(t, s)
	if recs[0].Format != 1 || recs[1].Format != 2 {
		t.Errorf("formats %d, %d; want 1 for the old record, 2 for a new one", recs[0].Format, recs[1].Format)
	}
}

// TestSQLiteSweepsWhatHasExpired: rows that no longer count are swept
// every sweepEvery writes, so the file does not grow with history.
func TestSQLiteSweepsWhatHasExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openSQLite(t, path)
	ctx := context.Background()
	for i := range 50 {
		at := day.Add(time.Duration(i) * time.Second)
		l := []policy.Limit{budget(fmt.Sprintf("budget|*|USD|1h0m0s|c:%d", i), time.Hour, 1000, 1)}
		if _, err := s.Reserve(ctx, at, l); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, Claim{Key: fmt.Sprint("k", i), Call: "c", Fingerprint: "f", At: at, Window: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(table string) (n int) {
		t.Helper()
		if err := rawDB(t, path).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, table := range []string{"counters", "counter_entries", "reservations", "claims"} {
		if n := count(table); n != 50 {
			t.Fatalf("%s holds %d rows, want 50", table, n)
		}
	}
	// Two days later, enough writes for a sweep: only their own rows stay.
	later := day.Add(48 * time.Hour)
	for i := range sweepEvery {
		if _, err := s.Reserve(ctx, later.Add(time.Duration(i)), []policy.Limit{rate("r", time.Minute, 1<<40)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count("counters"); n != 1 {
		t.Errorf("counters holds %d rows after the sweep, want 1", n)
	}
	if n := count("claims"); n != 0 {
		t.Errorf("claims holds %d rows after the sweep, want 0", n)
	}
	if n := count("counter_entries"); n != sweepEvery {
		t.Errorf("counter_entries holds %d rows after the sweep, want %d", n, sweepEvery)
	}
	if n := count("reservations"); n != sweepEvery {
		t.Errorf("reservations holds %d rows after the sweep, want %d", n, sweepEvery)
	}
}

// TestOpenSQLiteNeedsNoWriteLockWhenUpToDate: an up-to-date store opens
// while another process holds its write lock, so the audit commands work
// during a long write.
func TestOpenSQLiteNeedsNoWriteLockWhenUpToDate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openSQLite(t, path).Close()
	conn, err := rawDB(t, path).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), `ROLLBACK`)
	start := time.Now()
	s := openSQLite(t, path)
	if rep, err := VerifyAudit(context.Background(), s); err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit under another's write lock = %+v, %v", rep, err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("opening and verifying took %v: it waited for the write lock", waited)
	}
}

// TestSQLiteRecoversFromACancelledBegin: a cancellation that arrives while
// BEGIN IMMEDIATE waits for another process's write lock must not leave the
// handle's write connection inside a transaction, holding the file's lock
// for every process.
func TestSQLiteRecoversFromACancelledBegin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openSQLite(t, path)
	ctx := context.Background()
	l := []policy.Limit{{Key: "b", Kind: policy.KindBudget, Window: time.Hour, Max: 100, Add: 10}}
	if _, err := s.Reserve(ctx, day, l); err != nil { // opens the write connection
		t.Fatal(err)
	}
	oc, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oc.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Reserve(cctx, day, l)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond) // in BEGIN's busy wait
	cancel()
	time.Sleep(50 * time.Millisecond)
	if _, err := oc.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	oc.Close()
	<-errc
	if _, err := s.Reserve(ctx, day, l); err != nil {
		t.Errorf("the next write on the same handle = %v", err)
	}
	start := time.Now()
	if _, err := openSQLite(t, path).Reserve(ctx, day, l); err != nil || time.Since(start) > 2*time.Second {
		t.Errorf("a write on another handle = %v after %v: the file's write lock was left held", err, time.Since(start))
	}
}

// TestSQLiteRollsBackAPanickingTransaction: a panic inside a write leaves
// no transaction open behind it.
func TestSQLiteRollsBackAPanickingTransaction(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := context.Background()
	func() {
		defer func() { recover() }()
		s.write(ctx, func(t *txn) error {
			if _, err := t.exec(qSetHead, 99, "x"); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 0 {
		t.Fatalf("AuditHead = %d, %v; want 0: the panicking write was committed", seq, err)
	}
	if err := s.AppendAudit(ctx, &AuditRecord{Time: day, Tool: "t", Decision: "created"}); err != nil {
		t.Fatalf("the next write = %v", err)
	}
}

// TestOpenSQLiteSweepsTheLocksOfOwnersThatAreGone: a process that crashed
// with no open intent leaves its lock and ready files; the next open
// removes them, and leaves a live owner's alone, and one being created (a
// lock file without its ready file, for less than readyGrace). One left
// without a ready file for longer (a process that died while creating it)
// is swept too.
func TestOpenSQLiteSweepsTheLocksOfOwnersThatAreGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	live := openSQLite(t, path)
	dir := ownersDir(path)
	file := func(name string, age time.Duration) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if age > 0 {
			old := time.Now().Add(-age)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	stale, staleReady := file("dead0000dead0000dead0000.lock", 0), file("dead0000dead0000dead0000.ready", 0)
	abandoned := file("dead1111dead1111dead1111.lock", 2*readyGrace)
	creating := file("fresh000fresh000fresh000.lock", 0)
	openSQLite(t, path)
	for _, p := range []string{stale, staleReady, abandoned} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{creating, filepath.Join(dir, live.owner.id+".lock"), filepath.Join(dir, live.owner.id+".ready")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}

// TestOwnerLocksSurviveConcurrentSweeps: a handle opening while others
// sweep the owners' directory never ends up holding the lock of a file a
// sweep removed (before ready files, a sweep could take the fresh file's
// lock between its creation and its owner's lock, and remove it: the live
// owner was then taken for gone, its open intents resolved as unknown).
func TestOwnerLocksSurviveConcurrentSweeps(t *testing.T) {
	dir := t.TempDir()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					sweepOwners(dir, "prober")
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 3000 {
		o, err := lockOwner(dir)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if !ownerAlive(dir, o.id) {
			t.Fatalf("open %d: a live owner, its lock held, is taken for gone (its lock file was removed by a sweep)", i)
		}
		o.release()
	}
}

// TestSQLiteLooksSessionsUpByIndex: SessionTool does not scan the
// audit trail.
func TestSQLiteLooksSessionsUpByIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openSQLite(t, path)
	rows, err := rawDB(t, path).Query(`EXPLAIN QUERY PLAN `+qSessionTool, "sess_1", "agent-7")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var (
			id, parent, unused int
			detail             string
		)
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if got := strings.Join(plan, "; "); !strings.Contains(got, "USING INDEX audit_session") {
		t.Fatalf("the plan of SessionTool is %q, want it to use the index audit_session", got)
	}
}

// TestSQLiteVerifyCatchesEditedFirstFormatFields: the hash of a record of
// the first format (in a store migrated from the first version) does not
// cover Kind, Call, Caller, Reservation and the other fields that format
// never had; editing them in place (which would make SessionTool find
// the session for another caller) is caught all the same.
func TestSQLiteVerifyCatchesEditedFirstFormatFields(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A first-format record, as a migrated store holds it.
	r := AuditRecord{Seq: 1, Format: 1, Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Tool: "create_checkout_session",
		Decision: "created", Amount: "10.00", Currency: "USD", SessionID: "sess_old"}
	r.Hash = r.ComputeHash()
	if _, err := s.db.Exec(`INSERT INTO audit (seq, format, time, tool, decision, amount, currency, email_masked, email_hash, session_id, duration_ns, prev_hash, hash) VALUES (1, 1, ?, ?, ?, ?, ?, '', '', ?, 0, '', ?)`,
		r.Time.Format(time.RFC3339Nano), r.Tool, r.Decision, r.Amount, r.Currency, r.SessionID, r.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE meta SET audit_seq = 1, audit_hash = ?`, r.Hash); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK() {
		t.Fatalf("intact: %+v %v", rep, err)
	}
	// Tamper: no hash, no chain link touched.
	if _, err := s.db.Exec(`DROP TRIGGER audit_no_update`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE audit SET kind = 'outcome', caller = 'someone-else', call = 'c1', reservation = 'r1' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	created, _ := s.SessionTool(ctx, "sess_old", "someone-else")
	rep, err := VerifyAudit(ctx, s)
	if err == nil && rep.OK() {
		t.Fatalf("VerifyAudit accepts a record whose caller/kind/call/reservation were edited in place (SessionTool now %q)", created)
	}
}

// TestSQLiteHandlesByTwoPathsSeeEachOtherAlive: two servers may open one
// store file by two paths (a symlink to the file, or to its directory).
// Each must see the other's open intents as alive, or it would resolve a
// call still at Clink as outcome_unknown; once a handle closes, the other
// sees its intents orphaned.
func TestSQLiteHandlesByTwoPathsSeeEachOtherAlive(t *testing.T) {
	ctx := context.Background()
	links := map[string]func(t *testing.T, root, real string) string{
		"a symlink to the file": func(t *testing.T, root, real string) string {
			link := filepath.Join(root, "link.db")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return link
		},
		"a symlink to its directory": func(t *testing.T, root, real string) string {
			link := filepath.Join(root, "linked-dir")
			if err := os.Symlink(filepath.Dir(real), link); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link, filepath.Base(real))
		},
	}
	for name, link := range links {
		for _, first := range []string{"real", "link"} {
			t.Run(fmt.Sprintf("by %s, the %s path opened first", name, first), func(t *testing.T) {
				root := t.TempDir()
				real := filepath.Join(root, "data", "state.db")
				if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
					t.Fatal(err)
				}
				other := link(t, root, real)
				pa, pb := real, other
				if first == "link" {
					pa, pb = other, real
				}
				a := openSQLite(t, pa)
				b := openSQLite(t, pb)
				h := &Hold{At: day, Limits: []policy.Limit{budget("b", time.Hour, 100, 10)},
					Intent: AuditRecord{Time: day, Kind: KindIntent, Call: "c0", Tool: "t", Decision: "allowed"}}
				if _, err := a.Hold(ctx, h); err != nil {
					t.Fatal(err)
				}
				intents, err := b.Intents(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(intents) != 1 || intents[0].Orphaned {
					t.Fatalf("the handle opened by %s sees %d intents (the first orphaned: %v); want the one of the handle opened by %s, alive",
						pb, len(intents), len(intents) > 0 && intents[0].Orphaned, pa)
				}
				a.Close()
				if intents, err = b.Intents(ctx); err != nil {
					t.Fatal(err)
				}
				if len(intents) != 1 || !intents[0].Orphaned {
					t.Fatalf("after the other handle closed, %d intents (the first orphaned: %v); want it orphaned",
						len(intents), len(intents) > 0 && intents[0].Orphaned)
				}
			})
		}
	}
}

// TestOpenSQLiteWithoutMigrating: the commands that work beside a server
// open its store with SQLiteNoMigrate, which opens a store of this code's
// schema and refuses anything else, leaving it as it was: a store of an
// older schema (a newer binary upgrading it would stop its older server
// from restarting), a missing or empty file (not made into a store), and
// another program's database (not even switched to WAL mode).
func TestOpenSQLiteWithoutMigrating(t *testing.T) {
	ctx := context.Background()
	journalMode := func(t *testing.T, path string) string {
		t.Helper()
		var mode string
		if err := rawDB(t, path).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		return mode
	}
	t.Run("it opens a store of this schema, to read and write", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		appendAll(t, openSQLite(t, path), sampleRecords(2))
		s, err := OpenSQLite(path, SQLiteNoMigrate())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 2 {
			t.Fatalf("VerifyAudit = %+v, %v; want 2 intact records", rep, err)
		}
		appendAll(t, s, sampleRecords(1))
	})
	t.Run("it refuses a store of an older schema, and leaves it at that schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		db := rawDB(t, path)
		mustExec(t, db, `PRAGMA journal_mode = WAL`)
		mustExec(t, db, migrations[0])
		mustExec(t, db, migrations[1])
		mustExec(t, db, fmt.Sprintf(`PRAGMA application_id = %d`, applicationID))
		mustExec(t, db, `PRAGMA user_version = 2`)
		s, err := OpenSQLite(path, SQLiteNoMigrate())
		if err == nil {
			s.Close()
			t.Fatal("OpenSQLite succeeded")
		}
		var old *OldSchemaError
		if !errors.As(err, &old) || old.Version != 2 || old.Current != len(migrations) || !strings.Contains(err.Error(), path) {
			t.Fatalf("OpenSQLite = %v; want an OldSchemaError from 2 to %d naming %s", err, len(migrations), path)
		}
		var version int
		if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != 2 {
			t.Fatalf("user_version = %d, %v; want 2, as it was", version, err)
		}
	})
	refusals := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  string
		check func(t *testing.T, path string)
	}{
		{"a missing file, and creates neither it nor its directory", func(t *testing.T, path string) {}, "no such file",
			func(t *testing.T, path string) {
				if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the directory is there: %v", err)
				}
			}},
		{"an empty file, and leaves it empty", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "the file is empty, not a clink-mcp store", func(t *testing.T, path string) {
			if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
				t.Errorf("the file now has %d bytes, %v", len(b), err)
			}
		}},
		{"an empty SQLite database", func(t *testing.T, path string) {
			mustExec(t, rawDB(t, path), `PRAGMA user_version = 0`)
		}, "an empty SQLite database, not a clink-mcp store", func(t *testing.T, path string) {}},
		{"another program's database, and leaves its journal mode", func(t *testing.T, path string) {
			mustExec(t, rawDB(t, path), `CREATE TABLE notes (body TEXT)`)
		}, "another program", func(t *testing.T, path string) {
			if mode := journalMode(t, path); mode != "delete" {
				t.Errorf("journal_mode = %s, want delete, as it was", mode)
			}
		}},
		{"a store of a newer schema", func(t *testing.T, path string) {
			openSQLite(t, path).Close()
			mustExec(t, rawDB(t, path), `PRAGMA user_version = 99`)
		}, "newer than this clink-mcp understands", func(t *testing.T, path string) {}},
	}
	for _, tt := range refusals {
		t.Run("it refuses "+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			if strings.HasPrefix(tt.name, "a missing") {
				path = filepath.Join(dir, "sub", "state.db")
			}
			tt.setup(t, path)
			s, err := OpenSQLite(path, SQLiteNoMigrate())
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tt.want) {
				t.Fatalf("OpenSQLite error %q, want it to name %s and say %q", msg, path, tt.want)
			}
			tt.check(t, path)
		})
	}
}
