package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// FuzzParseMoney: the parser never panics; whatever it accepts is within
// bounds, equals the text's exact value, and formats back to itself.
func FuzzParseMoney(f *testing.F) {
	for _, s := range []struct{ amount, code string }{
		{"19.99", "USD"}, {"10.500", "USD"}, {"1.5e1", "JPY"}, {"1e-3", "USD"}, {"1.2345", "KWD"},
		{"NaN", "USD"}, {"-Infinity", "EUR"}, {"0", "USD"}, {"-5", "USD"}, {"1e999999999", "USD"},
		{"10000000000000.00", "USD"}, {"0500", "JPY"}, {"10", "usd"}, {"10", "XAU"},
	} {
		f.Add(s.amount, s.code)
	}
	f.Fuzz(func(t *testing.T, amount, code string) {
		m, err := ParseMoney(amount, code)
		if err != nil {
			for _, kind := range []error{ErrInvalidAmount, ErrTooPrecise, ErrAmountTooLarge, ErrUnknownCurrency, ErrNotTender} {
				if errors.Is(err, kind) {
					return
				}
			}
			t.Fatalf("ParseMoney(%q, %q) = %v, which matches no sentinel", amount, code, err)
		}
		if m.Minor() <= 0 || m.Minor() > MaxMinor {
			t.Fatalf("ParseMoney(%q, %q) = %d minor units, out of bounds", amount, code, m.Minor())
		}
		if m.Currency().Code() != code {
			t.Fatalf("ParseMoney(%q, %q) has currency %q", amount, code, m.Currency().Code())
		}
		// The text's exact value is the parsed value.
		want, _, err := apd.NewFromString(amount)
		if err != nil {
			t.Fatalf("accepted %q, which apd cannot read: %v", amount, err)
		}
		got := apd.New(m.Minor(), -int32(m.Currency().Digits()))
		if got.Cmp(want) != 0 {
			t.Fatalf("ParseMoney(%q, %q) = %s, not the same value", amount, code, m)
		}
		again, err := ParseMoney(m.Amount(), code)
		if err != nil || again != m {
			t.Fatalf("ParseMoney(%q) = %v, %v; want %v", m.Amount(), again, err, m)
		}
	})
}

// FuzzParseMoneyMatchesReference: the hand-written amount parser agrees
// with the apd-based one it replaced (referenceParseMinor) on every input,
// in every tender currency: the same minor units, or an error of the same
// kind with the same message.
func FuzzParseMoneyMatchesReference(f *testing.F) {
	for _, s := range []string{
		"", "0", "-0", "1", "-1", "19.99", "10.500", "0.01", "0.001", "1e2", "1E2", "1e+2", "1E-2",
		"1.50E+1", "0.5e-0", "0.5e1", "5e-1", "0e0", "0.0", "-0.0e5", "00", "01", "0500", "+5", ".5",
		"5.", "-.5", "+0", "+.0", "-05", "1.", "1.e2", "1e", "1e+", "e5", ".", "-", "+", "--1",
		"-+1", "+-1", "1e400", "1e-400", "1e99999", "1e100000", "1e100001", "1e-100000",
		"1e-100001", "12e99999", "12e100000", "-12e100000", "-12e99999", "0e100001", "+0e100001",
		"+0e100000", "-0.5e-100000", "-5e-100000", "-1e-100001", "1e2147483647", "1e2147483648",
		"1e-2147483648", "1e-2147483649", "1e9223372036854775808", "1e-000000000000000000000005",
		"1000000000000000", "10000000000000", "10000000000000.00", "10000000000000.01",
		"9999999999999999", "10000000000000000", "1000000000000000e0", "0.000000000000001e30",
		"9223372036854775807", "9223372036854775808", "18446744073709551616",
		"100000000000000000000000000000000000000000000000000000000000000",
		"0.0000000000000000000000000000000000000000000000000000000000001",
		"NaN", "nan", "-NaN", "+nan", "sNaN", "NaN123", "nan-1", "nansnan", "snansnan", "nannan",
		"NaN18446744073709551615", "NaN18446744073709551616", "Inf", "-Infinity", "+inf",
		"infinity1", "İnf", "İnfİnİty", "1 ", " 1", "\t1", "1\n", "1_000", "0x10", "1,5",
		"١", "１", "1e1.5", "1.2.3", "\xff", "-\xff",
	} {
		f.Add(s)
	}
	for _, s := range []string{
		strings.Repeat("9", maxAmountText), strings.Repeat("9", maxAmountText+1),
		"0." + strings.Repeat("0", maxAmountText-2), "1" + strings.Repeat("0", maxAmountText-1),
		"-0." + strings.Repeat("0", maxAmountText-11) + "1e-99999", "1e-" + strings.Repeat("0", maxAmountText-4) + "1",
		"nan" + strings.Repeat("0", maxAmountText-3), "+0e" + strings.Repeat("9", maxAmountText-3),
	} {
		f.Add(s)
	}
	codes := TenderCodes()
	f.Fuzz(func(t *testing.T, amount string) {
		for _, code := range codes {
			c, err := ParseCurrency(code)
			if err != nil {
				t.Fatal(err)
			}
			got, gotErr := parseMinor(amount, c)
			want, wantErr := referenceParseMinor(amount, c)
			if got != want || (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("parseMinor(%q, %s) = %d, %v; the reference gives %d, %v", amount, code, got, gotErr, want, wantErr)
			}
			if gotErr == nil {
				continue
			}
			var g, w *codedError
			if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) || g.kind != w.kind || g.msg != w.msg {
				t.Fatalf("parseMinor(%q, %s) fails with %v; the reference with %v", amount, code, gotErr, wantErr)
			}
		}
	})
}

