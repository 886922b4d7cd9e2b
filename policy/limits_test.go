package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const limitsPolicy = `version: 1
currencies:
  USD: { max_amount: 500 }
  EUR: { max_amount: 400 }
  JPY: { max_amount: 50000 }
customers: { allow_without_email: true }
budgets:
  - { currency: USD, window: 24h, max_amount: 2000 }
  - { currency: EUR, window: 24h, max_amount: 1000 }
  - { currency: USD, window: 1h, max_amount: 300, per: customer }
rate_limits:
  - { window: 1m, max_calls: 10 }
  - { window: 1h, max_calls: 20, per: customer }
tools:
  create_checkout_session:
    budgets:
      - { currency: USD, window: 24h, max_amount: 500 }
      - { currency: USD, window: 7d, max_amount: 50, per: customer }
`

func TestLimits(t *testing.T) {
	p := mustParse(t, limitsPolicy)
	line := func(amount, code string, qty int64) LineItem {
		return LineItem{UnitAmount: money(t, amount, code), Quantity: qty}
	}
	var (
		usd24    = Limit{Key: "budget|*|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 200000}
		eur24    = Limit{Key: "budget|*|EUR|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 100000}
		usd1hK1  = Limit{Key: "budget|*|USD|1h0m0s|c:k1", Kind: KindBudget, Window: time.Hour, Max: 30000}
		rate1m   = Limit{Key: "rate|*|1m0s|", Kind: KindRate, Window: time.Minute, Max: 10, Add: 1}
		rate1hK1 = Limit{Key: "rate|*|1h0m0s|c:k1", Kind: KindRate, Window: time.Hour, Max: 20, Add: 1}
	)
	add := func(l Limit, n int64) Limit { l.Add = n; return l }
	rekey := func(l Limit, key string) Limit { l.Key = key; return l }

	cases := []struct {
		name     string
		p        *Policy
		req      *Request
		customer string
		want     []Limit
	}{
		{"lists global budgets, then rate limits, for a plain amount", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "19.99", "USD"), CustomerEmail: "a@example.com"}, "k1",
			[]Limit{add(usd24, 1999), add(usd1hK1, 1999), rate1m, rate1hK1}},
		{"adds the tool's own budgets after the global ones", p,
			&Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1"}, "k1",
			[]Limit{add(usd24, 1000), add(usd1hK1, 1000),
				{Key: "budget|create_checkout_session|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 50000, Add: 1000},
				{Key: "budget|create_checkout_session|USD|168h0m0s|c:k1", Kind: KindBudget, Window: 7 * 24 * time.Hour, Max: 5000, Add: 1000},
				rate1m, rate1hK1}},
		{"counts the line items when they add up to more than the total", p,
			&Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1",
				LineItems: []LineItem{line("100", "USD", 2), line("0.50", "USD", 3)}}, "k1",
			[]Limit{add(usd24, 20150), add(usd1hK1, 20150),
				{Key: "budget|create_checkout_session|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 50000, Add: 20150},
				{Key: "budget|create_checkout_session|USD|168h0m0s|c:k1", Kind: KindBudget, Window: 7 * 24 * time.Hour, Max: 5000, Add: 20150},
				rate1m, rate1hK1}},
		{"counts the total when it is more than the line items", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "300", "USD"), LineItems: []LineItem{line("1", "USD", 1)}}, "k1",
			[]Limit{add(usd24, 30000), add(usd1hK1, 30000), rate1m, rate1hK1}},
		{"counts line items in another currency against that currency's budgets", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), LineItems: []LineItem{line("399", "EUR", 1)}}, "k1",
			[]Limit{add(usd24, 1000), add(eur24, 39900), add(usd1hK1, 1000), rate1m, rate1hK1}},
		{"counts USD line items of a EUR session against the USD budgets", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "EUR"), LineItems: []LineItem{line("250", "USD", 2)}}, "k1",
			[]Limit{add(usd24, 50000), add(eur24, 100), add(usd1hK1, 50000), rate1m, rate1hK1}},
		{"saturates line items that would overflow, so they never fit", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "10", "USD"), LineItems: []LineItem{line("10000000000000", "USD", 1<<62)}}, "k1",
			[]Limit{add(usd24, MaxMinor+1), add(usd1hK1, MaxMinor+1), rate1m, rate1hK1}},
		{"applies only the budgets in the request's currency", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "5", "EUR")}, "k1",
			[]Limit{add(eur24, 500), rate1m, rate1hK1}},
		{"applies only rate limits to a currency without budgets", p,
			&Request{Tool: ToolCheckoutSession, Amount: money(t, "5000", "JPY")}, "k1",
			[]Limit{rate1m, rate1hK1}},
		{"puts calls without a customer in one shared no-customer bucket", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}, "",
			[]Limit{add(usd24, 100), add(rekey(usd1hK1, "budget|*|USD|1h0m0s|no-customer"), 100), rate1m, rekey(rate1hK1, "rate|*|1h0m0s|no-customer")}},
		{"keeps a customer key that looks like a field apart from the other fields", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}, "x|y",
			[]Limit{add(usd24, 100), add(rekey(usd1hK1, "budget|*|USD|1h0m0s|c:x|y"), 100), rate1m, rekey(rate1hK1, "rate|*|1h0m0s|c:x|y")}},
		{"counts a request with no positive amount as more than any budget", p,
			&Request{Tool: ToolAgentPaymentSession, Amount: NewMoney(0, money(t, "1", "USD").Currency())}, "k1",
			[]Limit{add(usd24, MaxMinor+1), add(usd1hK1, MaxMinor+1), rate1m, rate1hK1}},
		{"applies the global limits to a tool the policy does not know", p,
			&Request{Tool: "refund_payment", Amount: money(t, "1", "USD")}, "k1",
			[]Limit{add(usd24, 100), add(usd1hK1, 100), rate1m, rate1hK1}},
		{"returns nothing for a policy without budgets or rate limits", mustParse(t, "version: 1\ncurrencies:\n  USD: { max_amount: 5 }\n"),
			&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}, "k1", nil},
		{"returns nothing for no request", p, nil, "k1", nil},
		{"returns nothing without a policy", nil, &Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}, "k1", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.Limits(tc.req, keys(tc.customer))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Limits mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("gives every limit of a call its own key", func(t *testing.T) {
		ls := p.Limits(&Request{Tool: ToolCheckoutSession, Amount: money(t, "1", "USD")}, []string{"k1"})
		seen := map[string]bool{}
		for _, l := range ls {
			if seen[l.Key] {
				t.Errorf("key %q twice", l.Key)
			}
			seen[l.Key] = true
		}
	})
	t.Run("gives two customers different per-customer keys and the same shared keys", func(t *testing.T) {
		req := &Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}
		a, b := p.Limits(req, []string{"a"}), p.Limits(req, []string{"b"})
		for i := range a {
			shared := !strings.Contains(a[i].Key, "|c:")
			if (a[i].Key == b[i].Key) != shared {
				t.Errorf("keys %q and %q", a[i].Key, b[i].Key)
			}
		}
	})
	t.Run("puts no raw email in any key", func(t *testing.T) {
		secret := []byte("0123456789abcdef0123456789abcdef")
		for _, email := range []string{"alice@example.com", " Alice@Example.COM "} {
			req := &Request{Tool: ToolCheckoutSession, Amount: money(t, "1", "USD"), CustomerEmail: email}
			for _, l := range p.Limits(req, CustomerKeys(secret, req)) {
				if k := strings.ToLower(l.Key); strings.Contains(k, "@") || strings.Contains(k, "alice") || strings.Contains(k, "example") {
					t.Errorf("key %q names the customer's email", l.Key)
				}
			}
		}
	})
}

