package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// agreeSeeds is how many random runs TestMemoryAndSQLiteAgreeOnApprovalsAndHolds
// makes, each of 60 steps.
const agreeSeeds = 40

// Memory and SQLite, driven by the same random calls, approvals and
// approval holds (limits possibly changed between request and hold),
// answer alike and count alike.
func TestMemoryAndSQLiteAgreeOnApprovalsAndHolds(t *testing.T) {
	ctx := context.Background()
	for seed := int64(1); seed <= agreeSeeds; seed++ {
		rng := rand.New(rand.NewSource(seed))
		sq, err := OpenSQLite(filepath.Join(t.TempDir(), fmt.Sprintf("s%d.db", seed)))
		if err != nil {
			t.Fatal(err)
		}
		stores := []Store{NewMemory(), sq}
		names := []string{"memory", "sqlite"}
		all := []policy.Limit{
			budget("budget|*|USD|30m|", 30*time.Minute, 100, 0),
			rate("rate|*|20m|", 20*time.Minute, 3),
			rate("rate|*|1h|", time.Hour, 5),
			rate("rate|cust|10m|x", 10*time.Minute, 2),
		}
		pick := func() []policy.Limit {
			var out []policy.Limit
			amt := int64(1 + rng.Intn(40))
			for _, l := range all {
				if rng.Intn(4) > 0 {
					if l.Kind == policy.KindBudget {
						l.Add = amt
					}
					out = append(out, l)
				}
			}
			return out
		}
		at := day
		type apr struct {
			id    string
			state string
		}
		var aprs []*apr
		var open []string
		n := 0
		var log []string
		res := func(err error) string {
			var d *policy.Denied
			switch {
			case err == nil:
				return "ok"
			case errors.As(err, &d):
				return fmt.Sprintf("denied(%d,used %d,retry %v)", d.Limit, d.Used, d.RetryAt.Sub(day))
			case errors.Is(err, ErrApprovalNotPending):
				return "notpending"
			}
			return "err:" + err.Error()
		}
		for step := 0; step < 60; step++ {
			at = at.Add(time.Duration(rng.Intn(600)) * time.Second)
			n++
			var got []string
			var what string
			switch op := rng.Intn(6); op {
			case 0: // plain hold
				l := pick()
				call := fmt.Sprintf("c%d", n)
				what = fmt.Sprintf("hold %s %v", call, l)
				for _, s := range stores {
					_, err := s.Hold(ctx, &Hold{At: at, Limits: l, Intent: AuditRecord{Time: at, Kind: KindIntent, Call: call, Tool: "t", Decision: "allowed"}})
					got = append(got, res(err))
				}
				if got[0] == "ok" {
					open = append(open, call)
				}
			case 1: // request approval
				l := pick()
				id := fmt.Sprintf("apr_%d", n)
				what = fmt.Sprintf("request %s %v", id, l)
				for _, s := range stores {
					req := &ApprovalRequest{At: at, Limits: l, Remember: time.Hour,
						Approval: Approval{ID: id, Key: "key-" + id, Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(15 * time.Minute)},
						Record:   AuditRecord{Time: at, Kind: KindApproval, Call: id, Tool: "t", Decision: "approval_required"}}
					_, _, err := s.RequestApproval(ctx, req)
					got = append(got, res(err))
				}
				if got[0] == "ok" {
					aprs = append(aprs, &apr{id: id, state: "pending"})
				}
			case 2: // decide
				if len(aprs) == 0 {
					continue
				}
				a := aprs[rng.Intn(len(aprs))]
				ok := rng.Intn(3) > 0
				what = fmt.Sprintf("decide %s %v", a.id, ok)
				useBy := at.Add(time.Duration(1+rng.Intn(3)) * time.Hour)
				for _, s := range stores {
					_, err := s.DecideApproval(ctx, at, a.id, ok, "operator:x", useBy)
					got = append(got, res(err))
				}
			case 3, 4: // hold on an approval
				if len(aprs) == 0 {
					continue
				}
				a := aprs[rng.Intn(len(aprs))]
				l := pick()
				call := fmt.Sprintf("c%d", n)
				what = fmt.Sprintf("hold %s on %s %v", call, a.id, l)
				for _, s := range stores {
					_, err := s.Hold(ctx, &Hold{At: at, Limits: l, Approval: a.id, Intent: AuditRecord{Time: at, Kind: KindIntent, Call: call, Tool: "t", Decision: "allowed"}})
					got = append(got, res(err))
				}
				if got[0] == "ok" {
					open = append(open, call)
				}
			case 5: // complete
				if len(open) == 0 {
					continue
				}
				k := rng.Intn(len(open))
				call := open[k]
				open = append(open[:k], open[k+1:]...)
				s := policy.Spent
				if rng.Intn(2) == 0 {
					s = policy.Released
				}
				what = fmt.Sprintf("complete %s %v", call, s)
				for _, st := range stores {
					err := st.Complete(ctx, &Completion{Call: call, Settlement: s, Record: AuditRecord{Time: at, Kind: KindOutcome, Call: call, Tool: "t", Decision: "x"}})
					got = append(got, res(err))
				}
			}
			var use []string
			for _, s := range stores {
				u, err := s.Usage(ctx, at, all)
				if err != nil {
					t.Fatal(err)
				}
				use = append(use, fmt.Sprint(u))
			}
			log = append(log, fmt.Sprintf("%v %s: %v usage %v", at.Sub(day), what, got, use))
			if len(got) == 2 && got[0] != got[1] || use[0] != use[1] {
				for _, l := range log {
					t.Log(l)
				}
				t.Fatalf("seed %d: %s and %s disagree", seed, names[0], names[1])
			}
		}
		if err := stores[0].(*Memory).consistent(); err != nil {
			t.Fatal(err)
		}
		for _, s := range stores {
			s.Close()
		}
	}
}
