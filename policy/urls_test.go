package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	cases := []struct {
		name, host string
		wantName   string
		wantAddr   string
		wantErr    string
	}{
		{"keeps a normal name", "shop.example.com", "shop.example.com", "", ""},
		{"lower-cases a name", "Shop.EXAMPLE.com", "shop.example.com", "", ""},
		{"converts an international name to ASCII", "Bücher.example", "xn--bcher-kva.example", "", ""},
		{"maps full-width letters and dots", "ｓｈｏｐ．example．com", "shop.example.com", "", ""},
		{"reads a dotted IPv4 address as an address", "10.0.0.1", "", "10.0.0.1", ""},
		{"reads full-width digits as the IPv4 address a browser sees", "１２７.０.０.１", "", "127.0.0.1", ""},
		{"reads an IPv6 address as an address", "::1", "", "::1", ""},
		{"reads an IPv4-mapped IPv6 address as an address", "::ffff:127.0.0.1", "", "::ffff:127.0.0.1", ""},
		{"refuses a decimal IPv4 address", "2130706433", "", "", "unusual form"},
		{"refuses a hexadecimal IPv4 address", "0x7f.1", "", "", "unusual form"},
		{"refuses a hexadecimal last label", "a.0x1", "", "", "unusual form"},
		{"refuses an octal IPv4 address", "0177.0.0.1", "", "", "unusual form"},
		{"refuses a shortened IPv4 address", "127.1", "", "", "unusual form"},
		{"refuses an IPv4 address with a trailing dot", "127.0.0.1.", "", "", "unusual form"},
		{"refuses an IPv6 zone", "fe80::1%en0", "", "", "zone"},
		{"refuses a single-label name such as localhost", "localhost", "", "", "has no dot"},
		{"refuses a name with a trailing dot", "shop.example.com.", "", "", "not a valid domain name"},
		{"refuses an underscore", "a_b.example.com", "", "", "not a valid domain name"},
		{"refuses an empty host", "", "", "", "no host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, addr, err := NormalizeHost(tc.host)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NormalizeHost(%q) = %q, %v, %v; want an error containing %q", tc.host, name, addr, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeHost(%q): %v", tc.host, err)
			}
			var want netip.Addr
			if tc.wantAddr != "" {
				want = netip.MustParseAddr(tc.wantAddr)
			}
			if name != tc.wantName || addr != want {
				t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", tc.host, name, addr, tc.wantName, want)
			}
		})
	}
}

const urlsHead = "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n"

func TestParseReadsAllowHosts(t *testing.T) {
	cases := []struct{ name, yaml, wantRender, wantSummary string }{
		{"allows any redirect host when urls is absent", urlsHead,
			"Redirect URLs (successUrl, cancelUrl, returnUrl): any host\n", ""},
		{"allows any redirect host when urls has no allow_hosts", urlsHead + "urls: {}\n",
			"Redirect URLs (successUrl, cancelUrl, returnUrl): any host\n", ""},
		{"normalises hosts and patterns as it reads them", urlsHead + "urls:\n  allow_hosts: [\" Shop.Example.COM \", \"*.BÜCHER.example\"]\n",
			"Redirect URLs (successUrl, cancelUrl, returnUrl): only on shop.example.com, *.xn--bcher-kva.example\n",
			" Redirect URLs (successUrl, cancelUrl, returnUrl) must be on these hosts: shop.example.com, *.xn--bcher-kva.example."},
		{"treats an empty allow_hosts list as allowing no redirect URL", urlsHead + "urls: { allow_hosts: [] }\n",
			"Redirect URLs (successUrl, cancelUrl, returnUrl): none accepted (allow_hosts is empty)\n",
			" Redirect URLs (successUrl, cancelUrl, returnUrl) are not accepted."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.yaml)
			if r := p.Render(); !strings.Contains(r, tc.wantRender) {
				t.Errorf("Render() =\n%s\nwant it to contain\n%s", r, tc.wantRender)
			}
			s := p.Summary(ToolCheckoutSession)
			if tc.wantSummary == "" {
				if strings.Contains(s, "Redirect") {
					t.Errorf("Summary = %q; want no redirect rule", s)
				}
			} else if !strings.Contains(s, tc.wantSummary+" An identical call") {
				t.Errorf("Summary = %q; want it to contain %q before the duplicate rule", s, tc.wantSummary)
			}
			if s := p.Summary(ToolAgentPaymentSession); strings.Contains(s, "Redirect") {
				t.Errorf("the agent tool, which takes no URL, is told of redirect URLs: %q", s)
			}
		})
	}
}

