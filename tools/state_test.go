package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// statePolicy has a budget, rate limits and the duplicate guard.
const statePolicy = `version: 1
currencies:
  USD: { max_amount: 500 }
  EUR: { max_amount: 500 }
budgets:
  - { currency: USD, window: 24h, max_amount: 1000 }
  - { currency: EUR, window: 1h, max_amount: 100, per: customer }
rate_limits:
  - { window: 1m, max_calls: 1000 }
  - { window: 1h, max_calls: 3, per: customer }
duplicates: { window: 10m }
`

func parsePolicy(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("state.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stateHarness is the tools on a fake Clink, a given store and a clock the
// test moves.
type stateHarness struct {
	pay   *fakePayments
	state state.Store
	tools map[string]Tool
	mu    sync.Mutex
	now   time.Time
}

func newStateHarness(t testing.TB, p *policy.Policy, st state.Store) *stateHarness {
	t.Helper()
	h := &stateHarness{pay: &fakePayments{}, state: st, tools: map[string]Tool{},
		now: time.Date(2026, 11, 21, 23, 59, 0, 0, time.UTC)}
	for _, tool := range All(wire(t, h.pay, p, st, h.clock, nil)) {
		h.tools[tool.Tool.Name] = tool
	}
	return h
}

func (h *stateHarness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *stateHarness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

func (h *stateHarness) call(t testing.TB, tool, args string) *mcp.CallToolResult {
	t.Helper()
	res, err := h.tools[tool].Handler(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, RawArguments: json.RawMessage(args)}})
	if err != nil {
		t.Fatalf("handler returned a Go error: %v", err)
	}
	return res
}

func memoryStore(t testing.TB) state.Store {
	st := state.NewMemory()
	t.Cleanup(func() { st.Close() })
	return st
}

func checkoutArgs(amount string, email string) string {
	return `{"amount":` + amount + `,"currency":"USD","customerEmail":"` + email + `"}`
}

// Identical calls made at once, each spelling the amount and the email its
// own way (50, 5e1, 500e-1...; case, spaces, full-width letters), are one
// payment: one request reaches Clink and every call answers with its
// session, on the memory store and on SQLite. (From a review that tried to
// double-spend through the duplicate guard.)
func TestIdenticalCallsSpelledDifferentlyMakeOneSession(t *testing.T) {
	stores := map[string]func(t *testing.T) state.Store{
		"memory": func(t *testing.T) state.Store { return memoryStore(t) },
		"sqlite": func(t *testing.T) state.Store {
			st, err := state.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			h := newStateHarness(t, parsePolicy(t, statePolicy), open(t))
			h.pay.delay = 20 * time.Millisecond // the first is still at Clink when the others come
			amounts := []string{"50", "50.0", "5e1", "50.00", "0.5e2", "500e-1"}
			emails := []string{"a@example.com", "A@EXAMPLE.COM", " a@example.com ", "a@ＥＸＡＭＰＬＥ.com"}
			results := make([]*mcp.CallToolResult, 24)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() {
					results[i] = h.call(t, checkout, checkoutArgs(amounts[i%len(amounts)], emails[i%len(emails)]))
				})
			}
			wg.Wait()
			if n := h.pay.calls(); n != 1 {
				t.Fatalf("Clink called %d times, want 1", n)
			}
			var session any
			for i, r := range results {
				if r.IsError {
					t.Fatalf("call %d: %s", i, ResultText(r))
				}
				id := structured(t, r)["sessionId"]
				if session == nil {
					session = id
				}
				if id != session {
					t.Errorf("call %d: session %v, want %v", i, id, session)
				}
			}
		})
	}
}

