package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// ErrInvalidEmail is matched (with errors.Is) by errors from
// [NormalizeEmail] and by errors for malformed email patterns.
var ErrInvalidEmail = errors.New("invalid email address")

// domainProfile converts a domain to the ASCII form it is looked up by:
// mapped per UTS #46 (case folded, full-width forms narrowed), validated per
// IDNA2008 (hyphens, joiners, the Bidi rule, STD3 characters, DNS lengths),
// Punycode-encoded. Non-transitional, so "ß" stays "ß" (xn--...) rather than
// becoming "ss": a different domain is not silently rewritten into another.
var domainProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.Transitional(false),
)

// NormalizeEmail returns the address in the form the policy compares: spaces
// around it trimmed, the local part lower-cased, the domain lower-cased and
// converted to ASCII (IDNA, "bücher.example" becomes "xn--bcher-kva.example").
//
// Only a bare address is accepted: display names ("Alice <a@x.com>"),
// comments, quoted local parts, several addresses, several "@", domain
// literals ("a@[1.2.3.4]"), non-ASCII local parts and single-label or
// numeric top-level domains are refused with an error, matching
// [ErrInvalidEmail], that says what is wrong.
//
// Local parts are compared case-insensitively: almost every mail system
// delivers Alice@ and alice@ to the same mailbox, and a case-sensitive deny
// list would be bypassed by a change of case.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", emailErr("the email address is empty")
	}
	if len(s) > 254 {
		return "", emailErr("the email address is longer than 254 characters")
	}
	if !utf8.ValidString(s) {
		return "", emailErr("the email address is not valid UTF-8")
	}
	switch {
	case strings.ContainsAny(s, "<>"):
		return "", emailErr("give the bare address (like alice@example.com), without a display name or angle brackets")
	case strings.ContainsAny(s, "()"):
		return "", emailErr("email addresses with comments in parentheses are not accepted")
	case strings.Contains(s, `"`):
		return "", emailErr("email addresses with a quoted local part are not accepted")
	case strings.ContainsAny(s, ",;"):
		return "", emailErr("give exactly one email address")
	}
	at := strings.IndexByte(s, '@')
	switch {
	case at < 0:
		return "", emailErr("the email address has no @")
	case strings.IndexByte(s[at+1:], '@') >= 0:
		return "", emailErr("the email address has more than one @")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return "", err
	}
	nd, err := normalizeDomain(domain)
	if err != nil {
		return "", err
	}
	nl := lowerASCII(local)
	if nl == local && nd == domain {
		return s, nil // already normal: no allocation on the hot path
	}
	out := nl + "@" + nd
	if len(out) > 254 {
		return "", emailErr("the email address is longer than 254 characters")
	}
	return out, nil
}

func emailErr(msg string) error { return &codedError{kind: ErrInvalidEmail, msg: msg} }

// checkLocal accepts an RFC 5322 dot-atom of ASCII characters.
func checkLocal(local string) error {
	switch {
	case local == "":
		return emailErr("the email address has nothing before the @")
	case len(local) > 64:
		return emailErr("the part before the @ is longer than 64 characters")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return emailErr("the part before the @ has a leading, trailing or doubled dot")
	}
	for i := 0; i < len(local); i++ {
		b := local[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", b) >= 0:
		case b >= utf8.RuneSelf:
			return emailErr("the part before the @ has non-ASCII characters, which are not accepted")
		case b == ' ' || b == '\t':
			return emailErr("the email address contains spaces")
		default:
			return emailErr(fmt.Sprintf("the part before the @ contains %q, which is not accepted", rune(b)))
		}
	}
	return nil
}

// normalizeDomain returns the lower-case ASCII (IDNA) form of a mail domain.
func normalizeDomain(d string) (string, error) {
	if d == "" {
		return "", emailErr("the email address has no domain after the @")
	}
	if strings.ContainsAny(d, "[]") {
		return "", emailErr("email addresses with a literal IP address as domain are not accepted")
	}
	if isNormalASCIIDomain(d) {
		return d, nil
	}
	if isASCII(d) {
		// Explain what is wrong in plain words before IDNA has its say.
		if err := checkDomainShape(lowerASCII(d)); err != nil {
			return "", err
		}
	}
	a, ok := toASCIIDomain(d)
	if !ok {
		return "", emailErr(fmt.Sprintf("the domain %s is not a valid domain name", quoteInput(d)))
	}
	if err := checkDomainShape(a); err != nil {
		return "", err
	}
	return a, nil
}