// FuzzMoneyRoundTrip: parse(format(x)) == x for every valid amount in every
// tender currency.
func FuzzMoneyRoundTrip(f *testing.F) {
	codes := TenderCodes()
	for _, s := range []struct {
		minor int64
		code  uint8
	}{{1, 0}, {1999, 10}, {MaxMinor, 20}, {100, 200}, {-5, 3}, {0, 0}} {
		f.Add(s.minor, s.code)
	}
	f.Fuzz(func(t *testing.T, minor int64, code uint8) {
		c, err := ParseCurrency(codes[int(code)%len(codes)])
		if err != nil {
			t.Fatal(err)
		}
		m := NewMoney(minor, c)
		got, err := ParseMoney(m.Amount(), c.Code())
		if minor <= 0 || minor > MaxMinor {
			if err == nil {
				t.Fatalf("ParseMoney(%q, %s) accepted an amount out of bounds", m.Amount(), c)
			}
			return
		}
		if err != nil || got != m {
			t.Fatalf("ParseMoney(%q, %s) = %v, %v; want %v", m.Amount(), c, got, err, m)
		}
	})
}

// FuzzMatchEmail: normalising and matching never panic; normalisation is
// idempotent and its fast path agrees with IDNA; and a match means what the
// pattern says, whatever the input.
func FuzzMatchEmail(f *testing.F) {
	for _, s := range []struct{ email, pattern string }{
		{"alice@example.com", "alice@example.com"},
		{"Alice@Example.COM", "*@example.com"},
		{"alice@example.com.evil.com", "*@example.com"},
		{"bob@mail.example.net", "*@*.example.net"},
		{"bob@example.net", "*@*.example.net"},
		{"hans@bücher.example", "*@xn--bcher-kva.example"},
		{"x@evil.com@example.org", "*@example.org"},
		{"Alice <alice@example.com>", "alice@example.com"},
		{"a@ｅｘａｍｐｌｅ.com", "*@example.com"},
		{"a@xn--a.example", "*@*"},
	} {
		f.Add(s.email, s.pattern)
	}
	f.Fuzz(func(t *testing.T, email, pattern string) {
		addr, err := NormalizeEmail(email)
		if err == nil {
			again, err := NormalizeEmail(addr)
			if err != nil || again != addr {
				t.Fatalf("NormalizeEmail(%q) = %q, but normalising that gives %q, %v", email, addr, again, err)
			}
			domain := addr[strings.LastIndexByte(addr, '@')+1:]
			if isNormalASCIIDomain(domain) {
				if a, err := domainProfile.ToASCII(domain); err != nil || a != domain {
					t.Fatalf("fast path accepts %q, IDNA gives %q, %v", domain, a, err)
				}
			}
			if MaskEmail(addr) == addr {
				t.Fatalf("MaskEmail(%q) masks nothing", addr)
			}
		}
		pat, perr := parseEmailPattern(pattern)
		if err != nil || perr != nil {
			return
		}
		var s emailSet
		s.add(pat)
		if !s.match(addr) {
			return
		}
		domain := addr[strings.LastIndexByte(addr, '@')+1:]
		switch pat.kind {
		case patternExact:
			if addr != pat.value {
				t.Fatalf("%q matched exact pattern %q", addr, pat.value)
			}
		case patternDomain:
			if domain != pat.value {
				t.Fatalf("%q matched *@%s", addr, pat.value)
			}
		case patternSubdomain:
			if !strings.HasSuffix(domain, "."+pat.value) {
				t.Fatalf("%q matched *@*.%s", addr, pat.value)
			}
		}
	})
}

