package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/internal/loadbench"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
)

// BenchmarkHTTPLoad measures the server under load over real HTTP: N
// clients (1, 16, 64) each make tools/call requests one after another, as
// fast as the server answers, against a loopback Clink that answers after
// 50 ms, with the memory and the SQLite store. Each call is distinct (no
// replays). It reports calls/s and the p50 and p99 latency of a call as
// the client sees it.
//
//	go test -run '^$' -bench HTTPLoad -benchtime 2000x ./service/
func BenchmarkHTTPLoad(b *testing.B) {
	for _, storeName := range []string{"memory", "sqlite"} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", storeName, clients), func(b *testing.B) {
				runLoad(b, loadSetup{store: storeName, replicas: 1, latency: 50 * time.Millisecond, clients: clients})
			})
		}
	}
}

// timedCall makes distinct checkout call i over HTTP at url and returns
// how long the client waited for its answer; an answer that is not a
// created session is an error.
func timedCall(hc *http.Client, url string, i int64) (time.Duration, error) {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session",`+
		`"arguments":{"amount":12,"currency":"USD","customerEmail":"c%d@example.com"}}}`, i, i)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if res.StatusCode != http.StatusOK || !bytes.Contains(out, []byte("Created checkout session")) {
		return 0, fmt.Errorf("call %d: %d %s", i, res.StatusCode, out)
	}
	return d, nil
}

// loadSetup is one load run.
type loadSetup struct {
	store    string        // "memory", "sqlite" or "postgres"
	replicas int           // servers sharing the store; more than one needs "postgres"
	pool     int           // each Postgres handle's pool_max_conns; 0: the store's default
	latency  time.Duration // how long the loopback Clink takes to answer
	clients  int           // how many clients call at once
	sample   bool          // whether to sample the database's activity
}

// runLoad starts the servers of s and has s.clients clients make b.N
// distinct calls over them, each request going to the next server in
// turn, then reports calls/s, p50-ms and p99-ms.
func runLoad(b *testing.B, s loadSetup) {
	pol, err := policy.Parse("load.yaml", []byte(loadbench.Policy))
	if err != nil {
		b.Fatal(err)
	}
	sb := sandbox.New()
	sb.SetFault(sandbox.Fault{Latency: s.latency})
	clinkURL := listenSandbox(b, sb)

	var dbURL string
	if s.store == "postgres" {
		dbURL = benchDatabase(b)
	} else if s.replicas != 1 {
		b.Fatalf("%d replicas need the postgres store", s.replicas)
	}
	urls := make([]string, s.replicas)
	for i := range urls {
		urls[i] = startServer(b, pol, clinkURL, s.store, dbURL, s.pool)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: s.clients, MaxConnsPerHost: s.clients}}
	defer hc.CloseIdleConnections()

	var activity *pgActivity
	if s.sample {
		activity = samplePostgres(b, dbURL, 20*time.Millisecond)
	}
	latencies, elapsed := loadbench.Run(b, s.clients, func(i int64) (time.Duration, error) {
		return timedCall(hc, urls[int(i)%len(urls)], i)
	})
	if activity != nil {
		activity.stop()
		b.ReportMetric(activity.mean(func(s pgSample) int { return s.lockWait }), "lock-wait")
		b.ReportMetric(activity.mean(func(s pgSample) int { return s.active }), "pg-active")
	}
	if got := sb.Requests(); !b.Failed() && got != int64(b.N) {
		b.Errorf("Clink received %d requests for %d calls", got, b.N)
	}
	loadbench.Report(b, latencies, elapsed)
}

// startServer starts one server (a store of its own, a Clink client of its
// own, as another process would have) over HTTP, stopped when b ends, and
// returns its /mcp URL. dbURL is the Postgres store's database; pool, if
// not 0, its pool_max_conns.
func startServer(b *testing.B, pol *policy.Policy, clinkURL, store, dbURL string, pool int) string {
	b.Helper()
	return serveStore(b, pol, clinkURL, openStore(b, store, dbURL, pool))
}

