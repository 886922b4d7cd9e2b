package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/publicsuffix"
)

// CodeURLNotAllowed: a redirect URL's host is not on the policy's
// urls.allow_hosts list (see [Policy.CheckURL]).
const CodeURLNotAllowed Code = "url_not_allowed"

// redirectURLFields are the arguments of create_checkout_session that send
// the customer somewhere, and so are the URLs urls.allow_hosts restricts.
// A line item's imageUrl is not among them: it is shown, not followed.
var redirectURLFields = []string{"successUrl", "cancelUrl", "returnUrl"}

// redirectFieldsText names redirectURLFields for people.
var redirectFieldsText = strings.Join(redirectURLFields, ", ")

// NormalizeHost reads the host of a URL as a browser would, returning either
// its normal name (lower-case ASCII, IDNA: "Bücher.Example" becomes
// "xn--bcher-kva.example"; full-width letters, digits and dots are mapped)
// or, for an IP literal, its address. host is what [url.URL.Hostname]
// returns: no brackets, no port.
//
// A name must have at least two labels of letters, digits and inner hyphens
// and must not end in a number. A name whose last label is a number
// (decimal, or hexadecimal with 0x) is what browsers read as an IPv4
// address: it is accepted only in the usual dotted form of four decimal
// numbers ("127.0.0.1") and returned as an address; the other forms
// browsers also accept ("2130706433", "0x7f.1", "0177.0.0.1", "127.1") are
// refused, so no address can hide from a check by its spelling. An IPv6
// address is accepted without a zone.
func NormalizeHost(host string) (name string, addr netip.Addr, err error) {
	if host == "" {
		return "", netip.Addr{}, errors.New("the URL has no host")
	}
	if strings.Contains(host, ":") {
		a, perr := netip.ParseAddr(host)
		switch {
		case perr != nil || !a.Is6():
			return "", netip.Addr{}, fmt.Errorf("the host %s is not a valid IPv6 address", quoteInput(host))
		case a.Zone() != "":
			return "", netip.Addr{}, fmt.Errorf("the host %s has an IPv6 zone, which is not accepted", quoteInput(host))
		}
		return "", a, nil
	}
	mapped, ok := toASCIIDomain(host)
	if !ok {
		return "", netip.Addr{}, fmt.Errorf("the host %s is not a valid domain name", quoteInput(host))
	}
	if endsInNumber(mapped) {
		a, perr := netip.ParseAddr(mapped)
		if perr != nil || !a.Is4() {
			return "", netip.Addr{}, fmt.Errorf("the host %s is an IP address in an unusual form (decimal, octal, hexadecimal or shortened); write an IPv4 address as four decimal numbers, or better, use the host name", quoteInput(host))
		}
		return "", a, nil
	}
	if serr := checkDomainShape(mapped); serr != nil {
		// checkDomainShape speaks of "the domain"; its errors are typed
		// for emails, which a host is not.
		return "", netip.Addr{}, fmt.Errorf("the host %s is not a valid domain name: %s", quoteInput(host), serr.Error())
	}
	return mapped, netip.Addr{}, nil
}

// endsInNumber is the WHATWG URL standard's "ends in a number" test: the
// last label (ignoring one trailing dot) is all digits, or 0x followed by
// hexadecimal digits. A browser parses such a host as an IPv4 address.
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		return strings.Trim(last[2:], "0123456789abcdefABCDEF") == ""
	}
	return false
}

// hostPattern is one parsed entry of urls.allow_hosts.
type hostPattern struct {
	subdomains bool   // "*.example.com": any subdomain, not the apex
	name       string // the normalised host, or the normalised parent domain
}

// String returns the pattern in its normalised written form.
func (p hostPattern) String() string {
	if p.subdomains {
		return "*." + p.name
	}
	return p.name
}

// parseHostPattern parses "shop.example.com" or "*.example.com". Any other
// use of "*", a scheme, port, path or user, an IP address, and a wildcard
// covering a whole public suffix ("*.com", "*.co.uk") are errors.
func parseHostPattern(s string) (hostPattern, error) {
	t := strings.TrimSpace(s)
	var p hostPattern
	if rest, ok := strings.CutPrefix(t, "*."); ok {
		p.subdomains, t = true, rest
	}
	if strings.Contains(t, "*") {
		return hostPattern{}, fmt.Errorf("host pattern %s is malformed: use a host name like shop.example.com, or *.example.com for its subdomains", quoteInput(s))
	}
	if strings.ContainsAny(t, "/:@?#[]\\%") {
		return hostPattern{}, fmt.Errorf("host pattern %s is not a host name: give the host alone, like shop.example.com, without scheme, port, path or user", quoteInput(s))
	}
	name, addr, err := NormalizeHost(t)
	switch {
	case addr.IsValid():
		return hostPattern{}, fmt.Errorf("host pattern %s is an IP address; list host names", quoteInput(s))
	case err != nil:
		return hostPattern{}, fmt.Errorf("host pattern %s: %v", quoteInput(s), err)
	}
	if ps, _ := publicsuffix.PublicSuffix(name); p.subdomains && ps == name {
		return hostPattern{}, fmt.Errorf("host pattern %s covers the public suffix %q, which would match nearly any site", quoteInput(s), name)
	}
	p.name = name
	return p, nil
}

