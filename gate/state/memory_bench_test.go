package state

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// holdComplete runs one created call through s at at: a hold with a claim
// and limits, and its completion with a replay and a session of its own.
func holdComplete(tb testing.TB, s Store, at time.Time, n int, limits []policy.Limit) {
	ctx := context.Background()
	call := fmt.Sprint("call-", n)
	h := &Hold{At: at, Limits: limits,
		Claim:  &Claim{Key: fmt.Sprint("create_checkout_session|args|", n), Call: call, Fingerprint: "f", At: at, Window: 10 * time.Minute},
		Intent: AuditRecord{Time: at, Kind: KindIntent, Call: call, Tool: "create_checkout_session", Decision: "allowed", Amount: "19.99", Currency: "USD", Amounts: "USD 19.99"}}
	held, err := s.Hold(ctx, h)
	if err != nil || held.Prior.State != ClaimNew {
		tb.Fatalf("Hold = %+v, %v", held, err)
	}
	err = s.Complete(ctx, &Completion{Call: call, Settlement: policy.Spent, ClaimKey: h.Claim.Key,
		Replay: []byte(`{"sessionId":"sess_123","url":"https://pay.example/s/123"}`),
		Record: AuditRecord{Time: at, Kind: KindOutcome, Call: call, Tool: "create_checkout_session", Decision: "created", SessionID: fmt.Sprint("sess_", n)}})
	if err != nil {
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

// BenchmarkMemoryHoldComplete runs 100,000 (and 200,000) created calls
// through one Memory, the clock moving 600ms a call, and reports the heap
// the store retains afterwards, in all and per call: the same after
// 200,000 calls as after 100,000 when the store is bounded. Run it with
// -benchtime=1x.
func BenchmarkMemoryHoldComplete(b *testing.B) {
	for _, calls := range []int{100_000, 200_000} {
		b.Run(fmt.Sprint("calls=", calls), func(b *testing.B) {
			for b.Loop() {
				base := heapInuse()
				m := NewMemory()
				at := day
				start := time.Now()
				for n := range calls {
					at = at.Add(600 * time.Millisecond)
					holdComplete(b, m, at, n, benchLimits)
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
