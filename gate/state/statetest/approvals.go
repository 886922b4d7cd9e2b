package statetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// approvalTimeout is how long the cases' approvals wait for a decision,
// and are remembered after one.
const approvalTimeout = 15 * time.Minute

// approvalRequest asks for approval id of the call with key at at, its
// limits l.
func approvalRequest(id, key string, at time.Time, l []policy.Limit) *state.ApprovalRequest {
	return &state.ApprovalRequest{
		At: at,
		Approval: state.Approval{ID: id, Key: key, Fingerprint: "f", Caller: "agent-7", Tool: "create_checkout_session",
			Amount: "600.00", Currency: "USD", Amounts: "USD 600.00", EmailMasked: "a***@example.com", ExpiresAt: at.Add(approvalTimeout)},
		Limits: l,
		Record: state.AuditRecord{Time: at, Kind: state.KindApproval, Call: id, Caller: "agent-7", Tool: "create_checkout_session",
			Decision: string(policy.CodeApprovalRequired), Amount: "600.00", Currency: "USD", Amounts: "USD 600.00", EmailMasked: "a***@example.com"},
		Remember: approvalTimeout,
	}
}

// approvalLimits are a budget of 1000 of which an approval takes 600, and
// a rate limit.
func approvalLimits() []policy.Limit {
	return []policy.Limit{budget("budget|*|USD|24h|", 24*time.Hour, 1000, 600), rate("rate|*|1h|", time.Hour, 10)}
}

// usage is s.Usage, failing the test on an error.
func usage(t *testing.T, s state.Store, at time.Time, l []policy.Limit) []int64 {
	t.Helper()
	u, err := s.Usage(context.Background(), at, l)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return u
}

// wantUsage checks what s's counters of l hold at at.
func wantUsage(t *testing.T, s state.Store, what string, at time.Time, l []policy.Limit, want ...int64) {
	t.Helper()
	got := usage(t, s, at, l)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Usage %s = %v, want %v", what, got, want)
	}
}

// request is s.RequestApproval, failing the test on an error.
func request(t *testing.T, s state.Store, r *state.ApprovalRequest) (*state.Approval, bool) {
	t.Helper()
	a, created, err := s.RequestApproval(context.Background(), r)
	if err != nil {
		t.Fatalf("RequestApproval %s: %v", r.Approval.ID, err)
	}
	return a, created
}

// verified checks that s's audit trail verifies with no intent open.
func verified(t *testing.T, s state.Store, records int64) {
	t.Helper()
	rep, err := state.VerifyAudit(context.Background(), s)
	if err != nil || !rep.OK() || rep.Records != records {
		t.Fatalf("VerifyAudit = %+v, %v; want %d intact records, none open", rep, err, records)
	}
}

func testUsage(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 30), rate("r", time.Hour, 5)}
	wantUsage(t, s, "of an empty ledger", day, l, 0, 0)
	if got, err := s.Usage(ctx, day, nil); err != nil || len(got) != 0 {
		t.Fatalf("Usage of no limits = %v, %v; want none", got, err)
	}
	first, err := s.Reserve(ctx, day, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, day.Add(time.Minute), l); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after two reservations", day.Add(time.Minute), l, 60, 2)
	// Usage is what Check compares with Max: a third fits, a fourth not.
	if err := s.Check(ctx, day.Add(time.Minute), l); err != nil {
		t.Fatalf("Check = %v", err)
	}
	wantUsage(t, s, "a nanosecond before the first leaves its window", day.Add(time.Hour-time.Nanosecond), l, 60, 2)
	wantUsage(t, s, "when the first leaves its window", day.Add(time.Hour), l, 30, 1)
	wantUsage(t, s, "when both have left", day.Add(time.Hour+time.Minute), l, 0, 0)
	// A released reservation's budget entries stop counting; its rate
	// entries do not.
	if err := s.Settle(ctx, first, policy.Released); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the first is released", day.Add(time.Minute), l, 30, 2)
	// Usage records nothing.
	wantUsage(t, s, "asked again", day.Add(time.Minute), l, 30, 2)
	if _, err := s.Usage(ctx, day, []policy.Limit{{Key: "", Kind: policy.KindBudget, Window: time.Hour}}); err == nil {
		t.Error("Usage of a limit without a key succeeded")
	}
}

