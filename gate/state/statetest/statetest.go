// Package statetest is the conformance suite every implementation of
// [state.Store] runs: the rolling-window ledger and its exactness at window
// edges, the duplicate guard, the hash-chained journal, the two
// transactions of a call (hold and complete), intents orphaned by a handle
// that is gone, approvals (requested, decided, expired, and used by a
// hold), and concurrency across handles.
//
// An implementation's test calls [Run] with a [Factory]:
//
//	func TestConformance(t *testing.T) {
//		statetest.Run(t, func(t testing.TB) func() state.Store {
//			path := filepath.Join(t.TempDir(), "state.db")
//			return func() state.Store { return openAndCleanUp(t, path) }
//		})
//	}
package statetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// Factory makes a fresh, empty state for one test and returns a function
// that opens a handle on it. Every call of that function opens another
// handle on the same state, as a second process (or a restarted one) would:
// handles share counters, claims and the journal, and each owns the intents
// it holds. The factory closes its handles when the test ends; a test may
// close one earlier, which orphans its open intents.
type Factory func(t testing.TB) (open func() state.Store)

// Run runs the whole suite against the implementation f makes.
func Run(t *testing.T, f Factory) {
	cases := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"ReserveRollingWindows", testReserveRollingWindows},
		{"ReserveRefusesBadInput", testReserveRefusesBadInput},
		{"Settle", testSettle},
		{"Claim", testClaim},
		{"ConcurrentReserveNeverExceedsTheBudget", testConcurrentReserveNeverExceedsTheBudget},
		{"ConcurrentIdenticalClaimsMakeOneNewClaim", testConcurrentIdenticalClaimsMakeOneNewClaim},
		{"AuditTrail", testAuditTrail},
		{"LedgerIsExactAfterManyEntries", testLedgerIsExactAfterManyEntries},
		{"CheckRecordsNothing", testCheckRecordsNothing},
		{"TwoHandlesShareOneState", testTwoHandlesShareOneState},
		{"StateSurvivesARestart", testStateSurvivesARestart},
		{"HoldAndComplete", testHoldAndComplete},
		{"HoldWritesNothingWhenRefused", testHoldWritesNothingWhenRefused},
		{"HoldIsAllOrNothing", testHoldIsAllOrNothing},
		{"AClockAheadCannotEraseOthersCounters", testAClockAheadCannotEraseOthersCounters},
		{"ClosedHandleOrphansItsIntents", testClosedHandleOrphansItsIntents},
		{"CompleteAfterAFailedWrite", testCompleteAfterAFailedWrite},
		{"CompleteLeavesAnotherCallsClaim", testCompleteLeavesAnotherCallsClaim},
		{"AFinishedClaimAnswersAWindowAfterItsCallEnded", testAFinishedClaimAnswersAWindowAfterItsCallEnded},
		{"Usage", testUsage},
		{"SessionTool", testSessionTool},
		{"RequestApproval", testRequestApproval},
		{"RequestApprovalOverBudget", testRequestApprovalOverBudget},
		{"CallApproval", testCallApproval},
		{"CallApprovalSharesRequestApprovalsClock", testCallApprovalSharesRequestApprovalsClock},
		{"HoldOnAnApproval", testHoldOnAnApproval},
		{"HoldOnAnApprovalReleased", testHoldOnAnApprovalReleased},
		{"HoldOnAnApprovalSpendsWhenHeld", testHoldOnAnApprovalSpendsWhenHeld},
		{"RefusedHoldOnAnApprovalKeepsItsReservation", testRefusedHoldOnAnApprovalKeepsItsReservation},
		{"HoldOnAnApprovalCountsItsRateLimitsWhenHeld", testHoldOnAnApprovalCountsItsRateLimitsWhenHeld},
		{"ApprovalAnsweredByItsCall", testApprovalAnsweredByItsCall},
		{"DenyApproval", testDenyApproval},
		{"ExpireApprovals", testExpireApprovals},
		{"ListApprovals", testListApprovals},
		{"ConcurrentApprovalRequests", testConcurrentApprovalRequests},
		{"ConcurrentDecisions", testConcurrentDecisions},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, f) })
	}
}