// toASCIIDomain is d in the ASCII form domainProfile gives it, for email
// domains and URL hosts alike. That form must be a fixed point, or one
// name could normalise to two different strings.
func toASCIIDomain(d string) (string, bool) {
	if isNormalASCIIDomain(d) {
		return d, true
	}
	a, err := domainProfile.ToASCII(d)
	if err != nil {
		return "", false
	}
	if again, err := domainProfile.ToASCII(a); err != nil || again != a {
		return "", false
	}
	return a, true
}

// matchSubdomain reports whether name is a subdomain, at any depth, of a
// domain in m: only suffixes that start after a dot count, so
// "example.net" in m matches a.example.net and a.b.example.net, never
// example.net itself or badexample.net.
func matchSubdomain(m map[string]struct{}, name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if _, ok := m[name[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// isNormalASCIIDomain reports whether d is already what domainProfile would
// return for it: lower-case letters, digits and hyphens in well-formed
// labels, with no label that IDNA would have to decode ("xn--") or reject
// ("ab--"). The fuzz tests hold it to that.
func isNormalASCIIDomain(d string) bool {
	for i := 0; i < len(d); i++ {
		b := d[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	for rest := d; rest != ""; {
		label, after, _ := strings.Cut(rest, ".")
		if len(label) >= 4 && label[2:4] == "--" {
			return false
		}
		rest = after
	}
	return checkDomainShape(d) == nil
}

// checkDomainShape checks an ASCII domain: at most 253 characters, at least
// two labels of 1 to 63 letters, digits and inner hyphens, and a top-level
// label that is not all digits (so no IP addresses).
func checkDomainShape(d string) error {
	if len(d) > 253 {
		return emailErr("the domain is longer than 253 characters")
	}
	n, last := 0, ""
	for rest := d; ; {
		label, after, more := strings.Cut(rest, ".")
		if label == "" {
			return emailErr("the domain has an empty label (a leading, trailing or doubled dot)")
		}
		if len(label) > 63 {
			return emailErr("a label of the domain is longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return emailErr("a label of the domain starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-') {
				return emailErr(fmt.Sprintf("the domain contains %q, which is not accepted", rune(b)))
			}
		}
		n, last = n+1, label
		if !more {
			break
		}
		rest = after
	}
	if n < 2 {
		return emailErr("the domain has no dot; give a full domain like example.com")
	}
	if strings.Trim(last, "0123456789") == "" {
		return emailErr("the domain ends in a number; IP addresses are not accepted")
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s) // local parts are ASCII: ToLower is ASCII-only here
		}
	}
	return s
}

// MaskEmail returns a form of a normalised address that is safe for logs:
// the first character of the local part, "***", and the domain
// ("a***@example.com"). It never returns the whole local part: a one-letter
// local part is masked entirely ("***@example.com").
func MaskEmail(normalized string) string {
	at := strings.LastIndexByte(normalized, '@')
	if at < 0 {
		return "***"
	}
	local, domain := normalized[:at], normalized[at+1:]
	r, size := utf8.DecodeRuneInString(local)
	if size == len(local) || r == utf8.RuneError {
		return "***@" + domain
	}
	return string(r) + "***@" + domain
}

// patternKind tells how an email pattern matches.
type patternKind uint8

const (
	patternExact     patternKind = iota // alice@example.com
	patternDomain                       // *@example.com: any mailbox at the domain
	patternSubdomain                    // *@*.example.com: any mailbox at any subdomain, not the apex
)

// emailPattern is one parsed entry of allow_emails or deny_emails.
type emailPattern struct {
	kind  patternKind
	value string // the normalised address, or the normalised domain
}

// String returns the pattern in its normalised written form.
func (p emailPattern) String() string {
	switch p.kind {
	case patternDomain:
		return "*@" + p.value
	case patternSubdomain:
		return "*@*." + p.value
	}
	return p.value
}

// parseEmailPattern parses "alice@example.com", "*@example.com" or
// "*@*.example.com". Any other use of "*" is an error, and so is a domain
// pattern that covers a whole public suffix ("*@co.uk", "*@*.com"), which
// would let through nearly anyone.
func parseEmailPattern(s string) (emailPattern, error) {
	t := strings.TrimSpace(s)
	var kind patternKind
	var domain string
	switch {
	case strings.HasPrefix(t, "*@*."):
		kind, domain = patternSubdomain, t[len("*@*."):]
	case strings.HasPrefix(t, "*@"):
		kind, domain = patternDomain, t[len("*@"):]
	default:
		if strings.Contains(t, "*") {
			return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s is malformed: use an exact address, *@domain or *@*.domain", quoteInput(s)))
		}
		addr, err := NormalizeEmail(t)
		if err != nil {
			return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s is not a valid address: %v", quoteInput(s), err))
		}
		return emailPattern{kind: patternExact, value: addr}, nil
	}
	if strings.ContainsAny(domain, "*@") {
		return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s is malformed: use an exact address, *@domain or *@*.domain", quoteInput(s)))
	}
	if strings.ContainsAny(domain, " \t<>()\",;") {
		return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s has characters a domain cannot have", quoteInput(s)))
	}
	nd, err := normalizeDomain(domain)
	if err != nil {
		return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s has an invalid domain: %v", quoteInput(s), err))
	}
	if ps, _ := publicsuffix.PublicSuffix(nd); ps == nd {
		return emailPattern{}, emailErr(fmt.Sprintf("email pattern %s covers the public suffix %q, which would match nearly anyone", quoteInput(s), nd))
	}
	return emailPattern{kind: kind, value: nd}, nil
}

// emailSet matches normalised addresses against a list of patterns in time
// that does not depend on the length of the list: exact addresses and
// domains are map lookups, subdomain patterns one lookup per label of the
// address's domain.
type emailSet struct {
	patterns   []emailPattern // as written, in file order, for rendering
	exact      map[string]struct{}
	folded     map[string]struct{} // exact entries without their sub-address
	domains    map[string]struct{}
	subdomains map[string]struct{}
}

func (s *emailSet) add(p emailPattern) bool {
	var m *map[string]struct{}
	switch p.kind {
	case patternExact:
		m = &s.exact
	case patternDomain:
		m = &s.domains
	default:
		m = &s.subdomains
	}
	if *m == nil {
		*m = make(map[string]struct{})
	}
	if _, dup := (*m)[p.value]; dup {
		return false
	}
	(*m)[p.value] = struct{}{}
	if p.kind == patternExact {
		if s.folded == nil {
			s.folded = make(map[string]struct{})
		}
		s.folded[SubaddressBase(p.value)] = struct{}{}
	}
	s.patterns = append(s.patterns, p)
	return true
}

// SubaddressBase returns a normalised address without its RFC 5233
// sub-address: "pat+invoices@example.com" is "pat@example.com". Mail to
// either reaches one mailbox, so deny lists and per-customer limits treat
// them as one customer; an address whose local part starts with "+" has no
// sub-address to drop.
func SubaddressBase(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	if plus := strings.IndexByte(addr[:at], '+'); plus > 0 {
		return addr[:plus] + addr[at:]
	}
	return addr
}

// matchMailbox is match for a deny list: addr matches when its mailbox
// does, sub-addresses dropped on both sides, so "ceo+x@example.com" is
// denied by "ceo@example.com" and by "ceo+y@example.com".
func (s *emailSet) matchMailbox(addr string) bool {
	if _, ok := s.folded[SubaddressBase(addr)]; ok {
		return true
	}
	return s.match(addr)
}

// match reports whether a normalised address matches any pattern in s.
func (s *emailSet) match(addr string) bool {
	if _, ok := s.exact[addr]; ok {
		return true
	}
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	if _, ok := s.domains[domain]; ok {
		return true
	}
	return len(s.subdomains) > 0 && matchSubdomain(s.subdomains, domain)
}