func testSessionTool(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	h := hold("call-1", day, nil)
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, outcome(h, policy.Spent, string(policy.CodeCreated), []byte("r"))); err != nil { // SessionID sess_1
		t.Fatal(err)
	}
	recs := []state.AuditRecord{
		{Time: day, Kind: state.KindOutcome, Call: "call-2", Tool: "t", Decision: string(policy.CodeReplayed), SessionID: "sess_2"},
		{Time: day, Kind: state.KindOutcome, Call: "call-5", Caller: "agent-7", Tool: "create_agent_payment_session", Decision: string(policy.CodeCreated), SessionID: "aps_5"},
		{Time: day, Kind: state.KindIntent, Call: "call-3", Tool: "t", Decision: "created", SessionID: "sess_3"},
		{Time: day, Kind: state.KindOutcome, Call: "call-4", Tool: "t", Decision: string(policy.CodeCreated)},
	}
	for i := range recs {
		if err := s.AppendAudit(ctx, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// hold's caller is agent-7: another principal does not see its
	// session.
	// It tells which tool created each session.
	for _, tt := range []struct {
		id, caller string
		want       string
	}{
		{"sess_1", "agent-7", "create_checkout_session"}, {"aps_5", "agent-7", "create_agent_payment_session"},
		{"sess_1", "agent-8", ""}, {"sess_1", "", ""}, {"aps_5", "agent-8", ""},
		{"sess_2", "agent-7", ""}, {"sess_3", "agent-7", ""}, {"", "agent-7", ""}, {"sess_unknown", "agent-7", ""},
	} {
		if got, err := s.SessionTool(ctx, tt.id, tt.caller); err != nil || got != tt.want {
			t.Errorf("SessionTool(%q, %q) = %q, %v; want %q", tt.id, tt.caller, got, err, tt.want)
		}
	}
	if got, err := f(t)().SessionTool(ctx, "sess_1", "agent-7"); err != nil || got != "" {
		t.Errorf("SessionTool on another state = %q, %v; want \"\"", got, err)
	}
}

// testRequestApproval: a request creates a pending approval holding a
// reservation; an identical one returns it, reserving nothing more.
func testRequestApproval(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	r := approvalRequest("apr_1", "key-1", day, l)
	a, created := request(t, s, r)
	if !created || a.ID != "apr_1" || a.State != state.ApprovalPending || a.Reservation == "" ||
		!a.RequestedAt.Equal(day) || !a.ExpiresAt.Equal(day.Add(approvalTimeout)) || !a.DecidedAt.IsZero() || a.DecidedBy != "" {
		t.Fatalf("RequestApproval = %+v, %v; want a new pending approval with a reservation", a, created)
	}
	if r.Record.Seq != 1 || r.Record.Reservation != a.Reservation {
		t.Errorf("the request's record = %+v, want record 1 naming the reservation", r.Record)
	}
	wantUsage(t, s, "after the request", day, l, 600, 1)
	got, err := s.Approval(ctx, "apr_1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Fatalf("Approval differs from what RequestApproval returned (-want +got):\n%s", diff)
	}
	if _, err := s.Approval(ctx, "apr_unknown"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Approval of an unknown ID = %v, want ErrNotFound", err)
	}
	again := approvalRequest("apr_2", "key-1", day.Add(time.Minute), l)
	again.Approval.Fingerprint = "other"
	b, created := request(t, s, again)
	if created || b.ID != "apr_1" || b.State != state.ApprovalPending || b.Fingerprint != "f" {
		t.Fatalf("an identical request = %+v, %v; want apr_1 as it is", b, created)
	}
	wantUsage(t, s, "after an identical request", day.Add(time.Minute), l, 600, 1)
	if head, _, err := s.AuditHead(ctx); err != nil || head != 1 {
		t.Errorf("AuditHead = %d, %v; want 1: the identical request appended", head, err)
	}
	if _, err := s.Approval(ctx, "apr_2"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Approval of the identical request's ID = %v, want ErrNotFound", err)
	}
	bad := approvalRequest("apr_3", "key-3", day, l)
	bad.Record.Kind = state.KindOutcome
	if _, _, err := s.RequestApproval(ctx, bad); err == nil {
		t.Error("a request whose record is not an approval record was accepted")
	}
	verified(t, s, 1)
}

// testCallApproval: CallApproval finds what RequestApproval would (a live
// approval, a refused or expired one for Remember after its decision,
// never a used one), and writes nothing, not even the expiry of one due.
func testCallApproval(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	unwritten := func(what string, records int64) {
		t.Helper()
		if head, _, err := s.AuditHead(ctx); err != nil || head != records {
			t.Fatalf("AuditHead %s = %d, %v; want %d: CallApproval wrote", what, head, err, records)
		}
	}
	callApproval := func(key string, at time.Time) *state.Approval {
		t.Helper()
		a, err := s.CallApproval(ctx, key, at, approvalTimeout)
		if err != nil {
			t.Fatalf("CallApproval(%s) at %v: %v", key, at, err)
		}
		return a
	}
	notFound := func(what, key string, at time.Time) {
		t.Helper()
		if a, err := s.CallApproval(ctx, key, at, approvalTimeout); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("CallApproval %s = %+v, %v; want ErrNotFound", what, a, err)
		}
	}
	notFound("of a key never asked about", "key-1", day)

	pending, _ := request(t, s, approvalRequest("apr_1", "key-1", day, l))
	if got := callApproval("key-1", day.Add(time.Minute)); cmp.Diff(pending, got) != "" {
		t.Fatalf("CallApproval of a pending approval differs from it (-want +got):\n%s", cmp.Diff(pending, got))
	}
	// Due: found expired, as RequestApproval would expire it, but left
	// pending, its reservation kept.
	due := day.Add(approvalTimeout)
	if got := callApproval("key-1", due); got.ID != "apr_1" || got.State != state.ApprovalExpired || !got.DecidedAt.Equal(due) {
		t.Fatalf("CallApproval at the deadline = %+v; want apr_1 expired at %v", got, due)
	}
	if got, err := s.Approval(ctx, "apr_1"); err != nil || got.State != state.ApprovalPending {
		t.Fatalf("apr_1 after CallApproval at its deadline = %+v, %v; want it still pending", got, err)
	}
	wantUsage(t, s, "after CallApproval at the deadline", day.Add(time.Minute), l, 600, 1)
	unwritten("after CallApproval at the deadline", 1)

	// Denied: found until Remember after the decision, then not.
	decided := day.Add(2 * time.Minute)
	if _, err := s.DecideApproval(ctx, decided, "apr_1", false, "operator:ops", decided); err != nil {
		t.Fatal(err)
	}
	if got := callApproval("key-1", decided.Add(time.Minute)); got.ID != "apr_1" || got.State != state.ApprovalDenied || got.DecidedBy != "operator:ops" {
		t.Fatalf("CallApproval after the denial = %+v; want apr_1 denied by operator:ops", got)
	}
	if got := callApproval("key-1", decided.Add(approvalTimeout-time.Nanosecond)); got.ID != "apr_1" {
		t.Fatalf("CallApproval just before the denial is forgotten = %+v; want apr_1", got)
	}
	notFound("once the denial is forgotten", "key-1", decided.Add(approvalTimeout))

	// Approved: found; used by its call: not found.
	request(t, s, approvalRequest("apr_2", "key-2", day, l[1:]))
	if _, err := s.DecideApproval(ctx, decided, "apr_2", true, "operator:ops", decided.Add(approvalTimeout)); err != nil {
		t.Fatal(err)
	}
	if got := callApproval("key-2", decided.Add(time.Minute)); got.ID != "apr_2" || got.State != state.ApprovalApproved {
		t.Fatalf("CallApproval of an approved approval = %+v; want apr_2 approved", got)
	}
	h := hold("call-2", decided.Add(time.Minute), l[1:])
	h.Approval = "apr_2"
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	notFound("of an approval its call used", "key-2", decided.Add(2*time.Minute))
	unwritten("at the end", 5) // two requests, two decisions, one intent
}

