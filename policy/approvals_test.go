package policy

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const approvalsPolicy = `version: 1
currencies:
  USD: { max_amount: 500, min_amount: 1, approve_above: 200 }
  EUR: { max_amount: 400, approve_above: "150.50" }
  JPY: { max_amount: 50000 }
  GBP: { max_amount: 100, approve_above: 80 }
customers: { allow_without_email: true }
approvals: { timeout: 30m, by: operator }
tools:
  create_agent_payment_session:
    currencies: { USD: { max_amount: 50, approve_above: 20 }, JPY: { approve_above: 10000 } }
  create_checkout_session:
    currencies: { USD: { max_amount: 300 }, EUR: {}, JPY: {}, GBP: { max_amount: 80 } }
`

func TestParseReadsApprovals(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: 60 }\n  EUR: { max_amount: 50 }\n"
	usd := func(amount string) Money { return money(t, amount, "USD") }
	eur := func(amount string) Money { return money(t, amount, "EUR") }
	type threshold struct {
		tool, cur string
		want      Money // the zero Money: none
	}
	cases := []struct {
		name        string
		yaml        string
		timeout     time.Duration
		byOperator  bool
		thresholds  []threshold
		wantRender  string // a part of Render
		wantSummary string // a part of Summary(create_checkout_session), or "-" for no approval sentence
	}{
		{
			"gives every tool the global threshold, with a 15m timeout asked through the client by default",
			head, 15 * time.Minute, false,
			[]threshold{{ToolAgentPaymentSession, "USD", usd("60")}, {ToolCheckoutSession, "USD", usd("60")}, {ToolCheckoutSession, "EUR", Money{}}},
			"  USD up to 100.00, approval above 60.00\nApprovals: sessions above approve_above wait for the agent's user, asked through the MCP client when it can, else an operator; unanswered after 15m, the call is refused\n",
			" Sessions above USD 60.00 need a person's approval before they are created.",
		},
		{
			"reads the approvals section",
			head + "approvals: { timeout: 2h, by: operator }\n", 2 * time.Hour, true, nil,
			"Approvals: sessions above approve_above wait for an operator; unanswered after 2h, the call is refused\n",
			" Sessions above USD 60.00 need",
		},
		{
			"reads by: client",
			head + "approvals:\n  by: client\n", 15 * time.Minute, false, nil,
			"wait for the agent's user", "",
		},
		{
			"accepts the shortest and longest timeouts",
			head + "approvals: { timeout: 1m }\n", time.Minute, false, nil, "unanswered after 1m,", "",
		},
		{
			"accepts a timeout of a day written in days",
			head + "approvals: { timeout: 1d }\n", 24 * time.Hour, false, nil, "unanswered after 24h,", "",
		},
		{
			"accepts approvals without any threshold, which only sets defaults",
			"version: 1\ncurrencies:\n  USD: { max_amount: 100 }\napprovals: { timeout: 5m }\n", 5 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "USD", Money{}}},
			"Approvals: none (no approve_above)\n", "-",
		},
		{
			"accepts an empty approvals section",
			head + "approvals: {}\n", 15 * time.Minute, false, nil, "unanswered after 15m,", "",
		},
		{
			"lets a tool lower the global threshold",
			head + "tools:\n  create_checkout_session: { currencies: { USD: { approve_above: 30 } } }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "USD", usd("30")}, {ToolAgentPaymentSession, "USD", usd("60")}},
			"  create_checkout_session: USD up to 100.00\n    approval above: USD 30.00\n",
			" Sessions above USD 30.00 need",
		},
		{
			"lets a tool set a threshold where the global rules have none",
			head + "tools:\n  create_checkout_session: { currencies: { EUR: { approve_above: 10 }, USD: {} } }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "EUR", eur("10")}, {ToolCheckoutSession, "USD", usd("60")}, {ToolAgentPaymentSession, "EUR", Money{}}},
			"    approval above: EUR 10.00, USD 60.00\n",
			" Sessions above EUR 10.00 or USD 60.00 need a person's approval before they are created.",
		},
		{
			"lets a tool keep the global threshold by repeating it",
			head + "tools:\n  create_checkout_session: { currencies: { USD: { approve_above: 60.00 } } }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "USD", usd("60")}},
			"    approval above: USD 60.00\n", "",
		},
		{
			"drops a global threshold a tool's lower cap makes unreachable",
			head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 60 } } }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "USD", Money{}}, {ToolAgentPaymentSession, "USD", usd("60")}},
			"  create_checkout_session: USD up to 60.00\nStore:", "-",
		},
		{
			"keeps a threshold below the minimum, so every session needs approval",
			"version: 1\ncurrencies:\n  USD: { max_amount: 100, min_amount: 10, approve_above: 0.01 }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "USD", usd("0.01")}},
			"  USD 10.00–100.00, approval above 0.01\n", "",
		},
		{
			"reads a threshold in a currency's own minor units",
			"version: 1\ncurrencies:\n  JPY: { max_amount: 50000, approve_above: 1e4 }\n  KWD: { max_amount: 100, approve_above: \"99.999\" }\n", 15 * time.Minute, false,
			[]threshold{{ToolCheckoutSession, "JPY", money(t, "10000", "JPY")}, {ToolCheckoutSession, "KWD", money(t, "99.999", "KWD")}},
			"  JPY up to 50000, approval above 10000\n  KWD up to 100.000, approval above 99.999\n", "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.ApprovalTimeout(); got != tc.timeout {
				t.Errorf("ApprovalTimeout() = %v, want %v", got, tc.timeout)
			}
			if got := p.ApprovalsByOperator(); got != tc.byOperator {
				t.Errorf("ApprovalsByOperator() = %v, want %v", got, tc.byOperator)
			}
			for _, th := range tc.thresholds {
				got, ok := p.ApprovalThreshold(th.tool, th.cur)
				if got != th.want || ok != !th.want.IsZero() {
					t.Errorf("ApprovalThreshold(%s, %s) = %v, %v; want %v", th.tool, th.cur, got, ok, th.want)
				}
			}
			r := p.Render()
			if !strings.Contains(r, tc.wantRender) {
				t.Errorf("Render() =\n%s\nwant it to contain\n%s", r, tc.wantRender)
			}
			s := p.Summary(ToolCheckoutSession)
			switch tc.wantSummary {
			case "-":
				if strings.Contains(s, "approval") {
					t.Errorf("Summary = %q; want no approval sentence", s)
				}
			case "":
			default:
				if !strings.Contains(s, tc.wantSummary) {
					t.Errorf("Summary = %q; want it to contain %q", s, tc.wantSummary)
				}
			}
		})
	}
}