// openStore opens a store of the kind startServer names, closed when b
// ends.
func openStore(b *testing.B, store, dbURL string, pool int) state.Store {
	b.Helper()
	var st state.Store
	var err error
	switch store {
	case "memory":
		st = state.NewMemory()
	case "sqlite":
		if st, err = state.OpenSQLite(filepath.Join(b.TempDir(), "state.db")); err != nil {
			b.Fatal(err)
		}
	case "postgres":
		u := dbURL
		if pool > 0 {
			u = withQuery(b, u, "pool_max_conns", fmt.Sprint(pool))
		}
		if st, err = state.OpenPostgres(context.Background(), u); err != nil {
			b.Fatal(err)
		}
	default:
		b.Fatalf("unknown store %q", store)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// serveStore starts a server on st over HTTP, stopped when b ends (before
// st is closed), and returns its /mcp URL.
func serveStore(b *testing.B, pol *policy.Policy, clinkURL string, st state.Store) string {
	b.Helper()
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(clinkURL))
	if err != nil {
		b.Fatal(err)
	}
	svc, err := service.New(service.Config{
		Policy: pol, Payments: cl, Account: "bench", Store: st,
		Secret: bytes.Repeat([]byte{9}, gate.MinSecretLen), Version: "bench",
		Logger: slog.New(slog.NewTextHandler(benchLog{b}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler(service.HTTPOptions{}))
	// Cleanups run last first: the HTTP server, the service, the store.
	b.Cleanup(func() { svc.Close(context.Background()) })
	b.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// benchLog writes a server's log lines to the benchmark's log.
type benchLog struct{ b *testing.B }

func (l benchLog) Write(p []byte) (int, error) {
	l.b.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var benchDatabases atomic.Int64

// benchDatabase creates an empty database on the server at
// CLINK_TEST_DATABASE_URL, dropped when b ends, and returns its URL. It
// fails b without the variable: a postgres benchmark never skips.
func benchDatabase(b *testing.B) string {
	b.Helper()
	admin := os.Getenv("CLINK_TEST_DATABASE_URL")
	if admin == "" {
		b.Fatal("CLINK_TEST_DATABASE_URL is not set: the postgres benchmarks need a PostgreSQL server whose user may create databases (.ci/postgres.sh start DIR prints its URL)")
	}
	name := fmt.Sprintf("clink_bench_%d_%d", os.Getpid(), benchDatabases.Add(1))
	benchAdminExec(b, admin, `CREATE DATABASE `+name)
	b.Cleanup(func() { benchAdminExec(b, admin, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	if !strings.Contains(admin, "://") {
		return admin + " dbname=" + name
	}
	u, err := url.Parse(admin)
	if err != nil {
		b.Fatal("CLINK_TEST_DATABASE_URL is not a valid URL")
	}
	u.Path = "/" + name
	return u.String()
}

// withQuery returns the connection string u with the parameter key set to
// value.
func withQuery(b *testing.B, u, key, value string) string {
	b.Helper()
	if !strings.Contains(u, "://") {
		return u + " " + key + "=" + value
	}
	parsed, err := url.Parse(u)
	if err != nil {
		b.Fatal("the database URL is not a valid URL")
	}
	q := parsed.Query()
	q.Set(key, value)
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// benchAdminExec runs q on the database at u. Its errors never show u,
// which holds a password.
func benchAdminExec(b *testing.B, u, q string) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		b.Fatal("connecting to the test database failed")
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q); err != nil {
		b.Fatalf("%s: %v", q, err)
	}
}

// pgSample is what the connections to one database were doing at one
// moment.
type pgSample struct {
	lockWait int // waiting for a lock
	active   int // running a statement, waiting for a lock or not
}

// pgActivity samples pg_stat_activity for one database, on a connection
// of its own, until stopped.
type pgActivity struct {
	cancel  context.CancelFunc
	done    chan struct{}
	samples []pgSample
}

// samplePostgres starts sampling the activity on the database at u every
// interval.
func samplePostgres(b *testing.B, u string, interval time.Duration) *pgActivity {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		cancel()
		b.Fatal("connecting to the test database failed")
	}
	a := &pgActivity{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer conn.Close(context.Background())
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var s pgSample
			err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FILTER (WHERE state = 'active')
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&s.lockWait, &s.active)
			if err != nil {
				return
			}
			a.samples = append(a.samples, s)
		}
	}()
	return a
}

// stop ends the sampling.
func (a *pgActivity) stop() {
	a.cancel()
	<-a.done
}

// mean is the mean of f over the samples taken.
func (a *pgActivity) mean(f func(pgSample) int) float64 {
	if len(a.samples) == 0 {
		return 0
	}
	total := 0
	for _, s := range a.samples {
		total += f(s)
	}
	return float64(total) / float64(len(a.samples))
}

// listenSandbox serves sb on loopback until tb ends (after whatever is
// started later, the servers that call it) and returns its base URL.
func listenSandbox(tb testing.TB, sb *sandbox.Server) string {
	tb.Helper()
	url, shutdown, err := sb.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = shutdown(context.Background()) })
	return url
}
