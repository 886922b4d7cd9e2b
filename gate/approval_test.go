package gate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// approvalPolicy asks for approval above 100 USD, under a budget of 1000.
const approvalPolicy = `
version: 1
currencies:
  USD: { max_amount: 500, approve_above: 100 }
budgets:
  - { currency: USD, max_amount: 1000, window: 24h }
approvals: { timeout: 15m }
`

// usage is what the global 24h USD budget holds now.
func usage(t *testing.T, g *Gate) int64 {
	t.Helper()
	st, err := g.Standing(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st {
		if l.Kind == policy.KindBudget {
			return l.Used
		}
	}
	t.Fatal("no budget in the standing limits")
	return 0
}

// approvalsIn returns the approvals of every state in st.
func approvalsIn(t *testing.T, st state.Store) []state.Approval {
	t.Helper()
	list, err := st.ListApprovals(context.Background(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestAnOperatorApprovalCreatesTheSessionOnceOnTheIdenticalCall(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	ctx := context.Background()

	// Below the threshold: no approval.
	if res := g.Create(ctx, "agent", fake.order(t, "100", "a@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("a call at the threshold = %+v, want created", res)
	}
	// Above it: pending, the budget reserved, nothing sent.
	res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if res.Code != policy.CodeApprovalRequired || res.Question != nil || !strings.Contains(res.Text, "apr_") {
		t.Fatalf("a call above the threshold = %+v, want approval_required naming the approval", res)
	}
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached Clink, want 1", n)
	}
	if u := usage(t, g); u != 35000 {
		t.Fatalf("the budget holds %d, want 35000 (the pending 250.00 reserved)", u)
	}
	list := approvalsIn(t, st)
	if len(list) != 1 || list[0].State != state.ApprovalPending || list[0].EmailMasked == "" || strings.Contains(list[0].EmailMasked, "b@example.com") {
		t.Fatalf("approvals = %+v, want one pending, its email masked", list)
	}
	id := list[0].ID

	// The identical call, still pending: told so, nothing reserved twice.
	if res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")); res.Code != policy.CodeApprovalRequired || !strings.Contains(res.Text, id) {
		t.Fatalf("the identical call while pending = %+v, want approval_required for %s", res, id)
	}
	if u := usage(t, g); u != 35000 {
		t.Fatalf("the budget holds %d after the repeat, want 35000", u)
	}

	if _, err := DecideApproval(ctx, st, id, true, ""); err == nil {
		t.Fatal("a decision without its maker's name was accepted")
	}
	a, err := DecideApproval(ctx, st, id, true, "ops-alice")
	if err != nil || a.State != state.ApprovalApproved || a.DecidedBy != "operator:ops-alice" {
		t.Fatalf("approve = %+v, %v", a, err)
	}
	if _, err := DecideApproval(ctx, st, id, false, "ops-bob"); !errors.Is(err, state.ErrApprovalNotPending) {
		t.Fatalf("a second decision = %v, want ErrApprovalNotPending", err)
	}

	res = g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if res.Code != policy.CodeCreated {
		t.Fatalf("the identical call once approved = %+v, want created", res)
	}
	if again := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")); again.Code != policy.CodeReplayed || again.SessionID != res.SessionID {
		t.Fatalf("the call once more = %+v, want a replay of %s", again, res.SessionID)
	}
	if n := fake.calls.Load(); n != 2 {
		t.Fatalf("%d calls reached Clink, want 2: the approved one created once", n)
	}
	if u := usage(t, g); u != 35000 {
		t.Fatalf("the budget holds %d, want 35000: the approval's reservation is the call's", u)
	}
	// Another principal's identical call is its own, and needs its own approval.
	if res := g.Create(ctx, "other", fake.order(t, "250", "b@example.com")); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("another principal's identical call = %+v, want approval_required", res)
	}
	rep, err := state.VerifyAudit(ctx, st)
	if err != nil || rep.Broken != nil {
		t.Fatalf("audit = %+v, %v", rep, err)
	}
	var decisions []string
	_ = st.ScanAudit(ctx, func(r *state.AuditRecord) error {
		if r.Kind == state.KindApproval {
			decisions = append(decisions, r.Decision+"/"+r.Caller)
		}
		return nil
	})
	want := []string{"approval_required/agent", "approval_granted/operator:ops-alice", "approval_required/other"}
	if fmt.Sprint(decisions) != fmt.Sprint(want) {
		t.Errorf("approval records = %v, want %v", decisions, want)
	}
}

func TestADeniedApprovalReleasesItsBudgetAndRefusesTheIdenticalCall(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	id := approvalsIn(t, st)[0].ID
	if _, err := DecideApproval(ctx, st, id, false, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, g); u != 0 {
		t.Fatalf("the budget holds %d after the denial, want 0", u)
	}
	res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if res.Code != policy.CodeApprovalDenied {
		t.Fatalf("the identical call after the denial = %+v, want approval_denied", res)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("a denied payment reached Clink")
	}
}

func TestAnApprovalNobodyDecidesExpiresAndGivesItsBudgetBack(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	ctx := context.Background()
	g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	advance(16 * time.Minute)
	res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if res.Code != policy.CodeApprovalExpired {
		t.Fatalf("the identical call after the timeout = %+v, want approval_expired", res)
	}
	if u := usage(t, g); u != 0 {
		t.Fatalf("the budget holds %d after the expiry, want 0", u)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("an expired payment reached Clink")
	}
}

// clockedGate is a gate under approvalPolicy on a memory store, on a clock
// the test moves with advance.
func clockedGate(t *testing.T) (g *Gate, advance func(time.Duration)) {
	t.Helper()
	return clockedGateWith(t, approvalPolicy)
}

// clockedGateWith is clockedGate with the policy yaml.
func clockedGateWith(t *testing.T, yaml string) (g *Gate, advance func(time.Duration)) {
	t.Helper()
	var mu sync.Mutex
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	p, err := policy.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	st := &sweptStore{Memory: memory(t), swept: make(chan struct{})}
	g = New(Config{Policy: p, Store: st, Secret: testSecret, Account: "acct",
		Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	t.Cleanup(func() { g.Close(context.Background()) })
	// The gate's clock sweeps expired approvals at once and then every few
	// seconds: wait for the first sweep, so that it cannot fall after the
	// test moves the clock on and do what the test expects of the call.
	<-st.swept
	return g, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

// sweptStore is a memory store that says when the gate first swept its
// expired approvals.
type sweptStore struct {
	*state.Memory
	once  sync.Once
	swept chan struct{}
}

func (s *sweptStore) ExpireApprovals(ctx context.Context, now time.Time) (int, error) {
	defer s.once.Do(func() { close(s.swept) })
	return s.Memory.ExpireApprovals(ctx, now)
}

// asked makes agent's call of USD 250 (above approvalPolicy's threshold)
// with a client that can ask its user, and returns the question put to
// the user; the test fails when none is.
func asked(t *testing.T, g *Gate, fake *clinkFake) *Question {
	t.Helper()
	q := ask(t, g, fake, "agent", "250", nil).Question
	if q == nil {
		t.Fatal("no question")
	}
	return q
}

// operatorApproves approves approval id in g's store as the operator ops,
// at g's time, for use within useBy.
func operatorApproves(t *testing.T, g *Gate, id string, useBy time.Duration) {
	t.Helper()
	at := g.now()
	if _, err := g.store.DecideApproval(context.Background(), at, id, true, OperatorDecider+"ops", at.Add(useBy)); err != nil {
		t.Fatal(err)
	}
}

// ask makes a call whose client can ask its user, and returns its result.
func ask(t *testing.T, g *Gate, fake *clinkFake, caller, amount string, ans *Answer) *Result {
	t.Helper()
	o := fake.order(t, amount, "b@example.com")
	o.CanAsk, o.Answer = true, ans
	return g.Create(context.Background(), caller, o)
}

func TestTheClientsUserIsAskedAndTheirAnswerCountsOnce(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}

	res := ask(t, g, fake, "agent", "250", nil)
	if res.Code != policy.CodeApprovalRequired || res.Question == nil {
		t.Fatalf("a call whose client can ask = %+v, want a question", res)
	}
	q := res.Question
	for _, want := range []string{"USD 250.00", "b@example.com", policy.ToolAgentPaymentSession} {
		if !strings.Contains(q.Message, want) {
			t.Errorf("the question %q does not say %q", q.Message, want)
		}
	}
	// Tampered, another principal's, another call's: refused, and the
	// approval stays pending.
	tampered := q.State[:len(q.State)-2] + "AA"
	if tampered == q.State {
		tampered = q.State[:len(q.State)-2] + "BB"
	}
	if res := ask(t, g, fake, "agent", "250", &Answer{State: tampered, Accept: true}); res.Code != policy.CodeApprovalInvalid {
		t.Errorf("a tampered state = %+v, want approval_invalid", res)
	}
	if res := ask(t, g, fake, "intruder", "250", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeApprovalInvalid {
		t.Errorf("another principal's answer = %+v, want approval_invalid", res)
	}
	if res := ask(t, g, fake, "agent", "251", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeApprovalInvalid {
		t.Errorf("an answer brought to other arguments = %+v, want approval_invalid", res)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("a refused answer reached Clink")
	}
	res = ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true})
	if res.Code != policy.CodeCreated {
		t.Fatalf("accepted = %+v, want created", res)
	}
	// The same answer again (a client whose answer's response was lost
	// repeats its request): the call it answered answers it (a replay),
	// and nothing is created twice: the state counts once.
	if again := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}); again.Code != policy.CodeReplayed || again.SessionID != res.SessionID {
		t.Errorf("the same answer again = %+v, want the replay of %s", again, res.SessionID)
	}
	// A no brought to the approval the yes used is refused, and not told
	// that nothing was created: a session was.
	if again := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: false}); again.Code != policy.CodeApprovalInvalid ||
		strings.Contains(again.Text, "Nothing was created") || !strings.Contains(again.Text, "already used") {
		t.Errorf("a no after the yes was used = %+v, want approval_invalid saying the approval was used", again)
	}
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached Clink, want 1", n)
	}
	list := approvalsIn(t, st)
	if len(list) != 1 || list[0].State != state.ApprovalUsed || list[0].DecidedBy != "client:agent" {
		t.Errorf("approvals = %+v, want one used, decided by client:agent", list)
	}
}