// testCallApprovalSharesRequestApprovalsClock: CallApproval judges by the
// clock RequestApproval judges by. With another handle on the state whose
// clock is behind (it published day), an approval due by this handle's
// clock is not due yet to either: CallApproval does not call it expired
// while the identical call would find it pending.
func testCallApprovalSharesRequestApprovalsClock(t *testing.T, f Factory) {
	open := f(t)
	a, b := open(), open()
	ctx := context.Background()
	l := approvalLimits()
	if _, err := b.Clock(ctx, day); err != nil {
		t.Fatal(err)
	}
	request(t, a, approvalRequest("apr_1", "key-1", day, l))
	due := day.Add(approvalTimeout)
	got, err := a.CallApproval(ctx, "key-1", due, approvalTimeout)
	if err != nil {
		t.Fatal(err)
	}
	found, created := request(t, a, approvalRequest("apr_2", "key-1", due, l))
	if created || found.ID != "apr_1" || found.State != state.ApprovalPending {
		t.Fatalf("RequestApproval at the deadline, another handle behind = %+v (created %v); want apr_1 still pending", found, created)
	}
	if got.ID != "apr_1" || got.State != state.ApprovalPending {
		t.Fatalf("CallApproval at the deadline, another handle behind = %+v; want apr_1 pending, as RequestApproval finds it", got)
	}
}