// hostSet matches normalised host names against a list of patterns in time
// that does not depend on the length of the list: one map lookup for the
// exact names and one per label of the host for the wildcards.
type hostSet struct {
	patterns   []hostPattern // as written, in file order, for rendering
	exact      map[string]struct{}
	subdomains map[string]struct{}
}

func (s *hostSet) add(p hostPattern) bool {
	m := &s.exact
	if p.subdomains {
		m = &s.subdomains
	}
	if *m == nil {
		*m = make(map[string]struct{})
	}
	if _, dup := (*m)[p.name]; dup {
		return false
	}
	(*m)[p.name] = struct{}{}
	s.patterns = append(s.patterns, p)
	return true
}

// match reports whether a normalised host name matches a pattern of s.
func (s *hostSet) match(name string) bool {
	if _, ok := s.exact[name]; ok {
		return true
	}
	return matchSubdomain(s.subdomains, name)
}

func (s *hostSet) String() string {
	parts := make([]string, len(s.patterns))
	for i, p := range s.patterns {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// urls parses the urls mapping of a policy file.
func (fp *fileParser) urls(n *yaml.Node, p *Policy) {
	f := fp.fields(n, "urls", "allow_hosts")
	e, ok := f["allow_hosts"]
	if !ok {
		return
	}
	p.restrictHosts = true
	if e.val.Kind != yaml.SequenceNode {
		fp.errorf(e.val, "urls: allow_hosts must be a list of host names or patterns like *.example.com; remove it to allow any host")
		return
	}
	for _, item := range e.val.Content {
		if item.Kind != yaml.ScalarNode || item.ShortTag() != "!!str" {
			fp.errorf(item, "urls: allow_hosts: each entry must be a host name like shop.example.com or a pattern like *.example.com")
			continue
		}
		pat, err := parseHostPattern(item.Value)
		if err != nil {
			fp.errorf(item, "urls: allow_hosts: %v", err)
			continue
		}
		if !p.hosts.add(pat) {
			fp.errorf(item, "urls: allow_hosts: %s is listed twice", pat)
		}
	}
}

// CheckURL decides whether tool may send the URL raw in its argument field.
// Only the redirect URLs of create_checkout_session (successUrl, cancelUrl,
// returnUrl) have a rule: when the policy sets urls.allow_hosts, their host
// must match an entry (ports are not compared), or the decision is a denial
// with [CodeURLNotAllowed]. Any other field (a line item's imageUrl) is
// allowed here. A URL whose host cannot be read, and an IP-address host,
// match no entry. Like Evaluate, it denies everything with [CodeNoPolicy]
// on a nil policy and with [CodeUnknownTool] for a tool it does not govern.
//
// CheckURL is the policy's rule alone: the tools check first that a URL is
// a well-formed http(s) URL on a public host, and the call is still decided
// by [Policy.Evaluate].
func (p *Policy) CheckURL(tool, field, raw string) Decision {
	if p == nil {
		return deny(CodeNoPolicy, "no policy is loaded, so nothing is allowed")
	}
	if _, ok := p.tools[tool]; !ok {
		return deny(CodeUnknownTool, "tool %q is not governed by this server's policy", tool)
	}
	if !p.restrictHosts || tool != ToolCheckoutSession || !slices.Contains(redirectURLFields, field) {
		return allowed
	}
	if len(p.hosts.patterns) == 0 {
		return deny(CodeURLNotAllowed, "argument %q: this server's policy accepts no redirect URL (%s); leave it out", field, redirectFieldsText)
	}
	var (
		name string
		addr netip.Addr
	)
	// Clink's placeholder is not a URL's character; it may stand in a
	// returnUrl's path, query or fragment.
	if u, err := url.Parse(strings.ReplaceAll(raw, "{ELEMENTS_SESSION_ID}", "ELEMENTS_SESSION_ID")); err == nil {
		name, addr, _ = NormalizeHost(u.Hostname())
	}
	switch {
	case addr.IsValid():
		return deny(CodeURLNotAllowed, "argument %q: host %s is an IP address, not one of the redirect hosts this server allows (%s)", field, addr, p.hosts.String())
	case name == "":
		return deny(CodeURLNotAllowed, "argument %q: its host cannot be read, so it is not one of the redirect hosts this server allows (%s)", field, p.hosts.String())
	case !p.hosts.match(name):
		return deny(CodeURLNotAllowed, "argument %q: host %s is not one of the redirect hosts this server allows (%s)", field, name, p.hosts.String())
	}
	return allowed
}

// urlsRule renders the redirect URL rule for the operator.
func (p *Policy) urlsRule() string {
	switch {
	case !p.restrictHosts:
		return "any host"
	case len(p.hosts.patterns) == 0:
		return "none accepted (allow_hosts is empty)"
	}
	return "only on " + p.hosts.String()
}

// urlsSummary tells the agent the redirect URL rule, or "" when there is
// none.
func (p *Policy) urlsSummary() string {
	switch {
	case !p.restrictHosts:
		return ""
	case len(p.hosts.patterns) == 0:
		return " Redirect URLs (" + redirectFieldsText + ") are not accepted."
	}
	return " Redirect URLs (" + redirectFieldsText + ") must be on these hosts: " + p.hosts.String() + "."
}
