package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/gate/state/statetest"
	"github.com/clink-mcp/clink-mcp/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("gate test state secret, 32 bytes or more")

const testPolicy = `
version: 1
currencies:
  USD: { max_amount: 500 }
budgets:
  - { currency: USD, max_amount: 1000, window: 24h }
  - { currency: USD, max_amount: 300, window: 24h, per: customer }
duplicates: { window: 10m }
`

func parsePolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clinkFake counts the commits and answers as told; release, when set,
// holds each commit until it is closed.
type clinkFake struct {
	calls   atomic.Int64
	err     error
	release chan struct{}
	started chan struct{}
}

func (f *clinkFake) order(t testing.TB, amount, email string) *Order {
	t.Helper()
	m, err := policy.ParseMoney(amount, "USD")
	if err != nil {
		t.Fatal(err)
	}
	return &Order{
		Request:     policy.Request{Tool: policy.ToolAgentPaymentSession, Amount: m, CustomerEmail: email},
		Fingerprint: []byte(amount + "|" + email),
		Commit: func(ctx context.Context) (*Created, error) {
			n := f.calls.Add(1)
			if f.started != nil {
				f.started <- struct{}{}
			}
			if f.release != nil {
				// Like a real client, give up if the context is cancelled.
				select {
				case <-f.release:
				case <-ctx.Done():
					return nil, fmt.Errorf("%w: %w", clink.ErrOutcomeUnknown, ctx.Err())
				}
			}
			if f.err != nil {
				return nil, f.err
			}
			id := fmt.Sprintf("sess_%d", n)
			return &Created{SessionID: id, Structured: []byte(`{"sessionId":"` + id + `"}`), Summary: "created " + id}, nil
		},
	}
}

type fixture struct {
	g     *Gate
	store state.Store
	fake  *clinkFake
	logs  *syncBuffer
}