func TestParseRefusesBadApprovals(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: 60 }\n"
	cases := []struct{ name, yaml, want string }{
		{"refuses a threshold at the cap", "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: 100.00 }\n",
			"f.yaml:3: USD approve_above 100.00 is not below max_amount 100.00, so no session could ever need approval; lower it or remove it"},
		{"refuses a threshold above the cap", "version: 1\ncurrencies:\n  USD:\n    max_amount: 100\n    approve_above: 150\n",
			"f.yaml:5: USD approve_above 150.00 is not below max_amount 100.00, so no session could ever need approval; lower it or remove it"},
		{"refuses a zero threshold", "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: 0 }\n",
			`f.yaml:3: USD approve_above: amount "0" must be greater than zero`},
		{"refuses a negative threshold", "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: -1 }\n",
			`f.yaml:3: USD approve_above: amount "-1" is negative; it must be greater than zero`},
		{"refuses a threshold too precise for its currency", "version: 1\ncurrencies:\n  JPY: { max_amount: 100, approve_above: 50.5 }\n",
			`f.yaml:3: JPY approve_above: amount "50.5" has more decimals than JPY allows (0)`},
		{"refuses a threshold that is not a number", "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: true }\n",
			"f.yaml:3: USD approve_above must be a number, not bool"},
		{"refuses a threshold given as a list", "version: 1\ncurrencies:\n  USD: { max_amount: 100, approve_above: [5] }\n",
			"f.yaml:3: USD approve_above must be a number"},
		{"refuses a currency with a threshold but no cap", "version: 1\ncurrencies:\n  USD: { approve_above: 5 }\n",
			"f.yaml:3: USD has no max_amount; every currency needs a per-session cap"},
		{"refuses a tool threshold above the global one", head + "tools:\n  create_checkout_session: { currencies: { USD: { approve_above: 60.01 } } }\n",
			"f.yaml:5: tool create_checkout_session: USD approve_above 60.01 is above the global approve_above 60.00; a tool can only narrow the global rules"},
		{"refuses a tool threshold at the tool's own cap", head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 50, approve_above: 50 } } }\n",
			"f.yaml:5: tool create_checkout_session: USD approve_above 50.00 is not below max_amount 50.00, so no session could ever need approval; lower it or remove it"},
		{"refuses a tool threshold at the inherited global cap", "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\ntools:\n  create_checkout_session:\n    currencies:\n      USD: { approve_above: 100 }\n",
			"f.yaml:7: tool create_checkout_session: USD approve_above 100.00 is not below max_amount 100.00, so no session could ever need approval; lower it or remove it"},
		{"refuses a timeout under a minute", head + "approvals: { timeout: 30s }\n",
			"f.yaml:4: approvals: timeout 30s is shorter than the least allowed, 1m"},
		{"refuses a timeout over a day", head + "approvals: { timeout: 25h }\n",
			"f.yaml:4: approvals: timeout 25h is longer than the most allowed, 24h"},
		{"refuses a signed timeout", head + "approvals: { timeout: +10m }\n",
			`f.yaml:4: approvals: timeout "+10m" is not a duration; write it like 5m, 15m or 1h`},
		{"refuses a timeout of two days", head + "approvals: { timeout: 2d }\n",
			"f.yaml:4: approvals: timeout 2d is longer than the most allowed, 24h"},
		{"refuses a timeout of a fraction of a second", head + "approvals: { timeout: 90.5s }\n",
			"f.yaml:4: approvals: timeout 90.5s must be a whole number of seconds"},
		{"refuses a timeout without a unit", head + "approvals: { timeout: 15 }\n",
			`f.yaml:4: approvals: timeout "15" is not a duration; write it like 5m, 15m or 1h`},
		{"refuses a zero timeout", head + "approvals: { timeout: 0 }\n",
			"f.yaml:4: approvals: timeout 0 is shorter than the least allowed, 1m"},
		{"refuses a timeout that is not a scalar", head + "approvals: { timeout: [15m] }\n",
			"f.yaml:4: approvals: timeout must be a duration like 5m, 15m or 1h"},
		{"refuses a timeout that is a boolean", head + "approvals: { timeout: true }\n",
			"f.yaml:4: approvals: timeout must be a duration like 5m, 15m or 1h, not bool"},
		{"refuses an unknown approver", head + "approvals: { by: user }\n",
			"f.yaml:4: approvals: by must be client (ask the agent's user through the MCP client when it can, else an operator) or operator (always an operator)"},
		{"refuses an approver given as a list", head + "approvals: { by: [operator] }\n",
			"f.yaml:4: approvals: by must be client (ask the agent's user through the MCP client when it can, else an operator) or operator (always an operator)"},
		{"refuses an unknown key under approvals", head + "approvals: { timeout: 15m, ask: operator }\n",
			`f.yaml:4: approvals: unknown key "ask" (known keys: timeout, by)`},
		{"refuses approvals that is not a mapping", head + "approvals: operator\n",
			"f.yaml:4: approvals must be a mapping (key: value)"},
		{"refuses approve_above under a tool rather than a currency", head + "tools:\n  create_checkout_session: { approve_above: 10 }\n",
			`f.yaml:5: tool create_checkout_session: unknown key "approve_above" (known keys: enabled, currencies, budgets, allow_dashboard_prices)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if p != nil || err == nil {
				t.Fatalf("Parse succeeded; want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestLoadReportsEveryApprovalProblemWithFileAndLine(t *testing.T) {
	path := filepath.Join("testdata", "invalid", "approvals.yaml")
	p, err := Load(path)
	if p != nil || !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("Load(%q) = %v, %v; want an ErrInvalidPolicy", path, p, err)
	}
	want := []string{
		`3: USD approve_above 500.00 is not below max_amount 500.00, so no session could ever need approval; lower it or remove it`,
		`4: EUR approve_above: amount "10.001" has more decimals than EUR allows (2)`,
		`10: tool create_agent_payment_session: GBP approve_above 60.00 is above the global approve_above 50.00; a tool can only narrow the global rules`,
		`11: tool create_agent_payment_session: JPY approve_above 3000 is not below max_amount 3000, so no session could ever need approval; lower it or remove it`,
		`13: approvals: timeout 48h is longer than the most allowed, 24h`,
		`14: approvals: by must be client (ask the agent's user through the MCP client when it can, else an operator) or operator (always an operator)`,
		`15: approvals: unknown key "notify" (known keys: timeout, by)`,
	}
	for i, w := range want {
		want[i] = path + ":" + w
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s", diff)
	}
}