// testHoldOnAnApprovalSpendsWhenHeld: a call held on an approval spends
// when it is held, not when the approval was requested: its budget entries
// move to the hold's time, checked again. Were they left at the request's
// time, a budget could be spent twice within one window: once by others
// after the request's entry left it, once by the approved call.
func testHoldOnAnApprovalSpendsWhenHeld(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	// The rate limit first: a denial names the budget by its index here.
	l := []policy.Limit{rate("rate|*|24h|", 24*time.Hour, 10), budget("budget|*|USD|1h|", time.Hour, 1000, 600)}
	r := approvalRequest("apr_1", "key-1", day, l)
	r.Approval.ExpiresAt = day.Add(time.Hour)
	a, _ := request(t, s, r)
	if _, err := s.DecideApproval(ctx, day.Add(50*time.Minute), "apr_1", true, "operator:ops", day.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// At day+90m the request's entry has left the hour: another 600 fits.
	later := day.Add(90 * time.Minute)
	wantUsage(t, s, "after the request's hour", later, l, 1, 0)
	other := hold("call-other", later, l)
	other.Claim.Key = "other-key"
	if _, err := s.Hold(ctx, other); err != nil {
		t.Fatal(err)
	}
	// The budget is limit 1 (after the rate limit); the hour holds 600.
	refusedOnApproval(t, s, hold("call-approved", later.Add(time.Second), l), "apr_1", 1, 600)
	wantUsage(t, s, "after the refused hold", later.Add(time.Second), l, 2, 600)
	// Once the other call is released it fits, counted from the hold.
	if err := s.Complete(ctx, outcome(other, policy.Released, "upstream_refused", nil)); err != nil {
		t.Fatal(err)
	}
	at := later.Add(time.Minute)
	h := hold("call-approved", at, l)
	h.Approval = "apr_1"
	held, err := s.Hold(ctx, h)
	if err != nil || held.Reservation != a.Reservation {
		t.Fatalf("Hold on the approval = %+v, %v; want it held on reservation %s", held, err, a.Reservation)
	}
	// The hold counted no second call; its 600 counts for an hour from it.
	wantUsage(t, s, "after the hold", at, l, 2, 600)
	wantUsage(t, s, "59 minutes after the hold", at.Add(59*time.Minute), l, 2, 600)
	wantUsage(t, s, "an hour after the hold", at.Add(time.Hour), l, 2, 0)
	// Released, it gives back what it holds now.
	if err := s.Complete(ctx, outcome(h, policy.Released, "upstream_refused", nil)); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after its release", at, l, 2, 0)
}

// testHoldOnAnApprovalCountsItsRateLimitsWhenHeld: a call held on an
// approval is counted by the rate limits when it is made, as by the
// budgets: once, its request's entry moved to the hold. Counted only when
// it asked, a call approved long after its request would escape a rate
// limit another call had used up meanwhile.
func testHoldOnAnApprovalCountsItsRateLimitsWhenHeld(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{rate("rate|*|20m|", 20*time.Minute, 1)}
	request(t, s, approvalRequest("apr_1", "key-1", day, l))
	if _, err := s.DecideApproval(ctx, day.Add(time.Minute), "apr_1", true, "operator:ops", day.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the request", day, l, 1)
	// At day+21m the request has left the window: another call is made.
	other := hold("call-other", day.Add(21*time.Minute), l)
	other.Claim.Key = "other-key"
	if _, err := s.Hold(ctx, other); err != nil {
		t.Fatal(err)
	}
	// A minute later the approved call would be a second call in 20m.
	refusedOnApproval(t, s, hold("call-approved", day.Add(22*time.Minute), l), "apr_1", 0, 1)
	wantUsage(t, s, "after the refused hold", day.Add(22*time.Minute), l, 1)
	// Once the other call has left the window, it is made, counted once.
	at := day.Add(41*time.Minute + time.Second)
	h := hold("call-approved", at, l)
	h.Approval = "apr_1"
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatalf("Hold on the approval once the rate limit allows it: %v", err)
	}
	wantUsage(t, s, "after the hold", at, l, 1)
	wantUsage(t, s, "19 minutes after the hold", at.Add(19*time.Minute), l, 1)
	wantUsage(t, s, "20 minutes after the hold", at.Add(20*time.Minute), l, 0)
	// Released (Clink refused it), it still counts: the call was made.
	if err := s.Complete(ctx, outcome(h, policy.Released, "upstream_refused", nil)); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after its release", at, l, 1)

	// Used soon after its request, the call counts once, from its hold.
	start := day.Add(3 * time.Hour)
	r := approvalRequest("apr_2", "key-2", start, l)
	request(t, s, r)
	if _, err := s.DecideApproval(ctx, start.Add(time.Minute), "apr_2", true, "operator:ops", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	soon := start.Add(2 * time.Minute)
	h2 := hold("call-approved-2", soon, l)
	h2.Claim.Key = "key-2-claim"
	h2.Approval = "apr_2"
	if _, err := s.Hold(ctx, h2); err != nil {
		t.Fatalf("Hold on an approval within its request's window: %v (counted twice?)", err)
	}
	wantUsage(t, s, "after the second hold", soon, l, 1)
	wantUsage(t, s, "20 minutes after the second request", start.Add(20*time.Minute), l, 1)
	wantUsage(t, s, "20 minutes after the second hold", soon.Add(20*time.Minute), l, 0)
}

// refusedOnApproval holds h on approval id, which a budget must refuse
// (a *policy.Denied of limit, used), leaving the approval approved.
func refusedOnApproval(t *testing.T, s state.Store, h *state.Hold, id string, limit int, used int64) {
	t.Helper()
	ctx := context.Background()
	h.Approval = id
	var d *policy.Denied
	if _, err := s.Hold(ctx, h); !errors.As(err, &d) || d.Limit != limit || d.Used != used {
		t.Fatalf("Hold on approval %s = %v, want a *policy.Denied of limit %d using %d", id, err, limit, used)
	}
	if got, err := s.Approval(ctx, id); err != nil || got.State != state.ApprovalApproved {
		t.Fatalf("approval %s after a refused hold = %+v, %v; want it still approved", id, got, err)
	}
}

// testRefusedHoldOnAnApprovalKeepsItsReservation: a hold on an approval
// its budgets refuse (here the operator lowered the budget since the
// request) changes nothing: the approval stays approved and its
// reservation keeps counting until it is used, denied or expires.
func testRefusedHoldOnAnApprovalKeepsItsReservation(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("budget|*|USD|24h|", 24*time.Hour, 1000, 600)}
	a, _ := request(t, s, approvalRequest("apr_1", "key-1", day, l))
	if _, err := s.DecideApproval(ctx, day.Add(time.Minute), "apr_1", true, "operator:ops", day.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	other := hold("call-other", day.Add(2*time.Minute), []policy.Limit{budget("budget|*|USD|24h|", 24*time.Hour, 1000, 300)})
	other.Claim.Key = "other-key"
	if _, err := s.Hold(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Lowered to 800: the other call's 300 and the approved 600 exceed it.
	lowered := []policy.Limit{budget("budget|*|USD|24h|", 24*time.Hour, 800, 600)}
	at := day.Add(3 * time.Minute)
	// The approval's own 600 is not counted against it: 300 used.
	refusedOnApproval(t, s, hold("call-approved", at, lowered), "apr_1", 0, 300)
	wantUsage(t, s, "after the refused hold", at, l, 900)
	// Under the budget as it was, the call is held on the same reservation,
	// whose 600 now counts once, from the hold.
	h := hold("call-approved", at.Add(time.Minute), l)
	h.Approval = "apr_1"
	if held, err := s.Hold(ctx, h); err != nil || held.Reservation != a.Reservation {
		t.Fatalf("Hold on the approval = %+v, %v; want it held on reservation %s", held, err, a.Reservation)
	}
	wantUsage(t, s, "after the hold", at.Add(time.Minute), l, 900)
	wantUsage(t, s, "a day after the other call", day.Add(24*time.Hour+3*time.Minute), l, 600)
}

// testRequestApprovalOverBudget: a request a limit refuses writes nothing.
func testRequestApprovalOverBudget(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	l[0].Add = 1001
	var d *policy.Denied
	if _, _, err := s.RequestApproval(ctx, approvalRequest("apr_1", "key-1", day, l)); !errors.As(err, &d) || d.Limit != 0 {
		t.Fatalf("RequestApproval over budget = %v, want a *policy.Denied of limit 0", err)
	}
	wantUsage(t, s, "after a refused request", day, l, 0, 0)
	if head, _, err := s.AuditHead(ctx); err != nil || head != 0 {
		t.Errorf("AuditHead = %d, %v; want 0", head, err)
	}
	if _, err := s.Approval(ctx, "apr_1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Approval after a refused request = %v, want ErrNotFound", err)
	}
	if list, err := s.ListApprovals(ctx, nil, 0); err != nil || len(list) != 0 {
		t.Errorf("ListApprovals = %+v, %v; want none", list, err)
	}
	// The next request with the same key, within the budget, is created.
	if _, created := request(t, s, approvalRequest("apr_2", "key-1", day, approvalLimits())); !created {
		t.Error("a request after a refused one was not created")
	}
}

// testHoldOnAnApproval: an approved approval's call is held on its
// reservation, once.
func testHoldOnAnApproval(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	a, _ := request(t, s, approvalRequest("apr_1", "key-1", day, l))
	at := day.Add(time.Minute)
	useBy := at.Add(approvalTimeout)
	got, err := s.DecideApproval(ctx, at, "apr_1", true, "operator:ops", useBy)
	if err != nil || got.State != state.ApprovalApproved || got.DecidedBy != "operator:ops" || !got.DecidedAt.Equal(at) ||
		!got.ExpiresAt.Equal(useBy) || got.Reservation != a.Reservation {
		t.Fatalf("DecideApproval = %+v, %v; want it approved by operator:ops until %v", got, err, useBy)
	}
	if list, err := s.ListApprovals(ctx, []string{state.ApprovalApproved}, 0); err != nil || len(list) != 1 || cmp.Diff(*got, list[0]) != "" {
		t.Fatalf("ListApprovals(approved) = %+v, %v; want the one approved", list, err)
	}
	// An identical call holding the claim meanwhile leaves it approved.
	small := approvalLimits()
	small[0].Add = 300
	first := hold("call-1", at, small)
	if _, err := s.Hold(ctx, first); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the approval and a hold", at, l, 900, 2)
	h := hold("call-2", at.Add(time.Second), l)
	h.Approval = "apr_1"
	if held, err := s.Hold(ctx, h); err != nil || held.Prior.State != state.ClaimInFlight || held.Reservation != "" {
		t.Fatalf("Hold on the approval while another call holds the claim = %+v, %v; want it in flight, nothing written", held, err)
	}
	if got, err := s.Approval(ctx, "apr_1"); err != nil || got.State != state.ApprovalApproved {
		t.Fatalf("the approval after a hold that found the claim taken = %+v, %v; want it approved", got, err)
	}
	if err := s.Complete(ctx, outcome(first, policy.Released, "upstream_refused", nil)); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the first call was released", at.Add(time.Second), l, 600, 2)
	// Held on the approval: its reservation stands for the limits.
	held, err := s.Hold(ctx, h)
	if err != nil || held.Prior.State != state.ClaimNew || held.Reservation != a.Reservation || held.Intent.Reservation != a.Reservation {
		t.Fatalf("Hold on the approval = %+v, %v; want the approval's reservation %s", held, err, a.Reservation)
	}
	wantUsage(t, s, "after the hold on the approval", at.Add(time.Second), l, 600, 2)
	if got, err := s.Approval(ctx, "apr_1"); err != nil || got.State != state.ApprovalUsed {
		t.Fatalf("the approval after its hold = %+v, %v; want it used", got, err)
	}
	intents, err := s.Intents(ctx)
	if err != nil || len(intents) != 1 || intents[0].Reservation != a.Reservation {
		t.Fatalf("Intents = %+v, %v; want call-2's, on the approval's reservation", intents, err)
	}
	// Used: another call cannot be held on it, nor can it be decided or
	// expired.
	again := hold("call-3", at.Add(2*time.Second), l)
	again.Claim.Key, again.Approval = "another-key", "apr_1"
	if _, err := s.Hold(ctx, again); !errors.Is(err, state.ErrApprovalNotPending) {
		t.Fatalf("a second Hold on the approval = %v, want ErrApprovalNotPending", err)
	}
	if _, err := s.DecideApproval(ctx, at, "apr_1", false, "operator:ops", useBy); !errors.Is(err, state.ErrApprovalNotPending) {
		t.Fatalf("DecideApproval of a used approval = %v, want ErrApprovalNotPending", err)
	}
	if n, err := s.ExpireApprovals(ctx, useBy.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("ExpireApprovals after its use = %d, %v; want 0", n, err)
	}
	again.Approval = "apr_unknown"
	if _, err := s.Hold(ctx, again); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a Hold on an unknown approval = %v, want ErrNotFound", err)
	}
	if p, err := s.Claim(ctx, state.Claim{Key: "another-key", Call: "c", Fingerprint: "f", At: at, Window: time.Minute}); err != nil || p.State != state.ClaimNew {
		t.Errorf("the refused holds claimed: %+v, %v", p, err)
	}
	wantUsage(t, s, "after the refused holds", at.Add(2*time.Second), l, 600, 2)
	// Complete settles the approval's reservation as usual.
	if err := s.Complete(ctx, outcome(h, policy.Spent, string(policy.CodeCreated), []byte("created"))); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the call was spent", at.Add(3*time.Second), l, 600, 2)
	// The used approval no longer answers identical calls: a new request
	// is a new approval (the duplicate guard answers the call first).
	if b, created := request(t, s, approvalRequest("apr_2", "key-1", at.Add(4*time.Second), approvalLimits()[1:])); !created || b.ID != "apr_2" {
		t.Errorf("a request after the use = %+v, %v; want a new approval", b, created)
	}
	verified(t, s, 7)
}

// testHoldOnAnApprovalReleased: a call held on an approval and released
// gives its budget back.
func testHoldOnAnApprovalReleased(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	request(t, s, approvalRequest("apr_1", "key-1", day, l))
	if _, err := s.DecideApproval(ctx, day, "apr_1", true, "client:agent-7", day.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h := hold("call-1", day, l)
	h.Approval = "apr_1"
	// Expired unused, at its deadline to use it.
	late := *h
	late.At = day.Add(time.Minute)
	if _, err := s.Hold(ctx, &late); !errors.Is(err, state.ErrApprovalNotPending) {
		t.Fatalf("Hold at the approval's deadline = %v, want ErrApprovalNotPending", err)
	}
	h.At = day.Add(time.Minute - time.Nanosecond)
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, outcome(h, policy.Released, "upstream_refused", nil)); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "after the call was released", day.Add(time.Minute), l, 0, 1)
	verified(t, s, 4)
}

