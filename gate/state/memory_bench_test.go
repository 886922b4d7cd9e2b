package state

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// holdComplete runs one created call through s at at: a hold with a claim
// and limits, and its completion with a replay and a session of its own.
func holdComplete(tb testing.TB, s Store, at time.Time, n int, limits []policy.Limit) {
	runCall(tb, s, at, n, limits, policy.Spent)
}

// runCall runs one call through s at at: a hold with a claim and limits,
// and its completion as settlement says: Spent, a created session with a
// replay; Released, a refusal that releases its budgets and drops its claim.
func runCall(tb testing.TB, s Store, at time.Time, n int, limits []policy.Limit, settlement policy.Settlement) {
	ctx := context.Background()
	call := fmt.Sprint("call-", n)
	h := &Hold{At: at, Limits: limits,
		Claim:  &Claim{Key: fmt.Sprint("create_checkout_session|args|", n), Call: call, Fingerprint: "f", At: at, Window: 10 * time.Minute},
		Intent: AuditRecord{Time: at, Kind: KindIntent, Call: call, Tool: "create_checkout_session", Decision: "allowed", Amount: "19.99", Currency: "USD", Amounts: "USD 19.99"}}
	held, err := s.Hold(ctx, h)
	if err != nil || held.Prior.State != ClaimNew {
		tb.Fatalf("Hold = %+v, %v", held, err)
	}
	c := &Completion{Call: call, Settlement: settlement, ClaimKey: h.Claim.Key,
		Replay: []byte(`{"sessionId":"sess_123","url":"https://pay.example/s/123"}`),
		Record: AuditRecord{Time: at, Kind: KindOutcome, Call: call, Tool: "create_checkout_session", Decision: "created", SessionID: fmt.Sprint("sess_", n)}}
	if settlement == policy.Released {
		c.Replay = nil
		c.Record.Decision, c.Record.SessionID = "upstream_refused", ""
	}
	if err := s.Complete(ctx, c); err != nil {
		tb.Fatal(err)
	}
}

// heapInuse returns the bytes of the heap in use after a full collection.
func heapInuse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// windowLimits is a call checked against a 24h budget, a 1h and a 1m rate
// limit, none of which a run of calls 1ms apart outlasts but the last:
// entries pile up in their windows rather than expire.
var windowLimits = []policy.Limit{
	budget("budget|*|USD|24h|", 24*time.Hour, math.MaxInt64/2, 1999),
	rate("rate|*|1h|", time.Hour, math.MaxInt64/2),
	rate("rate|*|1m|", time.Minute, math.MaxInt64/2),
}

// BenchmarkMemoryHoldComplete runs 100,000 (and 200,000) created calls
// through one Memory and reports the heap the store retains afterwards,
// in all and per call: the same after 200,000 calls as after 100,000 when
// the store is bounded. With the calls 600ms apart, most of what they
// counted and claimed has expired by the end; with the calls 1ms apart
// against windowLimits, within one window, almost none has, and only the
// store's own bounds hold it. Run it with -benchtime=1x.
func BenchmarkMemoryHoldComplete(b *testing.B) {
	scenarios := []struct {
		name   string
		step   time.Duration
		limits []policy.Limit
	}{
		{"600ms-apart", 600 * time.Millisecond, benchLimits},
		{"within-one-window", time.Millisecond, windowLimits},
	}
	for _, sc := range scenarios {
		for _, calls := range []int{100_000, 200_000} {
			b.Run(fmt.Sprintf("%s/calls=%d", sc.name, calls), func(b *testing.B) {
				for b.Loop() {
					base := heapInuse()
					m := NewMemory()
					at := day
					start := time.Now()
					for n := range calls {
						at = at.Add(sc.step)
						holdComplete(b, m, at, n, sc.limits)
					}
					elapsed := time.Since(start)
					retained := heapInuse() - base
					runtime.KeepAlive(m)
					b.ReportMetric(float64(retained)/float64(calls), "retained-B/call")
					b.ReportMetric(float64(retained)/(1<<20), "retained-MiB")
					b.ReportMetric(float64(elapsed.Nanoseconds())/float64(calls), "ns/call")
				}
			})
		}
	}
}