// keys is a test's customer key as Limits takes it: none for "".
func keys(customer string) []string {
	if customer == "" {
		return nil
	}
	return []string{customer}
}

func TestCustomerKeys(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	key := func(r Request) string { return strings.Join(CustomerKeys(secret, &r), ",") }
	alice := key(Request{CustomerEmail: "alice@example.com"})
	if len(alice) != 32 || strings.Trim(alice, "0123456789abcdef") != "" {
		t.Fatalf("CustomerKeys = %q, want one key of 32 hex digits", alice)
	}
	cases := []struct {
		name string
		got  string
		same bool
	}{
		{"gives one key to an email however it is written", key(Request{CustomerEmail: " ALICE@Example.com"}), true},
		{"gives a sub-address its mailbox's key", key(Request{CustomerEmail: "alice+invoices@example.com"}), true},
		{"gives another email another key", key(Request{CustomerEmail: "bob@example.com"}), false},
		{"keeps a customer ID that looks like the email apart from the email", key(Request{CustomerID: "alice@example.com"}), false},
		{"gives another secret another key", strings.Join(CustomerKeys([]byte("another secret, also 32 bytes.."), &Request{CustomerEmail: "alice@example.com"}), ","), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.got == alice) != tc.same {
				t.Errorf("key %q vs alice's %q: same = %v, want %v", tc.got, alice, tc.got == alice, tc.same)
			}
		})
	}
	t.Run("keys on both the email and the customer ID when both are given", func(t *testing.T) {
		both := CustomerKeys(secret, &Request{CustomerEmail: "alice@example.com", CustomerID: "cus_1"})
		id := key(Request{CustomerID: "cus_1"})
		if len(both) != 2 || both[0] != alice || both[1] != id || id != CustomerIDKey(secret, "cus_1") {
			t.Errorf("keys %q, want alice's %q and cus_1's %q", both, alice, id)
		}
	})
	t.Run("keys on the customer ID when there is no email", func(t *testing.T) {
		a, b := key(Request{CustomerID: "cus_1"}), key(Request{CustomerID: "cus_2"})
		if a == "" || a == b {
			t.Errorf("keys %q and %q", a, b)
		}
	})
	t.Run("keys a reference customer ID apart from a customer ID", func(t *testing.T) {
		if r, c := ReferenceKey(secret, "x"), CustomerIDKey(secret, "x"); r == "" || r == c || ReferenceKey(secret, "") != "" {
			t.Errorf("ReferenceKey %q, CustomerIDKey %q", r, c)
		}
	})
	for name, r := range map[string]Request{
		"gives no key without an email or a customer ID":    {},
		"gives no key for a reference customer ID alone":    {ReferenceCustomerID: "ref-1"},
		"gives no key for an email that does not normalise": {CustomerEmail: "Alice <alice@example.com>"},
		"gives no key for an email of spaces":               {CustomerEmail: "  "},
	} {
		t.Run(name, func(t *testing.T) {
			if got := key(r); got != "" {
				t.Errorf("CustomerKeys = %q, want none", got)
			}
		})
	}
	if CustomerKeys(secret, nil) != nil {
		t.Error("CustomerKeys(nil request) is not empty")
	}
}

