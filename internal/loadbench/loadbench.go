// Package loadbench runs the clients of the load benchmarks (service's
// BenchmarkHTTPLoad, BenchmarkHTTPLoadPostgres and BenchmarkReplicasPostgres,
// and cmd/clink-mcp's BenchmarkReplicaProcessesPostgres) and reports their
// figures the same way. Only tests import it.
package loadbench

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Policy is the load benchmarks' policy file: every stateful rule on (a
// global and a per-customer budget, a global and a per-principal rate
// limit, the duplicate guard), with limits no run reaches, so that every
// call locks their counters and none is refused.
const Policy = `version: 1
currencies:
  USD: { max_amount: 500 }
budgets:
  - { currency: USD, window: 24h, max_amount: 9000000000 }
  - { currency: USD, window: 1h, max_amount: 9000000000, per: customer }
rate_limits:
  - { window: 1m, max_calls: 100000000 }
  - { window: 1h, max_calls: 100000000, per: principal }
duplicates: { window: 10m }
`

// Run has clients clients make calls 1 to b.N between them, each client
// making its next call as soon as its last one ended, and returns the
// latency of every call that succeeded and how long the whole load took.
// call makes call i and returns how long its client waited; an error is
// reported to b and ends that client. The benchmark's timer runs only
// during the load.
func Run(b *testing.B, clients int, call func(i int64) (time.Duration, error)) (latencies []time.Duration, elapsed time.Duration) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	latencies = make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				d, err := call(i)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(start)
	b.StopTimer()
	return latencies, elapsed
}

// Report reports the load's calls/s and the p50 and p99 of latencies, in
// ms, as the benchmark's figures (with 0 ns/op, which would only repeat
// them). It reports nothing for no latencies.
func Report(b *testing.B, latencies []time.Duration, elapsed time.Duration) {
	if len(latencies) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(ms(Percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(Percentile(latencies, 0.99)), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// Percentile is the p-quantile of latencies (p from 0 to 1), 0 for none.
func Percentile(latencies []time.Duration, p float64) time.Duration {
	if len(latencies) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(latencies))
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}
