package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// checkPolicy has a rule of every kind check_payment_policy reports.
const checkPolicyYAML = `version: 1
currencies:
  USD: { max_amount: 500, min_amount: 1, approve_above: 300 }
  EUR: { max_amount: 100 }
budgets:
  - { currency: USD, window: 24h, max_amount: 700 }
rate_limits:
  - { window: 1h, max_calls: 2, per: customer }
customers:
  allow_emails: ["*@example.com"]
urls: { allow_hosts: [shop.example.com] }
tools:
  create_agent_payment_session: { currencies: { USD: { max_amount: 50 } } }
`

// codeOf reads the code a create tool's result ends with.
var codeInText = regexp.MustCompile(`\((` + `[a-z_]+` + `)\)`)

func codeOf(res *mcp.CallToolResult) policy.Code {
	text := ResultText(res)
	if strings.HasPrefix(text, "Replay:") {
		return policy.CodeReplayed
	}
	if !res.IsError {
		return policy.CodeCreated
	}
	if strings.HasPrefix(text, "invalid arguments") {
		return policy.CodeInvalidArguments
	}
	if m := codeInText.FindStringSubmatch(text); m != nil {
		return policy.Code(m[1])
	}
	return "unknown: " + policy.Code(text)
}

// snapshot is everything the store holds that a call could change.
func snapshot(t *testing.T, st state.Store) string {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	if _, err := state.ExportAudit(ctx, st, &b); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListApprovals(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(list)
	b.Write(out)
	intents, err := st.Intents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, _ = json.Marshal(intents)
	b.Write(out)
	return b.String()
}

// pendingRepeated names the case of a call whose approval is pending.
const pendingRepeated = "the call awaiting approval, repeated"

func TestCheckPaymentPolicyAgreesWithTheCreateToolsAndWritesNothing(t *testing.T) {
	st := memoryStore(t)
	h := newStateHarness(t, parsePolicy(t, checkPolicyYAML), st)
	cases := []struct {
		name, tool, args string
		want             policy.Code
	}{
		{"allowed", policy.ToolCheckoutSession, checkoutArgs("200", "a@example.com"), policy.CodeCreated},
		{"the identical call again", policy.ToolCheckoutSession, checkoutArgs("200", "a@example.com"), policy.CodeReplayed},
		{"a call with a key", policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"e@example.com","idempotencyKey":"order-0042-key"}`, policy.CodeCreated},
		{"its key with another amount", policy.ToolCheckoutSession, `{"amount":11,"currency":"USD","customerEmail":"e@example.com","idempotencyKey":"order-0042-key"}`, policy.CodeDuplicateConflict},
		{"over the cap", policy.ToolCheckoutSession, checkoutArgs("501", "a@example.com"), policy.CodeAmountOverCap},
		{"over the tool's cap", policy.ToolAgentPaymentSession, `{"customerEmail":"a@example.com","amount":60,"currency":"USD"}`, policy.CodeAmountOverCap},
		{"under the minimum", policy.ToolCheckoutSession, checkoutArgs("0.5", "a@example.com"), policy.CodeAmountUnderMin},
		{"a currency not allowed", policy.ToolCheckoutSession, `{"amount":10,"currency":"GBP","customerEmail":"a@example.com"}`, policy.CodeCurrencyNotAllowed},
		{"an email not allowed", policy.ToolCheckoutSession, checkoutArgs("10", "a@evil.test"), policy.CodeEmailNotAllowed},
		{"a redirect host not allowed", policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"b@example.com","successUrl":"https://evil.test/x"}`, "url_not_allowed"},
		{"invalid arguments", policy.ToolCheckoutSession, `{"amount":"ten","currency":"USD","customerEmail":"a@example.com"}`, policy.CodeInvalidArguments},
		{"above the approval threshold", policy.ToolCheckoutSession, checkoutArgs("350", "c@example.com"), policy.CodeApprovalRequired},
		{"over what is left of the budget", policy.ToolCheckoutSession, checkoutArgs("250", "d@example.com"), policy.CodeBudgetExceeded},
		// Its own pending approval's reservation is not counted against it
		// a second time (560 + 350 would be over the 700 budget).
		{pendingRepeated, policy.ToolCheckoutSession, checkoutArgs("350", "c@example.com"), policy.CodeApprovalRequired},
		{"the customer's second call", policy.ToolAgentPaymentSession, `{"customerEmail":"a@example.com","amount":20,"currency":"USD"}`, policy.CodeCreated},
		{"the customer's third call in the hour", policy.ToolAgentPaymentSession, `{"customerEmail":"a@example.com","amount":21,"currency":"USD"}`, policy.CodeRateLimited},
	}
	for _, c := range cases {
		before := snapshot(t, st)
		res := h.call(t, ToolCheckPaymentPolicy, `{"tool":"`+c.tool+`","arguments":`+c.args+`}`)
		if res.IsError {
			t.Fatalf("%s: check_payment_policy failed: %s", c.name, ResultText(res))
		}
		if after := snapshot(t, st); after != before {
			t.Fatalf("%s: check_payment_policy changed the store:\nbefore %s\nafter  %s", c.name, before, after)
		}
		var got checkPolicyResult
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		created := h.call(t, c.tool, c.args)
		code := codeOf(created)
		if code != c.want {
			t.Fatalf("%s: the create tool answered %s (%s), the table wants %s", c.name, code, ResultText(created), c.want)
		}
		wantCheck := code
		if code == policy.CodeCreated {
			wantCheck = policy.CodeAllowed
		}
		if got.Code != wantCheck {
			t.Errorf("%s: check said %s (%s), the create tool %s", c.name, got.Code, got.Message, code)
		}
		if (got.ApprovalID != "") != (c.name == pendingRepeated) || c.name == pendingRepeated && !strings.Contains(got.Message, got.ApprovalID) {
			t.Errorf("%s: check = %+v; want an approvalId (and a message naming it) only for the call whose approval is pending", c.name, got)
		}
		allowed := code == policy.CodeCreated || code == policy.CodeApprovalRequired || code == policy.CodeReplayed
		if got.Allowed != allowed || got.NeedsApproval != (code == policy.CodeApprovalRequired) {
			t.Errorf("%s: check = %+v; want allowed %v", c.name, got, allowed)
		}
	}
	if n := h.pay.calls(); n != 3 {
		t.Errorf("%d calls reached Clink, want the 3 created", n)
	}
}