// TestPerCustomerLimitsCountEveryIdentifier: a call naming an email and a
// customer ID counts against both customers' allowances, so changing one
// identifier never buys a fresh allowance.
func TestPerCustomerLimitsCountEveryIdentifier(t *testing.T) {
	p := mustParse(t, limitsPolicy)
	req := &Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD")}
	ls := p.Limits(req, []string{"email-key", "id-key", "email-key"})
	var perCustomer []string
	for _, l := range ls {
		if strings.Contains(l.Key, "|c:") {
			perCustomer = append(perCustomer, l.Key)
		}
	}
	want := []string{"budget|*|USD|1h0m0s|c:email-key", "budget|*|USD|1h0m0s|c:id-key", "rate|*|1h0m0s|c:email-key", "rate|*|1h0m0s|c:id-key"}
	if diff := cmp.Diff(want, perCustomer); diff != "" {
		t.Errorf("per-customer keys (-want +got):\n%s", diff)
	}
}

func TestLimitDecision(t *testing.T) {
	p := mustParse(t, limitsPolicy)
	now := time.Date(2026, 11, 21, 10, 50, 55, 0, time.UTC)
	usd := func(s string) Money { return money(t, s, "USD") }
	agent := p.Limits(&Request{Tool: ToolAgentPaymentSession, Amount: usd("300")}, []string{"k1"})
	checkout := p.Limits(&Request{Tool: ToolCheckoutSession, Amount: usd("60")}, []string{"k1"})
	huge := p.Limits(&Request{Tool: ToolAgentPaymentSession, Amount: usd("2500")}, []string{"k1"})
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	cases := []struct {
		name   string
		limits []Limit
		d      *Denied
		want   Decision
	}{
		{"says how much of a budget is left and when enough frees up", agent,
			&Denied{Limit: 0, Used: 185000, RetryAt: at("2026-11-21T14:03:00Z")},
			Decision{Code: CodeBudgetExceeded, Limit: usd("2000"), Remaining: usd("150"), RetryAt: at("2026-11-21T14:03:00Z"),
				Message: "amount 300.00 USD exceeds what is left of the rolling 24h USD budget (2000.00 USD, 150.00 USD left); enough frees up at 2026-11-21T14:03:00Z (in 3h12m5s)"}},
		{"names a per-customer budget", agent,
			&Denied{Limit: 1, Used: 29900, RetryAt: at("2026-11-21T11:20:00Z")},
			Decision{Code: CodeBudgetExceeded, Limit: usd("300"), Remaining: usd("1"), RetryAt: at("2026-11-21T11:20:00Z"),
				Message: "amount 300.00 USD exceeds what is left of the rolling 1h USD budget per customer (300.00 USD, 1.00 USD left); enough frees up at 2026-11-21T11:20:00Z (in 29m5s)"}},
		{"names the tool a tool budget belongs to", checkout,
			&Denied{Limit: 3, Used: 4000, RetryAt: at("2026-11-25T09:00:00Z")},
			Decision{Code: CodeBudgetExceeded, Limit: usd("50"), Remaining: usd("10"), RetryAt: at("2026-11-25T09:00:00Z"),
				Message: "amount 60.00 USD exceeds what is left of the rolling 7d USD budget for create_checkout_session per customer (50.00 USD, 10.00 USD left); enough frees up at 2026-11-25T09:00:00Z (in 94h9m5s)"}},
		{"says an amount larger than the whole budget can never fit", huge,
			&Denied{Limit: 0, Used: 0},
			Decision{Code: CodeBudgetExceeded, Limit: usd("2000"), Remaining: usd("2000"),
				Message: "amount 2500.00 USD is more than the rolling 24h USD budget allows in all (2000.00 USD), so it can never fit this budget"}},
		{"says nothing is left of an overspent budget", agent,
			&Denied{Limit: 0, Used: 250000, RetryAt: at("2026-11-21T11:00:00Z")},
			Decision{Code: CodeBudgetExceeded, Limit: usd("2000"), Remaining: NewMoney(0, usd("1").Currency()), RetryAt: at("2026-11-21T11:00:00Z"),
				Message: "amount 300.00 USD exceeds what is left of the rolling 24h USD budget (2000.00 USD, 0.00 USD left); enough frees up at 2026-11-21T11:00:00Z (in 9m5s)"}},
		{"says when to retry after a rate limit", agent,
			&Denied{Limit: 2, Used: 10, RetryAt: at("2026-11-21T10:51:37Z")},
			Decision{Code: CodeRateLimited, RetryAt: at("2026-11-21T10:51:37Z"),
				Message: "rate limit of 10 calls per 1m reached; retry after 2026-11-21T10:51:37Z (in 42s)"}},
		{"names a per-customer rate limit", agent,
			&Denied{Limit: 3, Used: 20, RetryAt: at("2026-11-21T11:30:00Z")},
			Decision{Code: CodeRateLimited, RetryAt: at("2026-11-21T11:30:00Z"),
				Message: "rate limit of 20 calls per 1h per customer reached; retry after 2026-11-21T11:30:00Z (in 39m5s)"}},
		{"rounds a retry time up to the second, so retrying then works", agent,
			&Denied{Limit: 2, Used: 10, RetryAt: at("2026-11-21T10:51:36.2Z")},
			Decision{Code: CodeRateLimited, RetryAt: at("2026-11-21T10:51:37Z"),
				Message: "rate limit of 10 calls per 1m reached; retry after 2026-11-21T10:51:37Z (in 42s)"}},
		{"gives retry times in UTC whatever the store's zone", agent,
			&Denied{Limit: 2, Used: 10, RetryAt: at("2026-11-21T10:51:37Z").In(time.FixedZone("CET", 3600))},
			Decision{Code: CodeRateLimited, RetryAt: at("2026-11-21T10:51:37Z"),
				Message: "rate limit of 10 calls per 1m reached; retry after 2026-11-21T10:51:37Z (in 42s)"}},
		{"never tells the model to wait a negative time", agent,
			&Denied{Limit: 2, Used: 10, RetryAt: at("2026-11-21T10:50:00Z")},
			Decision{Code: CodeRateLimited, RetryAt: at("2026-11-21T10:50:00Z"),
				Message: "rate limit of 10 calls per 1m reached; retry after 2026-11-21T10:50:00Z (in 0s)"}},
		{"still denies a denial without a limit index", agent, nil,
			Decision{Code: CodeBudgetExceeded, Message: "a budget or rate limit of this server's policy refuses the call"}},
		{"still denies a denial whose index is out of range", agent, &Denied{Limit: 9},
			Decision{Code: CodeBudgetExceeded, Message: "a budget or rate limit of this server's policy refuses the call"}},
		{"still denies a budget whose key it cannot read", []Limit{{Key: "mine", Kind: KindBudget, Window: time.Hour, Max: 5, Add: 6}},
			&Denied{Limit: 0},
			Decision{Code: CodeBudgetExceeded, Message: "the amount exceeds what is left of a budget of this server's policy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.LimitDecision(tc.limits, tc.d, now)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(Money{}, Currency{})); diff != "" {
				t.Errorf("LimitDecision mismatch (-want +got):\n%s", diff)
			}
			if got.Allowed {
				t.Error("LimitDecision allowed the call")
			}
			if !got.RetryAt.IsZero() && got.RetryAt.Location() != time.UTC {
				t.Errorf("RetryAt %v is not in UTC", got.RetryAt)
			}
		})
	}
}

