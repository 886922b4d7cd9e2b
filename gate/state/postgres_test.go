//go:build postgres

// The PostgreSQL store's tests need a server: run them with
//
//	dir=$(mktemp -d); export CLINK_TEST_DATABASE_URL=$(.ci/postgres.sh start "$dir")
//	go test -tags postgres -race ./gate/state/
//	.ci/postgres.sh stop "$dir"
//
// The URL's user must be allowed to create databases: every test runs on a
// database of its own, dropped when it ends. TestPostgresPlansTheHoldOnce
// also needs PostgreSQL 13 or later with pg_stat_statements loaded
// (shared_preload_libraries) and a superuser, to count plans; the cluster
// of .ci/postgres.sh is all three. Without the URL they fail; they never
// skip.
package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/gate/state/statetest"
	"github.com/clink-mcp/clink-mcp/policy"
)

// TestMain fails the run at once, rather than test by test, without a
// database: built with the postgres tag, the package's tests never pass
// without testing PostgreSQL.
func TestMain(m *testing.M) {
	if os.Getenv("CLINK_TEST_DATABASE_URL") == "" {
		fmt.Fprintln(os.Stderr, "FAIL: CLINK_TEST_DATABASE_URL is not set: the tests built with the postgres tag need a PostgreSQL server whose user may create databases (.ci/postgres.sh start DIR prints its URL)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// adminURL is the database URL the tests were given.
func adminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("CLINK_TEST_DATABASE_URL")
	if u == "" {
		t.Fatal("CLINK_TEST_DATABASE_URL is not set: the postgres tests need a PostgreSQL server whose user may create databases (.ci/postgres.sh start DIR prints one)")
	}
	return u
}

var databases atomic.Int64

// freshDatabase creates an empty database for one test, dropped when the
// test ends, and returns its URL.
func freshDatabase(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	name := fmt.Sprintf("clink_test_%d_%d", os.Getpid(), databases.Add(1))
	adminExec(t, `CREATE DATABASE `+name)
	t.Cleanup(func() { adminExec(t, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	return withDatabase(t, admin, name)
}

// withDatabase returns the connection string u with its database set to name.
func withDatabase(t testing.TB, u, name string) string {
	t.Helper()
	if !strings.Contains(u, "://") {
		return u + " dbname=" + name
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal("CLINK_TEST_DATABASE_URL is not a valid URL")
	}
	parsed.Path = "/" + name
	return parsed.String()
}

// adminExec runs q on the database the tests were given.
func adminExec(t testing.TB, q string, args ...any) {
	t.Helper()
	sqlExec(t, adminURL(t), q, args...)
}

// sqlExec runs q on the database at u, as an operator's psql would.
func sqlExec(t testing.TB, u, q string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// openPostgres opens a handle on the database at u, closed when the test
// ends.
func openPostgres(t testing.TB, u string, opts ...state.PostgresOption) *state.Postgres {
	t.Helper()
	s, err := state.OpenPostgres(context.Background(), u, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgresConformance runs the suite Memory and SQLite run, each case
// on a database of its own, every handle opened with OpenPostgres as
// another replica would. The suite travels in time, so the handles judge
// windows by the time it passes (PostgresClientClock);
// TestPostgresJudgesByTheDatabaseClock covers the default.
func TestPostgresConformance(t *testing.T) {
	statetest.Run(t, func(t testing.TB) func() state.Store {
		u := freshDatabase(t)
		return func() state.Store { return openPostgres(t, u, state.PostgresClientClock()) }
	})
}

// pgDay is a fixed time for the tests that pass a client clock.
var pgDay = time.Date(2025, 3, 1, 23, 59, 0, 0, time.UTC)

func pgBudget(key string, window time.Duration, maxAmount, add int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindBudget, Window: window, Max: maxAmount, Add: add}
}

func pgRate(key string, window time.Duration, maxCalls int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindRate, Window: window, Max: maxCalls, Add: 1}
}

// pgHold is the Hold of one call with a claim of its own.
func pgHold(call string, at time.Time, limits []policy.Limit) *state.Hold {
	return &state.Hold{
		At:     at,
		Claim:  &state.Claim{Key: "create_checkout_session|" + call, Call: call, Fingerprint: "f", At: at, Window: 10 * time.Minute},
		Limits: limits,
		Intent: state.AuditRecord{Time: at, Kind: state.KindIntent, Call: call, Caller: "agent-7",
			Tool: "create_checkout_session", Decision: "allowed", Amount: "7.00", Currency: "USD"},
	}
}

// pgComplete is the Completion of the call h held.
func pgComplete(h *state.Hold, s policy.Settlement, replay []byte) *state.Completion {
	return &state.Completion{Call: h.Intent.Call, Settlement: s, ClaimKey: h.Claim.Key, Replay: replay,
		Record: state.AuditRecord{Time: h.At, Kind: state.KindOutcome, Call: h.Intent.Call, Caller: h.Intent.Caller,
			Tool: h.Intent.Tool, Decision: "created", SessionID: "sess_" + h.Intent.Call}}
}

// queryInt runs a query returning one integer on the database at u.
func queryInt(t testing.TB, u, q string, args ...any) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// sqlTry runs q on the database at u and returns its error.
func sqlTry(t testing.TB, u, q string) error {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, q)
	return err
}

// databaseName is the database of the URL u.
func databaseName(t testing.TB, u string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal("the test database URL does not parse")
	}
	return cfg.Database
}

// TestPostgresJudgesByTheDatabaseClock: by default the time a caller
// passes changes nothing. A replica whose clock is two days ahead can
// neither expire the others' entries nor a claim; one two days behind
// cannot make its entries leave the window early; windows pass in the
// database's time; Clock reports how far the caller's clock is off.
func TestPostgresJudgesByTheDatabaseClock(t *testing.T) {
	ctx := context.Background()
	const skew = 48 * time.Hour
	t.Run("entries made now still count for a caller two days ahead", func(t *testing.T) {
		u := freshDatabase(t)
		inStep, ahead := openPostgres(t, u), openPostgres(t, u)
		l := func(add int64) []policy.Limit {
			return []policy.Limit{pgBudget("budget|*|USD|24h|", 24*time.Hour, 100_000, add)}
		}
		if _, err := inStep.Reserve(ctx, time.Now(), l(100_000)); err != nil {
			t.Fatal(err)
		}
		if _, err := ahead.Clock(ctx, time.Now().Add(skew)); err != nil {
			t.Fatal(err)
		}
		var d *policy.Denied
		_, err := ahead.Reserve(ctx, time.Now().Add(skew), l(1))
		if !errors.As(err, &d) || d.Used != 100_000 {
			t.Fatalf("Reserve two days ahead = %v, want a denial with Used 100000", err)
		}
		if retry := time.Until(d.RetryAt); retry < 24*time.Hour-time.Minute || retry > 24*time.Hour+time.Minute {
			t.Errorf("RetryAt is %v from now, want about 24h: the window is judged by the database's clock", retry.Round(time.Second))
		}
		if err := ahead.Check(ctx, time.Now().Add(skew), l(1)); !errors.As(err, &d) {
			t.Errorf("Check two days ahead = %v, want a denial", err)
		}
		h := pgHold("call-ahead", time.Now().Add(skew), l(1))
		if _, err := ahead.Hold(ctx, h); !errors.As(err, &d) {
			t.Errorf("Hold two days ahead = %v, want a denial", err)
		}
	})
	t.Run("a caller two days behind cannot make its entries leave early", func(t *testing.T) {
		u := freshDatabase(t)
		behind, inStep := openPostgres(t, u), openPostgres(t, u)
		l := []policy.Limit{pgRate("rate|*|1m|", time.Minute, 1)}
		if _, err := behind.Reserve(ctx, time.Now().Add(-skew), l); err != nil {
			t.Fatal(err)
		}
		var d *policy.Denied
		if _, err := inStep.Reserve(ctx, time.Now(), l); !errors.As(err, &d) || d.Used != 1 {
			t.Fatalf("Reserve now after a call stamped two days ago = %v, want a denial with Used 1: the entry was made now", err)
		}
		if _, err := behind.Reserve(ctx, time.Now().Add(-skew), l); !errors.As(err, &d) {
			t.Fatalf("a second Reserve two days behind = %v, want a denial", err)
		}
	})
	t.Run("a claim's window is judged by the database's clock", func(t *testing.T) {
		u := freshDatabase(t)
		a, b := openPostgres(t, u), openPostgres(t, u)
		c := state.Claim{Key: "tool|idem-1", Call: "c1", Fingerprint: "f", At: time.Now().Add(-skew), Window: 10 * time.Minute}
		if p, err := a.Claim(ctx, c); err != nil || p.State != state.ClaimNew {
			t.Fatalf("Claim = %+v, %v; want it new", p, err)
		}
		c.Call, c.At = "c2", time.Now().Add(skew)
		if p, err := b.Claim(ctx, c); err != nil || p.State != state.ClaimInFlight {
			t.Fatalf("Claim two days ahead = %+v, %v; want the first in flight", p, err)
		}
		if err := a.Finish(ctx, c.Key, []byte("result")); err != nil {
			t.Fatal(err)
		}
		if p, err := b.Claim(ctx, c); err != nil || p.State != state.ClaimDone || string(p.Result) != "result" {
			t.Fatalf("Claim two days ahead after Finish = %+v, %v; want the result", p, err)
		}
	})
	t.Run("windows pass in the database's time whatever the caller passes", func(t *testing.T) {
		s := openPostgres(t, freshDatabase(t))
		l := []policy.Limit{pgRate("rate|*|1s|", time.Second, 1)}
		frozen := time.Now().Add(-skew)
		if _, err := s.Reserve(ctx, frozen, l); err != nil {
			t.Fatal(err)
		}
		var d *policy.Denied
		if _, err := s.Reserve(ctx, frozen, l); !errors.As(err, &d) {
			t.Fatalf("a second call within the second = %v, want a denial", err)
		}
		time.Sleep(1100 * time.Millisecond)
		if _, err := s.Reserve(ctx, frozen, l); err != nil {
			t.Fatalf("a call after the window passed = %v, want it to fit", err)
		}
	})
	t.Run("Clock reports how far the caller's clock is from the database's", func(t *testing.T) {
		s := openPostgres(t, freshDatabase(t))
		if ahead, err := s.Clock(ctx, time.Now()); err != nil || ahead < -5*time.Second || ahead > 5*time.Second {
			t.Errorf("Clock in step = %v, %v; want about 0", ahead, err)
		}
		if ahead, err := s.Clock(ctx, time.Now().Add(skew)); err != nil || ahead > -skew+5*time.Second || ahead < -skew-5*time.Second {
			t.Errorf("Clock two days ahead = %v, %v; want the database about %v behind", ahead, err, skew)
		}
	})
}

// TestPostgresNeverAuthorisesMoreThanTheBudgetAcrossHandles: three
// handles, as three replicas, each with 50 goroutines, against one
// budget: exactly as many calls as fit are allowed, whatever the
// interleaving and the order in which a call lists its limits.
func TestPostgresNeverAuthorisesMoreThanTheBudgetAcrossHandles(t *testing.T) {
	const (
		replicas, perReplica = 3, 50
		maxAmount, add       = 1000, 7
		fit                  = maxAmount / add // 142 of 150
	)
	ctx := context.Background()
	limits := func(i int) []policy.Limit {
		l := []policy.Limit{pgBudget("budget|*|USD|24h|", 24*time.Hour, maxAmount, add), pgRate("rate|*|1h|", time.Hour, 1000)}
		if i%2 == 1 { // the other order: rows are still locked in key order
			l[0], l[1] = l[1], l[0]
		}
		return l
	}
	// hammer runs call on every handle from perReplica goroutines each, and
	// returns how many were allowed.
	hammer := func(t *testing.T, handles []*state.Postgres, call func(s *state.Postgres, i int) error) int64 {
		var (
			wg      sync.WaitGroup
			allowed atomic.Int64
		)
		start := make(chan struct{})
		for i := range replicas * perReplica {
			wg.Go(func() {
				<-start
				var d *policy.Denied
				switch err := call(handles[i%replicas], i); {
				case err == nil:
					allowed.Add(1)
				case errors.As(err, &d):
					if d.Used+add <= maxAmount && limits(i)[d.Limit].Kind == policy.KindBudget {
						t.Errorf("denied while %d+%d fits in %d", d.Used, add, maxAmount)
					}
				default:
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		return allowed.Load()
	}
	open := func(t *testing.T) []*state.Postgres {
		u := freshDatabase(t)
		var hs []*state.Postgres
		for range replicas {
			hs = append(hs, openPostgres(t, u))
		}
		return hs
	}
	t.Run("Reserve", func(t *testing.T) {
		handles := open(t)
		got := hammer(t, handles, func(s *state.Postgres, i int) error {
			_, err := s.Reserve(ctx, time.Now(), limits(i))
			return err
		})
		if got != fit {
			t.Fatalf("%d reservations allowed, want %d", got, fit)
		}
		var d *policy.Denied
		if _, err := handles[1].Reserve(ctx, time.Now(), limits(0)); !errors.As(err, &d) || d.Used != fit*add {
			t.Fatalf("Reserve on the full budget = %v, want a denial with Used %d", err, fit*add)
		}
	})
	t.Run("Hold and Complete", func(t *testing.T) {
		handles := open(t)
		var (
			mu    sync.Mutex
			holds = map[string]*state.Hold{}
		)
		got := hammer(t, handles, func(s *state.Postgres, i int) error {
			h := pgHold(fmt.Sprintf("call-%d", i), time.Now(), limits(i))
			held, err := s.Hold(ctx, h)
			if err == nil {
				if held.Prior.State != state.ClaimNew {
					return fmt.Errorf("hold %d found its own claim %v", i, held.Prior.State)
				}
				mu.Lock()
				holds[h.Intent.Call] = h
				mu.Unlock()
			}
			return err
		})
		if got != fit {
			t.Fatalf("%d holds allowed, want %d", got, fit)
		}
		intents, err := handles[0].Intents(ctx)
		if err != nil || len(intents) != fit {
			t.Fatalf("Intents = %d, %v; want %d open", len(intents), err, fit)
		}
		// Every call ends, released, on the handle that held it, all at once.
		var wg sync.WaitGroup
		i := 0
		for _, h := range holds {
			s := handles[i%replicas]
			i++
			wg.Go(func() {
				if err := s.Complete(ctx, pgComplete(h, policy.Released, nil)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		rep, err := state.VerifyAudit(ctx, handles[2])
		if err != nil || !rep.OK() || rep.Records != 2*fit {
			t.Fatalf("VerifyAudit = %+v, %v; want %d records in one intact chain, none open", rep, err, 2*fit)
		}
		if _, err := handles[1].Reserve(ctx, time.Now(), []policy.Limit{pgBudget("budget|*|USD|24h|", 24*time.Hour, maxAmount, maxAmount)}); err != nil {
			t.Fatalf("Reserve of the whole budget after every call was released = %v", err)
		}
	})
	t.Run("identical claims", func(t *testing.T) {
		handles := open(t)
		var news atomic.Int64
		hammer(t, handles, func(s *state.Postgres, i int) error {
			p, err := s.Claim(ctx, state.Claim{Key: "tool|idem-1", Call: fmt.Sprint(i), Fingerprint: "f", At: time.Now(), Window: time.Hour})
			if err == nil && p.State == state.ClaimNew {
				news.Add(1)
			}
			return err
		})
		if n := news.Load(); n != 1 {
			t.Fatalf("%d new claims, want 1", n)
		}
	})
}

// TestPostgresWaitClaimWakesOnAnotherHandle: a call waiting on one
// replica for an identical call in flight on another wakes when that call
// finishes, drops or completes its claim, in far less than the two
// seconds it waits at most.
func TestPostgresWaitClaimWakesOnAnotherHandle(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	a, b := openPostgres(t, u), openPostgres(t, u)
	ends := []struct {
		name string
		end  func(t *testing.T, h *state.Hold)
	}{
		{"Finish", func(t *testing.T, h *state.Hold) {
			if err := a.Finish(ctx, h.Claim.Key, []byte("r")); err != nil {
				t.Fatal(err)
			}
		}},
		{"Drop", func(t *testing.T, h *state.Hold) {
			if err := a.Drop(ctx, h.Claim.Key); err != nil {
				t.Fatal(err)
			}
		}},
		{"Complete", func(t *testing.T, h *state.Hold) {
			if err := a.Complete(ctx, pgComplete(h, policy.Spent, []byte("r"))); err != nil {
				t.Fatal(err)
			}
		}},
		{"Complete without a replay", func(t *testing.T, h *state.Hold) {
			if err := a.Complete(ctx, pgComplete(h, policy.Released, nil)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, e := range ends {
		t.Run(e.name, func(t *testing.T) {
			h := pgHold(fmt.Sprintf("call-%d", i), time.Now(), nil)
			if _, err := a.Hold(ctx, h); err != nil {
				t.Fatal(err)
			}
			woke := make(chan error, 1)
			go func() {
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				woke <- b.WaitClaim(wctx, h.Claim.Key)
			}()
			waitFor(t, "the waiter to listen", func() bool { return state.PostgresWaiters(b) == 1 })
			// Its mark on the claim is what makes the end announced.
			waitFor(t, "the claim marked waited on", func() bool {
				return queryInt(t, u, `SELECT count(*) FROM claims WHERE key = $1 AND waited`, h.Claim.Key) == 1
			})
			ended := time.Now()
			e.end(t, h)
			if err := <-woke; err != nil {
				t.Fatalf("WaitClaim = %v, want it woken", err)
			}
			d := time.Since(ended)
			if d > time.Second {
				t.Fatalf("WaitClaim woke %v after the claim ended, want far less than its 2s", d)
			}
			t.Logf("woke %v after the claim ended", d.Round(time.Millisecond))
		})
	}
	t.Run("another claim's end does not wake it", func(t *testing.T) {
		for _, key := range []string{"other", "mine"} {
			if _, err := a.Claim(ctx, state.Claim{Key: key, Call: "x", Fingerprint: "f", At: time.Now(), Window: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
		woke := make(chan error, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			woke <- b.WaitClaim(wctx, "mine")
		}()
		waitFor(t, "the waiter to listen", func() bool { return state.PostgresWaiters(b) == 1 })
		if err := a.Finish(ctx, "other", nil); err != nil {
			t.Fatal(err)
		}
		if err := <-woke; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitClaim = %v, want its context's deadline", err)
		}
	})
	t.Run("a closed handle does not wait", func(t *testing.T) {
		c := openPostgres(t, u)
		c.Close()
		if err := c.WaitClaim(ctx, "k"); err == nil {
			t.Fatal("WaitClaim on a closed handle = nil, want an error")
		}
	})
}

// listeners counts the LISTEN connections on the database at u.
func listeners(t testing.TB, u string) int64 {
	return queryInt(t, adminURL(t), `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'clink-mcp listener'`,
		databaseName(t, u))
}

// waitFor polls cond until it holds, failing after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPostgresWaitClaimSurvivesALostListenConnection: while a handle's
// LISTEN connection is down its waiters return soon, to look again; it
// reconnects by itself, and wakes them again on the next notification.
func TestPostgresWaitClaimSurvivesALostListenConnection(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	a, b := openPostgres(t, u), openPostgres(t, u)
	if n := listeners(t, u); n != 2 {
		t.Fatalf("%d LISTEN connections, want one per handle", n)
	}
	if _, err := a.Claim(ctx, state.Claim{Key: "k0", Call: "c0", Fingerprint: "f", At: time.Now(), Window: time.Hour}); err != nil {
		t.Fatal(err)
	}
	woke := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		woke <- b.WaitClaim(wctx, "k0")
	}()
	waitFor(t, "the waiter to listen", func() bool { return state.PostgresWaiters(b) == 1 })
	adminExec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'clink-mcp listener'`,
		databaseName(t, u))
	lost := time.Now()
	if err := <-woke; err != nil {
		t.Fatalf("WaitClaim when its connection dropped = %v, want nil (look again)", err)
	}
	if d := time.Since(lost); d > 2*time.Second {
		t.Fatalf("WaitClaim returned %v after its connection dropped, want soon", d)
	}
	// The database shows the connection before the handle has sent LISTEN
	// and marked itself connected: a WaitClaim in between pauses rather
	// than listens, so wait for the handle's own view too.
	waitFor(t, "the LISTEN connections to come back", func() bool {
		return listeners(t, u) == 2 && state.PostgresListening(a) && state.PostgresListening(b)
	})
	// Back: a waiter sleeps until the claim ends, and wakes at once.
	if _, err := a.Claim(ctx, state.Claim{Key: "k", Call: "c", Fingerprint: "f", At: time.Now(), Window: time.Hour}); err != nil {
		t.Fatal(err)
	}
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		woke <- b.WaitClaim(wctx, "k")
	}()
	waitFor(t, "the waiter to listen", func() bool { return state.PostgresWaiters(b) == 1 })
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-woke:
		t.Fatalf("WaitClaim returned %v before the claim ended", err)
	default:
	}
	if err := a.Finish(ctx, "k", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("WaitClaim after reconnecting = %v, want it woken", err)
	}
}

// TestPostgresFailsClosedAndRecovers: with the database gone every
// operation fails (the gate then refuses calls), with errors that do not
// show the password; when it returns, the pool reconnects by itself and
// nothing was lost.
func TestPostgresFailsClosedAndRecovers(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	name := databaseName(t, u)
	password := ""
	if cfg, err := pgx.ParseConfig(u); err == nil {
		password = cfg.Password
	}
	s := openPostgres(t, u)
	l := []policy.Limit{pgBudget("b", time.Hour, 100, 60)}
	h := pgHold("call-1", time.Now(), l)
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}

	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`)
	adminExec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	reenabled := false
	t.Cleanup(func() {
		if !reenabled {
			adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)
		}
	})
	failing := map[string]func() error{
		"Ping": func() error { return s.Ping(ctx) },
		"Reserve": func() error {
			_, err := s.Reserve(ctx, time.Now(), []policy.Limit{pgBudget("b", time.Hour, 100, 1)})
			return err
		},
		"Check": func() error { return s.Check(ctx, time.Now(), l) },
		"Hold": func() error {
			_, err := s.Hold(ctx, pgHold("call-2", time.Now(), l))
			return err
		},
		"Complete": func() error { return s.Complete(ctx, pgComplete(h, policy.Spent, []byte("r"))) },
		"Clock": func() error {
			_, err := s.Clock(ctx, time.Now())
			return err
		},
		"Intents": func() error {
			_, err := s.Intents(ctx)
			return err
		},
	}
	for op, fn := range failing {
		err := fn()
		var d *policy.Denied
		switch {
		case err == nil:
			t.Errorf("%s with the database gone succeeded", op)
		case errors.As(err, &d):
			t.Errorf("%s with the database gone = %v, want an error, not a denial", op, err)
		case password != "" && strings.Contains(fmt.Sprintf("%v %+v", err, err), password):
			t.Errorf("%s's error shows the password", op)
		}
	}

	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)
	reenabled = true
	waitFor(t, "Ping to succeed", func() bool { return s.Ping(ctx) == nil })
	var d *policy.Denied
	if _, err := s.Reserve(ctx, time.Now(), []policy.Limit{pgBudget("b", time.Hour, 100, 41)}); !errors.As(err, &d) || d.Used != 60 {
		t.Fatalf("Reserve after the database returned = %v, want a denial with Used 60: the held call still counts", err)
	}
	if _, err := s.Reserve(ctx, time.Now(), []policy.Limit{pgBudget("b", time.Hour, 100, 40)}); err != nil {
		t.Fatalf("Reserve of what is left after the database returned = %v", err)
	}
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 1 || intents[0].Orphaned {
		t.Fatalf("Intents after the database returned = %+v, %v; want the held call, not orphaned", intents, err)
	}
	if err := s.Complete(ctx, pgComplete(h, policy.Spent, []byte("r"))); err != nil {
		t.Fatalf("Complete after the database returned = %v", err)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 2 {
		t.Fatalf("VerifyAudit = %+v, %v; want 2 records, intact", rep, err)
	}
	waitFor(t, "the LISTEN connection to come back", func() bool { return listeners(t, u) == 1 })

	// Backends ended while the database stays up: the next calls do not
	// fail for the pool's dead connections.
	adminExec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	if _, err := s.Reserve(ctx, time.Now(), []policy.Limit{pgRate("r", time.Hour, 10)}); err != nil {
		t.Fatalf("Reserve just after the backends ended = %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping just after the backends ended = %v", err)
	}
}

// TestOpenPostgresNeverShowsThePassword: the database URL holds a
// password; no error shows it, nor String.
func TestOpenPostgresNeverShowsThePassword(t *testing.T) {
	const password = "Zq9-Tr0ub4dor-Secret"
	real := adminURL(t)
	parsed, err := url.Parse(real)
	if err != nil {
		t.Fatal("CLINK_TEST_DATABASE_URL is not a valid URL")
	}
	parsed.User = url.UserPassword(parsed.User.Username(), password)
	wrongPassword := parsed.String()
	tests := []struct{ name, url string }{
		{"a port nothing listens on", "postgres://clink:" + password + "@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"},
		{"a wrong password", wrongPassword},
		{"a URL that does not parse", "postgres://clink:" + password + "@127.0.0.1:notaport/postgres"},
		{"a password in the query", "postgres://clink@127.0.0.1:1/postgres?sslmode=disable&password=" + password},
		{"a keyword/value string", "host=127.0.0.1 port=1 user=clink password=" + password + " sslmode=disable connect_timeout=5"},
		{"a keyword/value string that does not parse", "host=127.0.0.1 port=notaport password='" + password + "'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := state.OpenPostgres(context.Background(), tt.url)
			if err == nil {
				s.Close()
				t.Fatal("OpenPostgres succeeded")
			}
			for e := err; e != nil; e = errors.Unwrap(e) {
				if text := fmt.Sprintf("%v|%+v|%#v", e, e, e); strings.Contains(text, password) {
					t.Fatalf("the error shows the password: %s", strings.ReplaceAll(text, password, "<PASSWORD>"))
				}
			}
			var ce *pgconn.ConnectError
			if errors.As(err, &ce) {
				t.Fatal("the error wraps pgx's ConnectError, whose Config holds the password")
			}
			t.Logf("OpenPostgres: %v", err)
		})
	}
	t.Run("String and %#v", func(t *testing.T) {
		s := openPostgres(t, freshDatabase(t))
		cfg, _ := pgx.ParseConfig(real)
		for _, text := range []string{s.String(), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
			if cfg.Password != "" && strings.Contains(text, cfg.Password) {
				t.Fatal("the store's text shows the password")
			}
		}
		if !strings.Contains(s.String(), "127.0.0.1") && !strings.Contains(s.String(), "/") {
			t.Errorf("String = %q, want it to name the database", s)
		}
	})
}

// migrationTracer records, for each statement a handle sends, whether its
// connection was inside a transaction.
type migrationTracer struct {
	mu    sync.Mutex
	stmts []tracedStatement
}

type tracedStatement struct {
	sql  string
	inTx bool
}

func (m *migrationTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stmts = append(m.stmts, tracedStatement{sql: data.SQL, inTx: conn.PgConn().TxStatus() != 'I'})
	return ctx
}

func (m *migrationTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestPostgresMigratesUnderATransactionLock: behind a pooler in
// transaction mode (pgbouncer), a client's statements outside a
// transaction run on whichever server session is free. A session-level
// migration lock was so taken on one server session while the steps ran
// on others, and its unlock missed it: replicas starting together through
// pgbouncer ran migration 1 side by side (all but one failing to start),
// and the lock stayed held on a server session after they had all gone.
// The lock must be taken inside the transaction that migrates.
func TestPostgresMigratesUnderATransactionLock(t *testing.T) {
	u := freshDatabase(t)
	tr := &migrationTracer{}
	openPostgres(t, u, state.PostgresTracer(tr)).Close()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	locks := 0
	for _, st := range tr.stmts {
		if !strings.Contains(st.sql, "pg_advisory") {
			continue
		}
		locks++
		if !st.inTx || !strings.Contains(st.sql, "pg_advisory_xact_lock") {
			t.Errorf("the migration lock is taken or released outside a transaction: %q", st.sql)
		}
	}
	if locks == 0 {
		t.Fatal("the migration took no lock")
	}
	if n := queryInt(t, u, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'`); n != 0 {
		t.Errorf("%d advisory locks are held once the migration is over", n)
	}
}

// TestPostgresMigrations: the schema is versioned in the database and
// applied once, however many replicas start together; a newer schema, or
// another program's table, is refused.
func TestPostgresMigrations(t *testing.T) {
	ctx := context.Background()
	t.Run("replicas starting together migrate once", func(t *testing.T) {
		u := freshDatabase(t)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				s, err := state.OpenPostgres(ctx, u)
				if err != nil {
					t.Error(err)
					return
				}
				s.Close()
			})
		}
		wg.Wait()
		rows, latest := queryInt(t, u, `SELECT count(*) FROM schema_migrations`), queryInt(t, u, `SELECT max(version) FROM schema_migrations`)
		if rows < 1 || rows != latest {
			t.Fatalf("schema_migrations holds %d rows up to version %d, want each version once", rows, latest)
		}
		s := openPostgres(t, u)
		if _, err := s.Reserve(ctx, time.Now(), []policy.Limit{pgRate("r", time.Minute, 1)}); err != nil {
			t.Fatal(err)
		}
	})
	// docs/operations.md's way back to an older binary: remove the
	// records of the steps it does not know; the next start of this one
	// applies them again.
	t.Run("steps 4 and 5 apply again once their records are removed", func(t *testing.T) {
		u := freshDatabase(t)
		openPostgres(t, u).Close()
		generic := `SELECT count(*) FROM pg_proc WHERE proname = 'clink_hold' AND 'plan_cache_mode=force_generic_plan' = ANY(proconfig)`
		for _, removed := range []string{`version = 5`, `version >= 4`} {
			sqlExec(t, u, `DELETE FROM schema_migrations WHERE `+removed)
			s := openPostgres(t, u)
			if rows, latest := queryInt(t, u, `SELECT count(*) FROM schema_migrations`), queryInt(t, u, `SELECT max(version) FROM schema_migrations`); rows != 5 || latest != 5 {
				t.Fatalf("after removing %s: schema_migrations holds %d rows up to version %d, want 5", removed, rows, latest)
			}
			if n := queryInt(t, u, generic); n != 1 {
				t.Fatalf("after removing %s: clink_hold has plan_cache_mode set %d times, want once", removed, n)
			}
			if _, err := s.Hold(ctx, pgHold("c-"+removed, time.Now(), []policy.Limit{pgRate("r-"+removed, time.Minute, 1)})); err != nil {
				t.Fatalf("after removing %s: Hold: %v", removed, err)
			}
		}
	})
	t.Run("a database with a newer schema is refused", func(t *testing.T) {
		u := freshDatabase(t)
		openPostgres(t, u).Close()
		sqlExec(t, u, `INSERT INTO schema_migrations (version, name) VALUES (99, 'from a later clink-mcp')`)
		_, err := state.OpenPostgres(ctx, u)
		if err == nil || !strings.Contains(err.Error(), "schema version 99, newer than this clink-mcp understands") {
			t.Fatalf("OpenPostgres = %v, want the newer schema refused", err)
		}
	})
	// The audit and approvals commands open the store with
	// PostgresNoMigrate: a newer binary used to read it must not upgrade
	// it under the older replicas serving it.
	t.Run("without migrating, a database of this schema opens", func(t *testing.T) {
		u := freshDatabase(t)
		openPostgres(t, u).Close()
		s := openPostgres(t, u, state.PostgresNoMigrate())
		if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() {
			t.Fatalf("VerifyAudit = %+v, %v", rep, err)
		}
	})
	t.Run("without migrating, an older schema is refused and left as it was", func(t *testing.T) {
		u := freshDatabase(t)
		openPostgres(t, u).Close()
		latest := queryInt(t, u, `SELECT max(version) FROM schema_migrations`)
		sqlExec(t, u, `DELETE FROM schema_migrations WHERE version = $1`, latest)
		_, err := state.OpenPostgres(ctx, u, state.PostgresNoMigrate())
		var old *state.OldSchemaError
		if !errors.As(err, &old) || int64(old.Version) != latest-1 || int64(old.Current) != latest {
			t.Fatalf("OpenPostgres = %v, want an OldSchemaError from %d to %d", err, latest-1, latest)
		}
		if now := queryInt(t, u, `SELECT max(version) FROM schema_migrations`); now != latest-1 {
			t.Fatalf("the schema is now at %d, want %d as it was", now, latest-1)
		}
	})
	t.Run("without migrating, a database without the store is refused and left empty", func(t *testing.T) {
		u := freshDatabase(t)
		_, err := state.OpenPostgres(ctx, u, state.PostgresNoMigrate())
		if err == nil || !strings.Contains(err.Error(), "holds no clink-mcp store") {
			t.Fatalf("OpenPostgres = %v, want the empty database refused", err)
		}
		if n := queryInt(t, u, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`); n != 0 {
			t.Fatalf("the database now has %d tables, want none", n)
		}
	})
	t.Run("another program's schema_migrations is refused", func(t *testing.T) {
		u := freshDatabase(t)
		sqlExec(t, u, `CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)`)
		sqlExec(t, u, `INSERT INTO schema_migrations VALUES (20240101, false)`)
		_, err := state.OpenPostgres(ctx, u)
		if err == nil || !strings.Contains(err.Error(), "another program") {
			t.Fatalf("OpenPostgres = %v, want another program's table refused", err)
		}
	})
}

// TestPostgresAuditTrail: every handle appends to one hash chain, which
// verifies and exports; the database refuses edits to it, and edits made
// with its guards dropped are named.
func TestPostgresAuditTrail(t *testing.T) {
	ctx := context.Background()
	t.Run("handles append to one chain", func(t *testing.T) {
		u := freshDatabase(t)
		handles := []*state.Postgres{openPostgres(t, u), openPostgres(t, u), openPostgres(t, u)}
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				r := state.AuditRecord{Time: time.Now(), Tool: "t", Decision: fmt.Sprint(i), Caller: "agent"}
				if err := handles[i%3].AppendAudit(ctx, &r); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		reader := openPostgres(t, u)
		rep, err := state.VerifyAudit(ctx, reader)
		if err != nil || !rep.OK() || rep.Records != 60 {
			t.Fatalf("VerifyAudit = %+v, %v; want 60 records, intact", rep, err)
		}
		var buf bytes.Buffer
		if n, err := state.ExportAudit(ctx, reader, &buf); err != nil || n != 60 || strings.Count(buf.String(), "\n") != 60 {
			t.Fatalf("ExportAudit = %d, %v; want 60 lines", n, err)
		}
	})
	t.Run("the database refuses updates, deletes and truncation", func(t *testing.T) {
		u := freshDatabase(t)
		s := openPostgres(t, u)
		for range 2 {
			if err := s.AppendAudit(ctx, &state.AuditRecord{Time: time.Now(), Tool: "t", Decision: "created"}); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []string{`UPDATE audit SET tool = 'x' WHERE seq = 1`, `DELETE FROM audit WHERE seq = 2`, `TRUNCATE audit`} {
			if err := sqlTry(t, u, q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v, want an append-only error", q, err)
			}
		}
	})
	t.Run("edits made with the guards dropped are named", func(t *testing.T) {
		u := freshDatabase(t)
		s := openPostgres(t, u)
		for i := range 5 {
			if err := s.AppendAudit(ctx, &state.AuditRecord{Time: time.Now(), Tool: "t", Decision: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		sqlExec(t, u, `ALTER TABLE audit DISABLE TRIGGER USER`)
		sqlExec(t, u, `UPDATE audit SET amount = '9999.00' WHERE seq = 3`)
		rep, err := state.VerifyAudit(ctx, s)
		if err != nil || rep.Broken == nil || rep.Broken.Seq != 3 || !strings.Contains(rep.Broken.Reason, "altered") {
			t.Fatalf("VerifyAudit = %+v, %v; want record 3 named as altered", rep, err)
		}
		sqlExec(t, u, `UPDATE audit SET amount = '' WHERE seq = 3`)
		sqlExec(t, u, `DELETE FROM audit WHERE seq = 5`)
		if rep, err = state.VerifyAudit(ctx, s); err != nil || rep.Broken == nil || rep.Broken.Seq != 5 {
			t.Fatalf("VerifyAudit = %+v, %v; want the deleted last record named", rep, err)
		}
	})
}

// TestPostgresOrphansTheIntentsOfAHandleWhoseLeasePassed: a replica that
// stops renewing its lease (its process died, or lost the database) is
// gone once the lease has passed, in database time; renewing makes it an
// owner again, and closing orphans its intents at once.
func TestPostgresOrphansTheIntentsOfAHandleWhoseLeasePassed(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	const lease = 2 * time.Second
	// b judges with the same lease: no lease passes until the database has
	// been up that long (pqIntents), and a cluster just started is not.
	a, b := openPostgres(t, u, state.PostgresLease(lease)), openPostgres(t, u, state.PostgresLease(lease))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	orphaned := func() bool {
		intents, err := b.Intents(ctx)
		if err != nil || len(intents) != 1 {
			t.Fatalf("Intents = %+v, %v; want 1", intents, err)
		}
		return intents[0].Orphaned
	}
	if orphaned() {
		t.Fatal("the intent of a handle within its lease is orphaned")
	}
	time.Sleep(lease + 500*time.Millisecond)
	if !orphaned() {
		t.Fatal("the intent of a handle whose lease passed is not orphaned")
	}
	if own, err := a.Intents(ctx); err != nil || len(own) != 1 || own[0].Orphaned {
		t.Fatalf("the handle's own Intents = %+v, %v; want its intent, not orphaned", own, err)
	}
	if _, err := a.Clock(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if orphaned() {
		t.Fatal("the intent is orphaned after its handle renewed its lease")
	}
	a.Close()
	if !orphaned() {
		t.Fatal("the intent of a closed handle is not orphaned")
	}
}

// orphaned reports whether s sees the open intent of call as orphaned; the
// test fails when s sees no such intent.
func orphaned(t *testing.T, s *state.Postgres, call string) bool {
	t.Helper()
	intents, err := s.Intents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range intents {
		if in.Call == call {
			return in.Orphaned
		}
	}
	t.Fatalf("Intents = %+v; want the intent of %s", intents, call)
	return false
}

// TestPostgresLeasesThatPassedWhileTheDatabaseWasAwayAreNotJudged: when
// the database is out of reach for longer than a lease, every live
// handle's lease passes at once; a handle that has just got the database
// back judges no other dead for a lease (the others renew meanwhile), and
// after that as before. Without the grace, the first sweep after an
// outage resolved the live replicas' calls in flight as outcome_unknown.
func TestPostgresLeasesThatPassedWhileTheDatabaseWasAwayAreNotJudged(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	const lease = 2 * time.Second
	a, b := openPostgres(t, u, state.PostgresLease(lease)), openPostgres(t, u, state.PostgresLease(lease))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	name := databaseName(t, u)
	// The database turns both handles away for longer than a lease: b's
	// renewals fail, a (a live replica whose Clink call is slow) makes none.
	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`)
	adminExec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	away := time.Now()
	for time.Since(away) < lease+lease/2 {
		if _, err := b.Clock(ctx, time.Now()); err == nil {
			t.Fatal("a renewal succeeded while the database turned every connection away")
		}
		time.Sleep(lease / 4)
	}
	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)
	if _, err := b.Clock(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if orphaned(t, b, "call-1") {
		t.Fatal("a live handle's call is orphaned the moment the database is back: its lease passed while the database was away")
	}
	// A lease later, a handle that has not renewed is dead.
	time.Sleep(lease + lease/4)
	if !orphaned(t, b, "call-1") {
		t.Fatal("a lease after the database came back, the intent of a handle that never renewed is not orphaned")
	}
}

// TestPostgresAHandleWhoseRenewalFailedJudgesNoLeaseBeforeItRenews: the
// gate's beat renews (Clock) and then resolves orphans (Intents) whether
// the renewal failed or not. When the database comes back between the two,
// the handle has not renewed since its outage, and the leases of the
// other live handles passed while it was away: it must judge none of
// them until it has renewed and a lease has passed since, as after a
// renewal that succeeded.
func TestPostgresAHandleWhoseRenewalFailedJudgesNoLeaseBeforeItRenews(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	const lease = 2 * time.Second
	a, b := openPostgres(t, u, state.PostgresLease(lease)), openPostgres(t, u, state.PostgresLease(lease))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	name := databaseName(t, u)
	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`)
	adminExec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	away := time.Now()
	for time.Since(away) < lease+lease/2 {
		if _, err := b.Clock(ctx, time.Now()); err == nil {
			t.Fatal("a renewal succeeded while the database turned every connection away")
		}
		time.Sleep(lease / 4)
	}
	adminExec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)
	// b's last renewal failed; the database is back for its next read.
	if orphaned(t, b, "call-1") {
		t.Fatal("a live handle's call is orphaned by a handle whose last renewal failed: its lease passed while the database was away")
	}
	if _, err := b.Clock(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if orphaned(t, b, "call-1") {
		t.Fatal("a live handle's call is orphaned the moment the database is back")
	}
	time.Sleep(lease + lease/4)
	if !orphaned(t, b, "call-1") {
		t.Fatal("a lease after the database came back, the intent of a handle that never renewed is not orphaned")
	}
}

// TestPostgresADatabaseThatStopsAnsweringStartsTheGrace: a database cut
// off by a network that drops packets (no refusal, no reset) makes every
// renewal wait until its deadline (the gate gives its beat's renewal one);
// such a renewal failed for the database, not for a caller that gave up,
// and a handle that has just got the database back judges no lease that
// passed meanwhile, as after a refused connection.
func TestPostgresADatabaseThatStopsAnsweringStartsTheGrace(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	hole, viaHole := newBlackhole(t, u)
	const lease = 2 * time.Second
	a, b := openPostgres(t, u, state.PostgresLease(lease)), openPostgres(t, viaHole, state.PostgresLease(lease))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	// a is a live replica whose Clink call is slow and that cannot renew
	// either; b's beats time out.
	hole.drop.Store(true)
	away := time.Now()
	for time.Since(away) < lease+lease/2 {
		beat, cancel := context.WithTimeout(ctx, lease/4)
		_, err := b.Clock(beat, time.Now())
		cancel()
		if err == nil {
			t.Fatal("a renewal succeeded while the network dropped every packet")
		}
	}
	hole.heal()
	if _, err := b.Clock(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if orphaned(t, b, "call-1") {
		t.Fatal("a live handle's call is orphaned the moment the database answers again: its lease passed while the database did not")
	}
	time.Sleep(lease + lease/4)
	if !orphaned(t, b, "call-1") {
		t.Fatal("a lease after the database came back, the intent of a handle that never renewed is not orphaned")
	}
}

// blackhole is a proxy to the database that, while drop is set, passes
// nothing on either way and leaves the connections open, as a network that
// drops packets does.
type blackhole struct {
	ln     net.Listener
	target string
	drop   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

// newBlackhole starts a blackhole to the database of u and returns it with
// u pointing through it.
func newBlackhole(t *testing.T, u string) (*blackhole, string) {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		t.Fatal("the test database URL is not a URL with a host")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackhole{ln: ln, target: parsed.Host}
	t.Cleanup(func() { ln.Close(); h.closeAll() })
	go h.serve()
	parsed.Host = ln.Addr().String()
	return h, parsed.String()
}

func (h *blackhole) serve() {
	for {
		client, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, client)
		h.mu.Unlock()
		if h.drop.Load() {
			go io.Copy(io.Discard, client)
			continue
		}
		server, err := net.Dial("tcp", h.target)
		if err != nil {
			client.Close()
			continue
		}
		h.mu.Lock()
		h.conns = append(h.conns, server)
		h.mu.Unlock()
		go h.pass(server, client)
		go h.pass(client, server)
	}
}

// pass copies from src to dst, dropping what it reads while h drops.
func (h *blackhole) pass(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !h.drop.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// heal passes packets again; the connections open while they were
// dropped are reset, as their peers would once they hear of each other.
func (h *blackhole) heal() {
	h.drop.Store(false)
	h.closeAll()
}

func (h *blackhole) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// A renewal that fails only because its caller gave up (its context
// ended, the database answering) starts no grace: a dead handle's
// intents are still judged orphaned once its lease has passed.
func TestPostgresACancelledRenewalStartsNoGrace(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	const lease = 2 * time.Second
	a, b := openPostgres(t, u, state.PostgresLease(lease)), openPostgres(t, u, state.PostgresLease(lease))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease + lease/4) // a never renews: it is dead
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Hold(cancelled, pgHold("call-2", time.Now(), nil)); err == nil {
		t.Fatal("hold with a cancelled ctx succeeded")
	}
	if _, err := b.Clock(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !orphaned(t, b, "call-1") {
		t.Fatalf("a's intent (lease passed %v ago, no outage) is not orphaned: a cancelled request's renewal started a grace", lease/4)
	}
}

// TestPostgresLeasesThatPassedWhileTheDatabaseRestartedAreNotJudged: a
// handle opened just after a restart, which saw no outage of its own, does
// not judge leases that passed during it either, until the database has
// been up for a lease. It restarts the cluster .ci/postgres.sh started in
// CLINK_TEST_PG_DIR.
func TestPostgresLeasesThatPassedWhileTheDatabaseRestartedAreNotJudged(t *testing.T) {
	clusterDir := os.Getenv("CLINK_TEST_PG_DIR")
	if clusterDir == "" {
		t.Fatal("CLINK_TEST_PG_DIR is not set: this test restarts the cluster .ci/postgres.sh started in that folder")
	}
	ctx := context.Background()
	u := freshDatabase(t)
	a := openPostgres(t, u, state.PostgresLease(2*time.Second))
	if _, err := a.Hold(ctx, pgHold("call-1", time.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	if out, err := exec.Command("bash", "../../.ci/postgres.sh", "restart", clusterDir).CombinedOutput(); err != nil {
		t.Fatalf("restarting PostgreSQL: %v: %s", err, out)
	}
	const lease = 4 * time.Second // b's: the database must have been up this long
	b := openPostgres(t, u, state.PostgresLease(lease))
	time.Sleep(time.Until(held.Add(2*time.Second + 300*time.Millisecond))) // a's lease has passed
	if up := time.Duration(queryInt(t, u, `SELECT (extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()) * 1e9)::bigint`)); up >= lease {
		t.Fatalf("the database has been up %v since its restart, want less than %v to test anything", up, lease)
	}
	intents, err := b.Intents(ctx)
	if err != nil || len(intents) != 1 || intents[0].Orphaned {
		t.Fatalf("Intents = %+v, %v; want a's intent, not orphaned: its lease passed while the database restarted", intents, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		intents, err := b.Intents(ctx)
		if err == nil && len(intents) == 1 && intents[0].Orphaned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Intents = %+v, %v; want a's intent orphaned once the database has been up a lease", intents, err)
		}
	}
}

// TestPostgresSweepsWhatHasExpired: counters whose entries have all left
// their windows, claims past their windows, and commit tokens older than a
// day are deleted by the sweep
// that runs every so many writes, leaving the counts as they were.
func TestPostgresSweepsWhatHasExpired(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	s := openPostgres(t, u, state.PostgresClientClock())
	if _, err := s.Reserve(ctx, pgDay, []policy.Limit{pgBudget("old", time.Minute, 10, 4)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, state.Claim{Key: "old-claim", Call: "c", Fingerprint: "f", At: pgDay, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "old-claim", []byte("r")); err != nil {
		t.Fatal(err)
	}
	// Commit tokens are kept a day, in the database's time.
	for _, q := range []string{
		`INSERT INTO commits (token, at) VALUES ('old-token', clink_now(NULL) - 25 * 3600 * 1000000000::bigint)`,
		`INSERT INTO commits (token, at) VALUES ('new-token', clink_now(NULL) - 23 * 3600 * 1000000000::bigint)`,
	} {
		if err := sqlTry(t, u, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	later := pgDay.Add(2 * time.Hour)
	for i := range 1100 {
		if _, err := s.Reserve(ctx, later.Add(time.Duration(i)*time.Millisecond), []policy.Limit{pgBudget("new", time.Hour, 1_000_000, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM counters WHERE key = 'old'`:        0,
		`SELECT count(*) FROM counter_entries WHERE key = 'old'`: 0,
		`SELECT count(*) FROM claims WHERE key = 'old-claim'`:    0,
		`SELECT count(*) FROM counters WHERE key = 'new'`:        1,
		`SELECT total FROM counters WHERE key = 'new'`:           1100,
		`SELECT count(*) FROM counter_entries WHERE key = 'new'`: 1100,
		`SELECT count(*) FROM commits WHERE token = 'old-token'`: 0,
		`SELECT count(*) FROM commits WHERE token = 'new-token'`: 1,
	} {
		if got := queryInt(t, u, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	if _, err := s.Reserve(ctx, later.Add(time.Hour), []policy.Limit{pgBudget("old", time.Minute, 10, 10)}); err != nil {
		t.Fatalf("Reserve of the whole budget on the swept counter = %v, want it empty", err)
	}
}

// BenchmarkPostgresHoldComplete is BenchmarkHoldComplete's call on one
// handle with the database's clock: the hold (claim, a global and a
// per-customer budget and a rate limit, intent record) and the completion
// (settlement, replay, outcome record), two transactions of one round
// trip each.
func BenchmarkPostgresHoldComplete(b *testing.B) {
	ctx := context.Background()
	s := openPostgres(b, freshDatabase(b))
	limits := []policy.Limit{
		pgBudget("budget|*|USD|24h|", time.Minute, 1<<60, 1999),
		pgBudget("budget|*|USD|1h|cust:4f2a", time.Minute, 1<<60, 1999),
		pgRate("rate|*|1m|", time.Minute, 1<<60),
	}
	replay := []byte(`{"sessionId":"sess_123","url":"https://pay.example/s/123"}`)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		h := pgHold(fmt.Sprint("call-", n), time.Now(), limits)
		if held, err := s.Hold(ctx, h); err != nil || held.Prior.State != state.ClaimNew {
			b.Fatalf("Hold = %+v, %v", held, err)
		}
		if err := s.Complete(ctx, pgComplete(h, policy.Spent, replay)); err != nil {
			b.Fatal(err)
		}
	}
}

// commitCutter is a TCP proxy to the database that can cut every
// connection the moment the database answers a COMMIT, before the answer
// reaches the store: the write is committed and the store cannot know.
type commitCutter struct {
	ln     net.Listener
	target string
	// armed cuts at the next commit's answer; down then also refuses new
	// connections until it is cleared.
	armed, stayDown, down atomic.Bool
	cuts                  atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

// The ends of a committing write's answer: PostgreSQL's CommandComplete
// message for COMMIT, or the end of a write sent whole as an implicit
// transaction.
var (
	commitComplete = []byte("C\x00\x00\x00\x0bCOMMIT\x00")
	// The implicit one: CommandComplete SELECT 1 (the function's), then
	// ReadyForQuery, idle (Hold and Complete, whose functions record the
	// token), or BindComplete (and NoData, when pgx described the
	// statement), CommandComplete INSERT 0 1 (the token) or UPDATE 0 or 1
	// (Complete's finished claim's new end) and ReadyForQuery (AppendAudit,
	// Complete).
	implicitCommitComplete = func() [][]byte {
		ends := [][]byte{[]byte("C\x00\x00\x00\rSELECT 1\x00Z\x00\x00\x00\x05I")}
		for _, noData := range []string{"", "n\x00\x00\x00\x04"} {
			for _, tag := range []string{"\x0fINSERT 0 1", "\rUPDATE 0", "\rUPDATE 1"} {
				ends = append(ends, []byte("C\x00\x00\x00\rSELECT 1\x002\x00\x00\x00\x04"+noData+"C\x00\x00\x00"+tag+"\x00Z\x00\x00\x00\x05I"))
			}
		}
		return ends
	}()
)

// committing reports whether answer, the last tail bytes of which were
// seen (and passed on) before, ends a committing write in its new bytes:
// a pattern seen whole in the tail already belonged to an earlier answer.
// The implicit patterns also match a lone one-row SELECT ending idle, which
// the store sends outside writes (AuditHead, the read-back of a record);
// the tests arm the cutter just before the write they mean to cut.
func committing(answer []byte, tail int) bool {
	for _, end := range append([][]byte{commitComplete}, implicitCommitComplete...) {
		if i := bytes.LastIndex(answer, end); i >= 0 && i+len(end) > tail {
			return true
		}
	}
	return false
}

// cutterTail is how many bytes of an answer the cutter keeps to find an
// end split between two reads: one less than the longest.
var cutterTail = func() int {
	n := len(commitComplete)
	for _, end := range implicitCommitComplete {
		n = max(n, len(end))
	}
	return n - 1
}()

// newCommitCutter starts a proxy to the database of u and returns it with
// u pointing through it.
func newCommitCutter(t *testing.T, u string) (*commitCutter, string) {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		t.Fatal("the test database URL is not a URL with a host")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &commitCutter{ln: ln, target: parsed.Host}
	t.Cleanup(func() { ln.Close(); c.cutAll() })
	go c.serve()
	parsed.Host = ln.Addr().String()
	return c, parsed.String()
}

func (c *commitCutter) serve() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		if c.down.Load() {
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			client.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, client, server)
		c.mu.Unlock()
		go func() { io.Copy(server, client); server.Close(); client.Close() }()
		go c.answers(client, server)
	}
}

// answers copies the database's answers to the client, cutting at a
// COMMIT's when armed.
func (c *commitCutter) answers(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 64<<10)
	var tail []byte
	for {
		n, err := server.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			if committing(seen, len(tail)) && c.armed.CompareAndSwap(true, false) {
				c.cuts.Add(1)
				if c.stayDown.Load() {
					c.down.Store(true)
				}
				c.cutAll()
				return
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
			tail = append(tail[:0], seen[max(0, len(seen)-cutterTail):]...)
		}
		if err != nil {
			return
		}
	}
}

func (c *commitCutter) cutAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestPostgresResolvesACommitWhoseAnswerWasLost: a write whose COMMIT
// reached the database but whose answer was lost with the connection is
// neither reported as failed when the database can say it committed, nor
// written twice when it is tried again after the database could not say;
// a hold that committed unseen is settled by the call's completion.
func TestPostgresResolvesACommitWhoseAnswerWasLost(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	cutter, through := newCommitCutter(t, u)
	s := openPostgres(t, through)
	l := func(add int64) []policy.Limit { return []policy.Limit{pgBudget("b", time.Hour, 100, add)} }
	outcomes := func() int64 {
		return queryInt(t, u, `SELECT count(*) FROM audit WHERE kind = 'outcome'`)
	}

	// The answer is lost, the database says committed: the hold stands.
	h1 := pgHold("call-1", time.Now(), l(60))
	cutter.armed.Store(true)
	held, err := s.Hold(ctx, h1)
	if err != nil {
		t.Fatalf("Hold whose COMMIT's answer was lost = %v, want success once the database says it committed", err)
	}
	if cutter.cuts.Load() != 1 {
		t.Fatal("the proxy never cut a COMMIT's answer: the test tests nothing")
	}
	// What the lost answer would have said is read back.
	if held == nil || held.Prior.State != state.ClaimNew || held.Reservation == "" || held.Intent.Seq != 1 ||
		held.Intent.Call != "call-1" || held.Intent.Reservation != held.Reservation || held.Intent.Hash != held.Intent.ComputeHash() {
		t.Fatalf("Hold whose answer was lost returned %+v, want the hold as recorded", held)
	}
	if n := queryInt(t, u, `SELECT count(*) FROM intents`); n != 1 {
		t.Fatalf("%d open intents, want the hold's", n)
	}

	// The answer is lost and the database cannot be asked: Complete fails,
	// and its retry, once the database answers, does not record it twice.
	cutter.stayDown.Store(true)
	cutter.armed.Store(true)
	c1 := pgComplete(h1, policy.Spent, []byte("r"))
	err = s.Complete(ctx, c1)
	var d *policy.Denied
	if err == nil || errors.As(err, &d) {
		t.Fatalf("Complete with the database unreachable after COMMIT = %v, want an error", err)
	}
	cutter.down.Store(false)
	cutter.stayDown.Store(false)
	if err := s.Complete(ctx, pgComplete(h1, policy.Spent, []byte("r"))); err != nil {
		t.Fatalf("Complete tried again = %v", err)
	}
	if n := outcomes(); n != 1 {
		t.Fatalf("%d outcome records for one completion tried twice, want 1", n)
	}

	// A completion of a call no longer open, made only if it is, whose
	// answer is lost: it committed without doing anything (clink_complete
	// records no token then), so the token says aborted, the retry finds
	// the call closed again, and nothing is recorded.
	late := pgComplete(h1, policy.Spent, []byte("r"))
	late.OnlyIfOpen = true
	cutter.armed.Store(true)
	if err := s.Complete(ctx, late); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Complete only if open of a closed call, its answer lost = %v, want ErrNotFound", err)
	}
	if cutter.cuts.Load() != 3 {
		t.Fatalf("the proxy cut %d answers, want 3: the late completion's was not cut", cutter.cuts.Load())
	}
	if n := outcomes(); n != 1 {
		t.Fatalf("%d outcome records after a completion of a closed call, want 1", n)
	}

	// An append whose answer is lost and which committed returns its
	// record as recorded.
	rec := state.AuditRecord{Time: time.Now(), Kind: state.KindOutcome, Call: "call-9", Tool: "create_checkout_session", Decision: "invalid_request"}
	cutter.armed.Store(true)
	if err := s.AppendAudit(ctx, &rec); err != nil {
		t.Fatalf("AppendAudit whose answer was lost = %v", err)
	}
	if cutter.cuts.Load() != 4 || rec.Seq != 3 || rec.Hash != rec.ComputeHash() || rec.Call != "call-9" {
		t.Fatalf("AppendAudit whose answer was lost (cut %d times) left %+v, want record 3 as recorded", cutter.cuts.Load(), rec)
	}

	// A reservation whose answer is lost and which committed returns its
	// ID, which releases it.
	cutter.armed.Store(true)
	rid, err := s.Reserve(ctx, time.Now(), l(10))
	if err != nil || rid == "" || cutter.cuts.Load() != 5 {
		t.Fatalf("Reserve whose answer was lost (cut %d times) = %q, %v; want its reservation ID", cutter.cuts.Load(), rid, err)
	}
	if err := s.Settle(ctx, rid, policy.Released); err != nil {
		t.Fatalf("Settle of the reservation whose answer was lost = %v", err)
	}

	// A hold that committed unseen, the database unreachable: its call is
	// completed as released, which gives its reservation back.
	h2 := pgHold("call-2", time.Now(), l(30))
	cutter.stayDown.Store(true)
	cutter.armed.Store(true)
	if _, err := s.Hold(ctx, h2); err == nil {
		t.Fatal("Hold with the database unreachable after COMMIT succeeded, want an error")
	}
	cutter.down.Store(false)
	cutter.stayDown.Store(false)
	c2 := pgComplete(h2, policy.Released, nil)
	c2.OnlyIfOpen = true
	if err := s.Complete(ctx, c2); err != nil {
		t.Fatalf("Complete of the unseen hold = %v, want it found open and released", err)
	}
	if _, err := s.Reserve(ctx, time.Now(), l(40)); err != nil {
		t.Fatalf("Reserve of what is left after the release = %v: the unseen hold still counts", err)
	}
	if n := queryInt(t, u, `SELECT count(*) FROM intents`); n != 0 {
		t.Fatalf("%d open intents, want none", n)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 5 {
		t.Fatalf("VerifyAudit = %+v, %v; want 5 records (two intents, two outcomes, one appended), intact", rep, err)
	}
}

// TestPostgresResolvesLostCommitsOfApprovals: the approval's writes whose
// COMMIT answer is lost (a request, a decision, a hold on the approval)
// return what they committed when the database says so, and when it cannot
// be asked, a retry neither creates a second approval nor reserves twice,
// and an unseen hold on an approval is found open and released.
func TestPostgresResolvesLostCommitsOfApprovals(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	cutter, through := newCommitCutter(t, u)
	s := openPostgres(t, through)
	request := func(id string, add int64) *state.ApprovalRequest {
		at := time.Now()
		return &state.ApprovalRequest{
			At:       at,
			Approval: state.Approval{ID: id, Key: "key-" + id, Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(15 * time.Minute)},
			Limits:   []policy.Limit{pgBudget("b", 24*time.Hour, 1000, add)},
			Record:   state.AuditRecord{Time: at, Kind: state.KindApproval, Call: id, Tool: "t", Decision: "approval_required"},
			Remember: 15 * time.Minute,
		}
	}
	reserved := func() int64 { return queryInt(t, u, `SELECT COALESCE(sum(total), 0) FROM counters WHERE key = 'b'`) }
	approvals := func() int64 { return queryInt(t, u, `SELECT count(*) FROM approvals`) }
	cut := func(want int64) {
		t.Helper()
		if got := cutter.cuts.Load(); got != want {
			t.Fatalf("the proxy cut %d COMMIT answers, want %d: the write was not cut", got, want)
		}
	}

	// A request whose answer is lost, committed: the approval as created.
	r1 := request("apr_1", 600)
	cutter.armed.Store(true)
	a1, created, err := s.RequestApproval(ctx, r1)
	cut(1)
	if err != nil || !created || a1 == nil || a1.ID != "apr_1" || a1.State != state.ApprovalPending || a1.Reservation == "" {
		t.Fatalf("RequestApproval whose answer was lost = %+v, %v, %v; want the pending approval it created", a1, created, err)
	}
	if r1.Record.Seq != 1 || r1.Record.Hash != r1.Record.ComputeHash() || r1.Record.Reservation != a1.Reservation {
		t.Fatalf("the request's record after a lost answer = %+v, want record 1 as recorded", r1.Record)
	}
	if n, total := approvals(), reserved(); n != 1 || total != 600 {
		t.Fatalf("%d approvals reserving %d, want 1 reserving 600", n, total)
	}

	// A request whose answer is lost with the database out of reach fails;
	// its retry finds the approval it committed rather than creating one.
	cutter.stayDown.Store(true)
	cutter.armed.Store(true)
	_, _, err = s.RequestApproval(ctx, request("apr_2", 300))
	cut(2)
	if err == nil {
		t.Fatal("RequestApproval with the database unreachable after COMMIT succeeded, want an error")
	}
	cutter.down.Store(false)
	cutter.stayDown.Store(false)
	// The approval key alone keeps a second approval out; created=false
	// says the retry found the first attempt's.
	a2, created, err := s.RequestApproval(ctx, request("apr_2", 300))
	if err != nil || created || a2 == nil || a2.ID != "apr_2" || a2.State != state.ApprovalPending {
		t.Fatalf("RequestApproval tried again = %+v, %v, %v; want the approval the lost commit created, not a new one", a2, created, err)
	}
	if n, total := approvals(), reserved(); n != 2 || total != 900 {
		t.Fatalf("%d approvals reserving %d, want 2 reserving 900: the retry reserved again", n, total)
	}

	// A decision whose answer is lost, committed: the approval as decided.
	cutter.armed.Store(true)
	got, err := s.DecideApproval(ctx, time.Now(), "apr_1", true, "operator:ops", time.Now().Add(time.Hour))
	cut(3)
	if err != nil || got == nil || got.State != state.ApprovalApproved || got.DecidedBy != "operator:ops" {
		t.Fatalf("DecideApproval whose answer was lost = %+v, %v; want it approved", got, err)
	}

	// A hold on the approval whose answer is lost, committed: the hold as
	// recorded, on the approval's reservation, which is not reserved again.
	h1 := pgHold("call-1", time.Now(), r1.Limits)
	h1.Approval = "apr_1"
	cutter.armed.Store(true)
	held, err := s.Hold(ctx, h1)
	cut(4)
	if err != nil || held == nil || held.Reservation != a1.Reservation || held.Intent.Seq == 0 || held.Intent.Hash != held.Intent.ComputeHash() {
		t.Fatalf("Hold on an approval whose answer was lost = %+v, %v; want the hold on %s as recorded", held, err, a1.Reservation)
	}
	if a, err := s.Approval(ctx, "apr_1"); err != nil || a.State != state.ApprovalUsed {
		t.Fatalf("Approval after the hold = %+v, %v; want it used", a, err)
	}
	if total := reserved(); total != 900 {
		t.Fatalf("%d reserved after the hold on the approval, want 900", total)
	}

	// A hold on the approval that committed unseen, the database out of
	// reach: its call is completed as released, giving the reservation back.
	if _, err := s.DecideApproval(ctx, time.Now(), "apr_2", true, "operator:ops", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h2 := pgHold("call-2", time.Now(), request("apr_2", 300).Limits)
	h2.Approval = "apr_2"
	cutter.stayDown.Store(true)
	cutter.armed.Store(true)
	_, err = s.Hold(ctx, h2)
	cut(5)
	if err == nil {
		t.Fatal("Hold on an approval with the database unreachable after COMMIT succeeded, want an error")
	}
	cutter.down.Store(false)
	cutter.stayDown.Store(false)
	c2 := pgComplete(h2, policy.Released, nil)
	c2.OnlyIfOpen = true
	if err := s.Complete(ctx, c2); err != nil {
		t.Fatalf("Complete of the unseen hold on the approval = %v, want it found open and released", err)
	}
	if total := reserved(); total != 600 {
		t.Fatalf("%d reserved after releasing the unseen hold, want 600 (apr_1's only)", total)
	}
	if err := s.Complete(ctx, pgComplete(h1, policy.Spent, []byte("r"))); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, u, `SELECT count(*) FROM intents`); n != 0 {
		t.Fatalf("%d open intents, want none", n)
	}
	// Two requests, two decisions, two intents, two outcomes.
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 8 {
		t.Fatalf("VerifyAudit = %+v, %v; want 8 records, intact", rep, err)
	}
}

// BenchmarkPostgresRoundTrips is BenchmarkPostgresHoldComplete's floor:
// the same shape on one connection (two transactions of one round trip
// each, a statement sent alone as an implicit transaction) with a trivial
// statement. BenchmarkPostgresHoldComplete's ns/op
// over this one's is what the store's statements cost beyond the
// protocol's round trips.
//
//	go test -tags postgres -run '^$' -bench 'PostgresRoundTrips|PostgresHoldComplete' -benchtime 2000x -count 5 ./gate/state/
func BenchmarkPostgresRoundTrips(b *testing.B) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, freshDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	roundTrip := func(stmts ...string) {
		batch := &pgx.Batch{}
		for _, s := range stmts {
			batch.Queue(s)
		}
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for range 2 {
			roundTrip("SELECT 1")
		}
	}
}

// TestPostgresJudgesApprovalsByTheDatabaseClock: an approval's times are
// the database's, its deadlines as far after them as the caller asked: a
// replica whose clock is two days ahead neither stretches nor expires it.
func TestPostgresJudgesApprovalsByTheDatabaseClock(t *testing.T) {
	ctx := context.Background()
	const skew = 48 * time.Hour
	u := freshDatabase(t)
	inStep, ahead := openPostgres(t, u), openPostgres(t, u)
	at := time.Now().Add(skew)
	r := &state.ApprovalRequest{
		At:       at,
		Approval: state.Approval{ID: "apr_1", Key: "key-1", Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(15 * time.Minute)},
		Limits:   []policy.Limit{pgBudget("b", 24*time.Hour, 1000, 600)},
		Record:   state.AuditRecord{Time: at, Kind: state.KindApproval, Call: "apr_1", Tool: "t", Decision: "approval_required"},
		Remember: 15 * time.Minute,
	}
	a, created, err := ahead.RequestApproval(ctx, r)
	if err != nil || !created {
		t.Fatalf("RequestApproval = %+v, %v, %v", a, created, err)
	}
	if off := time.Until(a.RequestedAt); off < -time.Minute || off > time.Minute {
		t.Errorf("RequestedAt is %v from now, want about now: the database's time", off.Round(time.Second))
	}
	if d := a.ExpiresAt.Sub(a.RequestedAt); d != 15*time.Minute {
		t.Errorf("ExpiresAt is %v after RequestedAt, want 15m", d)
	}
	if n, err := ahead.ExpireApprovals(ctx, at.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("ExpireApprovals two days ahead = %d, %v; want 0: it is not due in the database's time", n, err)
	}
	now := time.Now()
	got, err := inStep.DecideApproval(ctx, now, "apr_1", true, "operator:ops", now.Add(time.Minute))
	if err != nil || got.State != state.ApprovalApproved {
		t.Fatalf("DecideApproval = %+v, %v; want it approved", got, err)
	}
	if d := got.ExpiresAt.Sub(got.DecidedAt); d != time.Minute {
		t.Errorf("the approval's deadline to use it is %v after its decision, want 1m", d)
	}
	h := pgHold("call-1", time.Now().Add(skew), []policy.Limit{pgBudget("b", 24*time.Hour, 1000, 600)})
	h.Approval = "apr_1"
	if held, err := ahead.Hold(ctx, h); err != nil || held.Reservation != a.Reservation {
		t.Fatalf("Hold on the approval two days ahead = %+v, %v; want it held on %s", held, err, a.Reservation)
	}
}

// TestPostgresLooksSessionsUpByIndex: SessionTool can use the audit
// trail's session index rather than scan it.
func TestPostgresLooksSessionsUpByIndex(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	openPostgres(t, u)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal("connecting to the test database failed")
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN `+state.PostgresSessionToolQuery, "sess_1", "agent-7")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan, "\n"); !strings.Contains(got, "audit_session") {
		t.Fatalf("the plan of SessionTool is\n%s\nwant it to use the index audit_session", got)
	}
}

// TestPostgresCommitTokensFenceALostCommit: a write whose COMMIT's answer
// was lost is judged by the token its transaction records: committed when
// the token is there; aborted when it is not, and then the transaction
// can never commit (the look-up took its token); a transaction still
// running is waited for, then judged.
func TestPostgresCommitTokensFenceALostCommit(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	s := openPostgres(t, u)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	status := func(token string) string { return state.PostgresCommitStatus(ctx, s, token) }

	if _, err := conn.Exec(ctx, `INSERT INTO commits (token, at) VALUES ('done', 0)`); err != nil {
		t.Fatal(err)
	}
	if got := status("done"); got != "committed" {
		t.Errorf("status of a recorded token = %q, want committed", got)
	}
	for i := range 2 {
		if got := status("lost"); got != "aborted" {
			t.Errorf("status of an unknown token (look-up %d) = %q, want aborted", i+1, got)
		}
	}
	_, err = conn.Exec(ctx, `INSERT INTO commits (token, at) VALUES ('lost', 0)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("a transaction recording a token judged aborted: %v, want a unique violation: it must not commit", err)
	}

	// Transactions still running when they are looked up.
	for _, c := range []struct {
		end  string
		want string
	}{{"COMMIT", "committed"}, {"ROLLBACK", "aborted"}} {
		token := "running-" + c.end
		if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO commits (token, at) VALUES ($1, 0)`, token); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() { got <- status(token) }()
		deadline := time.Now().Add(10 * time.Second)
		for queryInt(t, u, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
			select {
			case g := <-got:
				t.Fatalf("status while the transaction runs = %q, want it to wait", g)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("the look-up never waited for the running transaction")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := conn.Exec(ctx, c.end); err != nil {
			t.Fatal(err)
		}
		if g := <-got; g != c.want {
			t.Errorf("status of a transaction that ended with %s = %q, want %s", c.end, g, c.want)
		}
	}
}

// TestPostgresHashesRecordsAsGoDoes: the database computes the hash of
// every record it appends (clink_append, clink_hold, clink_complete) from
// the hash input the Go code sends; with multi-byte characters in the
// record's fields, every hash is the one ComputeHash gives and the trail
// verifies.
func TestPostgresHashesRecordsAsGoDoes(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t, freshDatabase(t))
	h := pgHold("call-é", time.Now(), []policy.Limit{pgBudget("b", time.Hour, 100, 10)})
	h.Intent.Caller, h.Intent.Amounts, h.Intent.EmailMasked = "agent-ü", "EUR 7.00, ¥ 9", "é***@exämple.com"
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	c := pgComplete(h, policy.Spent, []byte("r"))
	c.Record.SessionID, c.Record.Duration = "sess_日本", 1500*time.Microsecond
	if err := s.Complete(ctx, c); err != nil {
		t.Fatal(err)
	}
	rec := state.AuditRecord{Time: time.Now(), Kind: state.KindOutcome, Call: "call-2", Tool: "create_checkout_session",
		Decision: "amount_over_cap", Amount: "1 000,00", ReferenceHash: "ref-€"}
	if err := s.AppendAudit(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := s.ScanAudit(ctx, func(r *state.AuditRecord) error {
		n++
		if want := r.ComputeHash(); r.Hash != want {
			t.Errorf("record %d: hash %s, ComputeHash %s", r.Seq, r.Hash, want)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("ScanAudit = %v after %d records, want 3", err, n)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit = %+v, %v", rep, err)
	}
}

// TestPostgresLostAnswerOfAHoldThatHeldNothing: a hold the database
// refused (a limit denies it, or another call holds the claim) commits no
// token; when its answer is lost, the token says aborted and the hold is
// tried again, which answers as the first would have: never a success.
func TestPostgresLostAnswerOfAHoldThatHeldNothing(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	cutter, through := newCommitCutter(t, u)
	s := openPostgres(t, through)
	l := func(add int64) []policy.Limit { return []policy.Limit{pgBudget("b", time.Hour, 100, add)} }

	first := pgHold("call-1", time.Now(), l(60))
	if _, err := s.Hold(ctx, first); err != nil {
		t.Fatal(err)
	}
	cutter.armed.Store(true)
	held, err := s.Hold(ctx, pgHold("call-2", time.Now(), l(60)))
	var d *policy.Denied
	if !errors.As(err, &d) || held != nil {
		t.Fatalf("Hold over the budget, its answer lost = %+v, %v; want a denial", held, err)
	}
	if cutter.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d answers, want 1", cutter.cuts.Load())
	}

	again := pgHold("call-3", time.Now(), l(1))
	again.Claim = first.Claim // the key call-1 holds, in flight
	again.Claim.Call = "call-3"
	cutter.armed.Store(true)
	held, err = s.Hold(ctx, again)
	if err != nil || held == nil || held.Prior.State != state.ClaimInFlight {
		t.Fatalf("Hold of a key held in flight, its answer lost = %+v, %v; want the claim in flight", held, err)
	}
	if cutter.cuts.Load() != 2 {
		t.Fatalf("the proxy cut %d answers, want 2", cutter.cuts.Load())
	}
	if n := queryInt(t, u, `SELECT count(*) FROM intents`); n != 1 {
		t.Fatalf("%d open intents, want the first hold's only", n)
	}

	// A denial that drops entries which have left their window keeps the
	// counter's total equal to its entries, tried again or not.
	short := []policy.Limit{pgBudget("s", time.Second, 100, 60)}
	if _, err := s.Hold(ctx, pgHold("call-4", time.Now(), short)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the database's clock judges the window
	over := []policy.Limit{pgBudget("s", time.Second, 100, 120)}
	cutter.armed.Store(true)
	if _, err := s.Hold(ctx, pgHold("call-5", time.Now(), over)); !errors.As(err, &d) {
		t.Fatalf("Hold over the budget after the window, its answer lost = %v; want a denial", err)
	}
	if cutter.cuts.Load() != 3 {
		t.Fatalf("the proxy cut %d answers, want 3", cutter.cuts.Load())
	}
	if total, entries := queryInt(t, u, `SELECT total FROM counters WHERE key = 's'`),
		queryInt(t, u, `SELECT COALESCE(sum(amount), 0) FROM counter_entries WHERE key = 's'`); total != 0 || entries != 0 {
		t.Fatalf("counter s: total %d, entries %d; want both 0 (the expired entry dropped once)", total, entries)
	}
}

// TestPostgresRunsReadCommittedWhateverTheDefault: the store's locking is
// designed for READ COMMITTED, and the writes it sends without BEGIN run at
// the session's default isolation: on a database whose default is
// SERIALIZABLE, concurrent holds on one counter all still succeed (they
// queue on its lock instead of failing to serialize).
func TestPostgresRunsReadCommittedWhateverTheDefault(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	if err := sqlTry(t, u, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = serializable', current_database()); END $$`); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, u, `SELECT CASE WHEN current_setting('default_transaction_isolation') = 'serializable' THEN 1 ELSE 0 END`); got != 1 {
		t.Fatal("the database's default isolation is not serializable: the test tests nothing")
	}
	s := openPostgres(t, u)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			h := pgHold(fmt.Sprint("call-", i), time.Now(), []policy.Limit{pgBudget("global", time.Hour, 1_000_000, 1)})
			if _, err := s.Hold(ctx, h); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Hold on a database defaulting to serializable: %v", err)
	}
	if got := queryInt(t, u, `SELECT total FROM counters WHERE key = 'global'`); got != n {
		t.Errorf("total %d, want %d", got, n)
	}
}

// TestPostgresAnnouncesOnlyClaimsWaitedOn: the end of a claim nobody waits
// on sends no NOTIFY (every handle's listener would wake for nothing); the
// end of one a handle waits on does, and it is the first announcement a
// listener hears.
func TestPostgresAnnouncesOnlyClaimsWaitedOn(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	a, b := openPostgres(t, u), openPostgres(t, u)
	listen, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close(ctx)
	if _, err := listen.Exec(ctx, `LISTEN clink_claims`); err != nil {
		t.Fatal(err)
	}

	quiet := pgHold("call-quiet", time.Now(), nil)
	if _, err := a.Hold(ctx, quiet); err != nil {
		t.Fatal(err)
	}
	if err := a.Complete(ctx, pgComplete(quiet, policy.Spent, []byte("r"))); err != nil {
		t.Fatal(err)
	}

	heard := pgHold("call-heard", time.Now(), nil)
	if _, err := a.Hold(ctx, heard); err != nil {
		t.Fatal(err)
	}
	woke := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		woke <- b.WaitClaim(wctx, heard.Claim.Key)
	}()
	waitFor(t, "the claim marked waited on", func() bool {
		return queryInt(t, u, `SELECT count(*) FROM claims WHERE key = $1 AND waited`, heard.Claim.Key) == 1
	})
	if err := a.Complete(ctx, pgComplete(heard, policy.Spent, []byte("r"))); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("WaitClaim = %v, want it woken", err)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listen.WaitForNotification(nctx)
	if err != nil {
		t.Fatal(err)
	}
	if quietHash := state.PostgresClaimHash(quiet.Claim.Key); n.Payload == quietHash {
		t.Fatal("the end of a claim nobody waited on was announced")
	}
	if want := state.PostgresClaimHash(heard.Claim.Key); n.Payload != want {
		t.Fatalf("first announcement %q, want the waited claim's %q", n.Payload, want)
	}
}

// TestPostgresPlansTheHoldOnce: a connection plans the statements of a
// hold and a completion a few times, then reuses the plans, however many
// keys the counters table holds. With some thousands of keys (one per
// customer under a per-customer limit), PostgreSQL found clink_hold's
// custom plans for its two statements on counters cheaper than the generic
// ones and planned them again on every call, some 120 us of the database's
// time per call, until migration 4 made the function keep generic plans.
// The plans are counted by pg_stat_statements, which the cluster must load
// (.ci/postgres.sh does); the store's one connection turns its tracking on,
// which takes a superuser, and counting plans PostgreSQL 13.
func TestPostgresPlansTheHoldOnce(t *testing.T) {
	ctx := context.Background()
	u := freshDatabase(t)
	if v := queryInt(t, u, `SELECT current_setting('server_version_num')::int`); v < 130000 {
		t.Fatalf("PostgreSQL %d: counting plans takes 13 or later (the store itself runs on 12)", v)
	}
	if queryInt(t, u, `SELECT count(*) FROM pg_roles WHERE rolname = current_user AND rolsuper`) != 1 {
		t.Fatal("the test database's user is not a superuser: tracking plans per connection takes one")
	}
	if queryInt(t, u, `SELECT count(*) FROM pg_settings WHERE name = 'shared_preload_libraries' AND setting ~ 'pg_stat_statements'`) != 1 {
		t.Fatal("pg_stat_statements is not in shared_preload_libraries (.ci/postgres.sh puts it there)")
	}
	sqlExec(t, u, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal("the test database URL does not parse")
	}
	q := parsed.Query()
	q.Set("pool_max_conns", "1")
	q.Set("pg_stat_statements.track", "all")
	q.Set("pg_stat_statements.track_planning", "on")
	parsed.RawQuery = q.Encode()
	s := openPostgres(t, parsed.String())
	// Expiring in 2255: no sweep takes them away during the test.
	sqlExec(t, u, `INSERT INTO counters (key, total, win, expires)
		SELECT 'budget|*|USD|1h|cust:' || g, 0, 0, 9000000000000000000 FROM generate_series(1, 20000) AS g`)
	sqlExec(t, u, `ANALYZE counters`)
	sqlExec(t, u, `SELECT pg_stat_statements_reset()`)

	const calls = 200
	for i := range calls {
		h := pgHold(fmt.Sprint("call-", i), time.Now(), []policy.Limit{
			pgBudget("budget|*|USD|24h|", 24*time.Hour, 1<<60, 700),
			pgBudget(fmt.Sprintf("budget|*|USD|1h|cust:new-%d", i), time.Hour, 1<<60, 700),
			pgRate("rate|*|1m|", time.Minute, 1<<60),
			pgRate("rate|*|1h|principal:agent-7", time.Hour, 1<<60),
		})
		if held, err := s.Hold(ctx, h); err != nil || held.Prior.State != state.ClaimNew {
			t.Fatalf("Hold %d = %+v, %v", i, held, err)
		}
		if err := s.Complete(ctx, pgComplete(h, policy.Spent, []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal("connecting to the test database failed")
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT s.calls, s.plans, regexp_replace(s.query, '\s+', ' ', 'g')
		FROM pg_stat_statements AS s JOIN pg_database AS d ON d.oid = s.dbid
		WHERE d.datname = current_database() AND s.calls >= $1 ORDER BY s.plans DESC`, calls)
	if err != nil {
		t.Fatal(err)
	}
	type statement struct {
		calls, plans int64
		query        string
	}
	stmts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (statement, error) {
		var st statement
		return st, r.Scan(&st.calls, &st.plans, &st.query)
	})
	if err != nil {
		t.Fatal(err)
	}
	planned := 0
	for _, st := range stmts {
		if st.plans > 0 {
			planned++
		}
	}
	if len(stmts) < 10 || planned < 10 {
		t.Fatalf("pg_stat_statements saw %d statements run %d times or more, %d of them planned: are its tracking settings taken?", len(stmts), calls, planned)
	}
	for _, st := range stmts {
		// Five custom plans and a generic one, and a few more if an
		// automatic ANALYZE invalidates them.
		if st.plans > 20 {
			t.Errorf("planned %d times in %d calls: %.120s", st.plans, st.calls, st.query)
		}
	}
}

// TestAHoldThatWaitedForALockJudgesByTheTimeItHoldsIt: a hold (of either
// kind: clink_hold, or the batched Reserve) whose transaction began before
// a second replica's hold trimmed a shared counter, and that got the
// counter's lock after it, judges the counter's window by the time it
// holds the lock, not by the time it began: a rate limit of 1 per window
// never admits two calls less than a window apart. (Judged by its start,
// the first kind admitted a call 1.7 s after another under 1 per 2 s.)
func TestAHoldThatWaitedForALockJudgesByTheTimeItHoldsIt(t *testing.T) {
	for _, kind := range []string{"Hold", "Reserve"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			u := freshDatabase(t)
			a, b := openPostgres(t, u), openPostgres(t, u) // two replicas
			const w = 2 * time.Second
			rateK := pgRate("k-rate", w, 1)
			// The first call: one entry on k-rate at t0.
			h0 := pgHold("c0", time.Now(), []policy.Limit{rateK})
			if _, err := a.Hold(ctx, h0); err != nil {
				t.Fatal(err)
			}
			if err := a.Complete(ctx, pgComplete(h0, policy.Spent, []byte("r"))); err != nil {
				t.Fatal(err)
			}
			entryAt := func() (at int64) {
				t.Helper()
				conn, err := pgx.Connect(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				if err := conn.QueryRow(ctx, `SELECT max(at) FROM counter_entries WHERE key = 'k-rate'`).Scan(&at); err != nil {
					t.Fatal(err)
				}
				return at
			}
			t0 := entryAt()
			// A budget spent, to deny the trimming call of the other replica.
			if _, err := b.Hold(ctx, pgHold("cz", time.Now(), []policy.Limit{pgBudget("z-budget", time.Hour, 10, 10)})); err != nil {
				t.Fatal(err)
			}
			// A counter that sorts before k-rate, held by another transaction.
			if _, err := a.Hold(ctx, pgHold("cx", time.Now(), []policy.Limit{pgRate("a-other", time.Hour, 100)})); err != nil {
				t.Fatal(err)
			}
			locker, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Close(ctx)
			if _, err := locker.Exec(ctx, `BEGIN; SELECT 1 FROM counters WHERE key = 'a-other' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			// T1 begins at t0 + W - 300 ms, k-rate's entry inside its window,
			// and waits for a-other's lock.
			time.Sleep(time.Until(time.Unix(0, t0).Add(w - 300*time.Millisecond)))
			res := make(chan error, 1)
			go func() {
				limits := []policy.Limit{pgRate("a-other", time.Hour, 100), rateK}
				var err error
				if kind == "Hold" {
					_, err = a.Hold(ctx, pgHold("c1", time.Now(), limits))
				} else {
					_, err = a.Reserve(ctx, time.Now(), limits)
				}
				res <- err
			}()
			time.Sleep(600 * time.Millisecond) // past t0 + W
			// T2, on the other replica: denied by its budget, it trims
			// k-rate up to its own time less W, past t0, and commits.
			var d *policy.Denied
			if _, err := b.Hold(ctx, pgHold("c2", time.Now(), []policy.Limit{rateK, pgBudget("z-budget", time.Hour, 10, 10)})); !errors.As(err, &d) {
				t.Fatalf("the trimming call: %v, want a denial", err)
			}
			if _, err := locker.Exec(ctx, `COMMIT`); err != nil {
				t.Fatal(err)
			}
			if err := <-res; err != nil {
				return // denied: the window held
			}
			if gap := time.Duration(entryAt() - t0); gap < w {
				t.Fatalf("a rate limit of 1 per %v admitted calls at t0 and t0+%v", w, gap)
			}
		})
	}
}
