package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// principalPolicy gives every principal 300.00 USD a day, and all of them
// together 900.00; no duplicate guard, so repeated calls are new calls.
const principalPolicy = `
version: 1
currencies:
  USD: { max_amount: 500 }
budgets:
  - { currency: USD, max_amount: 900, window: 24h }
  - { currency: USD, max_amount: 300, window: 24h, per: principal }
rate_limits:
  - { window: 1m, max_calls: 1000, per: principal }
duplicates: { window: 0 }
`

// keyRecorder keeps the counter keys of every Hold and Check.
type keyRecorder struct {
	state.Store
	mu   sync.Mutex
	keys [][]string
}

func (s *keyRecorder) record(ls []policy.Limit) {
	ks := make([]string, len(ls))
	for i, l := range ls {
		ks[i] = l.Key
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, ks)
}

func (s *keyRecorder) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	s.record(h.Limits)
	return s.Store.Hold(ctx, h)
}

func (s *keyRecorder) Check(ctx context.Context, at time.Time, ls []policy.Limit) error {
	s.record(ls)
	return s.Store.Check(ctx, at, ls)
}

func (s *keyRecorder) last() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

func newGate(t *testing.T, yaml, scope string, st state.Store) (*Gate, *syncBuffer) {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	g := New(Config{Policy: p, Store: st, Secret: testSecret, Account: "acct", Scope: scope,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	t.Cleanup(func() { g.Close(context.Background()) })
	return g, logs
}

// spendInParallel has each principal make calls of 10.00 USD, each from
// its own goroutines, and returns how many each got created.
func spendInParallel(t *testing.T, g *Gate, fake *clinkFake, principals []string, calls int) map[string]int {
	t.Helper()
	var (
		mu      sync.Mutex
		created = map[string]int{}
		wg      sync.WaitGroup
	)
	for _, p := range principals {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < calls; i += 4 {
					res := g.Create(context.Background(), p, fake.order(t, "10", fmt.Sprintf("c%d@example.com", i)))
					switch res.Code {
					case policy.CodeCreated:
						mu.Lock()
						created[p]++
						mu.Unlock()
					case policy.CodeBudgetExceeded:
					default:
						t.Errorf("%s's call: %+v", p, res)
					}
				}
			}()
		}
	}
	wg.Wait()
	return created
}

// TestPrincipalsSpendTheirOwnAllowanceUnderASharedCap: principals calling
// at once each get exactly their own per-principal allowance, and all of
// them together no more than the shared budget; nothing refused reaches
// Clink.
func TestPrincipalsSpendTheirOwnAllowanceUnderASharedCap(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, principalPolicy, "", st)
	fake := &clinkFake{}

	// agent-a and agent-b: 40 calls of 10.00 each, 30 of which fit their
	// own 300.00; together 600.00 of the shared 900.00.
	got := spendInParallel(t, g, fake, []string{"agent-a", "agent-b"}, 40)
	if diff := cmp.Diff(map[string]int{"agent-a": 30, "agent-b": 30}, got); diff != "" {
		t.Errorf("created per principal (-want +got):\n%s", diff)
	}
	// A refusal by a principal's own budget says so.
	res := g.Create(context.Background(), "agent-a", fake.order(t, "1", "x@example.com"))
	if res.Code != policy.CodeBudgetExceeded || !strings.Contains(res.Text, "budget per principal") {
		t.Errorf("agent-a past its allowance = %+v, want budget_exceeded per principal", res)
	}

	// agent-c and agent-d: 600.00 of their own allowances, but only
	// 300.00 of the shared budget left for both.
	got = spendInParallel(t, g, fake, []string{"agent-c", "agent-d"}, 40)
	if got["agent-c"]+got["agent-d"] != 30 {
		t.Errorf("created %v, want 30 in all under the shared budget", got)
	}
	if n := fake.calls.Load(); n != 90 {
		t.Errorf("%d calls reached Clink, want the 90 created", n)
	}
	// So is a principal that has spent nothing.
	d, err := g.Check(context.Background(), "agent-e", fake.order(t, "1", "x@example.com"))
	if err != nil || d.Decision.Code != policy.CodeBudgetExceeded || strings.Contains(d.Decision.Message, "per principal") {
		t.Errorf("Check for a fresh principal = %+v, %v; want the shared budget's refusal", d, err)
	}
}

