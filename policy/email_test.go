package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	ok := []struct{ name, in, want string }{
		{"keeps a normal address as it is", "alice@example.com", "alice@example.com"},
		{"trims surrounding spaces", "  alice@example.com\t", "alice@example.com"},
		{"lower-cases the domain", "alice@Example.COM", "alice@example.com"},
		{"lower-cases the local part", "Alice@example.com", "alice@example.com"},
		{"keeps plus addressing and other atext", "a.b+tag!#$%&'*/=?^_`{|}~-@example.com", "a.b+tag!#$%&'*/=?^_`{|}~-@example.com"},
		{"converts a Unicode domain to Punycode", "hans@bücher.example", "hans@xn--bcher-kva.example"},
		{"accepts a domain already in Punycode", "hans@xn--bcher-kva.example", "hans@xn--bcher-kva.example"},
		{"maps full-width letters in the domain", "alice@ｅｘａｍｐｌｅ.com", "alice@example.com"},
		{"maps an ideographic full stop to a dot", "alice@example。com", "alice@example.com"},
		{"accepts subdomains", "bob@mail.eu.example.net", "bob@mail.eu.example.net"},
		{"accepts hyphens and digits in labels", "bob@my-shop2.example", "bob@my-shop2.example"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeEmail(tc.in)
			if err != nil {
				t.Fatalf("NormalizeEmail(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("NormalizeEmail(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}

	bad := []struct{ name, in, msg string }{
		{"refuses an empty address", "", "the email address is empty"},
		{"refuses an address of spaces", "   ", "the email address is empty"},
		{"refuses a display name", "Alice <alice@example.com>", "give the bare address (like alice@example.com), without a display name or angle brackets"},
		{"refuses angle brackets alone", "<alice@example.com>", "give the bare address (like alice@example.com), without a display name or angle brackets"},
		{"refuses a comment", "alice(work)@example.com", "email addresses with comments in parentheses are not accepted"},
		{"refuses a quoted local part", `"alice smith"@example.com`, "email addresses with a quoted local part are not accepted"},
		{"refuses a list of addresses", "alice@example.com, bob@example.com", "give exactly one email address"},
		{"refuses a semicolon list", "alice@example.com;bob@example.com", "give exactly one email address"},
		{"refuses several @", "alice@evil.com@example.com", "the email address has more than one @"},
		{"refuses no @", "alice.example.com", "the email address has no @"},
		{"refuses an empty local part", "@example.com", "the email address has nothing before the @"},
		{"refuses an empty domain", "alice@", "the email address has no domain after the @"},
		{"refuses a leading dot in the local part", ".alice@example.com", "the part before the @ has a leading, trailing or doubled dot"},
		{"refuses a doubled dot in the local part", "al..ice@example.com", "the part before the @ has a leading, trailing or doubled dot"},
		{"refuses a space in the local part", "al ice@example.com", "the email address contains spaces"},
		{"refuses a backslash in the local part", `al\ice@example.com`, `the part before the @ contains '\\', which is not accepted`},
		{"refuses a non-ASCII local part", "jörg@example.com", "the part before the @ has non-ASCII characters, which are not accepted"},
		{"refuses a control character", "alice\x00@example.com", `the part before the @ contains '\x00', which is not accepted`},
		{"refuses a local part over 64 characters", strings.Repeat("a", 65) + "@example.com", "the part before the @ is longer than 64 characters"},
		{"refuses a domain literal", "alice@[192.0.2.1]", "email addresses with a literal IP address as domain are not accepted"},
		{"refuses an IP address as domain", "alice@192.0.2.1", "the domain ends in a number; IP addresses are not accepted"},
		{"refuses a single-label domain", "alice@localhost", "the domain has no dot; give a full domain like example.com"},
		{"refuses a trailing dot in the domain", "alice@example.com.", "the domain has an empty label (a leading, trailing or doubled dot)"},
		{"refuses a doubled dot in the domain", "alice@example..com", "the domain has an empty label (a leading, trailing or doubled dot)"},
		{"refuses a label starting with a hyphen", "alice@-example.com", "a label of the domain starts or ends with a hyphen"},
		{"refuses an underscore in the domain", "alice@ex_ample.com", `the domain contains '_', which is not accepted`},
		{"refuses a bogus Punycode label", "alice@xn--zz.example", `the domain "xn--zz.example" is not a valid domain name`},
		{"refuses a Punycode label that decodes to a disallowed character", "alice@xn--a.example", `the domain "xn--a.example" is not a valid domain name`},
		{"refuses a domain label over 63 characters", "a@" + strings.Repeat("b", 64) + ".com", "a label of the domain is longer than 63 characters"},
		{"refuses an address over 254 characters", "a@" + strings.Repeat(strings.Repeat("b", 60)+".", 5) + "com", "the email address is longer than 254 characters"},
		{"refuses a full-width at sign", "alice＠example.com", "the email address has no @"},
		{"refuses invalid UTF-8", "0@\xc4.example", "the email address is not valid UTF-8"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeEmail(tc.in)
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("NormalizeEmail(%q) = %q, %v; want an error matching ErrInvalidEmail", tc.in, got, err)
			}
			if err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestMaskEmail(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"keeps the first character and the domain", "alice@example.com", "a***@example.com"},
		{"masks a one-character local part entirely", "a@example.com", "***@example.com"},
		{"masks an empty local part", "@example.com", "***@example.com"},
		{"masks text without an @ entirely", "alice", "***"},
		{"keeps a multi-byte first character whole", "élise@example.com", "é***@example.com"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := MaskEmail(tc.in); got != tc.want {
				t.Errorf("MaskEmail(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEmailPatterns(t *testing.T) {
	match := []struct {
		name, pattern, email string
		want                 bool
	}{
		{"an exact address matches itself", "alice@example.com", "alice@example.com", true},
		{"an exact address matches regardless of case", "Alice@Example.com", "ALICE@example.COM", true},
		{"an exact address does not match another mailbox", "alice@example.com", "alice2@example.com", false},
		{"an exact address does not match plus addressing", "ceo@example.org", "ceo+x@example.org", false},
		{"a domain pattern matches any mailbox there", "*@example.org", "anyone@example.org", true},
		{"a domain pattern does not match a subdomain", "*@example.org", "anyone@sub.example.org", false},
		{"a domain pattern does not match a longer domain that ends the same", "*@example.com", "alice@example.com.evil.com", false},
		{"a domain pattern does not match a domain that merely ends with its text", "*@example.com", "alice@badexample.com", false},
		{"a subdomain pattern matches a subdomain", "*@*.example.net", "bob@mail.example.net", true},
		{"a subdomain pattern matches a deep subdomain", "*@*.example.net", "bob@a.b.c.example.net", true},
		{"a subdomain pattern does not match the apex", "*@*.example.net", "bob@example.net", false},
		{"a subdomain pattern does not match a domain that merely ends with its text", "*@*.example.net", "bob@evilexample.net", false},
		{"a subdomain pattern does not match a lookalike suffix", "*@*.example.net", "bob@mail.example.net.evil.com", false},
		{"a Unicode domain pattern matches the Punycode address", "*@bücher.example", "hans@xn--bcher-kva.example", true},
		{"a Punycode domain pattern matches the Unicode address", "*@xn--bcher-kva.example", "hans@BÜCHER.example", true},
	}
	for _, tc := range match {
		t.Run(tc.name, func(t *testing.T) {
			pat, err := parseEmailPattern(tc.pattern)
			if err != nil {
				t.Fatalf("parseEmailPattern(%q): %v", tc.pattern, err)
			}
			addr, err := NormalizeEmail(tc.email)
			if err != nil {
				t.Fatalf("NormalizeEmail(%q): %v", tc.email, err)
			}
			var s emailSet
			s.add(pat)
			if got := s.match(addr); got != tc.want {
				t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.email, got, tc.want)
			}
		})
	}

	malformed := []struct{ name, pattern, msg string }{
		{"refuses a star inside the local part", "a*@x.com", `email pattern "a*@x.com" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a star for every domain", "*@*", `email pattern "*@*" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a lone star", "*", `email pattern "*" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a star inside the domain", "*@ex*ample.com", `email pattern "*@ex*ample.com" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a star in the middle of a subdomain pattern", "*@*.*.example.com", `email pattern "*@*.*.example.com" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a whole top-level domain", "*@*.com", `email pattern "*@*.com" has an invalid domain: the domain has no dot; give a full domain like example.com`},
		{"refuses a public suffix", "*@co.uk", `email pattern "*@co.uk" covers the public suffix "co.uk", which would match nearly anyone`},
		{"refuses every subdomain of a public suffix", "*@*.co.uk", `email pattern "*@*.co.uk" covers the public suffix "co.uk", which would match nearly anyone`},
		{"refuses an invalid exact address", "Alice <alice@example.com>", `email pattern "Alice <alice@example.com>" is not a valid address: give the bare address (like alice@example.com), without a display name or angle brackets`},
		{"refuses a domain pattern with an invalid domain", "*@exa mple.com", `email pattern "*@exa mple.com" has characters a domain cannot have`},
		{"refuses an empty pattern", "", `email pattern "" is not a valid address: the email address is empty`},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseEmailPattern(tc.pattern)
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("parseEmailPattern(%q) = %v, %v; want an error", tc.pattern, p, err)
			}
			if err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestNormalizeEmailDoesNotAllocateForANormalAddress(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, err := NormalizeEmail("alice@example.com"); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("NormalizeEmail allocates %v times per call, want 0", n)
	}
}

// TestSubaddressesAreTheirMailboxForDenyLists: RFC 5233 sub-addresses
// reach one mailbox, so a deny list holds for every tag; an exact allow
// entry still means exactly that address.
func TestSubaddressesAreTheirMailboxForDenyLists(t *testing.T) {
	p := mustParse(t, `version: 1
currencies:
  USD: { max_amount: 100 }
customers:
  allow_emails: ["pat@example.com", "*@shop.example"]
  deny_emails: ["ceo@shop.example", "cfo+payroll@shop.example"]
`)
	cases := []struct {
		email string
		code  Code
	}{
		{"ceo+x@shop.example", CodeEmailNotAllowed},
		{"CEO+Anything@Shop.Example", CodeEmailNotAllowed},
		{"ceo@shop.example", CodeEmailNotAllowed},
		{"cfo@shop.example", CodeEmailNotAllowed},
		{"cfo+other@shop.example", CodeEmailNotAllowed},
		{"pat@example.com", CodeAllowed},
		{"pat+1@example.com", CodeEmailNotAllowed},
		{"alice+1@shop.example", CodeAllowed},
		{"+ceo@shop.example", CodeAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.email, func(t *testing.T) {
			d := p.Evaluate(&Request{Tool: ToolAgentPaymentSession, Amount: money(t, "1", "USD"), CustomerEmail: tc.email})
			if d.Code != tc.code {
				t.Errorf("Evaluate(%s) = %s (%s), want %s", tc.email, d.Code, d.Message, tc.code)
			}
		})
	}
	for in, want := range map[string]string{"a+b@x.io": "a@x.io", "a+b+c@x.io": "a@x.io", "+a@x.io": "+a@x.io", "a@x.io": "a@x.io", "a": "a"} {
		if got := SubaddressBase(in); got != want {
			t.Errorf("SubaddressBase(%q) = %q, want %q", in, got, want)
		}
	}
}