func TestParseRefusesBadAllowHosts(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"refuses urls that is not a mapping", "urls: [shop.example.com]\n", "f.yaml:4: urls must be a mapping (key: value)"},
		{"refuses an unknown key under urls", "urls:\n  allow_host: [shop.example.com]\n", `f.yaml:5: urls: unknown key "allow_host" (known keys: allow_hosts)`},
		{"refuses allow_hosts given as one string", "urls:\n  allow_hosts: shop.example.com\n", "f.yaml:5: urls: allow_hosts must be a list of host names or patterns like *.example.com; remove it to allow any host"},
		{"refuses allow_hosts left empty", "urls:\n  allow_hosts:\n", "f.yaml:5: urls: allow_hosts must be a list of host names or patterns like *.example.com; remove it to allow any host"},
		{"refuses an entry that is not a string", "urls:\n  allow_hosts:\n    - { host: a.example.com }\n", "f.yaml:6: urls: allow_hosts: each entry must be a host name like shop.example.com or a pattern like *.example.com"},
		{"refuses a URL where a host is expected", "urls:\n  allow_hosts: [\"https://shop.example.com\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "https://shop.example.com" is not a host name: give the host alone, like shop.example.com, without scheme, port, path or user`},
		{"refuses a host with a port", "urls:\n  allow_hosts: [\"shop.example.com:443\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "shop.example.com:443" is not a host name: give the host alone, like shop.example.com, without scheme, port, path or user`},
		{"refuses a bare star", "urls:\n  allow_hosts: [\"*\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "*" is malformed: use a host name like shop.example.com, or *.example.com for its subdomains`},
		{"refuses a star inside a label", "urls:\n  allow_hosts: [\"shop*.example.com\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "shop*.example.com" is malformed: use a host name like shop.example.com, or *.example.com for its subdomains`},
		{"refuses two stars", "urls:\n  allow_hosts: [\"*.*.example.com\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "*.*.example.com" is malformed: use a host name like shop.example.com, or *.example.com for its subdomains`},
		{"refuses a wildcard over a public suffix", "urls:\n  allow_hosts: [\"*.co.uk\"]\n", `f.yaml:5: urls: allow_hosts: host pattern "*.co.uk" covers the public suffix "co.uk", which would match nearly any site`},
		{"refuses an IP address", "urls:\n  allow_hosts: [10.0.0.1]\n", `f.yaml:5: urls: allow_hosts: host pattern "10.0.0.1" is an IP address; list host names`},
		{"refuses a single-label host", "urls:\n  allow_hosts: [localhost]\n", `f.yaml:5: urls: allow_hosts: host pattern "localhost": the host "localhost" is not a valid domain name: the domain has no dot; give a full domain like example.com`},
		{"refuses a host listed twice after normalisation", "urls:\n  allow_hosts: [shop.example.com, SHOP.example.com]\n", "f.yaml:5: urls: allow_hosts: shop.example.com is listed twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(urlsHead+tc.yaml))
			if p != nil || err == nil {
				t.Fatalf("Parse succeeded; want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	listed := mustParse(t, urlsHead+"urls:\n  allow_hosts: [shop.example.com, \"*.example.net\", bücher.example]\n")
	none := mustParse(t, urlsHead+"urls: { allow_hosts: [] }\n")
	open := mustParse(t, urlsHead)
	cases := []struct {
		name       string
		p          *Policy
		tool       string
		field, url string
		want       Code
	}{
		{"allows a listed host", listed, ToolCheckoutSession, "successUrl", "https://shop.example.com/thanks", CodeAllowed},
		{"compares hosts case-insensitively", listed, ToolCheckoutSession, "cancelUrl", "https://SHOP.Example.com/cart", CodeAllowed},
		{"ignores the port", listed, ToolCheckoutSession, "successUrl", "https://shop.example.com:8443/ok", CodeAllowed},
		{"compares international hosts in their ASCII form", listed, ToolCheckoutSession, "successUrl", "https://xn--bcher-kva.example/ok", CodeAllowed},
		{"lets a wildcard match a subdomain", listed, ToolCheckoutSession, "returnUrl", "https://pay.example.net/r?id={ELEMENTS_SESSION_ID}", CodeAllowed},
		{"lets a wildcard match a deeper subdomain", listed, ToolCheckoutSession, "returnUrl", "https://a.b.example.net/r", CodeAllowed},
		{"does not let a wildcard match its apex", listed, ToolCheckoutSession, "successUrl", "https://example.net/ok", CodeURLNotAllowed},
		{"refuses a host that is not listed", listed, ToolCheckoutSession, "successUrl", "https://evil.example/ok", CodeURLNotAllowed},
		{"refuses a subdomain of an exact host", listed, ToolCheckoutSession, "successUrl", "https://a.shop.example.com/ok", CodeURLNotAllowed},
		{"refuses a look-alike that ends with a listed host", listed, ToolCheckoutSession, "successUrl", "https://badshop.example.com/ok", CodeURLNotAllowed},
		{"refuses a look-alike that starts with a listed host", listed, ToolCheckoutSession, "successUrl", "https://shop.example.com.evil.example/ok", CodeURLNotAllowed},
		{"refuses a listed host disguised as user info", listed, ToolCheckoutSession, "successUrl", "https://shop.example.com@evil.example/ok", CodeURLNotAllowed},
		{"refuses an IP address, which matches no host name", listed, ToolCheckoutSession, "successUrl", "https://93.184.216.34/ok", CodeURLNotAllowed},
		{"refuses a URL it cannot read", listed, ToolCheckoutSession, "successUrl", "https://%zz/", CodeURLNotAllowed},
		{"leaves a line item's image alone, as it is no redirect", listed, ToolCheckoutSession, "priceDataList[0].imageUrl", "https://cdn.elsewhere.example/p.png", CodeAllowed},
		{"refuses every redirect URL when the list is empty", none, ToolCheckoutSession, "successUrl", "https://shop.example.com/ok", CodeURLNotAllowed},
		{"allows any host without a list", open, ToolCheckoutSession, "successUrl", "https://evil.example/ok", CodeAllowed},
		{"refuses a tool the policy does not govern", listed, "refund_payment", "successUrl", "https://shop.example.com/ok", CodeUnknownTool},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.CheckURL(tc.tool, tc.field, tc.url)
			if d.Code != tc.want || d.Allowed != (tc.want == CodeAllowed) {
				t.Fatalf("CheckURL(%q, %q) = %+v; want %s", tc.field, tc.url, d, tc.want)
			}
			if !d.Allowed && !strings.Contains(d.Message, `"`+tc.field+`"`) && tc.want == CodeURLNotAllowed {
				t.Errorf("message %q does not name the argument", d.Message)
			}
		})
	}
	t.Run("names the host and the hosts allowed", func(t *testing.T) {
		d := listed.CheckURL(ToolCheckoutSession, "cancelUrl", "https://Evil.Example/cart")
		want := `argument "cancelUrl": host evil.example is not one of the redirect hosts this server allows (shop.example.com, *.example.net, xn--bcher-kva.example)`
		if d.Message != want {
			t.Errorf("message:\n got %q\nwant %q", d.Message, want)
		}
	})
	t.Run("refuses on a nil policy", func(t *testing.T) {
		var p *Policy
		if d := p.CheckURL(ToolCheckoutSession, "successUrl", "https://shop.example.com/"); d.Allowed || d.Code != CodeNoPolicy {
			t.Errorf("CheckURL on nil = %+v", d)
		}
	})
}

// FuzzNormalizeHost: NormalizeHost never panics, and what it returns is in
// normal form: a name normalises to itself (so a host and the allowlist
// entry it matches compare equal however either was written), and is never
// something a browser would read as an IP address.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"shop.example.com", "Bücher.example", "１２７.０.０.１", "0x7f.1", "2130706433", "::ffff:127.0.0.1", "fe80::1%en0", "a.0x", "xn--bcher-kva.example", "ｓｈｏｐ．example．com", "a..b", "-a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		name, addr, err := NormalizeHost(host)
		if err != nil {
			return
		}
		if (name == "") == !addr.IsValid() {
			t.Fatalf("NormalizeHost(%q) = %q, %v: want exactly one of a name and an address", host, name, addr)
		}
		if name == "" {
			return
		}
		again, againAddr, err := NormalizeHost(name)
		if err != nil || again != name || againAddr.IsValid() {
			t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q, %v, %v", host, name, name, again, againAddr, err)
		}
		if endsInNumber(name) || strings.ToLower(name) != name {
			t.Fatalf("NormalizeHost(%q) = %q, not a normal name", host, name)
		}
	})
}