// TestGatesWithAnotherScopeShareNoCounter: gates under two policy files
// on one store count apart; gates with one scope count together.
func TestGatesWithAnotherScopeShareNoCounter(t *testing.T) {
	st := memory(t)
	const shared = "version: 1\ncurrencies:\n  USD: { max_amount: 500 }\nbudgets:\n  - { currency: USD, max_amount: 300, window: 24h }\n"
	teamA, _ := newGate(t, shared, "policies/team-a.yaml", st)
	teamB, _ := newGate(t, shared, "policies/team-b.yaml", st)
	other := st.Open() // another process on the same store
	t.Cleanup(func() { other.Close() })
	teamA2, _ := newGate(t, shared, "policies/team-a.yaml", other)
	unscoped, _ := newGate(t, shared, "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	for i, g := range []*Gate{teamA, teamB, unscoped} {
		if res := g.Create(ctx, "agent", fake.order(t, "250", fmt.Sprintf("c%d@example.com", i))); res.Code != policy.CodeCreated {
			t.Fatalf("gate %d's first call = %+v, want created: no counter is shared", i, res)
		}
	}
	// The same scope (another process on the same store) is the same
	// counter, and the refusal reads the policy's own key.
	res := teamA2.Create(ctx, "agent", fake.order(t, "100", "d@example.com"))
	if res.Code != policy.CodeBudgetExceeded || !strings.Contains(res.Text, "the rolling 24h USD budget (300.00 USD, 50.00 USD left)") {
		t.Errorf("a call under team-a's scope again = %+v, want budget_exceeded with 50.00 left", res)
	}
	d, err := teamB.Check(ctx, "agent", fake.order(t, "100", "d@example.com"))
	if err != nil || d.Decision.Code != policy.CodeBudgetExceeded || d.Decision.Remaining.Amount() != "50.00" {
		t.Errorf("Check under team-b's scope = %+v, %v; want budget_exceeded with 50.00 left", d, err)
	}
}