// testDenyApproval: a denial releases the budget, counts once, and keeps
// answering identical calls for Remember.
func testDenyApproval(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	request(t, s, approvalRequest("apr_1", "key-1", day, l))
	at := day.Add(time.Minute)
	a, err := s.DecideApproval(ctx, at, "apr_1", false, "operator:ops", at.Add(time.Hour))
	if err != nil || a.State != state.ApprovalDenied || a.DecidedBy != "operator:ops" || !a.DecidedAt.Equal(at) ||
		!a.ExpiresAt.Equal(day.Add(approvalTimeout)) {
		t.Fatalf("DecideApproval = %+v, %v; want it denied by operator:ops, its expiry unchanged", a, err)
	}
	wantUsage(t, s, "after the denial", at, l, 0, 1)
	again, err := s.DecideApproval(ctx, at, "apr_1", true, "operator:other", at.Add(time.Hour))
	if !errors.Is(err, state.ErrApprovalNotPending) || again == nil || again.State != state.ApprovalDenied || again.DecidedBy != "operator:ops" {
		t.Fatalf("a second decision = %+v, %v; want the denial as it is and ErrApprovalNotPending", again, err)
	}
	if _, err := s.DecideApproval(ctx, at, "apr_unknown", true, "operator:ops", at); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("DecideApproval of an unknown ID = %v, want ErrNotFound", err)
	}
	wantUsage(t, s, "after the second decision", at, l, 0, 1)
	// Identical calls hear of the denial for Remember after it.
	b, created := request(t, s, approvalRequest("apr_2", "key-1", at.Add(approvalTimeout-time.Nanosecond), l))
	if created || b.ID != "apr_1" || b.State != state.ApprovalDenied {
		t.Fatalf("a request within Remember = %+v, %v; want the denial", b, created)
	}
	c, created := request(t, s, approvalRequest("apr_3", "key-1", at.Add(approvalTimeout), l))
	if !created || c.ID != "apr_3" || c.State != state.ApprovalPending {
		t.Fatalf("a request after Remember = %+v, %v; want a new approval", c, created)
	}
	wantUsage(t, s, "after the new request", at.Add(approvalTimeout), l, 600, 2)
	verified(t, s, 3)
}