// TestAnAnswerAfterTheOperatorApproved: an operator approves while the
// user is being asked; the user's yes then creates the session on that
// approval (it was refused as an answer used already), and a no creates
// nothing and leaves the operator's approval as it is.
func TestAnAnswerAfterTheOperatorApproved(t *testing.T) {
	for _, accept := range []bool{true, false} {
		t.Run(fmt.Sprintf("accept=%v", accept), func(t *testing.T) {
			st := memory(t)
			g, _ := newGate(t, approvalPolicy, "", st)
			fake := &clinkFake{}
			q := asked(t, g, fake)
			list := approvalsIn(t, st)
			if len(list) != 1 {
				t.Fatalf("approvals = %+v, want one", list)
			}
			if _, err := DecideApproval(context.Background(), st, list[0].ID, true, "ops"); err != nil {
				t.Fatal(err)
			}
			res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: accept})
			wantCode, wantCalls, wantState := policy.CodeCreated, int64(1), state.ApprovalUsed
			if !accept {
				wantCode, wantCalls, wantState = policy.CodeApprovalDeclined, 0, state.ApprovalApproved
			}
			if res.Code != wantCode {
				t.Errorf("the user's answer = %+v, want %s", res, wantCode)
			}
			if !accept && !strings.Contains(res.Text, "an operator had approved it already") {
				t.Errorf("the decline says %q, want it to say an operator's approval stands", res.Text)
			}
			if n := fake.calls.Load(); n != wantCalls {
				t.Errorf("%d calls reached Clink, want %d", n, wantCalls)
			}
			if list := approvalsIn(t, st); len(list) != 1 || list[0].State != wantState || list[0].DecidedBy != "operator:ops" {
				t.Errorf("approvals = %+v, want one %s, decided by operator:ops", list, wantState)
			}
		})
	}
}

// TestAnAnswerIsJudgedByItsApprovalNotItsQuestion: whether an answer
// counts is for the store's approval to say (by the store's clock, the
// database's for replicas), not for the question's own expiry, read by
// this server's clock. A yes that comes after the question's time, to an
// approval an operator approved for longer, goes ahead on it; the same
// yes brought again gets the session it created.
func TestAnAnswerIsJudgedByItsApprovalNotItsQuestion(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	advance(10 * time.Minute)
	operatorApproves(t, g, q.ApprovalID, 15*time.Minute)
	advance(6 * time.Minute) // past the question's 15 minutes, within the approval's
	res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true})
	if res.Code != policy.CodeCreated || fake.calls.Load() != 1 {
		t.Fatalf("a yes past the question's time, to an approval that stands = %+v, want created", res)
	}
	advance(time.Minute)
	if again := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}); again.Code != policy.CodeReplayed || again.SessionID != res.SessionID {
		t.Errorf("the same yes again = %+v, want the replay of %s", again, res.SessionID)
	}
}