func TestDuplicateCallsReplayTheFirstResult(t *testing.T) {
	t.Run("a repeated call returns the same session with one upstream request", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		first := h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		h.advance(time.Minute)
		second := h.call(t, checkout, `{"currency":"USD","customerEmail":" a@EXAMPLE.com","amount":10.00}`)
		if first.IsError || second.IsError {
			t.Fatalf("results: %q / %q", ResultText(first), ResultText(second))
		}
		if n := h.pay.calls(); n != 1 {
			t.Fatalf("Clink called %d times, want 1", n)
		}
		s1, s2 := structured(t, first), structured(t, second)
		if s1["sessionId"] != s2["sessionId"] || s2["replayed"] != true || s1["replayed"] != nil {
			t.Errorf("first %v, second %v: want the same session, the second marked replayed", s1, s2)
		}
		if !strings.Contains(ResultText(second), "Replay") {
			t.Errorf("replay text %q does not say so", ResultText(second))
		}
	})
	t.Run("calls that differ in any argument are not duplicates", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		for _, args := range []string{
			`{"customerEmail":"a@example.com","amount":5,"currency":"USD"}`,
			`{"customerEmail":"a@example.com","amount":6,"currency":"USD"}`,
			`{"customerEmail":"a@example.com","amount":6,"currency":"EUR"}`,
			`{"customerEmail":"b@example.com","amount":6,"currency":"EUR"}`,
		} {
			if res := h.call(t, agent, args); res.IsError || structured(t, res)["replayed"] != nil {
				t.Fatalf("%s: %s", args, ResultText(res))
			}
		}
		if n := h.pay.calls(); n != 4 {
			t.Fatalf("Clink called %d times, want 4", n)
		}
	})
	t.Run("a checkout spelling out showPromotionCode's default is the same call", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		first := h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		second := h.call(t, checkout, `{"amount":10,"currency":"USD","customerEmail":"a@example.com","showPromotionCode":true}`)
		if n := h.pay.calls(); n != 1 || structured(t, second)["replayed"] != true {
			t.Fatalf("Clink called %d times (want 1), second %s", n, ResultText(second))
		}
		if structured(t, first)["sessionId"] != structured(t, second)["sessionId"] {
			t.Error("the two calls got different sessions")
		}
		// Hiding the field (with a code to pre-fill) is another request.
		h.call(t, checkout, `{"amount":10,"currency":"USD","customerEmail":"a@example.com","showPromotionCode":false,"allowPromotionCodes":true,"promotionCode":"SPRING10"}`)
		if n := h.pay.calls(); n != 2 {
			t.Fatalf("Clink called %d times, want 2", n)
		}
	})
	t.Run("two concurrent identical calls make one upstream request", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		h.pay.delay = 100 * time.Millisecond
		var wg sync.WaitGroup
		results := make([]*mcp.CallToolResult, 2)
		for i := range results {
			wg.Go(func() { results[i] = h.call(t, checkout, checkoutArgs("10", "a@example.com")) })
		}
		wg.Wait()
		if n := h.pay.calls(); n != 1 {
			t.Fatalf("Clink called %d times, want 1", n)
		}
		if structured(t, results[0])["sessionId"] != structured(t, results[1])["sessionId"] {
			t.Error("the two calls got different sessions")
		}
	})
	t.Run("the window passing allows the same call again", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		// The window runs from the end of the call, which took some real
		// time while the test's clock stood still.
		h.advance(10*time.Minute + time.Second)
		h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		if n := h.pay.calls(); n != 2 {
			t.Fatalf("Clink called %d times, want 2", n)
		}
	})
	t.Run("a replay spends no budget", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		for range 5 {
			h.call(t, checkout, checkoutArgs("400", "a@example.com"))
		}
		// 400 spent once; 600 must still fit.
		if res := h.call(t, checkout, checkoutArgs("300", "b@example.com")); res.IsError {
			t.Fatalf("replays consumed budget: %s", ResultText(res))
		}
		if res := h.call(t, checkout, checkoutArgs("300", "c@example.com")); res.IsError {
			t.Fatalf("replays consumed budget: %s", ResultText(res))
		}
	})
	t.Run("a definite Clink refusal is not replayed", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		h.pay.err = &clink.Error{HTTPStatus: 200, Code: 90101206, Message: "amount or currency incorrect"}
		h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		h.pay.err = nil
		if res := h.call(t, checkout, checkoutArgs("10", "a@example.com")); res.IsError || structured(t, res)["replayed"] != nil {
			t.Fatalf("retry after a refusal: %s", ResultText(res))
		}
		if n := h.pay.calls(); n != 2 {
			t.Fatalf("Clink called %d times, want 2", n)
		}
	})
	t.Run("an unknown outcome is replayed, not retried blindly", func(t *testing.T) {
		h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
		h.pay.err = fmt.Errorf("%w: timeout", clink.ErrOutcomeUnknown)
		h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		h.pay.err = nil
		res := h.call(t, checkout, checkoutArgs("10", "a@example.com"))
		if !res.IsError || !strings.Contains(ResultText(res), "Replay") || !strings.Contains(ResultText(res), "outcome unknown") {
			t.Fatalf("retry after an unknown outcome: %s", ResultText(res))
		}
		if n := h.pay.calls(); n != 1 {
			t.Fatalf("Clink called %d times, want 1", n)
		}
	})
}