// testLedgerIsExactAfterManyEntries fills a window with thousands of
// entries, one a second, and checks that capacity returns exactly as each
// leaves its window: a running total must forget entries one by one, never
// early, never late.
func testLedgerIsExactAfterManyEntries(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	const n = 3000
	window := n * time.Second
	l := []policy.Limit{budget("budget|*|USD|50m|", window, n*10, 10)}
	for i := range n {
		if _, err := s.Reserve(ctx, day.Add(time.Duration(i)*time.Second), l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	// Full: the next call fits only when the first entry has left, at
	// day+window exactly.
	var d *policy.Denied
	if _, err := s.Reserve(ctx, day.Add(window-time.Nanosecond), l); !errors.As(err, &d) || d.Used != n*10 {
		t.Fatalf("Reserve a nanosecond before the first entry leaves = %v, want a denial with Used %d", err, n*10)
	} else if want := day.Add(window); !d.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %v, want %v", d.RetryAt, want)
	}
	for i := range 5 {
		at := day.Add(window + time.Duration(i)*time.Second)
		if err := s.Check(ctx, at, l); err != nil {
			t.Fatalf("Check at the %dth entry's exit = %v, want it to fit", i, err)
		}
		if _, err := s.Reserve(ctx, at, l); err != nil {
			t.Fatalf("Reserve at the %dth entry's exit = %v, want it to fit", i, err)
		}
		if _, err := s.Reserve(ctx, at, l); !errors.As(err, &d) || d.Used != n*10 {
			t.Fatalf("a second Reserve at the %dth entry's exit = %v, want a denial with Used %d", i, err, n*10)
		}
	}
	// A released budget entry frees its amount at once.
	later := day.Add(window + 10*time.Second)
	var id string
	for i := 0; ; i++ {
		next, err := s.Reserve(ctx, later, l)
		if err != nil {
			break
		}
		if id = next; i > 20 {
			t.Fatal("the budget never fills up again")
		}
	}
	if err := s.Settle(ctx, id, policy.Released); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, later, l); err != nil {
		t.Fatalf("Reserve after a release = %v, want it to fit", err)
	}
}

// testCheckRecordsNothing: Check answers as Reserve would and changes
// nothing.
func testCheckRecordsNothing(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 60), rate("r", time.Hour, 5)}
	for range 3 {
		if err := s.Check(ctx, day, l); err != nil {
			t.Fatalf("Check = %v, want nil", err)
		}
	}
	if _, err := s.Reserve(ctx, day, l); err != nil {
		t.Fatal(err)
	}
	var d *policy.Denied
	if err := s.Check(ctx, day, l); !errors.As(err, &d) || d.Limit != 0 || d.Used != 60 || !d.RetryAt.Equal(day.Add(time.Hour)) {
		t.Fatalf("Check on a full budget = %v (%+v), want the denial Reserve gives", err, d)
	}
	if err := s.Check(ctx, day.Add(time.Hour), l); err != nil {
		t.Fatalf("Check when the window has passed = %v, want nil", err)
	}
}

// testTwoHandlesShareOneState hammers two handles at once.
func testTwoHandlesShareOneState(t *testing.T, f Factory) {
	open := f(t)
	t.Run("budget", func(t *testing.T) { hammerReserve(t, []state.Store{open(), open()}, 300) })
	open = f(t)
	t.Run("claim", func(t *testing.T) { hammerClaim(t, []state.Store{open(), open()}, 50) })
}

