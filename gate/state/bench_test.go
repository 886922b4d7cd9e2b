package state

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// benchLimits is a call checked against a global budget, a per-customer
// budget and a rate limit, as a policy with all three would ask.
var benchLimits = []policy.Limit{
	budget("budget|*|USD|24h|", time.Minute, math.MaxInt64/2, 1999),
	budget("budget|*|USD|1h|cust:4f2a", time.Minute, math.MaxInt64/2, 1999),
	rate("rate|*|1m|", time.Minute, math.MaxInt64/2),
}

func benchStores() []implementation {
	return []implementation{
		{"memory", func(testing.TB) Store { return NewMemory() }},
		{"sqlite", func(b testing.TB) Store { return openSQLite(b, filepath.Join(b.TempDir(), "state.db")) }},
	}
}

// BenchmarkReserveSettle reserves and settles one call per iteration, the
// clock moving 600ms a call so that about 100 entries per counter are in
// their windows and the rest are pruned, as in steady use.
func BenchmarkReserveSettle(b *testing.B) {
	ctx := context.Background()
	for _, impl := range benchStores() {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			at := day
			b.ReportAllocs()
			for b.Loop() {
				at = at.Add(600 * time.Millisecond)
				id, err := s.Reserve(ctx, at, benchLimits)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Settle(ctx, id, policy.Spent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendAudit(b *testing.B) {
	ctx := context.Background()
	for _, impl := range benchStores() {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			rec := sampleRecords(1)[0]
			b.ReportAllocs()
			for b.Loop() {
				r := rec
				if err := s.AppendAudit(ctx, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClaimFinish(b *testing.B) {
	ctx := context.Background()
	for _, impl := range benchStores() {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			result := []byte(`{"sessionId":"sess_123","url":"https://pay.example/s/123"}`)
			at, n := day, 0
			b.ReportAllocs()
			for b.Loop() {
				at, n = at.Add(time.Millisecond), n+1
				key := fmt.Sprintf("create_checkout_session|%d", n)
				p, err := s.Claim(ctx, Claim{Key: key, Fingerprint: "f", At: at, Window: time.Minute})
				if err != nil || p.State != ClaimNew {
					b.Fatalf("Claim = %v, %v", p, err)
				}
				if err := s.Finish(ctx, key, result); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHoldComplete is a created call's two write transactions: the
// hold (claim, reservation of a global and a per-customer budget and a
// rate limit, intent record) and the completion (settlement, replay,
// outcome record), the clock moving 600ms a call.
func BenchmarkHoldComplete(b *testing.B) {
	ctx := context.Background()
	replay := []byte(`{"sessionId":"sess_123","url":"https://pay.example/s/123"}`)
	for _, impl := range benchStores() {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			at, n := day, 0
			b.ReportAllocs()
			for b.Loop() {
				at, n = at.Add(600*time.Millisecond), n+1
				call := fmt.Sprint("call-", n)
				h := &Hold{At: at, Limits: benchLimits,
					Claim:  &Claim{Key: fmt.Sprint("create_checkout_session|args|", n), Call: call, Fingerprint: "f", At: at, Window: 10 * time.Minute},
					Intent: AuditRecord{Time: at, Kind: KindIntent, Call: call, Tool: "create_checkout_session", Decision: "allowed", Amount: "19.99", Currency: "USD", Amounts: "USD 19.99"}}
				held, err := s.Hold(ctx, h)
				if err != nil || held.Prior.State != ClaimNew {
					b.Fatalf("Hold = %+v, %v", held, err)
				}
				err = s.Complete(ctx, &Completion{Call: call, Settlement: policy.Spent, ClaimKey: h.Claim.Key,
					Replay: replay, Record: AuditRecord{Time: at, Kind: KindOutcome, Call: call, Tool: "create_checkout_session", Decision: "created", SessionID: "sess_123"}})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
