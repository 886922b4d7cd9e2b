package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// money parses an amount a test knows to be valid.
func money(t testing.TB, amount, code string) Money {
	t.Helper()
	m, err := ParseMoney(amount, code)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustParse(t testing.TB, yaml string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	example, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withoutEmail := mustParse(t, `version: 1
currencies:
  USD: { max_amount: 100 }
customers:
  allow_without_email: true
tools:
  create_agent_payment_session: { enabled: false }
`)
	noEmails := mustParse(t, `version: 1
currencies:
  USD: { max_amount: 100 }
customers:
  allow_emails: []
  allow_without_email: true
`)
	line := func(amount, code string, qty int64) LineItem {
		return LineItem{UnitAmount: money(t, amount, code), Quantity: qty}
	}
	usd, _ := ParseCurrency("USD")
	allowed := Decision{Allowed: true, Code: CodeAllowed}

	cases := []struct {
		name string
		p    *Policy
		req  Request
		want Decision
	}{
		// Tools.
		{"allows an agent payment session within every rule", example,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "50", "USD"), CustomerEmail: "alice@example.com"}, allowed},
		{"allows a checkout session within every rule", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "500", "USD"), CustomerEmail: "bob@example.org"}, allowed},
		{"refuses a tool the policy does not know", example,
			Request{Tool: "refund_payment", Amount: money(t, "1", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeUnknownTool, Message: `tool "refund_payment" is not governed by this server's policy, so it is refused`}},
		{"refuses a disabled tool", withoutEmail,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeToolDisabled, Message: "create_agent_payment_session is disabled by this server's policy"}},

		// Request shape.
		{"refuses a request without an amount", example,
			Request{Tool: ToolCheckoutSession, CustomerEmail: "alice@example.com"},
			Decision{Code: CodeInvalidRequest, Message: "the amount must be greater than zero, with a currency"}},
		{"refuses a zero amount built by hand", example,
			Request{Tool: ToolCheckoutSession, Amount: NewMoney(0, usd), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeInvalidRequest, Message: "the amount must be greater than zero, with a currency"}},
		{"refuses a negative amount built by hand", example,
			Request{Tool: ToolCheckoutSession, Amount: NewMoney(-100, usd), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeInvalidRequest, Message: "the amount must be greater than zero, with a currency"}},
		{"refuses line items on an agent payment session", example,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 1)}},
			Decision{Code: CodeInvalidRequest, Message: "create_agent_payment_session takes no line items"}},

		// Currencies and amounts.
		{"refuses a currency that is not listed", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "GBP"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeCurrencyNotAllowed, Message: "currency GBP is not allowed for create_checkout_session; allowed: EUR, JPY, USD"}},
		{"refuses a currency listed globally but not for the tool", example,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "EUR"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeCurrencyNotAllowed, Message: "currency EUR is not allowed for create_agent_payment_session; allowed: USD"}},
		{"refuses an amount over the per-session cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "900", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeAmountOverCap, Message: "amount 900.00 USD exceeds the per-session cap of 500.00 USD for create_checkout_session", Limit: money(t, "500", "USD")}},
		{"refuses an amount one cent over the cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "500.01", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeAmountOverCap, Message: "amount 500.01 USD exceeds the per-session cap of 500.00 USD for create_checkout_session", Limit: money(t, "500", "USD")}},
		{"refuses an amount over the tool's narrower cap", example,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "50.01", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeAmountOverCap, Message: "amount 50.01 USD exceeds the per-session cap of 50.00 USD for create_agent_payment_session", Limit: money(t, "50", "USD")}},
		{"refuses an amount under the minimum", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "0.99", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeAmountUnderMin, Message: "amount 0.99 USD is below the per-session minimum of 1.00 USD for create_checkout_session", Limit: money(t, "1", "USD")}},
		{"refuses an amount under the minimum the tool inherits", example,
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "0.50", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeAmountUnderMin, Message: "amount 0.50 USD is below the per-session minimum of 1.00 USD for create_agent_payment_session", Limit: money(t, "1", "USD")}},
		{"allows an amount exactly at the minimum", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "1", "USD"), CustomerEmail: "alice@example.com"}, allowed},
		{"allows any amount up to the cap when there is no minimum", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "1", "JPY"), CustomerEmail: "alice@example.com"}, allowed},

		// Line items.
		{"allows line items that add up within the cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "100", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("25", "USD", 2), line("50", "USD", 1)}}, allowed},
		{"refuses line items whose sum exceeds the cap though the total does not", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("200", "USD", 2), line("100.01", "USD", 1)}},
			Decision{Code: CodeAmountOverCap, Message: "line items in USD add up to 500.01 USD, which exceeds the per-session cap of 500.00 USD for create_checkout_session", Limit: money(t, "500", "USD")}},
		{"refuses a quantity that multiplies a unit amount over the cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 51)}},
			Decision{Code: CodeAmountOverCap, Message: "line items in USD add up to 510.00 USD, which exceeds the per-session cap of 500.00 USD for create_checkout_session", Limit: money(t, "500", "USD")}},
		{"refuses a quantity that would overflow instead of wrapping around", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10000000000000", "USD", 9223372036854775807)}},
			Decision{Code: CodeAmountOverCap, Message: "line items in USD add up to more than 10000000000000.00 USD, which exceeds the per-session cap of 500.00 USD for create_checkout_session", Limit: money(t, "500", "USD")}},
		{"refuses many line items whose sum would overflow", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "JPY"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("1e15", "JPY", 1e6), line("1e15", "JPY", 1e6), line("1e15", "JPY", 1e6)}},
			Decision{Code: CodeAmountOverCap, Message: "line items in JPY add up to more than 1000000000000000 JPY, which exceeds the per-session cap of 50000 JPY for create_checkout_session", Limit: money(t, "50000", "JPY")}},
		{"checks a line item in another currency against that currency's cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 1), line("401", "EUR", 1)}},
			Decision{Code: CodeAmountOverCap, Message: "line items in EUR add up to 401.00 EUR, which exceeds the per-session cap of 400.00 EUR for create_checkout_session", Limit: money(t, "400", "EUR")}},
		{"allows line items in another allowed currency within its cap", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 1), line("200", "EUR", 2), line("50000", "JPY", 1)}}, allowed},
		{"refuses a line item in a currency that is not allowed", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 1), line("1", "GBP", 1)}},
			Decision{Code: CodeLineItemCurrencyNotAllowed, Message: "line item 2 is in GBP, which is not allowed for create_checkout_session; allowed: EUR, JPY, USD"}},
		{"refuses a line item with quantity zero", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", 0)}},
			Decision{Code: CodeInvalidRequest, Message: "line item 1: quantity must be at least 1"}},
		{"refuses a line item with a negative quantity", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("10", "USD", -3)}},
			Decision{Code: CodeInvalidRequest, Message: "line item 1: quantity must be at least 1"}},
		{"refuses a line item without a unit amount", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{{Quantity: 1}}},
			Decision{Code: CodeInvalidRequest, Message: "line item 1: the unit amount must be greater than zero, with a currency"}},
		{"allows more line item currencies than fit on the stack", mustParse(t, `version: 1
currencies:
  USD: { max_amount: 100 }
  EUR: { max_amount: 100 }
  GBP: { max_amount: 100 }
  CHF: { max_amount: 100 }
  JPY: { max_amount: 10000 }
  KWD: { max_amount: 100 }
`),
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com",
				LineItems: []LineItem{line("1", "USD", 1), line("1", "EUR", 1), line("1", "GBP", 1), line("1", "CHF", 1),
					line("1", "JPY", 1), line("1", "KWD", 1), line("99", "KWD", 1)}}, allowed},

		// Customers.
		{"allows an exact address on the allowlist", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com"}, allowed},
		{"allows an allowlisted address written in another case with spaces", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: " ALICE@Example.Com "}, allowed},
		{"allows any mailbox at an allowlisted domain", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "zed@example.org"}, allowed},
		{"allows a mailbox at a subdomain of an allowlisted parent", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "zed@shop.example.net"}, allowed},
		{"refuses the apex of a subdomain pattern", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "zed@example.net"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is not on this server's allowlist"}},
		{"refuses a lookalike domain that starts with an allowlisted one", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com.evil.com"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is not on this server's allowlist"}},
		{"refuses a denied address even at an allowlisted domain", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "CEO@example.org"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is blocked by this server's policy"}},
		{"refuses a denied address when any email is allowed", Demo(),
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), CustomerEmail: "blocked@example.com"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is blocked by this server's policy"}},
		{"allows any valid address when there is no allowlist", Demo(),
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), CustomerEmail: "someone@anywhere.example"}, allowed},
		{"refuses every address when the allowlist is empty", noEmails,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is not on this server's allowlist"}},
		{"refuses an email with a display name", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "Alice <alice@example.com>"},
			Decision{Code: CodeEmailInvalid, Message: "customerEmail is not usable: give the bare address (like alice@example.com), without a display name or angle brackets"}},
		{"refuses an email with several @", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "x@evil.com@example.org"},
			Decision{Code: CodeEmailInvalid, Message: "customerEmail is not usable: the email address has more than one @"}},
		{"refuses an agent payment session without an email", Demo(),
			Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1"},
			Decision{Code: CodeEmailRequired, Message: "create_agent_payment_session requires customerEmail"}},
		{"refuses a checkout without an email when the policy requires one", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1"},
			Decision{Code: CodeEmailRequired, Message: "create_checkout_session requires customerEmail on this server"}},
		{"allows a checkout with only a customer ID when the policy allows it", withoutEmail,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1"}, allowed},
		{"allows a checkout with only a reference customer ID when the policy allows it", withoutEmail,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), ReferenceCustomerID: "ref-1"}, allowed},
		{"refuses a checkout with no customer identifier at all", withoutEmail,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD")},
			Decision{Code: CodeEmailRequired, Message: "create_checkout_session needs customerEmail, or customerId or referenceCustomerId"}},
		{"still checks an email given alongside a customer ID", noEmails,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1", CustomerEmail: "alice@example.com"},
			Decision{Code: CodeEmailNotAllowed, Message: "the customer email is not on this server's allowlist"}},
		{"refuses a customer ID beside an allowlisted email when calls may not go by ID alone", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_victim", CustomerEmail: "alice@example.com"},
			Decision{Code: CodeCustomerIDNotAllowed, Message: "customerId cannot be used on this server: Clink charges the customerId's customer whatever the email, and this server checks customers by email; send customerEmail without customerId"}},
		{"refuses a customer ID beside an email when a deny list is all there is", mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\ncustomers:\n  deny_emails: [ceo@example.org]\n"),
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_ceo", CustomerEmail: "alice@example.com"},
			Decision{Code: CodeCustomerIDNotAllowed, Message: "customerId cannot be used on this server: Clink charges the customerId's customer whatever the email, and this server checks customers by email; send customerEmail without customerId"}},
		{"allows a customer ID beside an email when no email rule restricts customers", mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n"),
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1", CustomerEmail: "alice@example.com"}, allowed},
		{"allows a customer ID beside an allowlisted email when calls may go by ID alone", mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\ncustomers:\n  allow_emails: [alice@example.com]\n  allow_without_email: true\n"),
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1", CustomerEmail: "alice@example.com"}, allowed},
		{"refuses a dashboard price the policy does not allow", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com", PriceID: "price_1"},
			Decision{Code: CodeDashboardPriceNotAllowed, Message: "priceId and productId name prices set in the Clink dashboard, which this server cannot check against its limits, and its policy does not allow them for create_checkout_session; describe the purchase with amount and priceDataList instead"}},
		{"refuses a dashboard product the policy does not allow", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com", ProductID: "prod_1"},
			Decision{Code: CodeDashboardPriceNotAllowed, Message: "priceId and productId name prices set in the Clink dashboard, which this server cannot check against its limits, and its policy does not allow them for create_checkout_session; describe the purchase with amount and priceDataList instead"}},
		{"allows dashboard prices where the operator allows them", mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\ntools:\n  create_checkout_session: { allow_dashboard_prices: true }\n"),
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "alice@example.com", PriceID: "price_1", ProductID: "prod_1"}, allowed},
		{"refuses an email of spaces rather than treating it as absent", withoutEmail,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1", CustomerEmail: "  "},
			Decision{Code: CodeEmailInvalid, Message: "customerEmail is not usable: the email address is empty"}},

		// Order of checks.
		{"reports the currency before the email", example,
			Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "GBP"), CustomerEmail: "ceo@example.org"},
			Decision{Code: CodeCurrencyNotAllowed, Message: "currency GBP is not allowed for create_checkout_session; allowed: EUR, JPY, USD"}},
		{"reports a disabled tool before anything else", withoutEmail,
			Request{Tool: ToolAgentPaymentSession},
			Decision{Code: CodeToolDisabled, Message: "create_agent_payment_session is disabled by this server's policy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.Evaluate(&tc.req)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(Money{}, Currency{})); diff != "" {
				t.Errorf("Evaluate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateFailsClosed(t *testing.T) {
	t.Run("denies everything without a policy", func(t *testing.T) {
		var p *Policy
		d := p.Evaluate(&Request{Tool: ToolCheckoutSession})
		if d.Allowed || d.Code != CodeNoPolicy {
			t.Errorf("got %+v", d)
		}
	})
	t.Run("denies a nil request", func(t *testing.T) {
		d := Demo().Evaluate(nil)
		if d.Allowed || d.Code != CodeInvalidRequest {
			t.Errorf("got %+v", d)
		}
	})
	t.Run("treats the zero Decision as a denial", func(t *testing.T) {
		if (Decision{}).Allowed {
			t.Error("zero Decision allows")
		}
	})
}

// Evaluate shares nothing mutable: hammering one policy from many
// goroutines under -race gives every caller the same answers.
func TestEvaluateIsSafeForConcurrentUse(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reqs := []Request{
		{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerEmail: "Alice@example.com",
			LineItems: []LineItem{{UnitAmount: money(t, "5", "USD"), Quantity: 2}}},
		{Tool: ToolCheckoutSession, Amount: money(t, "900", "USD"), CustomerEmail: "alice@example.com"},
		{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), CustomerEmail: "ceo@example.org"},
	}
	want := make([]Decision, len(reqs))
	for i := range reqs {
		want[i] = p.Evaluate(&reqs[i])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 200; n++ {
				i := n % len(reqs)
				if got := p.Evaluate(&reqs[i]); got != want[i] {
					errs <- fmt.Sprintf("request %d: got %+v, want %+v", i, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSummary(t *testing.T) {
	example, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	off := mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 5 }\nduplicates: { window: 0 }\ntools:\n  create_checkout_session: { enabled: false }\n")
	eurOnly := mustParse(t, `version: 1
currencies:
  USD: { max_amount: 100 }
  EUR: { max_amount: 100 }
budgets:
  - { currency: USD, window: 24h, max_amount: 1000 }
  - { currency: EUR, window: 7d, max_amount: 2000 }
tools:
  create_agent_payment_session: { currencies: { EUR: {} }, budgets: [ { currency: EUR, window: 1h, max_amount: 50, per: customer } ] }
`)
	cases := []struct {
		name string
		p    *Policy
		tool string
		want string
	}{
		{"tells the agent its narrowed limits, budgets, rate limits, that emails are allowlisted and that repeats replay", example, ToolAgentPaymentSession,
			"Allowed currencies and per-session limits: USD 1.00–50.00." +
				" Budgets (rolling windows): USD 2000.00 per 24h; per customer: USD 300.00 per 1h." +
				" Rate limits (rolling windows, all tools together): at most 10 calls per 1m; per customer: at most 20 calls per 1h." +
				" Customer email: required; only addresses on the operator's allowlist are accepted." +
				" An identical call repeated within 10m returns the first call's result instead of creating another session."},
		{"tells the agent the global limits of a tool without its own and the tool's own budget", example, ToolCheckoutSession,
			"Allowed currencies and per-session limits: EUR up to 400.00, JPY up to 50000, USD 1.00–500.00." +
				" Budgets (rolling windows): USD 2000.00 per 24h; per customer: USD 300.00 per 1h; this tool only, USD 500.00 per 24h." +
				" Rate limits (rolling windows, all tools together): at most 10 calls per 1m; per customer: at most 20 calls per 1h." +
				" Customer email: required; only addresses on the operator's allowlist are accepted." +
				" priceId and productId are not accepted: give amount, and priceDataList for line items." +
				" An identical call repeated within 10m returns the first call's result instead of creating another session."},
		{"tells the agent an email is optional with a customer ID where allowed", Demo(), ToolCheckoutSession,
			"Allowed currencies and per-session limits: EUR up to 100.00, JPY up to 10000, USD 0.50–100.00." +
				" Sessions above USD 75.00 need a person's approval before they are created." +
				" Budgets (rolling windows): USD 500.00 per 24h." +
				" Rate limits (rolling windows, all tools together): at most 30 calls per 1m." +
				" Customer email: required unless customerId or referenceCustomerId is given; any valid address except ones the operator blocks." +
				" priceId and productId are not accepted: give amount, and priceDataList for line items." +
				" An identical call repeated within 10m returns the first call's result instead of creating another session."},
		{"tells the agent only the budgets in currencies the tool allows, per customer ones marked", eurOnly, ToolAgentPaymentSession,
			"Allowed currencies and per-session limits: EUR up to 100.00." +
				" Budgets (rolling windows): EUR 2000.00 per 7d; this tool only, per customer: EUR 50.00 per 1h." +
				" Customer email: required; any valid address." +
				" An identical call repeated within 10m returns the first call's result instead of creating another session."},
		{"tells the agent which limits are per principal", mustParse(t, perPrincipalPolicy), ToolCheckoutSession,
			"Allowed currencies and per-session limits: USD up to 500.00." +
				" Budgets (rolling windows): USD 1000.00 per 24h; per principal: USD 300.00 per 24h; per customer: USD 200.00 per 24h; this tool only, per principal: USD 100.00 per 1h." +
				" Rate limits (rolling windows, all tools together): at most 10 calls per 1m; per principal: at most 3 calls per 1m." +
				" Customer email: required unless customerId or referenceCustomerId is given; any valid address." +
				" priceId and productId are not accepted: give amount, and priceDataList for line items." +
				" An identical call repeated within 10m returns the first call's result instead of creating another session."},
		{"tells the agent any address is fine when nothing is restricted", off, ToolAgentPaymentSession,
			"Allowed currencies and per-session limits: USD up to 5.00. Customer email: required; any valid address."},
		{"tells the agent a tool is disabled", off, ToolCheckoutSession,
			"create_checkout_session is disabled by this server's policy."},
		{"tells the agent an unknown tool is refused", off, "refund_payment",
			"refund_payment is not governed by this server's policy and is refused."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Summary(tc.tool); got != tc.want {
				t.Errorf("Summary(%q):\n got %q\nwant %q", tc.tool, got, tc.want)
			}
		})
	}
	t.Run("never names an address from the lists", func(t *testing.T) {
		for _, tool := range KnownTools() {
			s := example.Summary(tool)
			for _, secret := range []string{"alice", "example.org", "example.net", "ceo"} {
				if strings.Contains(strings.ToLower(s), secret) {
					t.Errorf("Summary(%q) = %q names %q", tool, s, secret)
				}
			}
		}
	})
}

// The allowed path allocates nothing, so evaluation cost cannot grow with
// the policy or the traffic.
func TestEvaluateDoesNotAllocateWhenAllowing(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{
		Tool: ToolCheckoutSession, Amount: money(t, "120", "USD"), CustomerEmail: "bob@shop.example.net",
		LineItems: []LineItem{{UnitAmount: money(t, "50", "USD"), Quantity: 2}, {UnitAmount: money(t, "20", "EUR"), Quantity: 1}},
	}
	n := testing.AllocsPerRun(100, func() {
		if d := p.Evaluate(req); !d.Allowed {
			t.Fatal(d.Message)
		}
	})
	if n != 0 {
		t.Errorf("Evaluate allocates %v times per allowed call, want 0", n)
	}
}