// testStateSurvivesARestart closes a handle and opens another.
func testStateSurvivesARestart(t *testing.T, f Factory) {
	open := f(t)
	ctx := context.Background()
	s := open()
	l := []policy.Limit{budget("b", 24*time.Hour, 2000, 1500)}
	if _, err := s.Reserve(ctx, day, l); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Claim(ctx, state.Claim{Key: "k", Call: "c1", Fingerprint: "f", At: day, Window: time.Hour}); err != nil || p.State != state.ClaimNew {
		t.Fatal(p, err)
	}
	if err := s.Finish(ctx, "k", []byte("result")); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, sampleRecords(3))
	s.Close()

	s = open()
	var d *policy.Denied
	if _, err := s.Reserve(ctx, day.Add(time.Hour), l); !errors.As(err, &d) || d.Used != 1500 {
		t.Errorf("Reserve after a restart = %v, want a denial with Used 1500", err)
	}
	if p, err := s.Claim(ctx, state.Claim{Key: "k", Call: "c2", Fingerprint: "f", At: day.Add(time.Minute), Window: time.Hour}); err != nil || p.State != state.ClaimDone || string(p.Result) != "result" {
		t.Errorf("Claim after a restart = %+v, %v; want the stored result", p, err)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 3 {
		t.Errorf("VerifyAudit after a restart = %+v, %v; want 3 intact records", rep, err)
	}
}

// hold is a Hold of one call with a claim and a budget.
func hold(call string, at time.Time, l []policy.Limit) *state.Hold {
	return &state.Hold{
		At:     at,
		Claim:  &state.Claim{Key: "tool|args|" + strings.Repeat("f", 8), Call: call, Fingerprint: "f", At: at, Window: 10 * time.Minute},
		Limits: l,
		Intent: state.AuditRecord{Time: at, Kind: state.KindIntent, Call: call, Caller: "agent-7", Tool: "create_checkout_session",
			Decision: "allowed", Amount: "60.00", Currency: "USD", Amounts: "USD 60.00"},
	}
}

// outcome is the Completion of the call h held.
func outcome(h *state.Hold, settlement policy.Settlement, decision string, replay []byte) *state.Completion {
	return &state.Completion{
		Call: h.Intent.Call, Settlement: settlement, ClaimKey: h.Claim.Key, Replay: replay,
		Record: state.AuditRecord{Time: h.At, Kind: state.KindOutcome, Call: h.Intent.Call, Caller: h.Intent.Caller,
			Tool: h.Intent.Tool, Decision: decision, SessionID: "sess_1"},
	}
}

func testHoldAndComplete(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 60)}
	h := hold("call-1", day, l)
	held, err := s.Hold(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if held.Prior.State != state.ClaimNew || held.Reservation == "" || held.Intent.Seq != 1 || held.Intent.Reservation != held.Reservation {
		t.Fatalf("Hold = %+v, want a new claim, a reservation and intent record 1 naming it", held)
	}
	intents, err := s.Intents(ctx)
	if err != nil || len(intents) != 1 || intents[0].Call != "call-1" || intents[0].Orphaned ||
		intents[0].ClaimKey != h.Claim.Key || intents[0].Reservation != held.Reservation || intents[0].Record.Caller != "agent-7" {
		t.Fatalf("Intents = %+v, %v; want the one held, not orphaned", intents, err)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || rep.Broken != nil || rep.Open != 1 || rep.OK() {
		t.Fatalf("VerifyAudit with an open intent = %+v, %v; want 1 open and not OK", rep, err)
	}
	// An identical call meanwhile finds it in flight, and writes nothing.
	again, err := s.Hold(ctx, hold("call-2", day.Add(time.Second), l))
	if err != nil || again.Prior.State != state.ClaimInFlight || again.Reservation != "" {
		t.Fatalf("Hold of an identical call = %+v, %v; want it in flight, nothing reserved", again, err)
	}
	if err := s.Complete(ctx, outcome(h, policy.Spent, "created", []byte("replay"))); err != nil {
		t.Fatal(err)
	}
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 0 {
		t.Fatalf("Intents after Complete = %+v, %v; want none", intents, err)
	}
	rep, err := state.VerifyAudit(ctx, s)
	if err != nil || !rep.OK() || rep.Records != 2 {
		t.Fatalf("VerifyAudit after Complete = %+v, %v; want 2 records, OK", rep, err)
	}
	again, err = s.Hold(ctx, hold("call-3", day.Add(2*time.Second), l))
	if err != nil || again.Prior.State != state.ClaimDone || string(again.Prior.Result) != "replay" {
		t.Fatalf("Hold of an identical call after Complete = %+v, %v; want the replay", again, err)
	}
	var d *policy.Denied
	if _, err := s.Reserve(ctx, day.Add(time.Minute), l); !errors.As(err, &d) || d.Used != 60 {
		t.Fatalf("Reserve after a spent call = %v, want a denial with Used 60", err)
	}
}

func testHoldWritesNothingWhenRefused(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 160)}
	var d *policy.Denied
	if _, err := s.Hold(ctx, hold("call-1", day, l)); !errors.As(err, &d) {
		t.Fatalf("Hold over budget = %v, want a *policy.Denied", err)
	}
	if p, err := s.Claim(ctx, state.Claim{Key: hold("x", day, l).Claim.Key, Call: "c", Fingerprint: "f", At: day, Window: time.Minute}); err != nil || p.State != state.ClaimNew {
		t.Errorf("the claim after a refused Hold = %+v, %v; want it free", p, err)
	}
	if head, _, err := s.AuditHead(ctx); err != nil || head != 0 {
		t.Errorf("AuditHead after a refused Hold = %d, %v; want 0", head, err)
	}
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 0 {
		t.Errorf("Intents after a refused Hold = %+v, %v; want none", intents, err)
	}
	if _, err := s.Hold(ctx, &state.Hold{At: day, Intent: state.AuditRecord{Kind: state.KindIntent}}); err == nil {
		t.Error("a Hold without a call ID was accepted")
	}
}