func newFixture(t *testing.T, st state.Store, account string) *fixture {
	t.Helper()
	logs := &syncBuffer{}
	g := New(Config{Policy: parsePolicy(t), Store: st, Secret: testSecret, Account: account,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	t.Cleanup(func() { g.Close(context.Background()) })
	return &fixture{g: g, store: st, fake: &clinkFake{}, logs: logs}
}

func memory(t *testing.T) *state.Memory {
	m := state.NewMemory()
	t.Cleanup(func() { m.Close() })
	return m
}

// outcomes returns the decisions of the outcome records, in order.
func outcomes(t *testing.T, st state.Store) []string {
	t.Helper()
	var out []string
	err := st.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
		if r.Kind == state.KindOutcome {
			out = append(out, r.Decision)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestACreatedCallRunsTwoWriteTransactions(t *testing.T) {
	st := &statetest.Counting{Store: memory(t)}
	f := newFixture(t, st, "acct")
	res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
	if res.Code != policy.CodeCreated || res.SessionID != "sess_1" {
		t.Fatalf("result %+v", res)
	}
	if got := st.Writes(); got != 2 {
		t.Errorf("%d write transactions for a created call, want 2 (hold and complete)", got)
	}
	intents, _ := st.Intents(context.Background())
	if len(intents) != 0 {
		t.Errorf("open intents after the call: %+v", intents)
	}
}

// flakyStore fails its next failures Completes.
type flakyStore struct {
	state.Store
	failures atomic.Int64
}

func (s *flakyStore) Complete(ctx context.Context, c *state.Completion) error {
	if s.failures.Add(-1) >= 0 {
		return errors.New("database is locked")
	}
	return s.Store.Complete(ctx, c)
}

func TestACompletionThatFailsIsRetriedAndAnswersIdenticalCallsMeanwhile(t *testing.T) {
	st := &flakyStore{Store: memory(t)}
	st.failures.Store(4)
	f := newFixture(t, st, "acct")
	ctx := context.Background()
	res := f.g.Create(ctx, "", f.fake.order(t, "10", "a@example.com"))
	if res.Code != policy.CodeCreated {
		t.Fatalf("result %+v, want created whatever the journal's trouble", res)
	}
	// While the completion waits, an identical call gets its result from
	// memory: it neither waits for the claim nor calls Clink again.
	again := f.g.Create(ctx, "", f.fake.order(t, "10", "a@example.com"))
	if !again.Replayed || again.SessionID != "sess_1" || f.fake.calls.Load() != 1 {
		t.Fatalf("identical call = %+v after %d commits, want a replay of sess_1", again, f.fake.calls.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		intents, err := st.Intents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(intents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the completion never landed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := outcomes(t, st); strings.Join(got, ",") != "replayed,created" {
		t.Errorf("outcome records %v, want the replay and, once it landed, the creation", got)
	}
	if !strings.Contains(f.logs.String(), "journal write landed after retrying") {
		t.Errorf("the log does not say the write landed:\n%s", f.logs)
	}
	rep, err := state.VerifyAudit(ctx, st)
	if err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit = %+v, %v", rep, err)
	}
}

func TestAWriteThatNeverLandsIsLoggedInFullAtClose(t *testing.T) {
	st := &flakyStore{Store: memory(t)}
	st.failures.Store(1 << 30)
	f := newFixture(t, st, "acct")
	if res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")); res.Code != policy.CodeCreated {
		t.Fatalf("result %+v", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f.g.Close(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close = %v, want ErrClosed", err)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "journal write lost") || !strings.Contains(logs, `"session_id":"sess_1"`) {
		t.Fatalf("the lost write is not in the log with its session:\n%s", logs)
	}
	// The intent is still open: the next server resolves it.
	if intents, _ := st.Intents(context.Background()); len(intents) != 1 {
		t.Errorf("open intents = %d, want 1", len(intents))
	}
}

// unsureStore fails its next Hold after (committed) or before (!committed)
// writing it, as a database does when the connection drops during COMMIT;
// its Completes fail while completeFailures lasts.
type unsureStore struct {
	state.Store
	committed        bool
	holdFailures     atomic.Int64
	completeFailures atomic.Int64
}

func (s *unsureStore) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	if s.holdFailures.Add(-1) < 0 {
		return s.Store.Hold(ctx, h)
	}
	if s.committed {
		if _, err := s.Store.Hold(ctx, h); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("unexpected EOF")
}

func (s *unsureStore) Complete(ctx context.Context, c *state.Completion) error {
	if s.completeFailures.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return s.Store.Complete(ctx, c)
}

func TestAHoldThatFailsButMayHaveCommittedIsReleasedOnceTheStoreAnswers(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			st := &unsureStore{Store: memory(t), committed: committed}
			st.holdFailures.Store(1)
			st.completeFailures.Store(3) // the store is still away for a while
			f := newFixture(t, st, "acct")
			ctx := context.Background()
			res := f.g.Create(ctx, "", f.fake.order(t, "300", "a@example.com"))
			if res.Code != policy.CodeInternal || f.fake.calls.Load() != 0 {
				t.Fatalf("result %+v after %d commits, want an internal error and nothing sent", res, f.fake.calls.Load())
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				intents, err := st.Intents(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(intents) == 0 && len(outcomes(t, st)) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("open intents %d, outcomes %v: the call was never resolved", len(intents), outcomes(t, st))
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Its reservation was given back and its claim dropped: the
			// customer's whole 300 is there, and the identical call is
			// created rather than waiting for a claim nobody holds.
			if res := f.g.Create(ctx, "", f.fake.order(t, "300", "a@example.com")); res.Code != policy.CodeCreated {
				t.Fatalf("identical call after = %+v, want created", res)
			}
			want := "outcome " + string(policy.CodeInternal) + ",intent allowed,outcome created"
			if committed {
				want = "intent allowed," + want
			}
			var got []string
			st.ScanAudit(ctx, func(r *state.AuditRecord) error {
				got = append(got, string(r.Kind)+" "+r.Decision)
				return nil
			})
			if strings.Join(got, ",") != want {
				t.Errorf("audit %q, want %q", strings.Join(got, ","), want)
			}
			if rep, err := state.VerifyAudit(ctx, st); err != nil || !rep.OK() {
				t.Fatalf("VerifyAudit = %+v, %v", rep, err)
			}
		})
	}
}

func TestACallSentToClinkIsNotCancelledByItsCaller(t *testing.T) {
	st := memory(t)
	f := newFixture(t, st, "acct")
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Result)
	go func() { done <- f.g.Create(ctx, "", f.fake.order(t, "10", "a@example.com")) }()
	<-f.fake.started
	cancel()
	time.Sleep(20 * time.Millisecond)
	close(f.fake.release)
	res := <-done
	if res.Code != policy.CodeCreated || res.SessionID != "sess_1" {
		t.Fatalf("result %+v, want the session created despite the cancellation", res)
	}
	f.fake.release = nil
	again := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
	if !again.Replayed || again.SessionID != "sess_1" {
		t.Fatalf("retry = %+v, want the created session replayed", again)
	}
}

func TestACallCancelledBeforeClinkIsRecordedAndSendsNothing(t *testing.T) {
	st := memory(t)
	f := newFixture(t, st, "acct")
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 2)
	first := make(chan *Result)
	go func() { first <- f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")) }()
	<-f.fake.started
	// An identical call waits for the first; its caller gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := f.g.Create(ctx, "", f.fake.order(t, "10", "a@example.com"))
	if res.Code != policy.CodeCancelled {
		t.Fatalf("result %+v, want cancelled", res)
	}
	close(f.fake.release)
	<-first
	if got := outcomes(t, st); strings.Join(got, ",") != "cancelled,created" {
		t.Errorf("outcome records %v", got)
	}
	if f.fake.calls.Load() != 1 {
		t.Errorf("%d commits, want 1", f.fake.calls.Load())
	}
}

func TestAnOrphanedCallIsResolvedAndIdenticalRetriesAnswerAtOnce(t *testing.T) {
	m := state.NewMemory()
	dead := m.Open()
	// A process held a call and died before Clink answered.
	f0 := newFixture(t, dead, "acct")
	f0.fake.release, f0.fake.started = make(chan struct{}), make(chan struct{}, 1)
	go f0.g.Create(context.Background(), "", f0.fake.order(t, "200", "a@example.com"))
	<-f0.fake.started
	dead.Close()

	f := newFixture(t, m, "acct")
	start := time.Now()
	res := f.g.Create(context.Background(), "", f.fake.order(t, "200", "a@example.com"))
	if res.Code != policy.CodeReplayed || !strings.Contains(res.Text, "outcome unknown") || f.fake.calls.Load() != 0 {
		t.Fatalf("identical retry = %+v after %d commits, want the unknown outcome replayed, nothing sent", res, f.fake.calls.Load())
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the retry waited %v", waited)
	}
	// The orphan's reservation stays spent: 200 of the customer's 300.
	if res := f.g.Create(context.Background(), "", f.fake.order(t, "150", "a@example.com")); res.Code != policy.CodeBudgetExceeded {
		t.Errorf("a call past the customer's budget = %+v, want budget_exceeded", res)
	}
	if got := outcomes(t, m); strings.Join(got, ",") != "outcome_unknown,replayed,budget_exceeded" {
		t.Errorf("outcome records %v", got)
	}
	rep, err := state.VerifyAudit(context.Background(), m)
	if err != nil || !rep.OK() {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
	close(f0.fake.release) // the dead process's goroutine, for goleak
	f0.g.Close(context.Background())
}

func TestRecoverResolvesOrphansOnce(t *testing.T) {
	m := state.NewMemory()
	dead := m.Open()
	f0 := newFixture(t, dead, "acct")
	f0.fake.release, f0.fake.started = make(chan struct{}), make(chan struct{}, 1)
	// Stopping the dead process's gate also stops its clock beat, which may
	// resolve the orphan itself (when, on a loaded machine, its first beat
	// runs after dead.Close): only then is its log line surely written.
	stopDead := sync.OnceFunc(func() {
		close(f0.fake.release)
		f0.g.Close(context.Background())
	})
	defer stopDead()
	go f0.g.Create(context.Background(), "", f0.fake.order(t, "20", "a@example.com"))
	<-f0.fake.started
	dead.Close()
	// The new gate's clock beat sweeps orphans too, concurrently with this
	// Recover: between them the orphan is resolved exactly once.
	f := newFixture(t, m, "acct")
	first, err := f.g.Recover(context.Background())
	if err != nil || first > 1 {
		t.Fatalf("Recover = %d, %v; want at most 1", first, err)
	}
	if n, err := f.g.Recover(context.Background()); n != 0 || err != nil {
		t.Fatalf("Recover again = %d, %v; want 0", n, err)
	}
	intents, err := m.Intents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range intents {
		if in.Orphaned {
			t.Fatalf("intent %s still open after Recover", in.Call)
		}
	}
	f.g.Close(context.Background()) // stops the beat, so its log line is written
	stopDead()
	if n := strings.Count(f.logs.String()+f0.logs.String(), "resolved a call left open"); n != 1 {
		t.Errorf("the orphan was resolved %d times, want once; logs:\n%s\n%s", n, f.logs, f0.logs)
	}
}

func TestReplaysAreBoundToTheClinkAccountAndLimitsToTheSecret(t *testing.T) {
	m := memory(t)
	a := newFixture(t, m, AccountID("https://api.clinkbill.com/api/", "sk_prod_A"))
	b := newFixture(t, m, AccountID("https://api.clinkbill.com/api/", "sk_prod_B"))
	ctx := context.Background()
	if res := a.g.Create(ctx, "", a.fake.order(t, "250", "a@example.com")); res.Code != policy.CodeCreated {
		t.Fatal(res)
	}
	// Another key (or base URL) on the same store never replays A's session.
	res := b.g.Create(ctx, "", b.fake.order(t, "250", "a@example.com"))
	if res.Replayed || res.Code == policy.CodeInternal {
		t.Fatalf("identical call under another account = %+v, want no replay and no internal error", res)
	}
	// But the per-customer budget, keyed by the state secret, carried over:
	// 250 + 250 is over the customer's 300.
	if res.Code != policy.CodeBudgetExceeded {
		t.Fatalf("result %+v, want the customer's budget to hold across API keys", res)
	}
	if AccountID("https://x/", "k") == AccountID("https://y/", "k") || strings.Contains(AccountID("u", "sk_prod_SECRET"), "SECRET") {
		t.Error("AccountID does not tell accounts apart, or shows the key")
	}
}

func TestCallersNeverShareAClaim(t *testing.T) {
	f := newFixture(t, memory(t), "acct")
	ctx := context.Background()
	o := f.fake.order(t, "10", "a@example.com")
	o.IdempotencyKey = "same-key-1234"
	if res := f.g.Create(ctx, "agent-a", o); res.Code != policy.CodeCreated {
		t.Fatal(res)
	}
	if res := f.g.Create(ctx, "agent-b", o); res.Code != policy.CodeCreated || res.SessionID != "sess_2" {
		t.Fatalf("another caller's call with the same idempotency key = %+v, want its own session", res)
	}
	if res := f.g.Create(ctx, "agent-a", o); !res.Replayed || res.SessionID != "sess_1" {
		t.Fatalf("the first caller's retry = %+v, want its own session replayed", res)
	}
	var callers []string
	f.store.ScanAudit(ctx, func(r *state.AuditRecord) error {
		if r.Kind == state.KindOutcome {
			callers = append(callers, r.Caller)
		}
		return nil
	})
	if strings.Join(callers, ",") != "agent-a,agent-b,agent-a" {
		t.Errorf("records' callers = %v", callers)
	}
}

func TestDrainRefusesNewCallsAndLetsThoseInFlightFinish(t *testing.T) {
	st := memory(t)
	f := newFixture(t, st, "acct")
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 1)
	done := make(chan *Result)
	go func() { done <- f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")) }()
	<-f.fake.started
	drained := make(chan error)
	go func() { drained <- f.g.Drain(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	if res := f.g.Create(context.Background(), "", f.fake.order(t, "11", "a@example.com")); res.Code != policy.CodeShuttingDown {
		t.Fatalf("a call during the drain = %+v, want shutting_down", res)
	}
	select {
	case <-drained:
		t.Fatal("Drain returned with a call in flight")
	default:
	}
	close(f.fake.release)
	if res := <-done; res.Code != policy.CodeCreated {
		t.Fatalf("the call in flight = %+v, want created", res)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func TestCheckRecordsNothing(t *testing.T) {
	st := memory(t)
	f := newFixture(t, st, "acct")
	ctx := context.Background()
	o := f.fake.order(t, "250", "a@example.com")
	for range 3 {
		if d, err := f.g.Check(ctx, "", o); err != nil || !d.Decision.Allowed {
			t.Fatalf("Check = %+v, %v", d, err)
		}
	}
	if seq, _, _ := st.AuditHead(ctx); seq != 0 {
		t.Fatalf("Check wrote %d records", seq)
	}
	f.g.Create(ctx, "", o)
	if d, err := f.g.Check(ctx, "", f.fake.order(t, "100", "a@example.com")); err != nil || d.Decision.Code != policy.CodeBudgetExceeded {
		t.Fatalf("Check past the budget = %+v, %v; want budget_exceeded", d, err)
	}
	big := f.fake.order(t, "600", "a@example.com")
	if d, _ := f.g.Check(ctx, "", big); d.Decision.Code != policy.CodeAmountOverCap {
		t.Fatalf("Check over the cap = %+v", d)
	}
}

func TestUpstreamOutcomesSettleTheBudget(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   policy.Code
		budget bool // the 250 stays spent
	}{
		{"a refusal releases it", &clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}, policy.CodeUpstreamRefused, false},
		{"an unknown outcome keeps it", fmt.Errorf("%w: reset", clink.ErrOutcomeUnknown), policy.CodeOutcomeUnknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, memory(t), "acct")
			f.fake.err = tt.err
			if res := f.g.Create(context.Background(), "", f.fake.order(t, "250", "a@example.com")); res.Code != tt.code {
				t.Fatalf("result %+v, want %s", res, tt.code)
			}
			f.fake.err = nil
			res := f.g.Create(context.Background(), "", f.fake.order(t, "100", "a@example.com"))
			if spent := res.Code == policy.CodeBudgetExceeded; spent != tt.budget {
				t.Errorf("next call = %s; budget kept: %v, want %v", res.Code, spent, tt.budget)
			}
		})
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.db.secret")
	if _, err := LoadSecret(path, false); err == nil {
		t.Fatal("a missing secret was accepted without create")
	}
	s1, err := LoadSecret(path, true)
	if err != nil || len(s1) != 64 {
		t.Fatalf("LoadSecret = %d bytes, %v", len(s1), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, %v; want 0600", fi.Mode(), err)
	}
	s2, err := LoadSecret(path, true)
	if err != nil || !bytes.Equal(s1, s2) {
		t.Fatal("a second load gave another secret")
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte(strings.Repeat("ab", 32)), 0o644)
	if _, err := LoadSecret(open, false); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o600 {
		t.Errorf("a secret readable by others is left %v, want 0600", fi.Mode().Perm())
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("too-short-secret\n"), 0o600)
	if _, err := LoadSecret(short, false); err == nil || strings.Contains(err.Error(), "too-short") {
		t.Fatalf("a short secret = %v, want refused without showing it", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAClockOutOfStepWithTheOthersIsReportedLoudly: two gates on one store
// whose clocks disagree by an hour; the second one says so in its log.
func TestAClockOutOfStepWithTheOthersIsReportedLoudly(t *testing.T) {
	m := memory(t)
	base := time.Now()
	first := New(Config{Policy: parsePolicy(t), Store: m, Secret: testSecret, Clock: func() time.Time { return base }})
	t.Cleanup(func() { first.Close(context.Background()) })
	// The first gate's time is in the store before the second starts,
	// whichever goroutine runs first.
	if _, err := m.Clock(context.Background(), base); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	second := New(Config{Policy: parsePolicy(t), Store: m.Open(), Secret: testSecret,
		Clock: func() time.Time { return base.Add(time.Hour) }, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	t.Cleanup(func() { second.Close(context.Background()) })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "CLOCK SKEW") {
		if time.Now().After(deadline) {
			t.Fatalf("no clock skew report in the log:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), `"skew":3600000000000`) {
		t.Errorf("log %s, want an error naming a skew of 1h", logs)
	}
}

// TestARunningProcessResolvesADeadOnesCalls: a process that dies mid-call
// (a replica killed) leaves an intent; another process already running
// resolves it as outcome_unknown within its clock's beat, with no call
// made and no restart.
func TestARunningProcessResolvesADeadOnesCalls(t *testing.T) {
	m := state.NewMemory()
	f := newFixture(t, m, "acct")      // the survivor, running before the death
	time.Sleep(200 * time.Millisecond) // its first beat, with nothing to resolve
	dead := m.Open()
	f0 := newFixture(t, dead, "acct")
	f0.fake.release, f0.fake.started = make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	release := func() { once.Do(func() { close(f0.fake.release) }) }
	t.Cleanup(release) // before the gates close, which wait for the call
	go f0.g.Create(context.Background(), "", f0.fake.order(t, "20", "a@example.com"))
	<-f0.fake.started
	dead.Close()

	deadline := time.Now().Add(clockEvery + 3*time.Second)
	for strings.Join(outcomes(t, m), ",") != "outcome_unknown" {
		if time.Now().After(deadline) {
			t.Fatalf("outcome records %v %v after the death, want the intent resolved as outcome_unknown", outcomes(t, m), clockEvery+3*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f.fake.calls.Load() != 0 {
		t.Error("the survivor called Clink")
	}
	release()
	f0.g.Close(context.Background())
}

// panicOnComplete is a store whose first Complete panics (a bug in a
// driver), after Clink created the session.
type panicOnComplete struct {
	state.Store
	n atomic.Int64
}

func (p *panicOnComplete) Complete(ctx context.Context, c *state.Completion) error {
	if p.n.Add(1) == 1 {
		panic("driver bug")
	}
	return p.Store.Complete(ctx, c)
}

// panicAfterComplete is a store whose first Complete lands, then panics
// (a bug in a store wrapper, after the store committed).
type panicAfterComplete struct {
	state.Store
	n atomic.Int64
}

func (p *panicAfterComplete) Complete(ctx context.Context, c *state.Completion) error {
	err := p.Store.Complete(ctx, c)
	if p.n.Add(1) == 1 {
		panic("wrapper bug")
	}
	return err
}

// failOnce is a store whose first Complete fails, writing nothing.
type failOnce struct {
	state.Store
	n atomic.Int64
}

func (f *failOnce) Complete(ctx context.Context, c *state.Completion) error {
	if f.n.Add(1) == 1 {
		return errors.New("store unavailable")
	}
	return f.Store.Complete(ctx, c)
}

// panicOnMessage is a log handler that panics, once, on the record whose
// message is msg (a bug in a handler an embedder gave).
type panicOnMessage struct {
	slog.Handler
	msg  string
	done atomic.Bool
}

func (h *panicOnMessage) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg && h.done.CompareAndSwap(false, true) {
		panic("log handler bug")
	}
	return h.Handler.Handle(ctx, r)
}

// panicObserver panics when a call ends (a bug in the embedder's metrics).
type panicObserver struct{}

func (panicObserver) CallEnded(string, policy.Code, bool, time.Duration) { panic("observer bug") }

// Once Clink created a session, a panic while settling the call does not
// turn it into "nothing was created": the agent gets the session, and the
// outcome record says created, once.
func TestAPanicAfterClinkAnsweredKeepsItsAnswer(t *testing.T) {
	t.Run("the store panics in its completion", func(t *testing.T) {
		mem := memory(t)
		f := newFixture(t, &panicOnComplete{Store: mem}, "acct")
		res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
		if res.Code != policy.CodeCreated || res.SessionID == "" {
			t.Fatalf("result %s %q: want created with its session", res.Code, res.Text)
		}
		if err := f.g.Close(context.Background()); err != nil { // the journal lands its retry
			t.Fatal(err)
		}
		if got := outcomes(t, mem); len(got) != 1 || got[0] != string(policy.CodeCreated) {
			t.Errorf("outcome records %v, want [created]", got)
		}
		intents, err := mem.Intents(context.Background())
		if err != nil || len(intents) != 0 {
			t.Errorf("open intents %v, %v; want none", intents, err)
		}
	})
	t.Run("the store panics after its completion landed", func(t *testing.T) {
		// The retry finds the intent closed: one outcome record, not two.
		for _, kind := range []string{"memory", "sqlite"} {
			var st state.Store = memory(t)
			if kind == "sqlite" {
				sq, err := state.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = sq.Close() })
				st = sq
			}
			f := newFixture(t, &panicAfterComplete{Store: st}, "acct")
			res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
			if res.Code != policy.CodeCreated || res.SessionID == "" {
				t.Fatalf("%s: result %s %q: want created with its session", kind, res.Code, res.Text)
			}
			if err := f.g.Close(context.Background()); err != nil { // the journal lands its retry
				t.Fatal(err)
			}
			if got := outcomes(t, st); len(got) != 1 || got[0] != string(policy.CodeCreated) {
				t.Errorf("%s: outcome records %v, want [created]", kind, got)
			}
		}
	})
	t.Run("the store panics after an unknown outcome landed", func(t *testing.T) {
		// Not a creation: the intent this process held is closed, so the
		// write landed, and is not appended again.
		mem := memory(t)
		f := newFixture(t, &panicAfterComplete{Store: mem}, "acct")
		f.fake.err = fmt.Errorf("%w: reset", clink.ErrOutcomeUnknown)
		if res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")); res.Code != policy.CodeOutcomeUnknown {
			t.Fatalf("result %s %q, want outcome_unknown", res.Code, res.Text)
		}
		if err := f.g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := outcomes(t, mem); len(got) != 1 || got[0] != string(policy.CodeOutcomeUnknown) {
			t.Errorf("outcome records %v, want [outcome_unknown]", got)
		}
	})
	t.Run("the store panics before writing a hold's resolution", func(t *testing.T) {
		// A hold that failed, not committed, leaves no intent: the retry
		// after the panic finds none open and still appends the record.
		inner := &unsureStore{Store: memory(t)}
		inner.holdFailures.Store(1)
		f := newFixture(t, &panicOnComplete{Store: inner}, "acct")
		if res := f.g.Create(context.Background(), "", f.fake.order(t, "300", "a@example.com")); res.Code != policy.CodeInternal {
			t.Fatalf("result %s %q, want internal_error", res.Code, res.Text)
		}
		if err := f.g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := outcomes(t, inner); len(got) != 1 || got[0] != string(policy.CodeInternal) {
			t.Errorf("outcome records %v, want [internal_error]", got)
		}
	})
	t.Run("the log panics while the journal keeps a failed completion", func(t *testing.T) {
		// The recover writes the completion itself, with the replay: an
		// identical call is answered from it, not created again.
		mem := memory(t)
		st := &failOnce{Store: mem}
		f := newFixture(t, st, "acct")
		f.g.journal.log = slog.New(&panicOnMessage{Handler: f.g.log.Handler(), msg: "journal write failed; keeping it to retry"})
		o := f.fake.order(t, "10", "a@example.com")
		res := f.g.Create(context.Background(), "", o)
		if res.Code != policy.CodeCreated || res.SessionID == "" {
			t.Fatalf("result %s %q: want created with its session", res.Code, res.Text)
		}
		again := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
		if n := f.fake.calls.Load(); n != 1 || !again.Replayed || again.SessionID != res.SessionID {
			t.Fatalf("the identical call: Clink called %d times, replayed %v, session %q (first %q); want 1 call and a replay",
				n, again.Replayed, again.SessionID, res.SessionID)
		}
		if err := f.g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := outcomes(t, mem); len(got) != 2 || got[0] != string(policy.CodeCreated) || got[1] != string(policy.CodeReplayed) {
			t.Errorf("outcome records %v, want [created replayed]", got)
		}
	})
	t.Run("the observer panics", func(t *testing.T) {
		mem := memory(t)
		f := newFixture(t, mem, "acct")
		f.g.observer = panicObserver{}
		res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com"))
		if res.Code != policy.CodeCreated || res.SessionID == "" {
			t.Fatalf("result %s %q: want created with its session", res.Code, res.Text)
		}
		if got := outcomes(t, mem); len(got) != 1 || got[0] != string(policy.CodeCreated) {
			t.Errorf("outcome records %v, want [created]", got)
		}
		// A denial is recorded once too, and answered as the denial.
		res = f.g.Create(context.Background(), "", f.fake.order(t, "600", "b@example.com"))
		if res.Code != policy.CodeAmountOverCap {
			t.Fatalf("result %s %q: want %s", res.Code, res.Text, policy.CodeAmountOverCap)
		}
		if got := outcomes(t, mem); len(got) != 2 || got[1] != string(policy.CodeAmountOverCap) {
			t.Errorf("outcome records %v, want [created %s]", got, policy.CodeAmountOverCap)
		}
		if !strings.Contains(f.logs.String(), "observer bug") {
			t.Error("the observer's panic is not in the log")
		}
	})
	// A panic in the log lines written once Clink has answered: the
	// answer stands, as a panic in the store's write or the observer
	// leaves it.
	panickyLog := func(t *testing.T, msg string) *fixture {
		t.Helper()
		mem := memory(t)
		logs := &syncBuffer{}
		g := New(Config{Policy: parsePolicy(t), Store: mem, Secret: testSecret, Account: "acct",
			Logger: slog.New(&panicOnMessage{Handler: slog.NewJSONHandler(logs, nil), msg: msg})})
		t.Cleanup(func() { g.Close(context.Background()) })
		return &fixture{g: g, store: mem, fake: &clinkFake{}, logs: logs}
	}
	t.Run("the log panics on a created session's unread fields", func(t *testing.T) {
		f := panickyLog(t, "clink created the session, but some fields of its answer could not be read")
		o := f.fake.order(t, "250", "a@example.com")
		commit := o.Commit
		o.Commit = func(ctx context.Context) (*Created, error) {
			c, err := commit(ctx)
			if c != nil {
				c.Unread = []string{"expireTime"}
			}
			return c, err
		}
		res := f.g.Create(context.Background(), "", o)
		if res.Code != policy.CodeCreated || res.SessionID != "sess_1" {
			t.Fatalf("result %s %q: want created with sess_1", res.Code, res.Text)
		}
		if err := f.g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		var sessions []string
		_ = f.store.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
			if r.Kind == state.KindOutcome {
				sessions = append(sessions, r.Decision+"/"+r.SessionID)
			}
			return nil
		})
		if fmt.Sprint(sessions) != "[created/sess_1]" {
			t.Errorf("outcome records %v, want [created/sess_1]", sessions)
		}
	})
	t.Run("the log panics on Clink's refusal", func(t *testing.T) {
		f := panickyLog(t, "clink refused")
		f.fake.err = &clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}
		if res := f.g.Create(context.Background(), "", f.fake.order(t, "250", "a@example.com")); res.Code != policy.CodeUpstreamRefused {
			t.Fatalf("result %s %q: want %s", res.Code, res.Text, policy.CodeUpstreamRefused)
		}
		// Clink made nothing: the budget is given back, and the identical
		// call is made again rather than answered "outcome unknown".
		f.fake.err = nil
		if res := f.g.Create(context.Background(), "", f.fake.order(t, "250", "a@example.com")); res.Code != policy.CodeCreated {
			t.Fatalf("the identical call after the refusal: %s %q, want created", res.Code, res.Text)
		}
		if u := usage(t, f.g); u != 25000 {
			t.Errorf("the budget holds %d, want 25000: the refused call's 250.00 released", u)
		}
	})
}

// Close reports calls in flight only when there are some: with none, a
// deadline already past is no error (Drain's select could pick either
// ready case), and with one held at Clink it is ErrCallsInFlight.
func TestCloseReportsCallsInFlightOnlyWhenThereAreSome(t *testing.T) {
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		f := newFixture(t, memory(t), "acct")
		if i%2 == 1 { // one call that has ended
			if res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")); res.Code != policy.CodeCreated {
				t.Fatal(res.Text)
			}
		}
		if err := f.g.Close(expired); err != nil {
			t.Fatalf("close %d with nothing in flight: %v", i, err)
		}
	}
	f := newFixture(t, memory(t), "acct")
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 1)
	o := f.fake.order(t, "10", "a@example.com")
	done := make(chan *Result, 1)
	go func() { done <- f.g.Create(context.Background(), "", o) }()
	<-f.fake.started
	if err := f.g.Close(expired); !errors.Is(err, ErrCallsInFlight) {
		t.Errorf("close with a call at Clink: %v, want ErrCallsInFlight", err)
	}
	close(f.fake.release)
	<-done
}

// leasedStore is a memory store with a lease, as a database handle has
// ([state.Leaser]), that counts the renewals (Clock calls).
type leasedStore struct {
	*state.Memory
	lease  time.Duration
	clocks atomic.Int64
}

func (s *leasedStore) Lease() time.Duration { return s.lease }

func (s *leasedStore) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	s.clocks.Add(1)
	return s.Memory.Clock(ctx, at)
}

// A store's lease is renewed often enough whatever its length, also while
// Close waits for a call held at a slow Clink: a lease that lapses makes
// other replicas resolve the running call as one of a dead process
// (outcome_unknown, and its claim answering identical calls so).
func TestTheLeaseIsRenewedWhileCallsRunAndWhileCloseWaitsForThem(t *testing.T) {
	const lease = 600 * time.Millisecond // renewed every 200 ms: a third of it
	st := &leasedStore{Memory: memory(t), lease: lease}
	f := newFixture(t, st, "acct")
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 1)
	done := make(chan *Result, 1)
	go func() { done <- f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")) }()
	<-f.fake.started
	renewals := func(during time.Duration) int64 {
		before := st.clocks.Load()
		time.Sleep(during)
		return st.clocks.Load() - before
	}
	// Three leases: at a third of the lease, some eight renewals; at the
	// default five seconds, none.
	if n := renewals(3 * lease); n < 4 {
		t.Errorf("%d renewals in three leases while a call runs, want one every third of the lease", n)
	}
	closed := make(chan error, 1)
	go func() { closed <- f.g.Close(context.Background()) }()
	if n := renewals(3 * lease); n < 4 {
		t.Errorf("%d renewals in three leases while Close waits for the call, want one every third of the lease", n)
	}
	close(f.fake.release)
	if res := <-done; res.Code != policy.CodeCreated {
		t.Errorf("the call = %s (%s), want created", res.Code, res.Text)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if n := renewals(2 * lease); n != 0 {
		t.Errorf("%d renewals after Close, want none", n)
	}
}

// Check answers as Create would when the duplicate guard decides: an
// identical call made (or in flight) within the window would be replayed,
// an idempotencyKey used with other arguments refused; and it takes no
// claim, so a call it checked is still made.
func TestCheckSeesTheDuplicateGuard(t *testing.T) {
	st := memory(t)
	f := newFixture(t, st, "acct")
	ctx := context.Background()
	keyed := func(amount, key string) *Order {
		o := f.fake.order(t, amount, "a@example.com")
		o.IdempotencyKey = key
		return o
	}
	first := keyed("50", "order-0042-key")
	if d, err := f.g.Check(ctx, "", first); err != nil || d.Decision.Code != policy.CodeAllowed {
		t.Fatalf("Check before any call = %+v, %v; want allowed", d, err)
	}
	if res := f.g.Create(ctx, "", first); res.Code != policy.CodeCreated {
		t.Fatalf("the call Check allowed = %s, want created: Check took its claim", res.Code)
	}
	for _, tc := range []struct {
		name    string
		o       *Order
		caller  string
		code    policy.Code
		allowed bool
	}{
		{"the same call again", keyed("50", "order-0042-key"), "", policy.CodeReplayed, true},
		{"the same key with another amount", keyed("60", "order-0042-key"), "", policy.CodeDuplicateConflict, false},
		{"another key", keyed("60", "order-0043-key"), "", policy.CodeAllowed, true},
		{"the same call by another principal", keyed("50", "order-0042-key"), "agent-b", policy.CodeAllowed, true},
	} {
		d, err := f.g.Check(ctx, tc.caller, tc.o)
		if err != nil || d.Decision.Code != tc.code || d.Decision.Allowed != tc.allowed || d.NeedsApproval {
			t.Errorf("%s: Check = %+v, %v; want %s, allowed %t", tc.name, d, err, tc.code, tc.allowed)
		}
	}
	// In flight: the identical call would wait for it.
	f.fake.release, f.fake.started = make(chan struct{}), make(chan struct{}, 1)
	running := keyed("20", "order-0044-key")
	done := make(chan *Result, 1)
	go func() { done <- f.g.Create(ctx, "", running) }()
	<-f.fake.started
	if d, err := f.g.Check(ctx, "", keyed("20", "order-0044-key")); err != nil || d.Decision.Code != policy.CodeReplayed || !strings.Contains(d.Decision.Message, "in flight") {
		t.Errorf("Check of a call in flight = %+v, %v; want replayed, in flight", d, err)
	}
	close(f.fake.release)
	if res := <-done; res.Code != policy.CodeCreated {
		t.Fatalf("the call in flight = %s", res.Code)
	}
	if got := outcomes(t, st); len(got) != 2 {
		t.Errorf("outcome records %v: Check recorded something", got)
	}
}