// testExpireApprovals: pending and approved-unused approvals expire at
// their deadlines, giving their reservations back.
func testExpireApprovals(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	b1 := []policy.Limit{budget("b", 24*time.Hour, 1000, 300)}
	request(t, s, approvalRequest("apr_pending", "key-1", day, b1))
	request(t, s, approvalRequest("apr_approved", "key-2", day, b1))
	request(t, s, approvalRequest("apr_later", "key-3", day.Add(time.Hour), b1))
	useBy := day.Add(30 * time.Minute)
	if _, err := s.DecideApproval(ctx, day.Add(time.Minute), "apr_approved", true, "operator:ops", useBy); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, s, "with three approvals", day.Add(time.Hour), b1, 900)
	deadline := day.Add(approvalTimeout)
	if n, err := s.ExpireApprovals(ctx, deadline.Add(-time.Nanosecond)); err != nil || n != 0 {
		t.Fatalf("ExpireApprovals before any deadline = %d, %v; want 0", n, err)
	}
	if n, err := s.ExpireApprovals(ctx, deadline); err != nil || n != 1 {
		t.Fatalf("ExpireApprovals at the pending one's deadline = %d, %v; want 1", n, err)
	}
	a, err := s.Approval(ctx, "apr_pending")
	if err != nil || a.State != state.ApprovalExpired || !a.DecidedAt.Equal(deadline) || a.DecidedBy != "" {
		t.Fatalf("the pending approval = %+v, %v; want it expired at %v", a, err, deadline)
	}
	wantUsage(t, s, "after the pending one expired", day.Add(time.Hour), b1, 600)
	if n, err := s.ExpireApprovals(ctx, useBy); err != nil || n != 1 {
		t.Fatalf("ExpireApprovals at the approved one's deadline = %d, %v; want 1", n, err)
	}
	if a, err := s.Approval(ctx, "apr_approved"); err != nil || a.State != state.ApprovalExpired || a.DecidedBy != "" {
		t.Fatalf("the approved approval = %+v, %v; want it expired", a, err)
	}
	wantUsage(t, s, "after the approved one expired", day.Add(time.Hour), b1, 300)
	// An expired approval answers identical calls for Remember.
	if a, created := request(t, s, approvalRequest("apr_x", "key-1", deadline.Add(time.Minute), b1)); created || a.ID != "apr_pending" || a.State != state.ApprovalExpired {
		t.Fatalf("a request after the expiry = %+v, %v; want the expired one", a, created)
	}
	// A request, or a decision, finds one past its deadline that nobody
	// expired yet, and expires it first.
	at := day.Add(time.Hour + approvalTimeout)
	if a, err := s.DecideApproval(ctx, at, "apr_later", true, "operator:ops", at.Add(time.Hour)); !errors.Is(err, state.ErrApprovalNotPending) ||
		a == nil || a.State != state.ApprovalExpired || !a.DecidedAt.Equal(at) {
		t.Fatalf("DecideApproval past the deadline = %+v, %v; want it expired and ErrApprovalNotPending", a, err)
	}
	wantUsage(t, s, "after the decision came too late", at, b1, 0)
	request(t, s, approvalRequest("apr_4", "key-4", at, b1))
	if a, created := request(t, s, approvalRequest("apr_5", "key-4", at.Add(approvalTimeout), b1)); created || a.ID != "apr_4" || a.State != state.ApprovalExpired {
		t.Fatalf("a request past the deadline = %+v, %v; want the first, expired", a, created)
	}
	wantUsage(t, s, "after the request expired the first", at.Add(approvalTimeout), b1, 0)
	if n, err := s.ExpireApprovals(ctx, at.Add(24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("ExpireApprovals with none left = %d, %v; want 0", n, err)
	}
	verified(t, s, 9)
}