// A user's answer after an operator denied the payment is told the denial,
// not that the answer was used already (which sent the agent to ask
// again, only to be denied).
func TestAnAnswerAfterTheOperatorDenied(t *testing.T) {
	for _, accept := range []bool{true, false} {
		t.Run(fmt.Sprintf("accept=%v", accept), func(t *testing.T) {
			st := memory(t)
			g, _ := newGate(t, approvalPolicy, "", st)
			fake := &clinkFake{}
			q := asked(t, g, fake)
			if _, err := DecideApproval(context.Background(), st, q.ApprovalID, false, "ops"); err != nil {
				t.Fatal(err)
			}
			res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: accept})
			if res.Code != policy.CodeApprovalDenied || !strings.Contains(res.Text, "an operator denied this payment") {
				t.Errorf("the user's answer after the denial = %s %q, want approval_denied", res.Code, res.Text)
			}
			if n := fake.calls.Load(); n != 0 {
				t.Errorf("%d calls reached Clink, want none", n)
			}
		})
	}
}

func TestADeclineRefusesAndReleases(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	res := ask(t, g, fake, "agent", "250", &Answer{State: q.State})
	if res.Code != policy.CodeApprovalDeclined {
		t.Fatalf("declined = %+v, want approval_declined", res)
	}
	if u := usage(t, g); u != 0 {
		t.Fatalf("the budget holds %d after the decline, want 0", u)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("a declined payment reached Clink")
	}
}

func TestAnExpiredQuestionIsRefused(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	advance(20 * time.Minute)
	if res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeApprovalExpired {
		t.Fatalf("an answer after expiry = %+v, want approval_expired", res)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("an expired approval reached Clink")
	}
}

func TestOperatorPolicyNeverAsksTheClient(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, strings.Replace(approvalPolicy, "{ timeout: 15m }", "{ timeout: 15m, by: operator }", 1), "", st)
	res := ask(t, g, &clinkFake{}, "agent", "250", nil)
	if res.Code != policy.CodeApprovalRequired || res.Question != nil {
		t.Fatalf("under by: operator = %+v, want pending without a question", res)
	}
}

// A question asked while the policy let the client decide is not answered
// by the client once the policy says by: operator (changed and reloaded,
// or on another replica of the store): the approval stays the operator's.
func TestOperatorPolicyIgnoresAnAnswerToAnEarlierQuestion(t *testing.T) {
	st := memory(t)
	byClient, _ := newGate(t, approvalPolicy, "", st)
	byOperator, _ := newGate(t, strings.Replace(approvalPolicy, "{ timeout: 15m }", "{ timeout: 15m, by: operator }", 1), "", st)
	fake := &clinkFake{}
	q := ask(t, byClient, fake, "agent", "250", nil).Question
	if q == nil {
		t.Fatal("the by: client gate asked no question")
	}
	res := ask(t, byOperator, fake, "agent", "250", &Answer{State: q.State, Accept: true})
	if res.Code != policy.CodeApprovalRequired || res.Question != nil {
		t.Errorf("the client's answer under by: operator = %+v, want the approval still pending", res)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("the client's own answer reached Clink under by: operator")
	}
	if list := approvalsIn(t, st); len(list) != 1 || list[0].State != state.ApprovalPending {
		t.Errorf("approvals = %+v, want one, pending", list)
	}
}