// TestScopeKeys: no scope keeps the policy's keys exactly; a scope puts a
// prefix before each, which no two scopes, and no unscoped key, share.
func TestScopeKeys(t *testing.T) {
	p := parsePolicy(t)
	secret := deriveKeys(testSecret).customer
	fake := &clinkFake{}
	o := fake.order(t, "10", "a@example.com")
	req := o.Request
	req.Principal = LocalPrincipal
	want := p.Limits(&req, policy.CustomerKeys(secret, &req))
	var wantKeys []string
	for _, l := range want {
		wantKeys = append(wantKeys, l.Key)
	}
	if len(wantKeys) != 2 || wantKeys[0] != "budget|*|USD|24h0m0s|" || !strings.HasPrefix(wantKeys[1], "budget|*|USD|24h0m0s|c:") {
		t.Fatalf("the policy's keys %q", wantKeys)
	}

	for _, tc := range []struct {
		name, scope, prefix string
	}{
		{"keeps the policy's keys without a scope", "", ""},
		{"puts the scope and its length before each key", "policies/team-a.yaml", "scope|20|policies/team-a.yaml|"},
		{"keeps a scope with field separators in one field", "a|b", "scope|3|a|b|"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &keyRecorder{Store: memory(t)}
			g, _ := newGate(t, testPolicy, tc.scope, st)
			var want []string
			for _, k := range wantKeys {
				want = append(want, tc.prefix+k)
			}
			if res := g.Create(context.Background(), "", o); res.Code != policy.CodeCreated {
				t.Fatal(res)
			}
			if diff := cmp.Diff(want, st.last()); diff != "" {
				t.Errorf("Hold's keys (-want +got):\n%s", diff)
			}
			if _, err := g.Check(context.Background(), "", o); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, st.last()); diff != "" {
				t.Errorf("Check's keys (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("never gives two scopes, or a scope and none, one key", func(t *testing.T) {
		// Scopes and keys crafted so that plain concatenation would collide;
		// every key the policy makes starts with "budget|" or "rate|".
		pairs := [][2]string{
			{"", "rate|*|1m0s|p:x"},
			{"a", "rate|*|1m0s|p:x"},
			{"a", "rate|*|1m0s|p:b|rate|*|1m0s|p:c"},
			{"a|rate|*|1m0s|p:b", "rate|*|1m0s|p:c"},
			{"1|a", "rate|*|1m0s|p:x"},
			{"3|a", "rate|*|1m0s|p:x"},
			{"a|", "|rate|*|1m0s|p:x"},
		}
		seen := map[string][2]string{}
		for _, pr := range pairs {
			k := scopePrefix(pr[0]) + pr[1]
			if prev, ok := seen[k]; ok {
				t.Errorf("scope %q, key %q and scope %q, key %q: both %q", prev[0], prev[1], pr[0], pr[1], k)
			}
			seen[k] = pr
		}
	})
}

// TestTheLocalPrincipalIsNamed: calls with caller "" are recorded, logged,
// claimed and counted as LocalPrincipal's.
func TestTheLocalPrincipalIsNamed(t *testing.T) {
	st := &keyRecorder{Store: memory(t)}
	g, logs := newGate(t, strings.Replace(principalPolicy, "window: 0", "window: 10m", 1), "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	o := fake.order(t, "10", "a@example.com")
	if res := g.Create(ctx, "", o); res.Code != policy.CodeCreated {
		t.Fatal(res)
	}
	if o.Request.Principal != "" {
		t.Errorf("Create changed the caller's order: Principal %q", o.Request.Principal)
	}
	if keys := st.last(); keys[1] != "budget|*|USD|24h0m0s|p:local" {
		t.Errorf("per-principal key %q, want the local principal's", keys[1])
	}
	// "" and "local" are one principal: one claim, so a replay.
	if res := g.Create(ctx, LocalPrincipal, o); !res.Replayed {
		t.Errorf("the same call as %q = %+v, want a replay", LocalPrincipal, res)
	}
	g.Invalid(ctx, "", policy.ToolAgentPaymentSession, "", []string{"amount is missing"})
	g.Refused(ctx, "", policy.ToolCheckoutSession, "", policy.Decision{Code: policy.CodeEmailNotAllowed, Message: "no"})
	g.Internal(ctx, "", policy.ToolCheckoutSession)

	var callers []string
	err := st.ScanAudit(ctx, func(r *state.AuditRecord) error {
		callers = append(callers, r.Kind+":"+r.Caller)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"intent:local", "outcome:local", "outcome:local", "outcome:local", "outcome:local", "outcome:local"}
	if diff := cmp.Diff(want, callers); diff != "" {
		t.Errorf("records' callers (-want +got):\n%s", diff)
	}

	var lines int
	for line := range strings.Lines(logs.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		if l["msg"] != "tool call" {
			continue
		}
		lines++
		if l["caller"] != LocalPrincipal {
			t.Errorf("log line names caller %v, want %q: %s", l["caller"], LocalPrincipal, line)
		}
	}
	if lines != 5 {
		t.Errorf("%d tool call log lines, want 5:\n%s", lines, logs)
	}
}

// TestCheckCountsTheCallersOwnAllowance: Check judges a per-principal
// budget by the caller it is given, and leaves the request as it was.
func TestCheckCountsTheCallersOwnAllowance(t *testing.T) {
	g, _ := newGate(t, principalPolicy, "", memory(t))
	fake := &clinkFake{}
	ctx := context.Background()
	if res := g.Create(ctx, "agent-a", fake.order(t, "250", "a@example.com")); res.Code != policy.CodeCreated {
		t.Fatal(res)
	}
	o := fake.order(t, "100", "a@example.com")
	for _, tc := range []struct {
		caller string
		code   policy.Code
	}{{"agent-a", policy.CodeBudgetExceeded}, {"agent-b", policy.CodeAllowed}, {"", policy.CodeAllowed}} {
		if d, err := g.Check(ctx, tc.caller, o); err != nil || d.Decision.Code != tc.code {
			t.Errorf("Check for %q = %+v, %v; want %s", tc.caller, d, err, tc.code)
		}
	}
	if o.Request.Principal != "" {
		t.Errorf("Check changed the request: Principal %q", o.Request.Principal)
	}
}

// callLog is an Observer that keeps what it is told.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (o *callLog) CallEnded(tool string, code policy.Code, replayed bool, elapsed time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if elapsed <= 0 {
		code = "no-duration"
	}
	o.calls = append(o.calls, fmt.Sprintf("%s %s %v", tool, code, replayed))
}

// TestTheObserverIsToldEveryEnd: created, replayed and refused calls, and
// one refused before it became an order, each reach the observer once.
func TestTheObserverIsToldEveryEnd(t *testing.T) {
	p, err := policy.Parse("test.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 50 }\nduplicates: { window: 10m }\n"))
	if err != nil {
		t.Fatal(err)
	}
	obs := &callLog{}
	g := New(Config{Policy: p, Store: memory(t), Secret: testSecret, Observer: obs})
	t.Cleanup(func() { g.Close(context.Background()) })
	fake := &clinkFake{}
	g.Create(context.Background(), "", fake.order(t, "10", "a@example.com"))
	g.Create(context.Background(), "", fake.order(t, "10", "a@example.com"))
	g.Create(context.Background(), "", fake.order(t, "90", "b@example.com"))
	g.Invalid(context.Background(), "", policy.ToolAgentPaymentSession, "", []string{"amount is required"})
	tool := policy.ToolAgentPaymentSession
	want := []string{tool + " created false", tool + " replayed true", tool + " amount_over_cap false", tool + " invalid_arguments false"}
	if diff := cmp.Diff(want, obs.calls); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}