func TestNeedsApproval(t *testing.T) {
	p := mustParse(t, approvalsPolicy)
	line := func(amount, code string, qty int64) LineItem {
		return LineItem{UnitAmount: money(t, amount, code), Quantity: qty}
	}
	cases := []struct {
		name string
		req  Request
		want bool
	}{
		{"lets an amount exactly at the threshold through", Request{Tool: ToolCheckoutSession, Amount: money(t, "200.00", "USD")}, false},
		{"asks for an amount a cent above the threshold", Request{Tool: ToolCheckoutSession, Amount: money(t, "200.01", "USD")}, true},
		{"lets an amount below the threshold through", Request{Tool: ToolCheckoutSession, Amount: money(t, "5", "USD")}, false},
		{"reads a threshold with cents exactly", Request{Tool: ToolCheckoutSession, Amount: money(t, "150.50", "EUR")}, false},
		{"asks above a threshold with cents", Request{Tool: ToolCheckoutSession, Amount: money(t, "150.51", "EUR")}, true},
		{"lets a currency without a threshold through", Request{Tool: ToolCheckoutSession, Amount: money(t, "49999", "JPY")}, false},
		{"asks when line items in the session's currency add up to more than the threshold", Request{Tool: ToolCheckoutSession, Amount: money(t, "100", "USD"),
			LineItems: []LineItem{line("100.00", "USD", 2), line("0.01", "USD", 1)}}, true},
		{"lets line items that add up to exactly the threshold through", Request{Tool: ToolCheckoutSession, Amount: money(t, "100", "USD"),
			LineItems: []LineItem{line("100.00", "USD", 2)}}, false},
		{"asks when line items in another currency pass that currency's threshold", Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"),
			LineItems: []LineItem{line("75.26", "EUR", 2)}}, true},
		{"lets line items in another currency at its threshold through", Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"),
			LineItems: []LineItem{line("75.25", "EUR", 2)}}, false},
		{"uses the tool's own lower threshold", Request{Tool: ToolAgentPaymentSession, Amount: money(t, "20.01", "USD")}, true},
		{"lets the tool's own threshold exactly through", Request{Tool: ToolAgentPaymentSession, Amount: money(t, "20", "USD")}, false},
		{"uses a threshold the tool sets where the global rules have none", Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10001", "JPY")}, true},
		{"is false for a tool the policy does not govern", Request{Tool: "refund_payment", Amount: money(t, "499", "USD")}, false},
		{"fails closed for a request without a positive amount in a currency with a threshold", Request{Tool: ToolCheckoutSession, Amount: NewMoney(0, money(t, "1", "USD").Currency())}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.NeedsApproval(&tc.req); got != tc.want {
				t.Errorf("NeedsApproval(%+v) = %v, want %v", tc.req, got, tc.want)
			}
		})
	}
	t.Run("is false for a nil policy or request", func(t *testing.T) {
		var nilPolicy *Policy
		if nilPolicy.NeedsApproval(&Request{Tool: ToolCheckoutSession, Amount: money(t, "499", "USD")}) || p.NeedsApproval(nil) {
			t.Error("NeedsApproval = true")
		}
		if _, ok := nilPolicy.ApprovalThreshold(ToolCheckoutSession, "USD"); ok {
			t.Error("ApprovalThreshold on a nil policy is ok")
		}
		if nilPolicy.ApprovalTimeout() != 15*time.Minute || nilPolicy.ApprovalsByOperator() {
			t.Error("a nil policy's approvals settings are not the defaults")
		}
	})
}

