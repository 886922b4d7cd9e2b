package tools

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/clink-mcp/clink-mcp/internal/textcheck"
	"github.com/clink-mcp/clink-mcp/policy"
)

// elementsSessionID is the placeholder Clink replaces by the session's ID in
// a returnUrl. Its braces are not URL characters, so it is set aside before
// the URL is read, and it may not stand in the host.
const elementsSessionID = "{ELEMENTS_SESSION_ID}"

// checkURL returns what is wrong with the URL raw sent as argument arg, or
// "". An accepted URL is an absolute http or https URL whose host is a
// public name or address, written plainly:
//
//   - no user info ("https://clinkbill.com@evil.example/" goes to
//     evil.example, a classic disguise);
//   - no spaces, control or invisible formatting characters, raw: a space
//     in a path or query is written %20. Percent-encoded control characters
//     (%00–%1F, %7F and the C1 controls, %C2%80–%C2%9F) are refused too:
//     no page needs them, and decoded they split headers and log lines
//     (%0D%0A). An encoded space (%20, +) is an ordinary URL and is kept;
//   - no backslash, which browsers read as "/" and Go's parser does not,
//     so the two would disagree on the host; no raw <, >, " or `, which
//     a valid URL percent-encodes and which break out of an HTML attribute;
//   - a host that is neither an IP address in a loopback, private,
//     link-local, unspecified or other special-purpose range (IPv4-mapped
//     IPv6 included), nor a local name (localhost, *.local, ...), nor an
//     IPv4 address in a form other than four decimal numbers (2130706433,
//     0x7f.1, 0177.0.0.1), which browsers accept and would hide the address
//     from the checks; see [policy.NormalizeHost].
//
// With placeholder set (returnUrl), {ELEMENTS_SESSION_ID} may appear in the
// path, query or fragment.
func checkURL(arg, raw string, placeholder bool) string {
	bad := func(format string, a ...any) string {
		return fmt.Sprintf("argument %q ", arg) + fmt.Sprintf(format, a...)
	}
	if problem := urlCharacters(raw); problem != "" {
		return bad("%s", problem)
	}
	s := raw
	if placeholder {
		s = strings.ReplaceAll(s, elementsSessionID, "ELEMENTS_SESSION_ID")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.Host == "" {
		return bad("must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return bad("must not contain a user name or password (user@host): the browser would go to the host after the @")
	}
	if placeholder && strings.Contains(u.Host, "ELEMENTS_SESSION_ID") {
		return bad("may have %s only in its path, query or fragment, not in its host", elementsSessionID)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("has an invalid port %s", strconv.Quote(p))
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("has an empty port after its host")
	}
	name, addr, err := policy.NormalizeHost(u.Hostname())
	switch {
	case err != nil:
		return bad("has an unusable host: %v", err)
	case strings.HasPrefix(u.Host, "[") && !addr.Is6():
		return bad("has an invalid IPv6 address")
	case addr.IsValid():
		if why := nonPublicAddr(addr); why != "" {
			return bad("points to %s (%s); use the shop's public address", addr, why)
		}
	default:
		if why := localName(name); why != "" {
			return bad("points to %s, %s; use the shop's public address", name, why)
		}
	}
	return ""
}

// urlCharacters returns what is wrong with the characters of a URL, raw or
// percent-encoded, or "". Nothing is echoed: characters are named by code
// point.
func urlCharacters(raw string) string {
	for i, r := range raw {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(raw[i:], "\uFFFD"):
			return "is not valid UTF-8"
		case r == ' ':
			return "must not contain spaces (write a space in a path or query as %20)"
		case unicode.IsControl(r):
			return fmt.Sprintf("must not contain control characters (found %U)", r)
		case unicode.IsSpace(r):
			return fmt.Sprintf("must not contain spaces (found %U)", r)
		case textcheck.Invisible(r):
			return fmt.Sprintf("must not contain invisible formatting characters (found %U)", r)
		case r == '\\':
			return `must not contain a backslash (write it as %5C)`
		case strings.ContainsRune("<>\"`", r):
			return fmt.Sprintf("must not contain %c (percent-encode it)", r)
		}
	}
	// Percent-encoded control characters: a C0 control or DEL is one
	// escape; a C1 control is the UTF-8 pair %C2%80 to %C2%9F.
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		b, ok := unhex2(raw[i+1], raw[i+2])
		if !ok {
			continue
		}
		if b < 0x20 || b == 0x7f {
			return fmt.Sprintf("must not contain percent-encoded control characters (found %s)", raw[i:i+3])
		}
		if b == 0xc2 && i+5 < len(raw) && raw[i+3] == '%' {
			if c, ok := unhex2(raw[i+4], raw[i+5]); ok && 0x80 <= c && c <= 0x9f {
				return fmt.Sprintf("must not contain percent-encoded control characters (found %s)", raw[i:i+6])
			}
		}
	}
	return ""
}