// FuzzParse: the policy file parser never panics, and a policy it accepts
// renders, evaluates, and gives each call limits with distinct keys and
// positive windows, every one of whose denials it can explain.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"version: 1\ncurrencies:\n  USD: { max_amount: 500.00, min_amount: 1 }\n",
		string(demoYAML),
		"version: 1\ncurrencies:\n  USD: &a { max_amount: 1 }\n  EUR: *a\n",
		"version: 1\ncurrencies: {USD: {max_amount: 1}}\ncustomers: {allow_emails: ['*@*.example.net']}\ntools: {create_checkout_session: {currencies: {USD: {}}}}\n",
		limitsPolicy,
		"version: 1\ncurrencies: {USD: {max_amount: 1}}\nbudgets: [{currency: USD, window: 7d, max_amount: 5, per: customer}]\nrate_limits: [{window: 90s, max_calls: 3}]\nduplicates: {window: 0}\nstore: {path: ../s.db}\n",
		"version: 1\ncurrencies: {USD: {max_amount: 1}}\nbudgets: [{currency: USD, window: 99999999999d, max_amount: 5}]\nrate_limits: [{window: 1m, max_calls: 99999999999999999999}]\n",
		"version: 1\ncurrencies: {USD: {max_amount: 9, approve_above: 5}}\napprovals: {timeout: 1h, by: operator}\ntools: {create_checkout_session: {currencies: {USD: {max_amount: 5}}}}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		p, err := Parse("fuzz.yaml", []byte(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error %v is not an ErrInvalidPolicy", err)
			}
			return
		}
		_ = p.Render()
		standing := p.StandingLimits("p")
		if md := p.AgentMarkdown("p", p.DescribeLimits(standing, nil)); strings.Contains(md, "@") {
			t.Fatalf("AgentMarkdown names an email:\n%s", md)
		}
		if d := p.ApprovalTimeout(); d < time.Minute || d > 24*time.Hour {
			t.Fatalf("ApprovalTimeout() = %v", d)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, tool := range KnownTools() {
			_ = p.Summary(tool)
			_ = p.Evaluate(&Request{Tool: tool, CustomerEmail: "alice@example.com"})
			for _, code := range p.currencies.codes {
				c, _ := ParseCurrency(code)
				if th, ok := p.ApprovalThreshold(tool, code); ok {
					lim := p.tools[tool].currencies.byCode[code]
					if th.minor <= 0 || th.minor >= lim.max.minor || !p.NeedsApproval(&Request{Tool: tool, Amount: NewMoney(th.minor+1, c)}) {
						t.Fatalf("threshold %v of %s is not below the cap %v, or not applied", th, tool, lim.max)
					}
				}
				ls := p.Limits(&Request{Tool: tool, Amount: NewMoney(1, c)}, []string{"k"})
				seen := map[string]bool{}
				for i, l := range ls {
					if seen[l.Key] || l.Window <= 0 || l.Max <= 0 || l.Add <= 0 {
						t.Fatalf("limit %d of %v is bad", i, ls)
					}
					seen[l.Key] = true
					d := p.LimitDecision(ls, &Denied{Limit: i, RetryAt: now.Add(l.Window)}, now)
					if d.Allowed || d.Message == "" {
						t.Fatalf("LimitDecision(%v) = %+v", l, d)
					}
				}
			}
		}
	})
}
