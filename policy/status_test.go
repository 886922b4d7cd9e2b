package policy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStandingLimits(t *testing.T) {
	p := mustParse(t, perPrincipalPolicy)
	want := []Limit{
		{Key: "budget|*|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 100000},
		{Key: "budget|*|USD|24h0m0s|p:bot-1", Kind: KindBudget, Window: 24 * time.Hour, Max: 30000},
		{Key: "budget|create_checkout_session|USD|1h0m0s|p:bot-1", Kind: KindBudget, Window: time.Hour, Max: 10000},
		{Key: "rate|*|1m0s|", Kind: KindRate, Window: time.Minute, Max: 10},
		{Key: "rate|*|1m0s|p:bot-1", Kind: KindRate, Window: time.Minute, Max: 3},
	}
	got := p.StandingLimits("bot-1")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StandingLimits mismatch (-want +got):\n%s", diff)
	}

	t.Run("keys them exactly as Limits does for a request by the principal", func(t *testing.T) {
		req := &Request{Tool: ToolCheckoutSession, Amount: money(t, "1", "USD"), Principal: "bot-1"}
		byKey := map[string]Limit{}
		for _, l := range p.Limits(req, []string{"k"}) {
			l.Add = 0
			byKey[l.Key] = l
		}
		for _, l := range got {
			if byKey[l.Key] != l {
				t.Errorf("standing %+v is not among Limits' %v", l, byKey)
			}
		}
	})
	t.Run("leaves out per-customer rules", func(t *testing.T) {
		for _, l := range mustParse(t, limitsPolicy).StandingLimits("bot-1") {
			if info, _ := parseKey(l.Key); info.per == perCustomer {
				t.Errorf("StandingLimits lists the per-customer %q", l.Key)
			}
		}
	})
	t.Run("lists a rule shared by every tool once, and leaves out a disabled tool's own budgets", func(t *testing.T) {
		q := mustParse(t, `version: 1
currencies: { USD: { max_amount: 100 } }
budgets: [ { currency: USD, window: 24h, max_amount: 500 } ]
tools:
  create_agent_payment_session: { budgets: [ { currency: USD, window: 1h, max_amount: 50 } ] }
  create_checkout_session: { enabled: false, budgets: [ { currency: USD, window: 1h, max_amount: 60 } ] }
`)
		want := []Limit{
			{Key: "budget|*|USD|24h0m0s|", Kind: KindBudget, Window: 24 * time.Hour, Max: 50000},
			{Key: "budget|create_agent_payment_session|USD|1h0m0s|", Kind: KindBudget, Window: time.Hour, Max: 5000},
		}
		if diff := cmp.Diff(want, q.StandingLimits("")); diff != "" {
			t.Errorf("StandingLimits mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("is empty without budgets and rate limits, or without a policy", func(t *testing.T) {
		var nilPolicy *Policy
		if got := mustParse(t, "version: 1\ncurrencies: { USD: { max_amount: 1 } }\n").StandingLimits("x"); len(got) != 0 {
			t.Errorf("StandingLimits = %v", got)
		}
		if got := nilPolicy.StandingLimits("x"); got != nil {
			t.Errorf("StandingLimits = %v", got)
		}
	})
}

func TestDescribeLimits(t *testing.T) {
	p := mustParse(t, perPrincipalPolicy)
	limits := p.Limits(&Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "USD"), Principal: "bot-1"}, []string{"3f9a", "77b0"})
	used := []int64{12345, 30000, 31000, -5, 0, 7, 3}
	want := []LimitStatus{
		{Rule: "rolling 24h USD budget", Kind: KindBudget, Currency: "USD", Window: 24 * time.Hour,
			Max: 100000, Used: 12345, Left: 87655, MaxText: "1000.00 USD", UsedText: "123.45 USD", LeftText: "876.55 USD"},
		{Rule: "rolling 24h USD budget, per principal", Kind: KindBudget, Currency: "USD", Per: "principal", Window: 24 * time.Hour,
			Max: 30000, Used: 30000, Left: 0, MaxText: "300.00 USD", UsedText: "300.00 USD", LeftText: "0.00 USD"},
		{Rule: "rolling 24h USD budget, per customer", Kind: KindBudget, Currency: "USD", Per: "customer", Window: 24 * time.Hour,
			Max: 20000, Used: 31000, Left: 0, MaxText: "200.00 USD", UsedText: "310.00 USD", LeftText: "0.00 USD"},
		{Rule: "rolling 24h USD budget, per customer", Kind: KindBudget, Currency: "USD", Per: "customer", Window: 24 * time.Hour,
			Max: 20000, Used: 0, Left: 20000, MaxText: "200.00 USD", UsedText: "0.00 USD", LeftText: "200.00 USD"},
		{Rule: "rolling 1h USD budget for create_checkout_session, per principal", Kind: KindBudget, Currency: "USD", Tool: ToolCheckoutSession, Per: "principal", Window: time.Hour,
			Max: 10000, Used: 0, Left: 10000, MaxText: "100.00 USD", UsedText: "0.00 USD", LeftText: "100.00 USD"},
		{Rule: "rolling 1m rate limit", Kind: KindRate, Window: time.Minute,
			Max: 10, Used: 7, Left: 3, MaxText: "10 calls", UsedText: "7 calls", LeftText: "3 calls"},
		{Rule: "rolling 1m rate limit, per principal", Kind: KindRate, Per: "principal", Window: time.Minute,
			Max: 3, Used: 3, Left: 0, MaxText: "3 calls", UsedText: "3 calls", LeftText: "0 calls"},
	}
	if diff := cmp.Diff(want, p.DescribeLimits(limits, used)); diff != "" {
		t.Errorf("DescribeLimits mismatch (-want +got):\n%s", diff)
	}

	t.Run("counts a missing use as none, in a currency's own minor units", func(t *testing.T) {
		q := mustParse(t, "version: 1\ncurrencies: { JPY: { max_amount: 5000 } }\nbudgets: [ { currency: JPY, window: 7d, max_amount: 20000, per: customer } ]\nrate_limits: [ { window: 1m, max_calls: 1 } ]\n")
		ls := q.Limits(&Request{Tool: ToolCheckoutSession, Amount: money(t, "10", "JPY")}, nil)
		want := []LimitStatus{
			{Rule: "rolling 7d JPY budget, per customer", Kind: KindBudget, Currency: "JPY", Per: "customer", Window: 7 * 24 * time.Hour,
				Max: 20000, Used: 1500, Left: 18500, MaxText: "20000 JPY", UsedText: "1500 JPY", LeftText: "18500 JPY"},
			{Rule: "rolling 1m rate limit", Kind: KindRate, Window: time.Minute,
				Max: 1, Used: 0, Left: 1, MaxText: "1 call", UsedText: "0 calls", LeftText: "1 call"},
		}
		if diff := cmp.Diff(want, q.DescribeLimits(ls, []int64{1500})); diff != "" {
			t.Errorf("DescribeLimits mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("describes a limit it did not build by its kind only", func(t *testing.T) {
		got := p.DescribeLimits([]Limit{
			{Key: "quota|x", Kind: KindBudget, Window: time.Hour, Max: 10},
			{Key: "budget|*|XYZ|1h0m0s|", Kind: KindBudget, Window: time.Hour, Max: 10},
			{Key: "rate|*|1m0s|", Kind: KindBudget, Window: time.Minute, Max: 10},
			{Key: "rate", Kind: KindRate, Window: time.Minute, Max: 2},
		}, []int64{4, 4, 4, 5})
		want := []LimitStatus{
			{Rule: "a budget of this server's policy", Kind: KindBudget, Window: time.Hour, Max: 10, Used: 4, Left: 6, MaxText: "10", UsedText: "4", LeftText: "6"},
			{Rule: "a budget of this server's policy", Kind: KindBudget, Window: time.Hour, Max: 10, Used: 4, Left: 6, MaxText: "10", UsedText: "4", LeftText: "6"},
			{Rule: "a budget of this server's policy", Kind: KindBudget, Window: time.Minute, Max: 10, Used: 4, Left: 6, MaxText: "10", UsedText: "4", LeftText: "6"},
			{Rule: "a rate limit of this server's policy", Kind: KindRate, Window: time.Minute, Max: 2, Used: 5, Left: 0, MaxText: "2 calls", UsedText: "5 calls", LeftText: "0 calls"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DescribeLimits mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("is empty for no limits", func(t *testing.T) {
		if got := p.DescribeLimits(nil, nil); got != nil {
			t.Errorf("DescribeLimits = %v", got)
		}
	})
}