// The policy is immutable: Limits and LimitDecision from many goroutines
// under -race agree with a single caller.
func TestLimitsIsSafeForConcurrentUse(t *testing.T) {
	p := mustParse(t, limitsPolicy)
	req := &Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1"}
	want := p.Limits(req, []string{"k1"})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	wantD := p.LimitDecision(want, &Denied{Limit: 1, Used: 29900, RetryAt: now.Add(time.Minute)}, now)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 200; n++ {
				got := p.Limits(req, []string{"k1"})
				if !cmp.Equal(want, got) {
					errs <- fmt.Sprintf("Limits = %v, want %v", got, want)
					return
				}
				if d := p.LimitDecision(got, &Denied{Limit: 1, Used: 29900, RetryAt: now.Add(time.Minute)}, now); d != wantD {
					errs <- fmt.Sprintf("LimitDecision = %+v, want %+v", d, wantD)
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

func TestRenderShowsLimits(t *testing.T) {
	p := mustParse(t, limitsPolicy)
	want := `Budgets (rolling windows, all tools together):
  USD 2000.00 per 24h
  EUR 1000.00 per 24h
  per customer: USD 300.00 per 1h
Rate limits (rolling windows, all tools together):
  at most 10 calls per 1m
  per customer: at most 20 calls per 1h
Duplicate calls: an identical call within 10m returns the first call's result instead of creating another session
Tools:
  create_agent_payment_session: EUR up to 400.00, JPY up to 50000, USD up to 500.00 (the global limits)
  create_checkout_session: EUR up to 400.00, JPY up to 50000, USD up to 500.00 (the global limits)
    own budget: USD 500.00 per 24h
    own budget: per customer: USD 50.00 per 7d
Store: the default ($XDG_STATE_HOME/clink-mcp/state.db, else ~/.local/state/clink-mcp/state.db)
`
	r := p.Render()
	if i := strings.Index(r, "Budgets"); i < 0 || r[i:] != want {
		t.Errorf("Render() =\n%s\nwant it to end with\n%s", r, want)
	}
	t.Run("leaves a disabled tool's own budgets out", func(t *testing.T) {
		off := mustParse(t, strings.Replace(limitsPolicy, "  create_checkout_session:\n", "  create_checkout_session:\n    enabled: false\n", 1))
		if r := off.Render(); !strings.Contains(r, "  create_checkout_session: disabled\nStore:") {
			t.Errorf("Render() =\n%s", r)
		}
	})
}

const perPrincipalPolicy = `version: 1
currencies:
  USD: { max_amount: 500 }
customers: { allow_without_email: true }
budgets:
  - { currency: USD, window: 24h, max_amount: 1000 }
  - { currency: USD, window: 24h, max_amount: 300, per: principal }
  - { currency: USD, window: 24h, max_amount: 200, per: customer }
rate_limits:
  - { window: 1m, max_calls: 10 }
  - { window: 1m, max_calls: 3, per: principal }
tools:
  create_checkout_session:
    budgets:
      - { currency: USD, window: 1h, max_amount: 100, per: principal }
`

func TestLimitsPerPrincipal(t *testing.T) {
	p := mustParse(t, perPrincipalPolicy)
	req := func(principal string) *Request {
		return &Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), CustomerID: "cus_1", Principal: principal}
	}
	t.Run("gives each principal its own counter under per: principal and one shared counter without per", func(t *testing.T) {
		want := []Limit{
			{Key: "budget|*|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 100000, Add: 1000},
			{Key: "budget|*|USD|24h0m0s|p:agent-a", Kind: KindBudget, Window: 24 * time.Hour, Max: 30000, Add: 1000},
			{Key: "budget|*|USD|24h0m0s|c:k1", Kind: KindBudget, Window: 24 * time.Hour, Max: 20000, Add: 1000},
			{Key: "budget|create_checkout_session|USD|1h0m0s|p:agent-a", Kind: KindBudget, Window: time.Hour, Max: 10000, Add: 1000},
			{Key: "rate|*|1m0s|", Kind: KindRate, Window: time.Minute, Max: 10, Add: 1},
			{Key: "rate|*|1m0s|p:agent-a", Kind: KindRate, Window: time.Minute, Max: 3, Add: 1},
		}
		if diff := cmp.Diff(want, p.Limits(req("agent-a"), []string{"k1"})); diff != "" {
			t.Errorf("Limits mismatch (-want +got):\n%s", diff)
		}
		a, b := p.Limits(req("agent-a"), []string{"k1"}), p.Limits(req("agent-b"), []string{"k1"})
		if len(a) != len(b) {
			t.Fatalf("%d limits for one principal, %d for the other", len(a), len(b))
		}
		for i := range a {
			perPrincipal := strings.Contains(a[i].Key, "|p:")
			if (a[i].Key != b[i].Key) != perPrincipal {
				t.Errorf("agent-a's key %q, agent-b's %q: per principal %v", a[i].Key, b[i].Key, perPrincipal)
			}
		}
	})
	t.Run("never gives a per-principal counter the key of a per-customer or shared one", func(t *testing.T) {
		// Principals named like a customer part, like the no-customer
		// bucket, like nothing, or like more fields; customers alike.
		whose := []string{"shared", "principal", "customer", "principal", "shared", "principal"} // Limits' order
		seen := map[string]string{}
		for _, principal := range []string{"k1", "c:k1", noCustomerPart, "", "x|y", "p:k1"} {
			for _, customers := range [][]string{{"k1"}, {"c:k1"}, nil, {"x|y"}, {"p:k1"}, {"p:"}} {
				ls := p.Limits(req(principal), customers)
				if len(ls) != len(whose) {
					t.Fatalf("%d limits, want %d", len(ls), len(whose))
				}
				for i, l := range ls {
					owner := whose[i]
					switch owner {
					case "principal":
						owner += " " + principal
					case "customer":
						owner += " " + strings.Join(customers, ",")
					}
					if o, ok := seen[l.Key]; ok && o != owner {
						t.Errorf("key %q is both %s's and %s's", l.Key, o, owner)
					}
					seen[l.Key] = owner
				}
			}
		}
	})
	t.Run("keeps a principal name that looks like a field in the last field", func(t *testing.T) {
		ls := p.Limits(&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD"), Principal: "x|c:y"}, nil)
		if got := ls[1].Key; got != "budget|*|USD|24h0m0s|p:x|c:y" {
			t.Errorf("key %q", got)
		}
		now := time.Now()
		d := p.LimitDecision(ls, &Denied{Limit: 1, Used: 30000, RetryAt: now.Add(time.Hour)}, now)
		if want := "amount 1.00 USD exceeds what is left of the rolling 24h USD budget per principal (300.00 USD, 0.00 USD left)"; !strings.HasPrefix(d.Message, want) {
			t.Errorf("LimitDecision = %q, want it to start %q", d.Message, want)
		}
	})
	t.Run("counts requests without a principal against one shared allowance", func(t *testing.T) {
		a, b := p.Limits(req(""), nil), p.Limits(req(""), nil)
		if a[1].Key != "budget|*|USD|24h0m0s|p:" || !cmp.Equal(a, b) {
			t.Errorf("keys %v and %v", a, b)
		}
	})
}

func TestLimitDecisionPerPrincipal(t *testing.T) {
	p := mustParse(t, perPrincipalPolicy)
	now := time.Date(2026, 11, 21, 10, 50, 55, 0, time.UTC)
	retry := time.Date(2026, 11, 21, 10, 51, 37, 0, time.UTC)
	ls := p.Limits(&Request{Tool: ToolCheckoutSession, Amount: money(t, "80", "USD"), Principal: "agent-a"}, []string{"k1"})
	cases := []struct {
		name  string
		limit int
		used  int64
		want  string
	}{
		{"names a per-principal budget", 1, 25000,
			"amount 80.00 USD exceeds what is left of the rolling 24h USD budget per principal (300.00 USD, 50.00 USD left); enough frees up at 2026-11-21T10:51:37Z (in 42s)"},
		{"names a tool's per-principal budget", 3, 5000,
			"amount 80.00 USD exceeds what is left of the rolling 1h USD budget for create_checkout_session per principal (100.00 USD, 50.00 USD left); enough frees up at 2026-11-21T10:51:37Z (in 42s)"},
		{"still names a per-customer budget per customer", 2, 15000,
			"amount 80.00 USD exceeds what is left of the rolling 24h USD budget per customer (200.00 USD, 50.00 USD left); enough frees up at 2026-11-21T10:51:37Z (in 42s)"},
		{"names a per-principal rate limit", 5, 3,
			"rate limit of 3 calls per 1m per principal reached; retry after 2026-11-21T10:51:37Z (in 42s)"},
		{"leaves a shared rate limit unqualified", 4, 10,
			"rate limit of 10 calls per 1m reached; retry after 2026-11-21T10:51:37Z (in 42s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.LimitDecision(ls, &Denied{Limit: tc.limit, Used: tc.used, RetryAt: retry}, now)
			if d.Allowed || d.Message != tc.want {
				t.Errorf("LimitDecision = %+v\nwant message %q", d, tc.want)
			}
		})
	}
}

func TestRenderShowsPerPrincipalLimits(t *testing.T) {
	want := `Budgets (rolling windows, all tools together):
  USD 1000.00 per 24h
  per principal: USD 300.00 per 24h
  per customer: USD 200.00 per 24h
Rate limits (rolling windows, all tools together):
  at most 10 calls per 1m
  per principal: at most 3 calls per 1m
`
	r := mustParse(t, perPrincipalPolicy).Render()
	if !strings.Contains(r, want) || !strings.Contains(r, "    own budget: per principal: USD 100.00 per 1h\n") {
		t.Errorf("Render() =\n%s\nwant it to contain\n%s", r, want)
	}
}