// testClosedHandleOrphansItsIntents is a crash: the handle holding an
// intent goes away; another resolves it once, and identical calls then get
// the resolution at once.
func testClosedHandleOrphansItsIntents(t *testing.T, f Factory) {
	open := f(t)
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 60)}
	a, b := open(), open()
	h := hold("call-1", day, l)
	if _, err := a.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	if intents, err := b.Intents(ctx); err != nil || len(intents) != 1 || intents[0].Orphaned {
		t.Fatalf("another handle's Intents while the owner is open = %+v, %v; want 1, not orphaned", intents, err)
	}
	a.Close()
	intents, err := b.Intents(ctx)
	if err != nil || len(intents) != 1 || !intents[0].Orphaned {
		t.Fatalf("Intents after the owner closed = %+v, %v; want 1, orphaned", intents, err)
	}
	resolve := outcome(h, policy.Unknown, "outcome_unknown", []byte("unknown"))
	resolve.OnlyIfOpen = true
	resolve.Record.SessionID = ""
	if err := b.Complete(ctx, resolve); err != nil {
		t.Fatal(err)
	}
	twice := *resolve
	if err := b.Complete(ctx, &twice); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("resolving it twice = %v, want ErrNotFound", err)
	}
	again, err := b.Hold(ctx, hold("call-2", day.Add(time.Second), l))
	if err != nil || again.Prior.State != state.ClaimDone || string(again.Prior.Result) != "unknown" {
		t.Fatalf("an identical call after the resolution = %+v, %v; want the resolution replayed", again, err)
	}
	var d *policy.Denied
	if _, err := b.Reserve(ctx, day.Add(time.Minute), l); !errors.As(err, &d) || d.Used != 60 {
		t.Fatalf("Reserve after an unknown outcome = %v, want its budget still spent (Used 60)", err)
	}
	// The owner was only slow: its real outcome still lands, and answers
	// identical calls from then on.
	late := outcome(h, policy.Spent, "created", []byte("created"))
	if err := open().Complete(ctx, late); err != nil {
		t.Fatal(err)
	}
	again, err = b.Hold(ctx, hold("call-3", day.Add(2*time.Second), l))
	if err != nil || string(again.Prior.Result) != "created" {
		t.Fatalf("an identical call after the late outcome = %+v, %v; want the real result", again, err)
	}
	if rep, err := state.VerifyAudit(ctx, b); err != nil || !rep.OK() || rep.Records != 3 {
		t.Fatalf("VerifyAudit = %+v, %v; want 3 records, none open", rep, err)
	}
}