func TestPendingApprovalsTogetherNeverExceedABudget(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	var wg sync.WaitGroup
	codes := make([]policy.Code, 10)
	for i := range codes {
		wg.Go(func() {
			codes[i] = g.Create(context.Background(), "agent", fake.order(t, "300", fmt.Sprintf("c%d@example.com", i))).Code
		})
	}
	wg.Wait()
	pending, refused := 0, 0
	for _, c := range codes {
		switch c {
		case policy.CodeApprovalRequired:
			pending++
		case policy.CodeBudgetExceeded:
			refused++
		default:
			t.Errorf("code %s", c)
		}
	}
	if pending != 3 || refused != 7 {
		t.Fatalf("%d pending, %d refused; want 3 (900 of 1000) and 7", pending, refused)
	}
	// Approving them all spends exactly what was reserved.
	for _, a := range approvalsIn(t, st) {
		if _, err := DecideApproval(context.Background(), st, a.ID, true, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(t, g); u != 90000 {
		t.Fatalf("the budget holds %d, want 90000", u)
	}
}

// TestAnAnswerCountsOnlyForTheArgumentsItWasAskedAbout: an idempotencyKey
// repeated with other arguments shares the call's key, and so the sealed
// state's binding; the approval's fingerprint still tells them apart.
func TestAnAnswerCountsOnlyForTheArgumentsItWasAskedAbout(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	keyed := func(amount, email string, ans *Answer) *Result {
		o := fake.order(t, amount, email)
		o.IdempotencyKey, o.CanAsk, o.Answer = "order-0042", true, ans
		return g.Create(context.Background(), "agent", o)
	}
	q := keyed("250", "b@example.com", nil).Question
	if q == nil {
		t.Fatal("no question")
	}
	if res := keyed("500", "mallory@example.com", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeApprovalInvalid {
		t.Fatalf("the answer brought to other arguments under the same key = %+v, want approval_invalid", res)
	}
	if fake.calls.Load() != 0 {
		t.Fatal("a payment nobody approved reached Clink")
	}
	if list := approvalsIn(t, st); len(list) != 1 || list[0].State != state.ApprovalPending {
		t.Fatalf("approvals = %+v, want the one still pending", list)
	}
	if res := keyed("250", "b@example.com", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeCreated {
		t.Fatalf("the answer brought to its own call = %+v, want created", res)
	}
	if u := usage(t, g); u != 25000 {
		t.Errorf("the budget holds %d, want 25000", u)
	}
}

// The answer to a call awaiting an operator says how one can decide it on
// this server (Config.Operators), or that none can.
func TestThePendingAnswerSaysHowAnOperatorDecides(t *testing.T) {
	for _, tc := range []struct {
		operators Operators
		want      string
		not       string
	}{
		{OperatorsCommand, "an operator decides it with: clink-mcp approvals approve apr_", "No operator"},
		{OperatorsEndpoint, "through the server's admin endpoint: POST /admin/approvals/apr_", "clink-mcp approvals"},
		{OperatorsNone, "No operator can approve it on this server", "clink-mcp approvals"},
	} {
		p, err := policy.Parse("test.yaml", []byte(approvalPolicy))
		if err != nil {
			t.Fatal(err)
		}
		g := New(Config{Policy: p, Store: memory(t), Secret: testSecret, Account: "acct", Operators: tc.operators})
		res := g.Create(context.Background(), "agent", (&clinkFake{}).order(t, "250", "b@example.com"))
		g.Close(context.Background())
		if res.Code != policy.CodeApprovalRequired || !strings.Contains(res.Text, tc.want) || strings.Contains(res.Text, tc.not) {
			t.Errorf("operators %d: %s: %s\nwant it to say %q, not %q", tc.operators, res.Code, res.Text, tc.want, tc.not)
		}
	}
}

// orderedHolds makes two identical calls on one approved approval race in
// one order: both read the approval as approved (the approvals looked up
// are the first call's request, then the two calls'), then the first
// holds it (used), then the second's hold finds the first's claim and
// waits on it.
type orderedHolds struct {
	state.Store
	requests, holds        atomic.Int64
	secondAsked, firstHeld chan struct{}
}

func (s *orderedHolds) RequestApproval(ctx context.Context, r *state.ApprovalRequest) (*state.Approval, bool, error) {
	a, created, err := s.Store.RequestApproval(ctx, r)
	if s.requests.Add(1) == 3 {
		close(s.secondAsked)
	}
	return a, created, err
}

func (s *orderedHolds) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	switch s.holds.Add(1) {
	case 1:
		<-s.secondAsked
		defer close(s.firstHeld)
	case 2:
		<-s.firstHeld
	}
	return s.Store.Hold(ctx, h)
}

// An approval is for one payment: when the identical call that used it is
// refused by Clink, a call that waited on it is not told that nobody
// approved in time (approval_expired), but asks afresh.
func TestACallWaitingOnAnApprovalUsedByARefusedCallAsksAgain(t *testing.T) {
	st := &orderedHolds{Store: memory(t), secondAsked: make(chan struct{}), firstHeld: make(chan struct{})}
	g, _ := newGate(t, approvalPolicy, "", st)
	ctx := context.Background()
	fake := &clinkFake{}
	if res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("the first call = %+v, want approval_required", res)
	}
	first := approvalsIn(t, st)[0].ID
	if _, err := DecideApproval(ctx, st, first, true, "ops"); err != nil {
		t.Fatal(err)
	}
	fake.release, fake.started = make(chan struct{}), make(chan struct{}, 2)
	fake.err = &clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}
	results := make(chan *Result, 2)
	for range 2 {
		go func() { results <- g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")) }()
	}
	<-fake.started
	time.Sleep(100 * time.Millisecond) // the second waits on the first's claim
	close(fake.release)
	var codes []string
	for range 2 {
		codes = append(codes, string((<-results).Code))
	}
	slices.Sort(codes)
	if want := []string{string(policy.CodeApprovalRequired), string(policy.CodeUpstreamRefused)}; !slices.Equal(codes, want) {
		t.Errorf("the two calls = %v, want %v", codes, want)
	}
	if got := outcomes(t, st); slices.Contains(got, string(policy.CodeApprovalExpired)) {
		t.Errorf("outcomes %v: the waiter was told nobody approved in time", got)
	}
	var pending int
	for _, a := range approvalsIn(t, st) {
		if a.ID != first && a.State == state.ApprovalPending {
			pending++
		}
	}
	if pending != 1 || fake.calls.Load() != 1 {
		t.Errorf("%d new pending approvals and %d calls to Clink, want 1 and 1", pending, fake.calls.Load())
	}
}

// The same yes brought again after Clink refused the call it answered
// (its claim dropped, its approval used): the call asks afresh, with a new
// question, rather than being told the answer was invalid.
func TestTheSameAnswerAfterARefusalAsksAfresh(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{err: &clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}}
	q := asked(t, g, fake)
	if res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeUpstreamRefused {
		t.Fatalf("the answered call = %+v, want upstream_refused", res)
	}
	again := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true})
	if again.Code != policy.CodeApprovalRequired || again.Question == nil || again.Question.State == q.State {
		t.Errorf("the same answer again = %+v, want a new question", again)
	}
	if n := fake.calls.Load(); n != 1 {
		t.Errorf("%d calls reached Clink, want 1", n)
	}
}