func TestIdempotencyKeys(t *testing.T) {
	h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
	keyed := func(amount, key string) string {
		return `{"amount":` + amount + `,"currency":"USD","customerEmail":"a@example.com","idempotencyKey":"` + key + `"}`
	}
	first := h.call(t, checkout, keyed("10", "order-0001"))
	again := h.call(t, checkout, keyed("10", "order-0001"))
	if structured(t, first)["sessionId"] != structured(t, again)["sessionId"] || structured(t, again)["replayed"] != true {
		t.Error("the same key and arguments should replay the first session")
	}
	conflict := h.call(t, checkout, keyed("11", "order-0001"))
	if !conflict.IsError || !strings.Contains(ResultText(conflict), string(policy.CodeDuplicateConflict)) {
		t.Errorf("the same key with other arguments: %s", ResultText(conflict))
	}
	fresh := h.call(t, checkout, keyed("10", "order-0002"))
	if fresh.IsError || structured(t, fresh)["sessionId"] == structured(t, first)["sessionId"] {
		t.Errorf("a new key should make a new session: %s", ResultText(fresh))
	}
	if n := h.pay.calls(); n != 2 {
		t.Errorf("Clink called %d times, want 2", n)
	}
	short := h.call(t, checkout, keyed("10", "abc"))
	if !short.IsError || !strings.Contains(ResultText(short), `"idempotencyKey" must be at least 8 characters`) {
		t.Errorf("a short key: %s", ResultText(short))
	}
}

func TestBudgetUnderConcurrentCalls(t *testing.T) {
	// 300 different calls of 7.00 USD against a 1000.00 USD budget: exactly
	// 142 fit, and the total authorised never exceeds the budget.
	h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := range 300 {
		wg.Go(func() {
			res := h.call(t, checkout, checkoutArgs("7", fmt.Sprintf("c%d@example.com", i)))
			switch {
			case !res.IsError:
				ok.Add(1)
			case strings.Contains(ResultText(res), string(policy.CodeBudgetExceeded)):
				refused.Add(1)
			default:
				t.Errorf("unexpected result: %s", ResultText(res))
			}
		})
	}
	wg.Wait()
	if ok.Load() != 142 || refused.Load() != 158 || h.pay.calls() != 142 {
		t.Fatalf("%d allowed, %d refused, %d upstream; want 142, 158, 142", ok.Load(), refused.Load(), h.pay.calls())
	}
}