// testCompleteAfterAFailedWrite: a Complete that fails writes nothing, and
// the same Completion retried lands whole.
func testCompleteAfterAFailedWrite(t *testing.T, f Factory) {
	s := f(t)()
	l := []policy.Limit{budget("b", time.Hour, 100, 60)}
	h := hold("call-1", day, l)
	if _, err := s.Hold(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	c := outcome(h, policy.Released, "upstream_refused", nil)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Complete(cancelled, c); err == nil {
		t.Fatal("Complete with a cancelled context succeeded")
	}
	ctx := context.Background()
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 1 {
		t.Fatalf("Intents after a failed Complete = %+v, %v; want the intent still open", intents, err)
	}
	if err := s.Complete(ctx, c); err != nil {
		t.Fatalf("Complete retried = %v", err)
	}
	if intents, err := s.Intents(ctx); err != nil || len(intents) != 0 {
		t.Fatalf("Intents after the retry = %+v, %v; want none", intents, err)
	}
	// Released: the budget is free again and the claim dropped.
	if _, err := s.Reserve(ctx, day, []policy.Limit{budget("b", time.Hour, 100, 100)}); err != nil {
		t.Errorf("Reserve of the whole budget after a release = %v", err)
	}
	if p, err := s.Claim(ctx, *hold("call-2", day, l).Claim); err != nil || p.State != state.ClaimNew {
		t.Errorf("Claim after a release = %+v, %v; want it free", p, err)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 2 {
		t.Errorf("VerifyAudit = %+v, %v; want 2 records (no half-written completion)", rep, err)
	}
}

// testCompleteLeavesAnotherCallsClaim: a claim another call has taken since
// (its lease passed) is not finished by the first call's completion.
func testCompleteLeavesAnotherCallsClaim(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	h := hold("call-1", day, nil)
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	later := day.Add(state.InFlightLease + time.Hour)
	c2 := *h.Claim
	c2.Call, c2.At = "call-2", later
	if p, err := s.Claim(ctx, c2); err != nil || p.State != state.ClaimNew {
		t.Fatalf("Claim past the lease = %+v, %v; want it new", p, err)
	}
	if err := s.Complete(ctx, outcome(h, policy.Spent, "created", []byte("first"))); err != nil {
		t.Fatal(err)
	}
	c2.Call, c2.At = "call-3", later.Add(time.Second)
	if p, err := s.Claim(ctx, c2); err != nil || p.State != state.ClaimInFlight {
		t.Fatalf("Claim = %+v, %v; want call-2's claim still in flight", p, err)
	}
}

// testAFinishedClaimAnswersAWindowAfterItsCallEnded: a call that ended
// (or was resolved by a later start) after its window had passed keeps
// answering identical calls for a window after it ended, and no longer.
func testAFinishedClaimAnswersAWindowAfterItsCallEnded(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	h := hold("call-1", day, nil) // a window of 10 minutes
	if _, err := s.Hold(ctx, h); err != nil {
		t.Fatal(err)
	}
	c := outcome(h, policy.Unknown, "outcome_unknown", []byte("unknown"))
	c.Record.Duration = 15 * time.Minute // resolved a quarter of an hour later
	if err := s.Complete(ctx, c); err != nil {
		t.Fatal(err)
	}
	again := *h.Claim
	again.Call, again.At = "call-2", day.Add(24*time.Minute)
	if p, err := s.Claim(ctx, again); err != nil || p.State != state.ClaimDone || string(p.Result) != "unknown" {
		t.Fatalf("Claim 24 minutes after the call began, 9 after it ended = %+v, %v; want its result replayed", p, err)
	}
	again.Call, again.At = "call-3", day.Add(25*time.Minute)
	if p, err := s.Claim(ctx, again); err != nil || p.State != state.ClaimNew {
		t.Fatalf("Claim a window after the call ended = %+v, %v; want it new", p, err)
	}
}

// testHoldIsAllOrNothing: a hold that fails after some of its writes (its
// call ID already holds an open intent) leaves no trace, and the store
// takes the next write as usual.
func testHoldIsAllOrNothing(t *testing.T, f Factory) {
	s := f(t)()
	ctx := context.Background()
	l := []policy.Limit{budget("b", time.Hour, 100, 60)}
	if _, err := s.Hold(ctx, hold("call-1", day, l)); err != nil {
		t.Fatal(err)
	}
	again := hold("call-1", day, []policy.Limit{budget("other", time.Hour, 100, 60)})
	again.Claim.Key = "another-key"
	if _, err := s.Hold(ctx, again); err == nil {
		t.Fatal("a second hold under an open call ID succeeded")
	}
	if head, _, err := s.AuditHead(ctx); err != nil || head != 1 {
		t.Errorf("AuditHead = %d, %v; want 1: the failed hold appended", head, err)
	}
	if err := s.Check(ctx, day, []policy.Limit{budget("other", time.Hour, 100, 100)}); err != nil {
		t.Errorf("the failed hold reserved: %v", err)
	}
	if p, err := s.Claim(ctx, state.Claim{Key: "another-key", Call: "c", Fingerprint: "f", At: day, Window: time.Minute}); err != nil || p.State != state.ClaimNew {
		t.Errorf("the failed hold claimed: %+v, %v", p, err)
	}
	next := hold("call-2", day.Add(time.Second), []policy.Limit{budget("b2", time.Hour, 100, 60)})
	next.Claim.Key = "a-third-key"
	if held, err := s.Hold(ctx, next); err != nil || held.Prior.State != state.ClaimNew {
		t.Fatalf("the next hold = %+v, %v", held, err)
	}
	if rep, err := state.VerifyAudit(ctx, s); err != nil || rep.Broken != nil || rep.Records != 2 {
		t.Errorf("VerifyAudit = %+v, %v; want 2 intact records", rep, err)
	}
}

// testAClockAheadCannotEraseOthersCounters: a handle whose clock runs two
// days ahead must not prune what another open handle still counts by its
// own time (which would let the two spend 199,999 of a 100,000 budget);
// the skew is reported to both; once the other handle is gone, the clock
// ahead rules alone.
func testAClockAheadCannotEraseOthersCounters(t *testing.T, f Factory) {
	open := f(t)
	ctx := context.Background()
	right, ahead := open(), open()
	skew := 48 * time.Hour
	l := func(add int64) []policy.Limit {
		return []policy.Limit{budget("budget|*|USD|24h0m0s|", 24*time.Hour, 100_000, add)}
	}
	if _, err := right.Reserve(ctx, day, l(100_000)); err != nil {
		t.Fatal(err)
	}
	if _, err := ahead.Clock(ctx, day.Add(skew)); err != nil {
		t.Fatal(err)
	}
	var d *policy.Denied
	if _, err := ahead.Reserve(ctx, day.Add(skew), l(99_999)); !errors.As(err, &d) || d.Used != 100_000 {
		t.Fatalf("Reserve by the clock ahead = %v, want a denial with Used 100000: it pruned the other's entries", err)
	}
	if err := ahead.Check(ctx, day.Add(skew), l(1)); !errors.As(err, &d) {
		t.Fatalf("Check by the clock ahead = %v, want a denial", err)
	}
	if a, err := right.Clock(ctx, day.Add(time.Second)); err != nil || a < skew-time.Minute {
		t.Errorf("Clock of the handle in step = %v, %v; want the other about %v ahead", a, err, skew)
	}
	if a, err := ahead.Clock(ctx, day.Add(skew)); err != nil || a > -skew+time.Minute {
		t.Errorf("Clock of the handle ahead = %v, %v; want the other about %v behind", a, err, skew)
	}
	// By its own clock, the handle in step sees its window pass exactly.
	if _, err := right.Reserve(ctx, day.Add(24*time.Hour-time.Nanosecond), l(1)); err == nil {
		t.Fatal("the budget freed before its window passed")
	}
	if _, err := right.Reserve(ctx, day.Add(24*time.Hour), l(1)); err != nil {
		t.Fatalf("Reserve when the window has passed = %v", err)
	}
	// Gone, it no longer holds the others back.
	right.Close()
	if _, err := ahead.Reserve(ctx, day.Add(skew), l(99_999)); err != nil {
		t.Fatalf("Reserve by the clock ahead, alone = %v", err)
	}
}