// TestCheckReadsTheCallsOwnApproval: Check answers as Create would where an
// identical call's approval exists. Pending or approved, its reservation
// is the call's, not counted against it a second time (a budget nearly
// spent by pending approvals must not read budget_exceeded for one of
// them); an idempotencyKey reused with other arguments meanwhile is
// refused; a refused or expired approval answers until it is forgotten.
func TestCheckReadsTheCallsOwnApproval(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	keyed := func(amount, email, key string) *Order {
		o := fake.order(t, amount, email)
		o.IdempotencyKey = key
		return o
	}
	check := func(what string, o *Order, code policy.Code, allowed, needsApproval bool, id string) *Checked {
		t.Helper()
		d, err := g.Check(ctx, "agent", o)
		if err != nil || d.Decision.Code != code || d.Decision.Allowed != allowed || d.NeedsApproval != needsApproval || d.ApprovalID != id {
			t.Fatalf("Check %s = %+v, %v; want %s (allowed %v, needs approval %v, approval %q)", what, d, err, code, allowed, needsApproval, id)
		}
		return d
	}
	check("before any approval", keyed("450", "b@example.com", "order-0001"), policy.CodeAllowed, true, true, "")

	// Two pending approvals reserve 450 + 500 of the 1000 budget.
	for _, o := range []*Order{keyed("450", "b@example.com", "order-0001"), keyed("500", "c@example.com", "order-0002")} {
		if res := g.Create(ctx, "agent", o); res.Code != policy.CodeApprovalRequired {
			t.Fatalf("Create = %+v, want approval_required", res)
		}
	}
	list := approvalsIn(t, st)
	ids := map[string]string{}
	for _, a := range list {
		ids[a.Amount] = a.ID
	}
	d := check("of a pending call", keyed("450", "b@example.com", "order-0001"), policy.CodeAllowed, true, true, ids["450.00"])
	if !strings.Contains(d.Decision.Message, ids["450.00"]) || !strings.Contains(d.Decision.Message, "pending") {
		t.Errorf("the pending call's message %q does not name its pending approval", d.Decision.Message)
	}
	check("of a new call over what the pending ones leave", keyed("100.01", "d@example.com", "order-0003"), policy.CodeBudgetExceeded, false, true, "")
	check("of the pending call's key with other arguments", keyed("450", "mallory@example.com", "order-0001"), policy.CodeDuplicateConflict, false, false, "")

	// Approved by an operator: the call would go ahead on it.
	if _, err := DecideApproval(ctx, st, ids["450.00"], true, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	check("of an approved call", keyed("450", "b@example.com", "order-0001"), policy.CodeAllowed, true, false, ids["450.00"])

	// Denied: refused, until the denial is forgotten.
	if _, err := DecideApproval(ctx, st, ids["500.00"], false, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	d = check("of a denied call", keyed("500", "c@example.com", "order-0002"), policy.CodeApprovalDenied, false, false, ids["500.00"])
	if d.Decision.RetryAt.IsZero() || !d.Decision.RetryAt.After(time.Now().Add(14*time.Minute)) {
		t.Errorf("the denied call's RetryAt = %v, want about 15 minutes from now", d.Decision.RetryAt)
	}

	// Whatever Check said, Create answers the same.
	for _, tc := range []struct {
		o    *Order
		code policy.Code
	}{
		{keyed("450", "mallory@example.com", "order-0001"), policy.CodeDuplicateConflict},
		{keyed("500", "c@example.com", "order-0002"), policy.CodeApprovalDenied},
		{keyed("450", "b@example.com", "order-0001"), policy.CodeCreated},
	} {
		if res := g.Create(ctx, "agent", tc.o); res.Code != tc.code {
			t.Fatalf("Create after Check = %+v, want %s", res, tc.code)
		}
	}
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached Clink, want 1", n)
	}
}

// TestCheckSaysAnApprovalExpired: a pending approval past its deadline is
// reported expired, as Create would find it, and Check leaves it be;
// once forgotten, the call would ask afresh.
func TestCheckSaysAnApprovalExpired(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	ctx := context.Background()
	o := fake.order(t, "250", "b@example.com")
	res := g.Create(ctx, "agent", o)
	if res.Code != policy.CodeApprovalRequired {
		t.Fatalf("Create = %+v, want approval_required", res)
	}
	advance(15 * time.Minute)
	d, err := g.Check(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if err != nil || d.Decision.Code != policy.CodeApprovalExpired || d.Decision.Allowed || d.ApprovalID == "" {
		t.Fatalf("Check at the deadline = %+v, %v; want approval_expired", d, err)
	}
	if u := usage(t, g); u != 25000 {
		t.Fatalf("the budget holds %d after Check, want 25000: Check expired nothing", u)
	}
	if res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")); res.Code != policy.CodeApprovalExpired {
		t.Fatalf("Create at the deadline = %+v, want approval_expired", res)
	}
	advance(15 * time.Minute)
	if d, err := g.Check(ctx, "agent", fake.order(t, "250", "b@example.com")); err != nil || d.Decision.Code != policy.CodeAllowed || !d.NeedsApproval || d.ApprovalID != "" {
		t.Fatalf("Check once the expiry is forgotten = %+v, %v; want a new approval_required", d, err)
	}
}

// TestAnAnswerWhileTheServerDrains: the user's answer to a question asked
// before a shutdown began is kept though no call is made: a yes approves
// the approval for the identical call made once the server is back, a no
// refuses it and gives its reservation back.
func TestAnAnswerWhileTheServerDrains(t *testing.T) {
	for _, accept := range []bool{true, false} {
		t.Run(fmt.Sprint("accept=", accept), func(t *testing.T) {
			st := memory(t)
			g, _ := newGate(t, approvalPolicy, "", st)
			fake := &clinkFake{}
			q := asked(t, g, fake)
			if err := g.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if res := ask(t, g, fake, "agent", "300", nil); res.Code != policy.CodeShuttingDown {
				t.Fatalf("a new call while draining = %+v, want shutting_down", res)
			}
			res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: accept})
			list := approvalsIn(t, st)
			if len(list) != 1 {
				t.Fatalf("approvals = %+v, want one", list)
			}
			if accept {
				if res.Code != policy.CodeShuttingDown || !strings.Contains(res.Text, q.ApprovalID+") is recorded") {
					t.Fatalf("a yes while draining = %+v, want shutting_down saying the approval is recorded", res)
				}
				if list[0].State != state.ApprovalApproved || list[0].DecidedBy != "client:agent" {
					t.Fatalf("the approval after a yes while draining = %+v, want approved by client:agent", list[0])
				}
				if u := usage(t, g); u != 25000 {
					t.Fatalf("the budget holds %d, want 25000 reserved for the approved call", u)
				}
				// The server back (another gate on the store): the identical
				// call is created on the user's yes, not asked again.
				back, _ := newGate(t, approvalPolicy, "", st)
				if res := ask(t, back, fake, "agent", "250", nil); res.Code != policy.CodeCreated {
					t.Fatalf("the identical call once the server is back = %+v, want created", res)
				}
				if n := fake.calls.Load(); n != 1 {
					t.Fatalf("%d calls reached Clink, want 1", n)
				}
				return
			}
			if res.Code != policy.CodeApprovalDeclined {
				t.Fatalf("a no while draining = %+v, want approval_declined", res)
			}
			if list[0].State != state.ApprovalDenied {
				t.Fatalf("the approval after a no while draining = %+v, want denied", list[0])
			}
			if u := usage(t, g); u != 0 {
				t.Fatalf("the budget holds %d, want 0: the declined approval's reservation given back", u)
			}
			if n := fake.calls.Load(); n != 0 {
				t.Fatalf("%d calls reached Clink while draining, want 0", n)
			}
		})
	}
}

// TestCheckJudgesAnApprovedCallsBudgetsAsTheHoldWill: a call made on an
// approved approval has its budgets checked again when it is held, as of
// then (its reservation moved to that time). Once the request's
// reservation has left a budget's window and others have spent what it
// left, check_payment_policy says budget_exceeded, as the call will be
// answered; while the window still holds the reservation, it says the
// call would go ahead.
func TestCheckJudgesAnApprovedCallsBudgetsAsTheHoldWill(t *testing.T) {
	g, advance := clockedGateWith(t, `
version: 1
currencies:
  USD: { max_amount: 1000, approve_above: 500 }
budgets:
  - { currency: USD, max_amount: 1000, window: 1h }
approvals: { timeout: 1h }
`)
	ctx := context.Background()
	fake := &clinkFake{}
	if res := g.Create(ctx, "agent", fake.order(t, "600", "b@example.com")); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("Create = %+v, want approval_required", res)
	}
	id := approvalsIn(t, g.store)[0].ID
	advance(59 * time.Minute)
	operatorApproves(t, g, id, time.Hour)
	if d, err := g.Check(ctx, "agent", fake.order(t, "600", "b@example.com")); err != nil || !d.Decision.Allowed || d.ApprovalID != id {
		t.Fatalf("Check within the reservation's hour = %+v, %v; want allowed on %s", d, err, id)
	}
	advance(2 * time.Minute) // the reservation has left the hour
	if res := g.Create(ctx, "agent", fake.order(t, "500", "c@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("another call = %+v, want created", res)
	}
	d, err := g.Check(ctx, "agent", fake.order(t, "600", "b@example.com"))
	if err != nil || d.Decision.Allowed || d.Decision.Code != policy.CodeBudgetExceeded {
		t.Fatalf("Check once others spent the budget = %+v, %v; want budget_exceeded", d, err)
	}
	if res := g.Create(ctx, "agent", fake.order(t, "600", "b@example.com")); res.Code != d.Decision.Code {
		t.Errorf("Create = %s, Check said %s", res.Code, d.Decision.Code)
	}
}