func TestBudgetSettlement(t *testing.T) {
	p := parsePolicy(t, statePolicy)
	t.Run("a definite refusal releases the reservation", func(t *testing.T) {
		h := newStateHarness(t, p, memoryStore(t))
		h.pay.err = &clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}
		h.call(t, checkout, checkoutArgs("500", "a@example.com"))
		h.call(t, checkout, checkoutArgs("500", "b@example.com"))
		h.pay.err = nil
		if res := h.call(t, checkout, checkoutArgs("500", "c@example.com")); res.IsError {
			t.Fatalf("released budget was not freed: %s", ResultText(res))
		}
		if res := h.call(t, checkout, checkoutArgs("500", "d@example.com")); res.IsError {
			t.Fatalf("released budget was not freed: %s", ResultText(res))
		}
	})
	t.Run("an unknown outcome keeps the reservation", func(t *testing.T) {
		h := newStateHarness(t, p, memoryStore(t))
		h.pay.err = fmt.Errorf("%w: reset", clink.ErrOutcomeUnknown)
		h.call(t, checkout, checkoutArgs("500", "a@example.com"))
		h.call(t, checkout, checkoutArgs("500", "b@example.com"))
		h.pay.err = nil
		res := h.call(t, checkout, checkoutArgs("1", "c@example.com"))
		if !res.IsError || !strings.Contains(ResultText(res), string(policy.CodeBudgetExceeded)) {
			t.Fatalf("an unknown outcome freed its budget: %s", ResultText(res))
		}
	})
	t.Run("a rolling window bounds spends either side of midnight and frees exactly when it passes", func(t *testing.T) {
		h := newStateHarness(t, p, memoryStore(t)) // starts at 23:59
		h.call(t, checkout, checkoutArgs("500", "a@example.com"))
		h.advance(2 * time.Minute) // 00:01 the next day
		h.call(t, checkout, checkoutArgs("500", "b@example.com"))
		res := h.call(t, checkout, checkoutArgs("1", "c@example.com"))
		if !res.IsError || !strings.Contains(ResultText(res), "budget_exceeded") {
			t.Fatalf("a calendar reset let a spend through: %s", ResultText(res))
		}
		h.advance(24*time.Hour - 2*time.Minute - time.Nanosecond) // a nanosecond before 23:59 next day
		if res := h.call(t, checkout, checkoutArgs("2", "c@example.com")); !res.IsError {
			t.Fatal("capacity returned before the window passed")
		}
		h.advance(time.Nanosecond)
		if res := h.call(t, checkout, checkoutArgs("3", "c@example.com")); res.IsError {
			t.Fatalf("capacity did not return when the window passed: %s", ResultText(res))
		}
	})
}

func TestRateLimitPerCustomer(t *testing.T) {
	h := newStateHarness(t, parsePolicy(t, statePolicy), memoryStore(t))
	for i := range 3 {
		if res := h.call(t, agent, fmt.Sprintf(`{"customerEmail":"a@example.com","amount":%d,"currency":"USD"}`, i+1)); res.IsError {
			t.Fatalf("call %d: %s", i, ResultText(res))
		}
	}
	res := h.call(t, agent, `{"customerEmail":"A@example.com","amount":9,"currency":"USD"}`)
	if !res.IsError || !strings.Contains(ResultText(res), string(policy.CodeRateLimited)) {
		t.Fatalf("fourth call for one customer: %s", ResultText(res))
	}
	if res := h.call(t, agent, `{"customerEmail":"b@example.com","amount":9,"currency":"USD"}`); res.IsError {
		t.Fatalf("another customer was limited: %s", ResultText(res))
	}
}