func unhex2(a, b byte) (byte, bool) {
	hi, ok1 := unhex(a)
	lo, ok2 := unhex(b)
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// specialRange is an address range a customer's browser must not be sent
// to, or Clink's servers made to fetch: what it is, for the message.
type specialRange struct {
	prefix netip.Prefix
	what   string
}

// specialRanges are the IANA special-purpose ranges that are not public
// unicast addresses, IPv4 (IPv4-mapped IPv6 addresses are unmapped first)
// and IPv6, including the IPv6 ranges that embed an IPv4 address (NAT64,
// 6to4, Teredo, IPv4-compatible), which could carry a private one.
var specialRanges = func() []specialRange {
	var rs []specialRange
	for _, r := range []struct{ prefix, what string }{
		{"0.0.0.0/8", "an unspecified address"},
		{"10.0.0.0/8", "a private address"},
		{"100.64.0.0/10", "a shared (carrier-grade NAT) address"},
		{"127.0.0.0/8", "a loopback address"},
		{"169.254.0.0/16", "a link-local address"},
		{"172.16.0.0/12", "a private address"},
		{"192.0.0.0/24", "a special-purpose address"},
		{"192.0.2.0/24", "a documentation address"},
		{"192.88.99.0/24", "a special-purpose address"},
		{"192.168.0.0/16", "a private address"},
		{"198.18.0.0/15", "a benchmarking address"},
		{"198.51.100.0/24", "a documentation address"},
		{"203.0.113.0/24", "a documentation address"},
		{"224.0.0.0/4", "a multicast address"},
		{"240.0.0.0/4", "a reserved address"},
		{"::/128", "an unspecified address"},
		{"::1/128", "a loopback address"},
		{"::/96", "an IPv4-compatible address"},
		{"64:ff9b::/96", "a NAT64 address"},
		{"64:ff9b:1::/48", "a NAT64 address"},
		{"100::/64", "a discard address"},
		{"2001::/23", "a special-purpose address"},
		{"2001:db8::/32", "a documentation address"},
		{"2002::/16", "a 6to4 address"},
		{"fc00::/7", "a private (unique local) address"},
		{"fe80::/10", "a link-local address"},
		{"fec0::/10", "a site-local address"},
		{"ff00::/8", "a multicast address"},
	} {
		rs = append(rs, specialRange{netip.MustParsePrefix(r.prefix), r.what})
	}
	return rs
}()

// nonPublicAddr says what kind of non-public address a is, or "".
func nonPublicAddr(a netip.Addr) string {
	a = a.Unmap()
	for _, r := range specialRanges {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	return ""
}

// localName says why a normalised host name is local, or "": names that
// resolve to this machine or only on a local network.
func localName(name string) string {
	for _, suffix := range []struct{ name, what string }{
		{"localhost", "a loopback name"},
		{"local", "a local-network (mDNS) name"},
		{"internal", "a private-network name"},
		{"home.arpa", "a home-network name"},
	} {
		if name == suffix.name || strings.HasSuffix(name, "."+suffix.name) {
			return suffix.what
		}
	}
	return ""
}

// pageURL reports whether s is an absolute http or https URI with a host,
// written with RFC 3986's characters alone (unreserved, reserved and
// percent-escapes): what a result's "format": "uri" promises a client
// that validates it.
func pageURL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:/?#[]@!$&'()*+,;=%", c) >= 0) {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && (strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")) && u.Host != ""
}