// decideBlocked is a memory store whose DecideApproval waits for release,
// saying when it began.
type decideBlocked struct {
	*state.Memory
	began, release chan struct{}
}

func (s *decideBlocked) DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*state.Approval, error) {
	close(s.began)
	<-s.release
	return s.Memory.DecideApproval(ctx, at, id, approve, by, useBy)
}

// TestCloseWaitsForAnAnswerBeingRecorded: an answer recorded while the
// gate drains (answerWhileClosing) is not a call in flight, but Close
// waits for it as for one, so that an embedder closing the store after
// Close does not cut it short.
func TestCloseWaitsForAnAnswerBeingRecorded(t *testing.T) {
	st := &decideBlocked{Memory: memory(t), began: make(chan struct{}), release: make(chan struct{})}
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	answered := make(chan *Result, 1)
	go func() { answered <- ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}) }()
	<-st.began
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		closed <- g.Close(ctx)
	}()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an answer was being recorded", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(st.release)
	if err := <-closed; err != nil {
		t.Errorf("Close = %v, want nil once the answer is recorded", err)
	}
	if res := <-answered; res.Code != policy.CodeShuttingDown || !strings.Contains(res.Text, "is recorded") {
		t.Errorf("the answer = %+v, want shutting_down saying it is recorded", res)
	}
	if res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true}); res.Code != policy.CodeShuttingDown || strings.Contains(res.Text, "is recorded") {
		t.Errorf("an answer after Close = %+v, want shutting_down, recording nothing", res)
	}
}

// TestCheckTakesNoWriteLock: check_payment_policy reads; it takes no
// write lock on a SQLite store, so that checks neither wait for nor hold
// up the calls that write. With another connection holding the write
// lock, Check still answers, the duplicate guard's claim looked at.
func TestCheckTakesNoWriteLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, _ := newGate(t, "version: 1\ncurrencies:\n  USD: { max_amount: 500 }\nduplicates: { window: 10m }\n", "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	if res := g.Create(ctx, "agent", fake.order(t, "20", "b@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("Create = %+v, want created", res)
	}
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000") // the gate may be writing (its clock, the journal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")
	checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d, err := g.Check(checkCtx, "agent", fake.order(t, "20", "b@example.com"))
	if err != nil || d.Decision.Code != policy.CodeReplayed {
		t.Fatalf("Check while another connection holds the write lock = %+v, %v; want replayed, read without the lock", d, err)
	}
}

// TestANoAfterAnApprovalRanOutDoesNotSayItStands: a user's no to an
// approval an operator approved, whose use-by has passed though no sweep
// has expired it yet, is not told that the approval stands.
func TestANoAfterAnApprovalRanOutDoesNotSayItStands(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	operatorApproves(t, g, q.ApprovalID, time.Minute)
	if res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: false}); !strings.Contains(res.Text, "stands until") {
		t.Fatalf("a no within the approval's time = %+v, want it to say the approval stands", res)
	}
	advance(2 * time.Minute)
	res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: false})
	if res.Code != policy.CodeApprovalDeclined || strings.Contains(res.Text, "stands") || !strings.Contains(res.Text, "ran out") {
		t.Errorf("a no after the approval's time = %+v, want approval_declined saying it ran out", res)
	}
}

// TestNoAnswerIsTakenAfterACloseWhoseDrainRanOut: after a Close whose
// drain ran out of time (a call still in flight), a user's answer brought
// later is not recorded: the journal is closed, and the store may be.
func TestNoAnswerIsTakenAfterACloseWhoseDrainRanOut(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	slow := &clinkFake{release: make(chan struct{}), started: make(chan struct{}, 1)}
	done := make(chan *Result, 1)
	go func() { done <- g.Create(context.Background(), "agent", slow.order(t, "20", "c@example.com")) }()
	<-slow.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Close(ctx); !errors.Is(err, ErrCallsInFlight) {
		t.Fatalf("Close = %v, want ErrCallsInFlight", err)
	}
	res := ask(t, g, fake, "agent", "250", &Answer{State: q.State, Accept: true})
	a, _ := st.Approval(context.Background(), q.ApprovalID)
	close(slow.release)
	<-done
	if strings.Contains(res.Text, "is recorded") || a.State != state.ApprovalPending {
		t.Errorf("an answer after Close returned = %+v; approval now %s; want shutting_down, recording nothing", res, a.State)
	}
	if res.Code != policy.CodeShuttingDown {
		t.Errorf("the answer after Close = %s, want shutting_down", res.Code)
	}
}

// An idempotencyKey whose payment waits for its approval is that payment's
// while it waits, and once approved until it is made: a call with other
// arguments under the key, below the threshold, is refused as the key's
// reuse (and Check says so), not created; the approved payment is then
// created on its key.
func TestTheKeyOfAPaymentWaitingForApprovalIsNotTakenByAnother(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	keyed := func(amount string) *Order {
		o := fake.order(t, amount, "b@example.com")
		o.IdempotencyKey = "order-7777"
		return o
	}
	if res := g.Create(ctx, "agent", keyed("250")); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("the payment above the threshold = %+v, want approval_required", res)
	}
	id := approvalsIn(t, st)[0].ID
	other := func(when string) {
		t.Helper()
		if c, err := g.Check(ctx, "agent", keyed("70")); err != nil || c.Decision.Code != policy.CodeDuplicateConflict {
			t.Errorf("%s: Check of other arguments under the key = %+v, %v; want duplicate_conflict", when, c, err)
		}
		res := g.Create(ctx, "agent", keyed("70"))
		if res.Code != policy.CodeDuplicateConflict || !strings.Contains(res.Text, id) {
			t.Errorf("%s: other arguments under the key = %+v, want duplicate_conflict naming %s", when, res, id)
		}
	}
	other("while the approval is pending")
	operatorApproves(t, g, id, 15*time.Minute)
	other("once it is approved")
	if n := fake.calls.Load(); n != 0 {
		t.Fatalf("%d calls reached Clink, want 0", n)
	}
	if res := g.Create(ctx, "agent", keyed("250")); res.Code != policy.CodeCreated {
		t.Fatalf("the approved payment = %+v, want created", res)
	}
	if res := g.Create(ctx, "agent", keyed("70")); res.Code != policy.CodeDuplicateConflict {
		t.Errorf("other arguments once it was made = %+v, want duplicate_conflict", res)
	}
	// The same payment under a key of its own is another payment.
	o := fake.order(t, "70", "b@example.com")
	o.IdempotencyKey = "order-7778"
	if res := g.Create(ctx, "agent", o); res.Code != policy.CodeCreated {
		t.Errorf("a payment under another key = %+v, want created", res)
	}
	if u := usage(t, g); u != 32000 {
		t.Errorf("the budget holds %d, want 32000 (250.00 and 70.00)", u)
	}
}