func TestAuditTrailHasOneRecordPerCall(t *testing.T) {
	const planted = "tok_PLANTED_41b2"
	st := memoryStore(t)
	h := newStateHarness(t, parsePolicy(t, statePolicy), st)
	calls := []struct {
		tool, args string
		decision   policy.Code
	}{
		{checkout, checkoutArgs("10", "alice@example.com"), policy.CodeCreated},
		{checkout, checkoutArgs("10", "alice@example.com"), policy.CodeReplayed},
		{checkout, checkoutArgs("900", "alice@example.com"), policy.CodeAmountOverCap},
		{checkout, `{"amount":"x"}`, policy.CodeInvalidArguments},
		{checkout, `{"amount":10,"currency":"GBP","customerEmail":"alice@example.com"}`, policy.CodeCurrencyNotAllowed},
		{agent, `{"customerEmail":"bob@example.com","amount":5,"currency":"USD"}`, policy.CodeCreated},
	}
	for _, c := range calls {
		h.call(t, c.tool, c.args)
	}
	h.pay.err = fmt.Errorf("%w: %s", clink.ErrOutcomeUnknown, planted)
	h.call(t, agent, `{"customerEmail":"bob@example.com","amount":6,"currency":"USD"}`)
	// Every call has one outcome record; those that reached Clink have
	// their intent before it, under the same call ID.
	var all, recs []*state.AuditRecord
	intents := map[string]*state.AuditRecord{}
	if err := st.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
		all = append(all, r)
		switch r.Kind {
		case state.KindIntent:
			intents[r.Call] = r
		case state.KindOutcome:
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(calls)+1 || len(all) != len(recs)+3 {
		t.Fatalf("%d outcome records and %d in all for %d calls, 3 of which reached Clink", len(recs), len(all), len(calls)+1)
	}
	for i, c := range calls {
		if recs[i].Decision != string(c.decision) || recs[i].Tool != c.tool {
			t.Errorf("record %d = %s %s, want %s %s", i, recs[i].Tool, recs[i].Decision, c.tool, c.decision)
		}
		in, ok := intents[recs[i].Call]
		if reached := c.decision == policy.CodeCreated; ok != reached || ok && (in.Seq >= recs[i].Seq || in.Amounts == "" || in.Reservation == "") {
			t.Errorf("record %d (%s): intent %+v", i, c.decision, in)
		}
	}
	if last := recs[len(recs)-1]; last.Decision != string(policy.CodeOutcomeUnknown) || intents[last.Call] == nil {
		t.Errorf("last record = %+v, want outcome_unknown after its intent", last)
	}
	first := recs[0]
	if first.Amount != "10.00" || first.Currency != "USD" || first.SessionID == "" || first.EmailMasked == "" || first.EmailHash == "" || recs[1].SessionID != first.SessionID {
		t.Errorf("first records = %+v / %+v", first, recs[1])
	}
	if recs[0].EmailHash != recs[2].EmailHash || recs[0].EmailHash == recs[5].EmailHash {
		t.Error("email hashes should correlate one customer's calls and tell customers apart")
	}
	b, _ := json.Marshal(recs)
	for _, secret := range []string{"alice@example.com", "bob@example.com", planted} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the audit trail contains %q", secret)
		}
	}
	report, err := state.VerifyAudit(context.Background(), st)
	if err != nil || !report.OK() {
		t.Fatalf("verify: %v %+v", err, report)
	}
}

func TestAFailingStoreFailsClosed(t *testing.T) {
	h := newStateHarness(t, parsePolicy(t, statePolicy), failingStore{memoryStore(t)})
	res := h.call(t, checkout, checkoutArgs("10", "a@example.com"))
	if !res.IsError || !strings.Contains(ResultText(res), "could not check its spending limits") {
		t.Fatalf("result: %s", ResultText(res))
	}
	if h.pay.calls() != 0 {
		t.Fatal("a call reached Clink without its limits checked")
	}
}

// failingStore is a store whose holds fail.
type failingStore struct{ state.Store }

func (failingStore) Hold(context.Context, *state.Hold) (*state.Held, error) {
	return nil, fmt.Errorf("disk I/O error")
}

func TestPerCustomerLimitsCannotBeDodgedWithReferenceIDs(t *testing.T) {
	p := parsePolicy(t, `version: 1
currencies:
  USD: { max_amount: 500 }
customers: { allow_without_email: true }
rate_limits:
  - { window: 1h, max_calls: 2, per: customer }
`)
	h := newStateHarness(t, p, memoryStore(t))
	for i := range 2 {
		if res := h.call(t, checkout, fmt.Sprintf(`{"amount":%d,"currency":"USD","referenceCustomerId":"ref-%d"}`, i+1, i)); res.IsError {
			t.Fatalf("call %d: %s", i, ResultText(res))
		}
	}
	res := h.call(t, checkout, `{"amount":3,"currency":"USD","referenceCustomerId":"ref-new"}`)
	if !res.IsError || !strings.Contains(ResultText(res), string(policy.CodeRateLimited)) {
		t.Fatalf("a fresh reference ID escaped the per-customer limit: %s", ResultText(res))
	}
	if res := h.call(t, checkout, `{"amount":3,"currency":"USD","customerId":"cus_1"}`); res.IsError {
		t.Fatalf("a real customer ID was limited with the anonymous calls: %s", ResultText(res))
	}
}