// notifyingStore is a store that says when a claim finishes, as one shared
// by replicas does (ClaimWaiter), and counts the holds tried.
type notifyingStore struct {
	state.Store
	holds    atomic.Int64
	mu       sync.Mutex
	finished chan struct{} // closed, and replaced, by every Complete
}

func (s *notifyingStore) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	s.holds.Add(1)
	return s.Store.Hold(ctx, h)
}

func (s *notifyingStore) Complete(ctx context.Context, c *state.Completion) error {
	err := s.Store.Complete(ctx, c)
	s.mu.Lock()
	close(s.finished)
	s.finished = make(chan struct{})
	s.mu.Unlock()
	return err
}

func (s *notifyingStore) WaitClaim(ctx context.Context, key string) error {
	s.mu.Lock()
	ch := s.finished
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestAWaitingCallWakesWhenTheStoreSaysTheClaimFinished: on a store that
// notifies, an identical call waiting for one in flight looks at the store
// once per notification (or per second), not every 20 ms, and answers with
// the replay as soon as the first call finishes.
func TestAWaitingCallWakesWhenTheStoreSaysTheClaimFinished(t *testing.T) {
	p, err := policy.Parse("test.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 50 }\nduplicates: { window: 10m }\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := &notifyingStore{Store: memory(t), finished: make(chan struct{})}
	g := New(Config{Policy: p, Store: st, Secret: testSecret})
	t.Cleanup(func() { g.Close(context.Background()) })
	fake := &clinkFake{release: make(chan struct{}), started: make(chan struct{}, 1)}
	first := make(chan *Result, 1)
	go func() { first <- g.Create(context.Background(), "", fake.order(t, "10", "a@example.com")) }()
	<-fake.started
	second := make(chan *Result, 1)
	go func() { second <- g.Create(context.Background(), "", fake.order(t, "10", "a@example.com")) }()
	time.Sleep(600 * time.Millisecond) // 30 polls' worth
	if n := st.holds.Load(); n > 3 {
		t.Errorf("%d holds tried while waiting 600 ms: the waiting call polled", n)
	}
	close(fake.release)
	if r := <-first; r.Code != policy.CodeCreated {
		t.Fatalf("first call: %+v", r)
	}
	select {
	case r := <-second:
		if r.Code != policy.CodeReplayed {
			t.Errorf("second call: %+v, want replayed", r)
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("the waiting call did not wake within 500 ms of the first call's end")
	}
}
