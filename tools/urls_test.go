package tools

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// checkoutWithURL is a checkout call that would be allowed, with the URL u
// as argument field; "imageUrl" puts it on a line item.
func checkoutWithURL(t testing.TB, field, u string) string {
	t.Helper()
	args := map[string]any{"amount": 10, "currency": "USD", "customerEmail": "alice@example.com"}
	switch field {
	case "imageUrl":
		args["priceDataList"] = []any{map[string]any{"name": "Plan", "unitAmount": 10, "imageUrl": u}}
	case "returnUrl":
		args["uiMode"] = "elements"
		args[field] = u
	default:
		args[field] = u
	}
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasHiddenCharacters reports whether s holds a control or invisible
// formatting character: what a refusal must never echo.
func hasHiddenCharacters(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return true
		}
	}
	return false
}

func TestUnsafeURLsAreRefusedBeforeClink(t *testing.T) {
	tests := []struct {
		name, field, url, want string
	}{
		// The shape of the URL.
		{"a URL with user info is refused, since the browser goes to the host after the @", "successUrl", "https://clinkbill.com@evil.example/x", "must not contain a user name or password"},
		{"a URL with a user and an empty password is refused", "cancelUrl", "https://clinkbill.com:@evil.example/x", "must not contain a user name or password"},
		{"an ftp URL is refused", "successUrl", "ftp://shop.example.com/file", "must be an absolute http:// or https:// URL"},
		{"a data URL is refused", "imageUrl", "data:image/png;base64,AAAA", "must be an absolute http:// or https:// URL"},
		{"a URL without its // is refused", "successUrl", "https:shop.example.com/ok", "must be an absolute http:// or https:// URL"},
		{"a port out of range is refused", "successUrl", "https://shop.example.com:99999/ok", `has an invalid port "99999"`},
		{"port 0 is refused", "successUrl", "https://shop.example.com:0/ok", `has an invalid port "0"`},
		{"an empty port is refused", "successUrl", "https://shop.example.com:/ok", "has an empty port"},
		{"the returnUrl placeholder in the host is refused", "returnUrl", "https://{ELEMENTS_SESSION_ID}.example.com/r", "only in its path, query or fragment"},
		// Characters, raw.
		{"a raw space is refused", "successUrl", "https://shop.example.com/thank you", "must not contain spaces"},
		{"a no-break space is refused", "successUrl", "https://shop.example.com/thank\u00a0you", "must not contain spaces (found U+00A0)"},
		{"a tab is refused", "cancelUrl", "https://shop.example.com/a\tb", "must not contain control characters (found U+0009)"},
		{"a NUL is refused", "successUrl", "https://shop.example.com/a\x00b", "must not contain control characters (found U+0000)"},
		{"an escape character is refused", "returnUrl", "https://shop.example.com/r?x=\x1b[31m", "must not contain control characters (found U+001B)"},
		{"a C1 control is refused", "successUrl", "https://shop.example.com/a\u0085b", "must not contain control characters (found U+0085)"},
		{"a right-to-left override is refused", "successUrl", "https://shop.example.com/\u202egpj.exe", "must not contain invisible formatting characters (found U+202E)"},
		{"a backslash is refused, as browsers read it as a slash", "successUrl", `https://evil.example\.shop.example.com/`, "must not contain a backslash"},
		{"a raw quote is refused, as it breaks out of an HTML attribute", "successUrl", `https://shop.example.com/"onmouseover="x`, `must not contain " (percent-encode it)`},
		{"a raw angle bracket is refused", "imageUrl", "https://shop.example.com/<script>", "must not contain < (percent-encode it)"},
		// Characters, percent-encoded.
		{"an encoded CR LF is refused", "successUrl", "https://shop.example.com/ok?next=%0d%0aSet-Cookie:x", "percent-encoded control characters (found %0d)"},
		{"an encoded NUL is refused", "cancelUrl", "https://shop.example.com/a%00b", "percent-encoded control characters (found %00)"},
		{"an encoded DEL is refused", "cancelUrl", "https://shop.example.com/a%7Fb", "percent-encoded control characters (found %7F)"},
		{"an encoded C1 control is refused", "successUrl", "https://shop.example.com/a%C2%85b", "percent-encoded control characters (found %C2%85)"},
		// Hosts that are not public.
		{"the cloud metadata address is refused", "successUrl", "http://169.254.169.254/latest/meta-data/", "points to 169.254.169.254 (a link-local address)"},
		{"a loopback address is refused", "cancelUrl", "http://127.0.0.1/", "points to 127.0.0.1 (a loopback address)"},
		{"the IPv6 loopback address is refused", "successUrl", "http://[::1]/", "points to ::1 (a loopback address)"},
		{"a private address is refused", "successUrl", "http://10.0.0.1", "points to 10.0.0.1 (a private address)"},
		{"another private range is refused", "successUrl", "https://192.168.1.1:8443/", "(a private address)"},
		{"the unspecified address is refused", "successUrl", "http://0.0.0.0", "points to 0.0.0.0 (an unspecified address)"},
		{"a shared address is refused", "successUrl", "http://100.100.100.200/", "(a shared (carrier-grade NAT) address)"},
		{"an IPv4-mapped loopback address is refused", "successUrl", "http://[::ffff:127.0.0.1]/", "points to ::ffff:127.0.0.1 (a loopback address)"},
		{"an IPv4-mapped metadata address in hexadecimal is refused", "successUrl", "http://[::ffff:a9fe:a9fe]/", "(a link-local address)"},
		{"an IPv6 link-local address is refused", "successUrl", "http://[fe80::1]/", "(a link-local address)"},
		{"an IPv6 zone is refused", "successUrl", "http://[fe80::1%25eth0]/", "zone"},
		{"an IPv6 unique local address is refused", "successUrl", "http://[fd00::1]/", "(a private (unique local) address)"},
		{"a NAT64 address embedding loopback is refused", "successUrl", "http://[64:ff9b::7f00:1]/", "(a NAT64 address)"},
		{"the unspecified IPv6 address is refused", "successUrl", "http://[::]/", "(an unspecified address)"},
		{"a decimal IPv4 address is refused", "successUrl", "http://2130706433/", "is an IP address in an unusual form"},
		{"a hexadecimal IPv4 address is refused", "successUrl", "http://0x7f.1/", "is an IP address in an unusual form"},
		{"a dotted hexadecimal IPv4 address is refused", "successUrl", "http://0x7f.0x0.0x0.0x1/", "is an IP address in an unusual form"},
		{"an octal IPv4 address is refused", "successUrl", "http://0177.0.0.1/", "is an IP address in an unusual form"},
		{"a shortened IPv4 address is refused", "successUrl", "http://127.1/", "is an IP address in an unusual form"},
		{"a full-width IPv4 loopback address is refused", "successUrl", "http://１２７.０.０.１/", "points to 127.0.0.1 (a loopback address)"},
		{"localhost is refused", "successUrl", "http://localhost:8080/", `has an unusable host: the host "localhost" is not a valid domain name`},
		{"a name under localhost is refused", "successUrl", "http://app.localhost/", "points to app.localhost, a loopback name"},
		{"a local-network name is refused", "successUrl", "http://printer.local/", "points to printer.local, a local-network (mDNS) name"},
		{"a line item's image on the metadata address is refused", "imageUrl", "http://169.254.169.254/latest/meta-data/", `argument "priceDataList[0].imageUrl" points to 169.254.169.254`},
		{"a line item's image with user info is refused", "imageUrl", "https://cdn.example.com@evil.example/p.png", `argument "priceDataList[0].imageUrl" must not contain a user name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			res := h.call(t, checkout, checkoutWithURL(t, tt.field, tt.url))
			got := ResultText(res)
			if !res.IsError {
				t.Fatalf("call succeeded: %s", got)
			}
			name := tt.field
			if name == "imageUrl" {
				name = "priceDataList[0].imageUrl"
			}
			for _, w := range []string{"invalid arguments: ", `argument "` + name + `"`, tt.want, "Nothing was created"} {
				if !strings.Contains(got, w) {
					t.Errorf("result %q does not contain %q", got, w)
				}
			}
			if hasHiddenCharacters(got) {
				t.Errorf("result %q echoes a control or invisible character", got)
			}
			if n := h.pay.calls(); n != 0 {
				t.Errorf("Clink was called %d times for a refused call", n)
			}
		})
	}
}

func TestSafeURLsReachClinkUnchanged(t *testing.T) {
	tests := []struct{ name, field, url string }{
		{"the returnUrl placeholder in the query is kept for Clink", "returnUrl", "https://shop.example.com/done?session_id={ELEMENTS_SESSION_ID}"},
		{"the returnUrl placeholder in the path is kept for Clink", "returnUrl", "https://shop.example.com/done/{ELEMENTS_SESSION_ID}#top"},
		{"an encoded space is an ordinary URL", "successUrl", "https://shop.example.com/thank%20you?q=red+shoes&r=a%20b"},
		{"an international host is accepted", "successUrl", "https://bücher.example/danke"},
		{"a port is accepted", "cancelUrl", "https://shop.example.com:8443/cart"},
		{"an upper-case scheme and host are accepted", "successUrl", "HTTPS://SHOP.EXAMPLE.COM/OK"},
		{"a public IPv4 address is accepted", "successUrl", "http://93.184.216.34/ok"},
		{"a public IPv6 address is accepted", "successUrl", "https://[2606:4700:4700::1111]/ok"},
		{"an image on a CDN is accepted", "imageUrl", "https://cdn.example.org/img/plan.png?w=200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			res := h.call(t, checkout, checkoutWithURL(t, tt.field, tt.url))
			if res.IsError {
				t.Fatalf("call failed: %s", ResultText(res))
			}
			if len(h.pay.checkout) != 1 {
				t.Fatalf("Clink called %d times, want 1", len(h.pay.checkout))
			}
			sent := h.pay.checkout[0]
			got := map[string]string{"successUrl": sent.SuccessURL, "cancelUrl": sent.CancelURL, "returnUrl": sent.ReturnURL}
			if len(sent.PriceDataList) > 0 {
				got["imageUrl"] = sent.PriceDataList[0].ImageURL
			}
			if got[tt.field] != tt.url {
				t.Errorf("sent %s %q, want %q unchanged", tt.field, got[tt.field], tt.url)
			}
		})
	}
}

// allowHostsPolicy is the tools' test policy with redirect URLs restricted.
func allowHostsPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("hosts.yaml", []byte(`version: 1
currencies:
  USD: { max_amount: 500 }
urls:
  allow_hosts: [shop.example.com, "*.example.net"]
tools:
  create_checkout_session: { enabled: true }
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRedirectURLsOffThePolicysHostsAreRefused(t *testing.T) {
	tests := []struct {
		name, field, url string
		refused          bool
	}{
		{"a successUrl on a listed host is sent", "successUrl", "https://shop.example.com/thanks", false},
		{"a cancelUrl on a listed host in another case is sent", "cancelUrl", "https://SHOP.example.com/cart", false},
		{"a returnUrl on a listed subdomain pattern is sent", "returnUrl", "https://pay.eu.example.net/r?id={ELEMENTS_SESSION_ID}", false},
		{"a line item's image elsewhere is sent, as it is no redirect", "imageUrl", "https://cdn.elsewhere.example/p.png", false},
		{"a successUrl on another host is refused", "successUrl", "https://evil.example/thanks", true},
		{"a cancelUrl on the apex of a subdomain pattern is refused", "cancelUrl", "https://example.net/cart", true},
		{"a returnUrl on a look-alike host is refused", "returnUrl", "https://shop.example.com.evil.example/r", true},
		{"a successUrl on a public IP address is refused", "successUrl", "http://93.184.216.34/thanks", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allowHostsPolicy(t))
			res := h.call(t, checkout, checkoutWithURL(t, tt.field, tt.url))
			got := ResultText(res)
			if !tt.refused {
				if res.IsError || h.pay.calls() != 1 {
					t.Fatalf("result %q, %d Clink calls; want the session created", got, h.pay.calls())
				}
				return
			}
			if !res.IsError {
				t.Fatalf("call succeeded: %s", got)
			}
			for _, w := range []string{"refused by policy (url_not_allowed)", `argument "` + tt.field + `"`, "(shop.example.com, *.example.net)", "Nothing was created"} {
				if !strings.Contains(got, w) {
					t.Errorf("result %q does not contain %q", got, w)
				}
			}
			if n := h.pay.calls(); n != 0 {
				t.Errorf("Clink was called %d times for a refused call", n)
			}
			var decisions []string
			h.state.ScanAudit(context.Background(), func(r *state.AuditRecord) error { decisions = append(decisions, r.Decision); return nil })
			if len(decisions) != 1 || decisions[0] != string(policy.CodeURLNotAllowed) {
				t.Errorf("audit decisions %v, want [url_not_allowed]", decisions)
			}
		})
	}
	t.Run("the tool's description names the hosts", func(t *testing.T) {
		h := newHarness(t, allowHostsPolicy(t))
		const want = "Redirect URLs (successUrl, cancelUrl, returnUrl) must be on these hosts: shop.example.com, *.example.net."
		if d := h.tools[checkout].Tool.Description; !strings.Contains(d, want) {
			t.Errorf("description %q does not contain %q", d, want)
		}
		if d := h.tools[agent].Tool.Description; strings.Contains(d, "Redirect URLs") {
			t.Errorf("the agent tool, which takes no URL, speaks of redirect URLs: %q", d)
		}
	})
}

// FuzzCheckURL: checkURL never panics, and a URL it accepts has no user
// info, no space or control character, and a host that the policy reads
// as a public name or address.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://shop.example.com/ok", "https://clinkbill.com@evil.example/x", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/",
		"https://shop.example.com/done?session_id={ELEMENTS_SESSION_ID}", "http://１２７.０.０.１/", "https://a.com/%C2%85", "https://bücher.example/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if checkURL("successUrl", raw, true) != "" {
			return
		}
		u, err := url.Parse(strings.ReplaceAll(raw, elementsSessionID, "ELEMENTS_SESSION_ID"))
		if err != nil || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted %q: %v, %+v", raw, err, u)
		}
		if strings.ContainsFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			t.Fatalf("accepted %q with a space or control character", raw)
		}
		name, addr, err := policy.NormalizeHost(u.Hostname())
		if err != nil || (addr.IsValid() && nonPublicAddr(addr) != "") || (name != "" && localName(name) != "") {
			t.Fatalf("accepted %q: host %q, %v, %v", raw, name, addr, err)
		}
	})
}

// The redirect URL rule is judged as the arguments are read, before the
// policy decides the call (docs/policy.md, How a call is decided): a
// redirect off urls.allow_hosts is the answer even for a disabled tool and
// an amount over the cap.
func TestTheRedirectHostRuleComesBeforeThePolicysSteps(t *testing.T) {
	p, err := policy.Parse("hosts.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 5 }\nurls:\n  allow_hosts: [shop.example.com]\ntools:\n  create_checkout_session: { enabled: false }\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, p)
	res := h.call(t, checkout, checkoutWithURL(t, "successUrl", "https://evil.example/thanks"))
	if got := ResultText(res); !res.IsError || !strings.HasPrefix(got, "refused by policy (url_not_allowed)") {
		t.Errorf("result %q, want url_not_allowed first", got)
	}
}