// TestPerCustomerLimitsCountEveryIdentifier: Clink charges a customerId's
// customer whatever the email says, so a fixed customerId with a new email
// each time must not get a new allowance, nor a fixed email with new
// sub-addresses.
func TestPerCustomerLimitsCountEveryIdentifier(t *testing.T) {
	p := parsePolicy(t, `version: 1
currencies:
  USD: { max_amount: 500 }
budgets:
  - { currency: USD, window: 24h, max_amount: 100, per: customer }
`)
	h := newStateHarness(t, p, memoryStore(t))
	for i := range 5 {
		res := h.call(t, checkout, fmt.Sprintf(`{"amount":100,"currency":"USD","customerId":"cus_1","customerEmail":"new%d@example.com"}`, i))
		if refused := strings.Contains(ResultText(res), string(policy.CodeBudgetExceeded)); refused != (i > 0) {
			t.Fatalf("call %d with customerId cus_1 and a new email: %s", i, ResultText(res))
		}
	}
	for i := range 3 {
		res := h.call(t, agent, fmt.Sprintf(`{"customerEmail":"pat+%d@example.com","amount":60,"currency":"USD"}`, i))
		if refused := strings.Contains(ResultText(res), string(policy.CodeBudgetExceeded)); refused != (i > 0) {
			t.Fatalf("call %d for pat+%d@: %s", i, i, ResultText(res))
		}
	}
	if n := h.pay.calls(); n != 2 {
		t.Errorf("Clink saw %d creates, want 2", n)
	}
}

// TestTheRecordCarriesWhatWasChecked: a checkout of amount 1 with 400 EUR
// of line items is recorded, logged and summarised as the money it can
// commit, with its customer identifiers hashed.
func TestTheRecordCarriesWhatWasChecked(t *testing.T) {
	p := parsePolicy(t, `version: 1
currencies:
  USD: { max_amount: 500 }
  EUR: { max_amount: 500 }
customers: { allow_without_email: true }
`)
	st := memoryStore(t)
	var logs bytes.Buffer
	h := newStateHarness(t, p, st)
	h.tools = map[string]Tool{}
	for _, tool := range All(wire(t, h.pay, p, st, h.clock, slog.New(slog.NewJSONHandler(&logs, nil)))) {
		h.tools[tool.Tool.Name] = tool
	}
	res := h.call(t, checkout, `{"amount":1,"currency":"USD","referenceCustomerId":"ref-42","customerId":"cus_9",`+
		`"priceDataList":[{"name":"Plan","unitAmount":200,"quantity":2,"currency":"EUR"}]}`)
	if res.IsError {
		t.Fatal(ResultText(res))
	}
	var recs []*state.AuditRecord
	st.ScanAudit(context.Background(), func(r *state.AuditRecord) error { recs = append(recs, r); return nil })
	if len(recs) != 2 {
		t.Fatalf("%d records, want the intent and the outcome", len(recs))
	}
	for _, r := range recs {
		if r.Amounts != "EUR 400.00, USD 1.00" || r.CustomerIDHash == "" || r.ReferenceHash == "" ||
			strings.Contains(r.CustomerIDHash+r.ReferenceHash, "cus_9") || strings.Contains(r.ReferenceHash, "ref-42") {
			t.Errorf("%s record = %+v, want the amounts per currency and both identifiers hashed", r.Kind, r)
		}
	}
	line := logs.String()
	if !strings.Contains(line, `"amounts":"EUR 400.00, USD 1.00"`) || !strings.Contains(line, `"customer_id_hash":"`) ||
		!strings.Contains(line, `"reference_hash":"`) || strings.Contains(line, "ref-42") || strings.Contains(line, "cus_9") {
		t.Errorf("log line %s, want the amounts and hashed identifiers", line)
	}
}

func TestBudgetAcrossTwoServersSharingAStoreFile(t *testing.T) {
	// Two servers, each with its own handle on one SQLite file, as two
	// processes would be: 200 calls of 7.00 USD against a 1000.00 USD budget,
	// half through each. Exactly 142 fit.
	path := filepath.Join(t.TempDir(), "state.db")
	p := parsePolicy(t, statePolicy)
	var servers []*stateHarness
	for range 2 {
		st, err := state.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		servers = append(servers, newStateHarness(t, p, st))
	}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 200 {
		wg.Go(func() {
			res := servers[i%2].call(t, checkout, checkoutArgs("7", fmt.Sprintf("c%d@example.com", i)))
			if !res.IsError {
				ok.Add(1)
			} else if !strings.Contains(ResultText(res), string(policy.CodeBudgetExceeded)) {
				t.Errorf("unexpected result: %s", ResultText(res))
			}
		})
	}
	wg.Wait()
	upstream := servers[0].pay.calls() + servers[1].pay.calls()
	if ok.Load() != 142 || upstream != 142 {
		t.Fatalf("%d allowed, %d upstream; want 142", ok.Load(), upstream)
	}
}

func TestBudgetSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	p := parsePolicy(t, statePolicy)
	st, err := state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newStateHarness(t, p, st)
	if res := h.call(t, checkout, checkoutArgs("500", "a@example.com")); res.IsError {
		t.Fatal(ResultText(res))
	}
	if res := h.call(t, checkout, checkoutArgs("450", "b@example.com")); res.IsError {
		t.Fatal(ResultText(res))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h = newStateHarness(t, p, st)
	res := h.call(t, checkout, checkoutArgs("51", "c@example.com"))
	if !res.IsError || !strings.Contains(ResultText(res), "50.00 USD left") {
		t.Fatalf("after a restart: %s", ResultText(res))
	}
}

// panickingPayments panics in every create, with a secret in the panic.
type panickingPayments struct{ noLookups }

func (panickingPayments) CreateAgentPaymentSession(context.Context, *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error) {
	panic("boom sk_test_PLANTED_KEY")
}

func (panickingPayments) CreateCheckoutSession(context.Context, *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	panic("boom sk_test_PLANTED_KEY")
}

func TestAPanicInTheClinkCallIsAnUnknownOutcome(t *testing.T) {
	st := memoryStore(t)
	p := parsePolicy(t, statePolicy)
	handlers := map[string]Tool{}
	for _, tool := range All(wire(t, panickingPayments{}, p, st, nil, nil)) {
		handlers[tool.Tool.Name] = tool
	}
	call := func(args string) *mcp.CallToolResult {
		res, err := handlers[checkout].Handler(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: checkout, RawArguments: json.RawMessage(args)}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := call(checkoutArgs("500", "a@example.com"))
	if !res.IsError || !strings.Contains(ResultText(res), "outcome unknown") || strings.Contains(ResultText(res), "PLANTED") {
		t.Fatalf("result: %s", ResultText(res))
	}
	// The claim was finished: an identical retry replays at once instead of
	// waiting for a call in flight.
	done := make(chan *mcp.CallToolResult, 1)
	go func() { done <- call(checkoutArgs("500", "a@example.com")) }()
	select {
	case res := <-done:
		if !strings.Contains(ResultText(res), "Replay") {
			t.Fatalf("retry: %s", ResultText(res))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the retry waited for a claim the panicking call never settled")
	}
	// The reservations stayed spent: with another 500 (which panics too),
	// the 1000 USD budget is full.
	call(checkoutArgs("500", "b@example.com"))
	if res := call(checkoutArgs("1", "c@example.com")); !strings.Contains(ResultText(res), "budget_exceeded") {
		t.Fatalf("the panicking call's reservation was not kept: %s", ResultText(res))
	}
}

func TestAPanicInAHandlerNeverReachesTheModel(t *testing.T) {
	st := memoryStore(t)
	tool := All(wire(t, nopPayments{}, panickingPolicy{parsePolicy(t, statePolicy)}, st, nil, nil))[0]
	res, err := tool.Handler(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: agent,
		RawArguments: json.RawMessage(`{"customerEmail":"a@example.com","amount":5,"currency":"USD"}`)}})
	if err != nil || !res.IsError || !strings.Contains(ResultText(res), "internal error") || strings.Contains(ResultText(res), "PLANTED") {
		t.Fatalf("result %v, err %v", ResultText(res), err)
	}
	var recs []*state.AuditRecord
	st.ScanAudit(context.Background(), func(r *state.AuditRecord) error { recs = append(recs, r); return nil })
	if len(recs) != 1 || recs[0].Decision != string(policy.CodeInternal) {
		t.Fatalf("audit records: %+v", recs)
	}
}

// panickingPolicy panics while evaluating.
type panickingPolicy struct{ *policy.Policy }

func (panickingPolicy) Evaluate(*policy.Request) policy.Decision {
	panic("policy bug sk_test_PLANTED_KEY")
}
