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
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/internal/loadbench"
	"github.com/clink-mcp/clink-mcp/policy"
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

// storeTimer is a store that keeps how long each call spent in it: its
// hold and its completion, by call. A call waiting for an identical one
// would look its claim up by polling (storeTimer hides WaitClaim); the
// benchmark's calls are all distinct.
type storeTimer struct {
	state.Store
	mu    sync.Mutex
	calls map[string]time.Duration
}

func (s *storeTimer) add(call string, t0 time.Time) {
	d := time.Since(t0)
	s.mu.Lock()
	s.calls[call] += d
	s.mu.Unlock()
}

func (s *storeTimer) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	defer s.add(h.Intent.Call, time.Now())
	return s.Store.Hold(ctx, h)
}

func (s *storeTimer) Complete(ctx context.Context, c *state.Completion) error {
	defer s.add(c.Call, time.Now())
	return s.Store.Complete(ctx, c)
}

// Ping is the store's, for the server's readiness.
func (s *storeTimer) Ping(ctx context.Context) error {
	if p, ok := s.Store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// times are the calls' times in the store.
func (s *storeTimer) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, 0, len(s.calls))
	for _, d := range s.calls {
		out = append(out, d)
	}
	return out
}

// BenchmarkStoreOverheadPostgres measures what each store adds to a call,
// interleaved call by call so that all three see the same machine: one
// client calls a memory, a SQLite and a Postgres server in turn (each
// round in the next of the six orders, so that each store follows each
// other as often), over real HTTP, against a loopback Clink that answers
// at once. It reports each store's p50 and the Postgres overhead (its p50
// less memory's) over SQLite's, the figure the PostgreSQL store's target
// names (within 2x). The same ratio from inside the servers
// (pg/sqlite-store-time) takes the p50 of each call's own time in its
// store (hold and completion, storeTimer) instead: it tells the store's
// work from what surrounds it.
//
//	go test -tags postgres -run '^$' -bench StoreOverheadPostgres -benchtime 3000x ./service/
func BenchmarkStoreOverheadPostgres(b *testing.B) {
	pol, err := policy.Parse("load.yaml", []byte(loadbench.Policy))
	if err != nil {
		b.Fatal(err)
	}
	sb := sandbox.New()
	clinkURL := listenSandbox(b, sb)
	stores := []string{"memory", "sqlite", "postgres"}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	dbURL := benchDatabase(b)
	urls := make([]string, len(stores))
	timers := make([]*storeTimer, len(stores))
	for i, store := range stores {
		timers[i] = &storeTimer{Store: openStore(b, store, dbURL, 0), calls: map[string]time.Duration{}}
		urls[i] = serveStore(b, pol, clinkURL, timers[i])
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
	p50, inStore := make([]float64, len(stores)), make([]float64, len(stores))
	for i, store := range stores {
		p50[i] = loadbench.Percentile(latencies[i], 0.50).Seconds() * 1000
		b.ReportMetric(p50[i], store+"-p50-ms")
		times := timers[i].times()
		if int64(len(times)) != n {
			b.Fatalf("the %s store timed %d calls of %d", store, len(times), n)
		}
		inStore[i] = loadbench.Percentile(times, 0.50).Seconds() * 1000
	}
	if p50[1] <= p50[0] {
		b.Fatalf("SQLite's p50 (%.3f ms) is not above memory's (%.3f ms): too few calls to compare (-benchtime)", p50[1], p50[0])
	}
	b.ReportMetric((p50[2]-p50[0])/(p50[1]-p50[0]), "pg/sqlite-overhead")
	// The same from inside the server: the p50 of each call's time in its
	// store (hold and completion), less memory's.
	b.ReportMetric(inStore[1], "sqlite-store-p50-ms")
	b.ReportMetric(inStore[2], "postgres-store-p50-ms")
	b.ReportMetric((inStore[2]-inStore[0])/(inStore[1]-inStore[0]), "pg/sqlite-store-time")
	b.ReportMetric(0, "ns/op") // the metrics above are the figures
}