// A refused approval answers identical calls the same for as long as
// approvals wait: the answer says until when (and carries it as RetryAt)
// and, but for an operator's denial, that a new idempotencyKey asks again;
// which it does.
func TestARefusedApprovalSaysUntilWhenAndHowToAskAgain(t *testing.T) {
	st := memory(t)
	g, _ := newGate(t, approvalPolicy, "", st)
	fake := &clinkFake{}
	q := asked(t, g, fake)
	declined := ask(t, g, fake, "agent", "250", &Answer{State: q.State})
	again := ask(t, g, fake, "agent", "250", nil)
	for _, res := range []*Result{declined, again} {
		if res.Code != policy.CodeApprovalDeclined || res.RetryAt.IsZero() || res.Question != nil ||
			!strings.Contains(res.Text, "until "+res.RetryAt.Format(time.RFC3339)) || !strings.Contains(res.Text, "new idempotencyKey") {
			t.Fatalf("the decline and the identical call after it = %+v; want approval_declined saying until when, and that a new idempotencyKey asks again", res)
		}
	}
	if d := again.RetryAt.Sub(g.now()); d < 14*time.Minute || d > 15*time.Minute+2*time.Second {
		t.Errorf("RetryAt is %v from now, want the approvals' 15m", d)
	}
	o := fake.order(t, "250", "b@example.com")
	o.CanAsk, o.IdempotencyKey = true, "after-the-no"
	if res := g.Create(context.Background(), "agent", o); res.Question == nil {
		t.Errorf("the call with a new idempotencyKey = %+v, want the user asked again", res)
	}

	// An operator's denial says until when, and nothing of a new key.
	res := g.Create(context.Background(), "agent", fake.order(t, "300", "c@example.com"))
	id := res.Text[strings.Index(res.Text, "apr_"):][:24]
	if _, err := DecideApproval(context.Background(), st, id, false, "ops"); err != nil {
		t.Fatal(err)
	}
	res = g.Create(context.Background(), "agent", fake.order(t, "300", "c@example.com"))
	if res.Code != policy.CodeApprovalDenied || res.RetryAt.IsZero() || strings.Contains(res.Text, "idempotencyKey") {
		t.Errorf("the call after an operator's denial = %+v; want approval_denied saying until when, not how to ask again", res)
	}
}

// A checkout whose line items, not its amount, put it over the approval
// threshold says so in the pending answer, as in the question: the amount
// alone would not explain why it waits.
func TestThePendingAnswerCountsTheLineItems(t *testing.T) {
	g, _ := newGate(t, approvalPolicy, "", memory(t))
	fake := &clinkFake{}
	o := fake.order(t, "1", "b@example.com")
	o.Request.Tool = policy.ToolCheckoutSession
	unit, err := policy.ParseMoney("45", "USD")
	if err != nil {
		t.Fatal(err)
	}
	o.Request.LineItems = []policy.LineItem{{UnitAmount: unit, Quantity: 3}}
	res := g.Create(context.Background(), "agent", o)
	if res.Code != policy.CodeApprovalRequired || !strings.Contains(res.Text, "USD 1.00 (counting line items: USD 135.00)") {
		t.Errorf("a checkout of 1.00 whose line items make 135.00 = %+v; want approval_required counting the line items", res)
	}
}