func TestApprovalThreshold(t *testing.T) {
	p := mustParse(t, approvalsPolicy)
	cases := []struct {
		tool, cur string
		want      string // "" for none
	}{
		{ToolCheckoutSession, "USD", "200.00 USD"},
		{ToolCheckoutSession, "GBP", ""},     // the global 80.00, at the tool's cap
		{ToolAgentPaymentSession, "GBP", ""}, // not allowed for the tool
		{ToolCheckoutSession, "EUR", "150.50 EUR"},
		{ToolCheckoutSession, "JPY", ""},
		{ToolAgentPaymentSession, "USD", "20.00 USD"},
		{ToolAgentPaymentSession, "JPY", "10000 JPY"},
		{ToolAgentPaymentSession, "EUR", ""}, // not allowed for the tool
		{ToolCheckoutSession, "usd", ""},
		{ToolCheckoutSession, "GBP", ""},
		{"refund_payment", "USD", ""},
	}
	for _, tc := range cases {
		got, ok := p.ApprovalThreshold(tc.tool, tc.cur)
		if ok != (tc.want != "") || (ok && got.String() != tc.want) {
			t.Errorf("ApprovalThreshold(%s, %s) = %v, %v; want %q", tc.tool, tc.cur, got, ok, tc.want)
		}
	}
	if got := p.ApprovalTimeout(); got != 30*time.Minute {
		t.Errorf("ApprovalTimeout() = %v", got)
	}
	if !p.ApprovalsByOperator() {
		t.Error("ApprovalsByOperator() = false")
	}
}

func TestSummaryNamesApprovalThresholds(t *testing.T) {
	p := mustParse(t, approvalsPolicy)
	cases := map[string]string{
		ToolAgentPaymentSession: "Allowed currencies and per-session limits: JPY up to 50000, USD 1.00–50.00. Sessions above JPY 10000 or USD 20.00 need a person's approval before they are created. Customer email:",
		ToolCheckoutSession:     "Allowed currencies and per-session limits: EUR up to 400.00, GBP up to 80.00, JPY up to 50000, USD 1.00–300.00. Sessions above EUR 150.50 or USD 200.00 need a person's approval before they are created. Customer email:",
	}
	for tool, want := range cases {
		if s := p.Summary(tool); !strings.HasPrefix(s, want) {
			t.Errorf("Summary(%s) = %q; want it to start with %q", tool, s, want)
		}
	}
}
