//go:build postgres

// The benchmarks in this file need a PostgreSQL server whose user may
// create databases, as the store's tests do:
//
//	dir=$(mktemp -d); export CLINK_TEST_DATABASE_URL=$(.ci/postgres.sh start "$dir")
//	go test -tags postgres -run '^$' -bench 'Postgres' -benchtime 2000x ./service/
//	.ci/postgres.sh stop "$dir"
//
// Every run of a benchmark works on a database of its own, dropped when it
// ends.

package service_test

import (
	"bytes"
	"context"
	"fmt"
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

// BenchmarkHTTPLoadPostgres is BenchmarkHTTPLoad with the Postgres store:
// one server (one replica) on a fresh database, N clients (1, 16, 64)
// making distinct tools/call requests over real HTTP one after another,
// against a loopback Clink that answers after 50 ms. It reports calls/s
// and the p50 and p99 latency of a call as the client sees it, to be set
// beside the memory and SQLite rows of BenchmarkHTTPLoad.
//
// The sub-benchmarks latency=0 isolate the store's cost per call: one
// client, and a Clink that answers at once, with the memory, SQLite and
// Postgres stores. A call's latency is then the server's own work, most
// of it the store's for SQLite and Postgres; a store's overhead is its p50
// less memory's.
//
//	go test -tags postgres -run '^$' -bench HTTPLoadPostgres -benchtime 2000x ./service/
func BenchmarkHTTPLoadPostgres(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("store=postgres/clients=%d", clients), func(b *testing.B) {
			runLoad(b, loadSetup{store: "postgres", replicas: 1, latency: 50 * time.Millisecond, clients: clients})
		})
	}
	for _, store := range []string{"memory", "sqlite", "postgres"} {
		b.Run(fmt.Sprintf("latency=0/store=%s/clients=1", store), func(b *testing.B) {
			runLoad(b, loadSetup{store: store, replicas: 1, clients: 1})
		})
	}
}

// BenchmarkReplicasPostgres measures what replicas add: 64 clients making
// distinct tools/call requests over real HTTP, spread round-robin, request
// by request, over 1 or 3 servers (each a service.New with a Postgres
// handle of its own on one fresh database, and an HTTP server of its own),
// against one loopback Clink that answers after 50 ms. It reports calls/s
// and the p50 and p99 latency of a call.
//
// It also reports what the database's connections did during the run,
// sampled from pg_stat_activity every 20 ms: lock-wait is the mean number
// waiting for a row lock (every call locks the same rows: the global
// budget and rate-limit counters, and the audit head), pg-active the mean
// number running a statement. The pool=default rows are the store as
// shipped (a pool of 4 connections per handle: 4 for one replica, 12 for
// three); the pool=2 and pool=16 rows set pool_max_conns to show what
// fewer and more connections do (more wait on the same row locks).
// Servers, database and load
// client all share the machine's cores.
//
//	go test -tags postgres -run '^$' -bench ReplicasPostgres -benchtime 3000x ./service/
func BenchmarkReplicasPostgres(b *testing.B) {
	for _, c := range []struct{ replicas, pool int }{{1, 0}, {3, 0}, {1, 2}, {3, 2}, {1, 16}, {3, 16}} {
		pool := "default"
		if c.pool > 0 {
			pool = fmt.Sprint(c.pool)
		}
		b.Run(fmt.Sprintf("replicas=%d/pool=%s/clients=64", c.replicas, pool), func(b *testing.B) {
			runLoad(b, loadSetup{store: "postgres", replicas: c.replicas, pool: c.pool,
				latency: 50 * time.Millisecond, clients: 64, sample: true})
		})
	}
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
	clinkURL, shutdown, err := sb.Listen()
	if err != nil {
		b.Fatal(err)
	}
	// Registered first, run last: after the servers that call it.
	b.Cleanup(func() { shutdown(context.Background()) })

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

// BenchmarkStoreOverheadPostgres measures what each store adds to a call,
// interleaved call by call so that all three see the same machine: one
// client calls a memory, a SQLite and a Postgres server in turn (each
// round in the next of the six orders, so that each store follows each
// other as often), over real HTTP, against a loopback Clink that answers
// at once. It reports each store's p50 and the Postgres overhead (its p50
// less memory's) over SQLite's, the figure the PostgreSQL store's target
// names (within 2x).
//
//	go test -tags postgres -run '^$' -bench StoreOverheadPostgres -benchtime 3000x ./service/
func BenchmarkStoreOverheadPostgres(b *testing.B) {
	pol, err := policy.Parse("load.yaml", []byte(loadbench.Policy))
	if err != nil {
		b.Fatal(err)
	}
	sb := sandbox.New()
	clinkURL, shutdown, err := sb.Listen()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(context.Background()) })
	stores := []string{"memory", "sqlite", "postgres"}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	dbURL := benchDatabase(b)
	urls := make([]string, len(stores))
	for i, store := range stores {
		urls[i] = startServer(b, pol, clinkURL, store, dbURL, 0)
	}
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	latencies := make([][]time.Duration, len(stores))
	var n int64
	for b.Loop() {
		for k, j := range orders[n%int64(len(orders))] {
			d, err := timedCall(hc, urls[j], n*int64(len(stores))+int64(k))
			if err != nil {
				b.Fatal(err)
			}
			latencies[j] = append(latencies[j], d)
		}
		n++
	}
	if got, want := sb.Requests(), n*int64(len(stores)); got != want {
		b.Fatalf("Clink received %d requests for %d calls", got, want)
	}
	p50 := make([]float64, len(stores))
	for i, store := range stores {
		p50[i] = loadbench.Percentile(latencies[i], 0.50).Seconds() * 1000
		b.ReportMetric(p50[i], store+"-p50-ms")
	}
	if p50[1] <= p50[0] {
		b.Fatalf("SQLite's p50 (%.3f ms) is not above memory's (%.3f ms): too few calls to compare (-benchtime)", p50[1], p50[0])
	}
	b.ReportMetric((p50[2]-p50[0])/(p50[1]-p50[0]), "pg/sqlite-overhead")
	b.ReportMetric(0, "ns/op") // the metrics above are the figures
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