// testListApprovals: newest request first, filtered by state, at most the
// limit.
func testListApprovals(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	for i := range 5 {
		request(t, s, approvalRequest(fmt.Sprintf("apr_%d", i), fmt.Sprintf("key-%d", i), day.Add(time.Duration(i)*time.Minute), nil))
	}
	at := day.Add(10 * time.Minute)
	if _, err := s.DecideApproval(ctx, at, "apr_1", true, "operator:ops", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideApproval(ctx, at, "apr_3", false, "operator:ops", at); err != nil {
		t.Fatal(err)
	}
	ids := func(as []state.Approval) string {
		var out []string
		for _, a := range as {
			out = append(out, a.ID+":"+a.State)
		}
		return fmt.Sprint(out)
	}
	for _, tt := range []struct {
		states []string
		limit  int
		want   string
	}{
		{nil, 0, "[apr_4:pending apr_3:denied apr_2:pending apr_1:approved apr_0:pending]"},
		{nil, 2, "[apr_4:pending apr_3:denied]"},
		{[]string{state.ApprovalPending}, 0, "[apr_4:pending apr_2:pending apr_0:pending]"},
		{[]string{state.ApprovalApproved, state.ApprovalDenied}, -1, "[apr_3:denied apr_1:approved]"},
		{[]string{state.ApprovalUsed}, 0, "[]"},
	} {
		got, err := s.ListApprovals(ctx, tt.states, tt.limit)
		if err != nil || ids(got) != tt.want {
			t.Errorf("ListApprovals(%v, %d) = %s, %v; want %s", tt.states, tt.limit, ids(got), err, tt.want)
		}
	}
	if _, err := s.ListApprovals(ctx, []string{"lost"}, 0); err == nil {
		t.Error("ListApprovals of an unknown state succeeded")
	}
}

// testConcurrentApprovalRequests: ten requests at once, on two handles,
// against a budget that fits four of them: four are created, six refused;
// identical requests at once create one.
func testConcurrentApprovalRequests(t *testing.T, f Factory) {
	open := f(t)
	handles := []state.Store{open(), open()}
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 1000, 250)}
	const n, fit = 10, 4
	var (
		wg               sync.WaitGroup
		created, refused atomic.Int64
	)
	for i := range n {
		wg.Go(func() {
			_, ok, err := handles[i%2].RequestApproval(ctx, approvalRequest(fmt.Sprintf("apr_%d", i), fmt.Sprintf("key-%d", i), day, l))
			var d *policy.Denied
			switch {
			case err == nil && ok:
				created.Add(1)
			case errors.As(err, &d):
				refused.Add(1)
			default:
				t.Errorf("RequestApproval %d = %v, %v", i, ok, err)
			}
		})
	}
	wg.Wait()
	if created.Load() != fit || refused.Load() != n-fit {
		t.Fatalf("%d created and %d refused, want %d and %d", created.Load(), refused.Load(), fit, n-fit)
	}
	wantUsage(t, handles[0], "after the requests", day, l, fit*250)
	if list, err := handles[1].ListApprovals(ctx, nil, 0); err != nil || len(list) != fit {
		t.Fatalf("ListApprovals = %d approvals, %v; want %d", len(list), err, fit)
	}
	// Identical requests at once: one approval.
	l = []policy.Limit{budget("b2", time.Hour, 1000, 100)}
	var ids sync.Map
	created.Store(0)
	for i := range n {
		wg.Go(func() {
			a, ok, err := handles[i%2].RequestApproval(ctx, approvalRequest(fmt.Sprintf("apr_same_%d", i), "same-key", day, l))
			if err != nil {
				t.Errorf("RequestApproval %d: %v", i, err)
				return
			}
			if ok {
				created.Add(1)
			}
			ids.Store(a.ID, true)
		})
	}
	wg.Wait()
	distinct := 0
	ids.Range(func(any, any) bool { distinct++; return true })
	if created.Load() != 1 || distinct != 1 {
		t.Fatalf("identical requests at once created %d, returned %d approvals; want 1 and 1", created.Load(), distinct)
	}
	wantUsage(t, handles[0], "after the identical requests", day, l, 100)
	verified(t, handles[0], fit+1)
}

