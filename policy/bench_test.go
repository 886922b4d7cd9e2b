package policy

import (
	"fmt"
	"strings"
	"testing"
)

func benchRequest(b *testing.B) *Request {
	return &Request{
		Tool:          ToolCheckoutSession,
		Amount:        money(b, "120.00", "USD"),
		CustomerEmail: "bob@shop.example.net",
		LineItems: []LineItem{
			{UnitAmount: money(b, "50.00", "USD"), Quantity: 2},
			{UnitAmount: money(b, "20.00", "USD"), Quantity: 1},
		},
	}
}

// BenchmarkEvaluate measures one allowed checkout evaluation (two line
// items, an email matched by a subdomain pattern) against the example
// policy.
func BenchmarkEvaluate(b *testing.B) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(req); !d.Allowed {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkEvaluateLargePolicy is the same evaluation against a policy
// with 10,000 exact addresses and 1,000 domains: the cost must not grow
// with the lists.
func BenchmarkEvaluateLargePolicy(b *testing.B) {
	var y strings.Builder
	y.WriteString("version: 1\ncurrencies:\n  USD: { max_amount: 500 }\ncustomers:\n  allow_emails:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&y, "    - user%d@example.com\n", i)
	}
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&y, "    - \"*@*.d%d.example\"\n", i)
	}
	y.WriteString("    - \"*@*.example.net\"\n")
	p := mustParse(b, y.String())
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(req); !d.Allowed {
			b.Fatal(d.Message)
		}
	}
}

// BenchmarkEvaluateDenied measures a denial, which formats a message.
func BenchmarkEvaluateDenied(b *testing.B) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest(b)
	req.Amount = money(b, "900", "USD")
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(req); d.Allowed {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkParseMoney(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMoney("19.99", "USD"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLimits measures building the counters of one checkout call
// against the example policy: two global budgets (one per customer), the
// tool's own budget, two rate limits (one per customer).
func BenchmarkLimits(b *testing.B) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest(b)
	customer := CustomerKeys([]byte("0123456789abcdef0123456789abcdef"), req)
	b.ReportAllocs()
	for b.Loop() {
		if ls := p.Limits(req, customer); len(ls) != 5 {
			b.Fatalf("%d limits", len(ls))
		}
	}
}