func TestCheckPaymentPolicyReportsWhatIsLeft(t *testing.T) {
	st := memoryStore(t)
	h := newStateHarness(t, parsePolicy(t, checkPolicyYAML), st)
	h.call(t, policy.ToolCheckoutSession, checkoutArgs("200", "a@example.com"))
	res := h.call(t, ToolCheckPaymentPolicy, `{"tool":"create_checkout_session","arguments":`+checkoutArgs("100", "a@example.com")+`}`)
	var got checkPolicyResult
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Limits) != 2 {
		t.Fatalf("limits = %+v, want the budget and the rate limit", got.Limits)
	}
	budget, rate := got.Limits[0], got.Limits[1]
	if budget.Kind != "budget" || budget.Max != "700.00 USD" || budget.Used != "200.00 USD" || budget.Left != "500.00 USD" {
		t.Errorf("budget = %+v", budget)
	}
	if rate.Kind != "rate" || !strings.Contains(rate.Rule, "per customer") || !strings.Contains(rate.Left, "1") {
		t.Errorf("rate limit = %+v", rate)
	}
	if !strings.Contains(ResultText(res), "500.00 USD left") || !strings.Contains(ResultText(res), "Nothing was created") {
		t.Errorf("summary = %s", ResultText(res))
	}
	for _, bad := range []string{`{}`, `{"tool":"create_checkout_session"}`, `{"tool":"delete_everything","arguments":{}}`,
		`{"tool":"create_checkout_session","arguments":{},"extra":1}`, `{"tool":"create_checkout_session","arguments":[1]}`,
		// A repeated key: which tool or arguments were meant is not guessed.
		`{"tool":"create_checkout_session","tool":"create_agent_payment_session","arguments":{"customerEmail":"alice@example.com","amount":20,"currency":"USD"}}`,
		`{"tool":"create_agent_payment_session","arguments":{"amount":1},"arguments":{"customerEmail":"alice@example.com","amount":20,"currency":"USD"}}`} {
		if res := h.call(t, ToolCheckPaymentPolicy, bad); !res.IsError || !strings.Contains(ResultText(res), "invalid arguments") {
			t.Errorf("check_payment_policy %s = %s, want invalid arguments", bad, ResultText(res))
		}
	}
}

func TestStatusToolsOnlyLookUpSessionsThisServerCreated(t *testing.T) {
	st := memoryStore(t)
	h := newStateHarness(t, parsePolicy(t, checkPolicyYAML), st)
	created := h.call(t, policy.ToolCheckoutSession, checkoutArgs("20", "a@example.com"))
	if created.IsError {
		t.Fatal(ResultText(created))
	}
	id := created.StructuredContent.(json.RawMessage)
	var out struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.Unmarshal(id, &out); err != nil {
		t.Fatal(err)
	}
	res := h.call(t, ToolGetCheckoutSession, `{"sessionId":"`+out.SessionID+`"}`)
	if res.IsError || !strings.Contains(ResultText(res), "status open") {
		t.Fatalf("get_checkout_session of our session = %s", ResultText(res))
	}
	for _, args := range []string{`{"sessionId":"sess_not_ours"}`, `{"sessionId":"../admin"}`, `{"sessionId":""}`, `{}`} {
		for _, tool := range []string{ToolGetCheckoutSession, ToolGetAgentPaymentSession} {
			if res := h.call(t, tool, args); !res.IsError {
				t.Errorf("%s %s = %s, want refused", tool, args, ResultText(res))
			}
		}
	}
	if n := h.pay.lookups(); n != 1 {
		t.Errorf("%d lookups reached Clink, want 1: sessions not ours are refused without calling it", n)
	}
}

// A status lookup whose answer has no amount leaves the amount out; it
// never tells the agent the session is for 0.
func TestStatusWithoutAnAmountIsNotReportedAsZero(t *testing.T) {
	h := newStateHarness(t, parsePolicy(t, checkPolicyYAML), memoryStore(t))
	h.pay.noAmount = true
	for _, c := range []struct{ create, get, args string }{
		{policy.ToolCheckoutSession, ToolGetCheckoutSession, checkoutArgs("20", "a@example.com")},
		{policy.ToolAgentPaymentSession, ToolGetAgentPaymentSession, `{"customerEmail":"a@example.com","amount":20,"currency":"USD"}`},
	} {
		created := h.call(t, c.create, c.args)
		if created.IsError {
			t.Fatal(ResultText(created))
		}
		res := h.call(t, c.get, `{"sessionId":"`+structured(t, created)["sessionId"].(string)+`"}`)
		if res.IsError {
			t.Fatalf("%s: %s", c.get, ResultText(res))
		}
		if got, ok := structured(t, res)["amount"]; ok {
			t.Errorf("%s reports amount %v, which Clink never sent", c.get, got)
		}
		if text := ResultText(res); strings.Contains(text, " 0 ") || strings.Contains(text, ": 0") {
			t.Errorf("%s text %q shows an amount of 0", c.get, text)
		}
	}
}