// testConcurrentDecisions: of two decisions of one approval made at once,
// on two handles, exactly one wins.
func testConcurrentDecisions(t *testing.T, f Factory) {
	open := f(t)
	handles := []state.Store{open(), open()}
	ctx := context.Background()
	l := approvalLimits()
	for round := range 5 {
		id := fmt.Sprintf("apr_%d", round)
		request(t, handles[0], approvalRequest(id, "key-"+id, day, l[1:]))
		var (
			wg         sync.WaitGroup
			won, lost  atomic.Int64
			mu         sync.Mutex
			winnerDeny bool
		)
		for i := range 2 {
			wg.Go(func() {
				approve := i == 0
				a, err := handles[i].DecideApproval(ctx, day.Add(time.Minute), id, approve, fmt.Sprintf("operator:%d", i), day.Add(time.Hour))
				switch {
				case err == nil:
					won.Add(1)
					mu.Lock()
					winnerDeny = a.State == state.ApprovalDenied
					mu.Unlock()
				case errors.Is(err, state.ErrApprovalNotPending):
					lost.Add(1)
				default:
					t.Errorf("DecideApproval: %v", err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || lost.Load() != 1 {
			t.Fatalf("round %d: %d decisions won and %d lost, want 1 and 1", round, won.Load(), lost.Load())
		}
		a, err := handles[1].Approval(ctx, id)
		if err != nil || (a.State == state.ApprovalDenied) != winnerDeny {
			t.Fatalf("round %d: the approval = %+v, %v; want the winner's decision", round, a, err)
		}
	}
	verified(t, handles[0], 10)
}

// testApprovalAnsweredByItsCall: once a call was held on an approval, its
// claim answers identical calls: RequestApproval on the claim's key is
// refused with ErrClaimHeld, writing nothing, and a ClaimOnly hold reports
// the claim; a ClaimOnly hold that finds no claim writes nothing at all.
func testApprovalAnsweredByItsCall(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := approvalLimits()
	h := hold("call-1", day, l)
	key := h.Claim.Key

	// ClaimOnly with no claim: nothing written, not even the claim.
	probe := hold("call-0", day, l)
	probe.ClaimOnly = true
	if held, err := s.Hold(ctx, probe); err != nil || held.Prior.State != state.ClaimNew || held.Reservation != "" {
		t.Fatalf("a ClaimOnly hold with no claim = %+v, %v; want ClaimNew and nothing held", held, err)
	}
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 0 {
		t.Fatalf("Intents after a ClaimOnly hold = %+v, %v; want none", intents, err)
	}
	wantUsage(t, s, "after a ClaimOnly hold", day, l, 0, 0)

	a, _ := request(t, s, approvalRequest("apr_1", key, day, l))
	at := day.Add(time.Minute)
	if _, err := s.DecideApproval(ctx, at, a.ID, true, "operator:ops", at.Add(approvalTimeout)); err != nil {
		t.Fatal(err)
	}
	h.At, h.Claim.At, h.Approval = at, at, a.ID
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	// In flight, then done: either way the claim answers.
	for _, done := range []bool{false, true} {
		if done {
			if err := s.Complete(ctx, outcome(h, policy.Spent, string(policy.CodeCreated), []byte("created"))); err != nil {
				t.Fatal(err)
			}
		}
		next := at.Add(2 * time.Second)
		if got, created, err := s.RequestApproval(ctx, approvalRequest("apr_2", key, next, l)); !errors.Is(err, state.ErrClaimHeld) || created || got != nil {
			t.Fatalf("RequestApproval while the approved call holds the claim (done %v) = %+v, %v, %v; want ErrClaimHeld", done, got, created, err)
		}
		wantUsage(t, s, "after the refused request", next, l, 600, 1)
		probe := hold("call-2", next, l)
		probe.ClaimOnly = true
		want := state.ClaimInFlight
		if done {
			want = state.ClaimDone
		}
		if held, err := s.Hold(ctx, probe); err != nil || held.Prior.State != want {
			t.Fatalf("a ClaimOnly hold (done %v) = %+v, %v; want %v", done, held, err, want)
		}
	}
	if _, err := s.Approval(ctx, "apr_2"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("the refused request left approval apr_2: %v", err)
	}
	// Once the claim's window has passed, a new request is a new approval.
	later := at.Add(h.Claim.Window + time.Minute)
	if b, created := request(t, s, approvalRequest("apr_3", key, later, approvalLimits()[1:])); !created || b.ID != "apr_3" {
		t.Fatalf("a request after the claim's window = %+v, %v; want a new approval", b, created)
	}
	verified(t, s, 5) // two requests, the grant, the intent and the outcome
}