// A denied approval gives its budget back, but the call it asked for still
// counts against the rate limits (docs/approvals.md, step 2), as a call
// Clink refused does; the approved call is not counted again.
func TestARefusedApprovalGivesBackItsBudgetNotItsRateLimitCount(t *testing.T) {
	const yaml = approvalPolicy + `
rate_limits:
  - { window: 1h, max_calls: 5 }
`
	st := memory(t)
	g, _ := newGate(t, yaml, "", st)
	fake := &clinkFake{}
	ctx := context.Background()
	used := func() (budget, calls int64) {
		t.Helper()
		standing, err := g.Standing(ctx, "agent")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range standing {
			if l.Kind == policy.KindBudget {
				budget = l.Used
			} else {
				calls = l.Used
			}
		}
		return budget, calls
	}
	for i, approve := range []bool{false, true} {
		amount := []string{"250", "300"}[i]
		if res := g.Create(ctx, "agent", fake.order(t, amount, "b@example.com")); res.Code != policy.CodeApprovalRequired {
			t.Fatalf("call %d = %s, want approval_required", i, res.Code)
		}
		var id string
		for _, a := range approvalsIn(t, st) {
			if a.State == state.ApprovalPending {
				id = a.ID
			}
		}
		if _, err := DecideApproval(ctx, st, id, approve, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	if budget, calls := used(); budget != 30000 || calls != 2 {
		t.Fatalf("after a denied and an approved request: budget %d, calls %d; want 30000 (the approved one's) and 2", budget, calls)
	}
	if res := g.Create(ctx, "agent", fake.order(t, "300", "b@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("the approved call = %s, want created", res.Code)
	}
	if budget, calls := used(); budget != 30000 || calls != 2 {
		t.Errorf("after the approved call: budget %d, calls %d; want 30000 and 2 (counted once)", budget, calls)
	}
}

// approvedBehindARateLimit sets up a call approved behind a rate limit of
// one call in 20 minutes: the call (approved() makes it again) asks at 0,
// an operator approves it at 1m for use within useBy, another call is
// made at 21m (the request has left the window), and the clock is left at
// 22m. It returns the gate, its clock's advance, the fake Clink (called
// once so far), approved and the approval's ID.
func approvedBehindARateLimit(t *testing.T, useBy time.Duration) (g *Gate, advance func(time.Duration), fake *clinkFake, approved func() *Order, id string) {
	t.Helper()
	g, advance = clockedGateWith(t, approvalPolicy+`
rate_limits:
  - { window: 20m, max_calls: 1 }
`)
	ctx := context.Background()
	fake = &clinkFake{}
	approved = func() *Order { return fake.order(t, "250", "b@example.com") }
	if res := g.Create(ctx, "agent", approved()); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("Create = %+v, want approval_required", res)
	}
	id = approvalsIn(t, g.store)[0].ID
	advance(time.Minute)
	operatorApproves(t, g, id, useBy)
	advance(20 * time.Minute)
	if res := g.Create(ctx, "agent", fake.order(t, "10", "c@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("another call at 21m = %+v, want created", res)
	}
	advance(time.Minute)
	return g, advance, fake, approved, id
}

// TestARateLimitCountsAnApprovedCallWhenItIsMade: a rate limit counts an
// approved call when it is made, not only when it asked. Under one call
// in 20 minutes, a call asks at 0, is approved, another call is made at
// 21 (the request has left the window), and the approved call at 22 would
// be the second in 20 minutes: check_payment_policy and the call say
// rate_limited, and the approval stands until the window allows it.
func TestARateLimitCountsAnApprovedCallWhenItIsMade(t *testing.T) {
	g, advance, fake, approved, id := approvedBehindARateLimit(t, time.Hour)
	ctx := context.Background()
	d, err := g.Check(ctx, "agent", approved())
	if err != nil || d.Decision.Allowed || d.Decision.Code != policy.CodeRateLimited {
		t.Fatalf("Check of the approved call at 22m = %+v, %v; want rate_limited", d, err)
	}
	// Usable until 61m, the approval will still stand at 41m: the
	// refusal does not say it will be gone.
	if res := g.Create(ctx, "agent", approved()); res.Code != policy.CodeRateLimited || strings.Contains(res.Text, "can be used only until") {
		t.Fatalf("the approved call at 22m = %+v, want rate_limited, the approval not said to be gone", res)
	}
	if fake.calls.Load() != 1 {
		t.Fatalf("Clink was called %d times, want once (the other call)", fake.calls.Load())
	}
	advance(20 * time.Minute) // the other call has left the window
	if d, err := g.Check(ctx, "agent", approved()); err != nil || !d.Decision.Allowed || d.ApprovalID != id {
		t.Fatalf("Check at 42m = %+v, %v; want allowed on %s", d, err, id)
	}
	if res := g.Create(ctx, "agent", approved()); res.Code != policy.CodeCreated {
		t.Fatalf("the approved call at 42m = %+v, want created", res)
	}
	if d, err := g.Check(ctx, "agent", fake.order(t, "10", "d@example.com")); err != nil || d.Decision.Code != policy.CodeRateLimited {
		t.Fatalf("Check of another call just after = %+v, %v; want rate_limited (the approved call counts now)", d, err)
	}
}

// TestARefusedApprovedCallSaysWhenItsApprovalWillBeGone: an approved call
// a limit refuses until after its approval can be used is told so, by
// check_payment_policy and by the call: retrying when the limit allows it
// would not find the approval.
func TestARefusedApprovedCallSaysWhenItsApprovalWillBeGone(t *testing.T) {
	g, _, _, approved, id := approvedBehindARateLimit(t, 24*time.Minute) // usable until 25m
	ctx := context.Background()
	want := "approval (" + id + ") can be used only until 2026-12-03T10:25:00Z"
	d, err := g.Check(ctx, "agent", approved())
	if err != nil || d.Decision.Code != policy.CodeRateLimited || !strings.Contains(d.Decision.Message, want) {
		t.Fatalf("Check of the approved call at 22m = %+v, %v; want rate_limited saying %q", d.Decision, err, want)
	}
	res := g.Create(ctx, "agent", approved())
	if res.Code != policy.CodeRateLimited || !strings.Contains(res.Text, want) || !res.RetryAt.Equal(time.Date(2026, 12, 3, 10, 41, 0, 0, time.UTC)) {
		t.Fatalf("the approved call at 22m = %+v; want rate_limited until 10:41 saying %q", res, want)
	}
}

// An approval an operator approved, whose call then came too late, expires
// like one nobody decided: the answer does not tell the agent that nobody
// approved it.
func TestAnApprovedCallThatCameTooLateIsNotToldNobodyApproved(t *testing.T) {
	g, advance := clockedGate(t)
	fake := &clinkFake{}
	ctx := context.Background()
	if res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com")); res.Code != policy.CodeApprovalRequired {
		t.Fatalf("the call = %s, want approval_required", res.Code)
	}
	id := approvalsIn(t, g.store)[0].ID
	operatorApproves(t, g, id, 15*time.Minute)
	advance(16 * time.Minute)
	res := g.Create(ctx, "agent", fake.order(t, "250", "b@example.com"))
	if res.Code != policy.CodeApprovalExpired {
		t.Fatalf("the call after its approval ran out = %s %q, want approval_expired", res.Code, res.Text)
	}
	if strings.Contains(res.Text, "nobody approved this payment in time") {
		t.Errorf("an approved payment whose call came too late is told nobody approved it: %q", res.Text)
	}
	if !strings.Contains(res.Text, "or made the approved call") {
		t.Errorf("the answer %q does not say the approved call may have come too late", res.Text)
	}
}

// Where an operator decides approvals, an expired approval's answer does
// not promise the agent that its user will be asked: a new idempotencyKey
// asks for approval afresh, which an operator gives.
func TestAnExpiredApprovalUnderOperatorsDoesNotPromiseToAskTheUser(t *testing.T) {
	g, advance := clockedGateWith(t, strings.Replace(approvalPolicy, "approvals: { timeout: 15m }", "approvals: { timeout: 15m, by: operator }", 1))
	if !g.policy.ApprovalsByOperator() {
		t.Fatal("the test's policy does not have operators decide")
	}
	fake := &clinkFake{}
	ctx := context.Background()
	o := fake.order(t, "250", "b@example.com")
	o.CanAsk = true
	if res := g.Create(ctx, "agent", o); res.Code != policy.CodeApprovalRequired || res.Question != nil {
		t.Fatalf("the call = %+v, want approval_required for an operator", res)
	}
	advance(16 * time.Minute)
	res := g.Create(ctx, "agent", o)
	if res.Code != policy.CodeApprovalExpired {
		t.Fatalf("the call after its approval expired = %s %q, want approval_expired", res.Code, res.Text)
	}
	if strings.Contains(res.Text, "will be asked") {
		t.Errorf("under approvals.by: operator the answer promises the user will be asked: %q", res.Text)
	}
	if !strings.Contains(res.Text, "new idempotencyKey") {
		t.Errorf("the answer %q does not say a new idempotencyKey asks afresh", res.Text)
	}
}
