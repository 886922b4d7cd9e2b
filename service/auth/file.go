package auth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/clink-mcp/clink-mcp/internal/textcheck"
	"github.com/clink-mcp/clink-mcp/policy/yamlfile"
)

// File is a principals file: who may call the HTTP server, and under which
// policy. [Load] reads one from YAML; tests and embedders may also build one
// in code and pass it to [New], which checks it again.
type File struct {
	// Path is where the file was read from ("" when built in code).
	Path string
	// Principals are the bearer-token principals, in file order.
	Principals []TokenPrincipal
	// OAuth configures the OAuth 2.1 resource server; nil when the file has
	// no oauth section.
	OAuth *OAuth
}

// TokenPrincipal is a principal that authenticates with a static bearer
// token, of which only the SHA-256 is kept.
type TokenPrincipal struct {
	// Name identifies the principal in records and limits: 1 to 64 of
	// A-Z a-z 0-9 . _ - (see [CheckName]).
	Name string
	// TokenSHA256 is the lowercase hex SHA-256 of the token ([HashToken]).
	TokenSHA256 string
	// Policy is the principal's policy file, resolved against the
	// principals file's folder; "" means the server's default policy.
	Policy string
	// Admin lets the principal decide pending approvals through the admin
	// endpoint (admin: true).
	Admin bool
	// Line is the principal's line in the file; 0 when built in code.
	Line int
}

// OAuth configures the OAuth 2.1 resource server: access tokens are JWTs
// from one issuer, for this server's resource URL.
type OAuth struct {
	// Issuer is the authorization server's issuer identifier, compared
	// exactly with the metadata's issuer and the tokens' iss claim. https,
	// or http on a loopback host.
	Issuer string
	// Resource is this server's resource URL (for example
	// https://mcp.example.com/mcp): the audience every token must carry.
	// https, or http on a loopback host; no query or fragment.
	Resource string
	// Claim names the principal: "sub" (the default) or "client_id".
	Claim string
	// Scopes are required in every token (scope or scp claim); may be empty.
	Scopes []string
	// Principals maps a claim value to its settings. A token whose claim
	// value is not listed is refused with 403 unless AllowUnlisted.
	Principals map[string]OAuthPrincipal
	// AllowUnlisted admits a valid token whose claim value is not listed in
	// Principals, under the server's default policy.
	AllowUnlisted bool
}

// OAuthPrincipal is the settings of one OAuth claim value.
type OAuthPrincipal struct {
	// Policy is the principal's policy file, resolved against the
	// principals file's folder; "" means the server's default policy.
	Policy string
	// Admin lets the principal decide pending approvals through the admin
	// endpoint (admin: true).
	Admin bool
	// Line is the entry's line in the file; 0 when built in code.
	Line int
}

// Claims that may name an OAuth principal.
const (
	ClaimSubject  = "sub"
	ClaimClientID = "client_id"
)

// Policies returns the distinct policy paths the principals use, sorted;
// "" (the server's default policy) is among them if any principal uses the
// default, including unlisted OAuth callers when AllowUnlisted is set.
func (f *File) Policies() []string {
	set := map[string]bool{}
	for _, p := range f.Principals {
		set[p.Policy] = true
	}
	if o := f.OAuth; o != nil {
		for _, p := range o.Principals {
			set[p.Policy] = true
		}
		if o.AllowUnlisted {
			set[""] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// ErrInvalidFile is matched (with errors.Is) by every [ParseError].
var ErrInvalidFile = errors.New("invalid principals file")

// ParseError lists every problem found in a principals file. Its message
// has one line per problem, "FILE:LINE: problem", in line order.
type ParseError yamlfile.Error

// Problem is one problem in a principals file. Line is 1-based; 0 means the
// problem is with the file as a whole.
type Problem = yamlfile.Problem

// Error returns one "FILE:LINE: problem" line per problem.
func (e *ParseError) Error() string { return (*yamlfile.Error)(e).Error() }

// Unwrap returns [ErrInvalidFile].
func (e *ParseError) Unwrap() error { return ErrInvalidFile }

// maxFileSize bounds a principals file; a real one is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads and parses the principals file at path (see the package
// documentation for the format). Every problem found is reported, each with
// its line, in one [*ParseError]; a file that cannot be read gives an error
// naming it.
//
// checkPolicy, if not nil, is called once for every distinct policy file the
// principals reference (its resolved path); its error is reported at every
// line that references that file.
func Load(path string, checkPolicy func(path string) error) (*File, error) {
	data, err := yamlfile.ReadFile(path, maxFileSize)
	var tooLarge *yamlfile.Error
	if errors.As(err, &tooLarge) {
		return nil, (*ParseError)(tooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("principals file: %w", err)
	}
	return Parse(path, data, checkPolicy)
}

// Parse parses a principals file's content, like [Load]. filename names the
// file in errors, and relative policy paths are resolved against its folder.
func Parse(filename string, data []byte, checkPolicy func(path string) error) (*File, error) {
	fp := &fileParser{dir: filepath.Dir(filename), checkPolicy: checkPolicy, checked: map[string]error{}}
	f := fp.parse(data)
	if err := fp.Err(filename); err != nil {
		return nil, (*ParseError)(err)
	}
	f.Path = filename
	return f, nil
}

// fileParser reads a principals file; its methods parse the file's sections.
type fileParser struct {
	yamlfile.Parser
	dir         string
	checkPolicy func(string) error
	checked     map[string]error // by resolved policy path
}

const emptyFile = "the file is empty; it needs a principals list, an oauth section, or both"

func (fp *fileParser) parse(data []byte) *File {
	root := fp.Decode(data, "principals file", emptyFile)
	if root == nil {
		return nil
	}
	top := fp.Fields(root, "the top level", "principals", "oauth")
	if top == nil {
		return nil
	}
	f := &File{}
	ps, hasPrincipals := top["principals"]
	o, hasOAuth := top["oauth"]
	if !hasPrincipals && !hasOAuth {
		fp.Errorf(root, "neither principals nor oauth is set; list principals with bearer tokens, configure oauth, or both")
	}
	if hasPrincipals {
		f.Principals = fp.principals(ps.Value)
	}
	if hasOAuth {
		f.OAuth = fp.oauth(o.Value)
	}
	return f
}

// str reads a string scalar.
func (fp *fileParser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			fp.Errorf(n, "%s must be a string, not %s (quote it)", what, strings.TrimPrefix(n.ShortTag(), "!!"))
		} else {
			fp.Errorf(n, "%s must be a string", what)
		}
		return "", false
	}
	return n.Value, true
}

// boolean reads a YAML boolean (true or false, unquoted).
func (fp *fileParser) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		switch n.Value {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	fp.Errorf(n, "%s must be true or false", what)
	return false, false
}

func (fp *fileParser) principals(n *yaml.Node) []TokenPrincipal {
	if n.Kind != yaml.SequenceNode {
		fp.Errorf(n, "principals must be a list of entries with name and token_sha256")
		return nil
	}
	if len(n.Content) == 0 {
		fp.Errorf(n, "principals lists no principal; list at least one, or remove it")
		return nil
	}
	var out []TokenPrincipal
	names := map[string]int{}
	hashes := map[string]int{}
	for _, item := range n.Content {
		f := fp.Fields(item, "principal", "name", "token_sha256", "policy", "admin")
		if f == nil {
			continue
		}
		p := TokenPrincipal{Line: item.Line}
		ok := true
		if e, has := f["name"]; !has {
			fp.Errorf(item, "principal: name is missing")
			ok = false
		} else if name, good := fp.str(e.Value, "principal: name"); !good {
			ok = false
		} else if err := CheckName(name); err != nil {
			fp.Errorf(e.Value, "principal: %v", err)
			ok = false
		} else if first, dup := names[name]; dup {
			fp.Errorf(e.Value, "principal %s is listed twice (first at line %d)", name, first)
			ok = false
		} else {
			names[name] = e.Value.Line
			p.Name = name
		}
		where := "principal"
		if p.Name != "" {
			where = "principal " + p.Name
		}
		if e, has := f["token_sha256"]; !has {
			fp.Errorf(item, "%s: token_sha256 is missing; `clink-mcp token new NAME` prints a token and its hash", where)
			ok = false
		} else if h, good := fp.str(e.Value, where+": token_sha256"); !good {
			ok = false
		} else if err := checkHash(h); err != nil {
			fp.Errorf(e.Value, "%s: token_sha256 %v", where, err)
			ok = false
		} else if first, dup := hashes[h]; dup {
			fp.Errorf(e.Value, "%s has the same token_sha256 as the principal at line %d; each principal needs its own token", where, first)
			ok = false
		} else {
			hashes[h] = item.Line
			p.TokenSHA256 = h
		}
		if e, has := f["policy"]; has {
			path, good := fp.policy(e.Value, where)
			ok = ok && good
			p.Policy = path
		}
		if e, has := f["admin"]; has {
			admin, good := fp.boolean(e.Value, where+": admin")
			ok = ok && good
			p.Admin = admin
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// policy reads a policy path, resolves it against the principals file's
// folder and has it checked.
func (fp *fileParser) policy(n *yaml.Node, where string) (string, bool) {
	s, ok := fp.str(n, where+": policy")
	if !ok {
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		fp.Errorf(n, "%s: policy is empty; remove it to use the server's default policy", where)
		return "", false
	}
	path := s
	if !filepath.IsAbs(path) {
		path = filepath.Join(fp.dir, path)
	}
	path = filepath.Clean(path)
	if fp.checkPolicy != nil {
		err, done := fp.checked[path]
		if !done {
			err = fp.checkPolicy(path)
			fp.checked[path] = err
		}
		if err != nil {
			msg := strings.ReplaceAll(err.Error(), "\n", "\n  ")
			fp.Errorf(n, "%s: policy %s: %s", where, s, msg)
			return "", false
		}
	}
	return path, true
}

var oauthKeys = []string{"issuer", "resource", "claim", "scopes", "principals", "allow_unlisted"}

func (fp *fileParser) oauth(n *yaml.Node) *OAuth {
	f := fp.Fields(n, "oauth", oauthKeys...)
	if f == nil {
		return nil
	}
	o := &OAuth{Claim: ClaimSubject}
	ok := true
	if e, has := f["issuer"]; !has {
		fp.Errorf(n, "oauth: issuer is missing: the authorization server's issuer URL")
		ok = false
	} else if s, good := fp.str(e.Value, "oauth: issuer"); !good {
		ok = false
	} else if err := checkURL(s); err != nil {
		fp.Errorf(e.Value, "oauth: issuer %v", err)
		ok = false
	} else {
		o.Issuer = s
	}
	if e, has := f["resource"]; !has {
		fp.Errorf(n, "oauth: resource is missing: this server's URL, such as https://mcp.example.com/mcp, which tokens must name as their audience")
		ok = false
	} else if s, good := fp.str(e.Value, "oauth: resource"); !good {
		ok = false
	} else if err := checkResource(s); err != nil {
		fp.Errorf(e.Value, "oauth: resource %v", err)
		ok = false
	} else {
		o.Resource = s
	}
	if e, has := f["claim"]; has {
		if s, good := fp.str(e.Value, "oauth: claim"); !good {
			ok = false
		} else if s != ClaimSubject && s != ClaimClientID {
			fp.Errorf(e.Value, "oauth: claim must be %s or %s, not %q", ClaimSubject, ClaimClientID, s)
			ok = false
		} else {
			o.Claim = s
		}
	}
	if e, has := f["scopes"]; has {
		var good bool
		o.Scopes, good = fp.scopes(e.Value)
		ok = ok && good
	}
	if e, has := f["allow_unlisted"]; has {
		var good bool
		o.AllowUnlisted, good = fp.Bool(e.Value, "oauth: allow_unlisted")
		ok = ok && good
	}
	if e, has := f["principals"]; has {
		var good bool
		o.Principals, good = fp.oauthPrincipals(e.Value)
		ok = ok && good
	}
	if ok && len(o.Principals) == 0 && !o.AllowUnlisted {
		fp.Errorf(n, "oauth: no principals are listed and allow_unlisted is false, so every OAuth caller would be refused; list principals or set allow_unlisted: true")
		ok = false
	}
	if !ok {
		return nil
	}
	return o
}

func (fp *fileParser) scopes(n *yaml.Node) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		fp.Errorf(n, "oauth: scopes must be a list of scope names")
		return nil, false
	}
	ok := true
	var out []string
	seen := map[string]bool{}
	for _, item := range n.Content {
		s, good := fp.str(item, "oauth: scopes: each entry")
		if !good {
			ok = false
			continue
		}
		if err := checkScope(s); err != nil {
			fp.Errorf(item, "oauth: scopes: %v", err)
			ok = false
			continue
		}
		if seen[s] {
			fp.Errorf(item, "oauth: scopes: %s is listed twice", s)
			ok = false
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, ok
}

func (fp *fileParser) oauthPrincipals(n *yaml.Node) (map[string]OAuthPrincipal, bool) {
	es, ok := fp.Entries(n, "oauth: principals")
	if !ok {
		return nil, false
	}
	out := make(map[string]OAuthPrincipal, len(es))
	for _, e := range es {
		where := "oauth: principal " + strconv.Quote(e.Key.Value)
		if err := checkClaimValue(e.Key.Value); err != nil {
			fp.Errorf(e.Key, "oauth: principals: %v", err)
			ok = false
			continue
		}
		p := OAuthPrincipal{Line: e.Key.Line}
		if e.Value.Kind == yaml.ScalarNode && e.Value.ShortTag() == "!!null" {
			out[e.Key.Value] = p // listed with the defaults
			continue
		}
		f := fp.Fields(e.Value, where, "policy", "admin")
		if f == nil {
			ok = false
			continue
		}
		if ae, has := f["admin"]; has {
			admin, good := fp.boolean(ae.Value, where+": admin")
			if !good {
				ok = false
				continue
			}
			p.Admin = admin
		}
		if pe, has := f["policy"]; has {
			path, good := fp.policy(pe.Value, where)
			if !good {
				ok = false
				continue
			}
			p.Policy = path
		}
		out[e.Key.Value] = p
	}
	return out, ok
}

// validName reports whether name is 1 to 64 of A-Z a-z 0-9 . _ -.
func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ReservedName is the name of the local principal (stdio calls, and HTTP
// without a principals file), which no token principal may take: it would
// share the local user's duplicate guard and per-principal counters.
const ReservedName = "local"

// CheckName reports whether name is a valid token principal name: 1 to 64
// of A-Z a-z 0-9 . _ -, and not [ReservedName]. Names have no colon, so
// they never collide with OAuth principals' names ([OAuthPrefix]).
func CheckName(name string) error {
	if !validName(name) {
		return fmt.Errorf("name %q is not valid: use 1 to 64 letters, digits, dots, underscores or hyphens", name)
	}
	if strings.EqualFold(name, ReservedName) {
		return fmt.Errorf("name %q is reserved for the local principal (stdio calls); choose another", name)
	}
	return nil
}

func checkHash(h string) error {
	if len(h) != 64 || strings.ToLower(h) != h {
		return errors.New("must be 64 lowercase hex digits (the SHA-256 of the token, as `clink-mcp token new` prints it)")
	}
	if _, err := hex.DecodeString(h); err != nil {
		return errors.New("must be 64 lowercase hex digits (the SHA-256 of the token, as `clink-mcp token new` prints it)")
	}
	return nil
}

// checkURL checks an issuer or resource URL: absolute, https (http only on
// a loopback host, for tests and local development), no credentials, query
// or fragment (RFC 8414 §2, RFC 9728 §1.2).
//
// A URL with credentials is never repeated with them: the error names it
// without its user info, or, when it does not parse, not at all.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case (err != nil || u.Host == "" || u.Opaque != "") && strings.Contains(s, "@"):
		return errors.New("is not an absolute URL (it is not shown: it may hold credentials)")
	case err == nil && u.User != nil:
		u.User = nil
		return fmt.Errorf("%q must not contain credentials (they are not shown)", u.String())
	case err != nil || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%q must use https (http is allowed only on a loopback host)", s)
		}
	default:
		return fmt.Errorf("%q must use https", s)
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q must not have a fragment", s)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("%q must not have a query", s)
	}
	return nil
}

// checkResource checks a resource URL: checkURL's rules, and a path (as
// decoded) of letters, digits, / and the other characters RFC 3986 allows
// in a path unescaped (-._~!$&'()*+,;=:@), without empty, . or ..
// segments. The protected resource metadata is served at a path built from
// it (MetadataPaths), which an http.ServeMux pattern must be able to hold
// and a request reach: a space would read as a method, braces as a
// wildcard (registering either panics), a percent sign as an escape, and
// requests for an unclean path are redirected to the clean one.
func checkResource(s string) error {
	if err := checkURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s) // parsed by checkURL
	for _, r := range u.Path {
		if !isPathChar(r) {
			return fmt.Errorf("%q has %q in its path: use letters, digits, / and -._~!$&'()*+,;=:@ only (the protected resource metadata is served at a path built from it)", s, r)
		}
	}
	// Requests are redirected to their clean path, so the metadata could
	// not be served at an unclean one.
	if p := strings.TrimSuffix(u.Path, "/"); p != "" && (p == "/" || path.Clean(p) != p) {
		return fmt.Errorf("%q has an empty, . or .. segment in its path (the protected resource metadata is served at a path built from it)", s)
	}
	return nil
}

// isPathChar reports whether r may appear in a resource URL's path: RFC
// 3986 unreserved characters, sub-delims, ':', '@' and '/'.
func isPathChar(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("-._~!$&'()*+,;=:@/", r)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkScope(s string) error {
	if s == "" {
		return errors.New("a scope name cannot be empty")
	}
	for _, r := range s {
		// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return fmt.Errorf("%q is not a valid scope name (printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	return nil
}

// maxClaimValue bounds the claim value that names an OAuth principal; it
// ends up in every record.
const maxClaimValue = 256

func checkClaimValue(s string) error {
	if s == "" {
		return errors.New("the claim value is empty")
	}
	if len(s) > maxClaimValue {
		return fmt.Errorf("the claim value is longer than %d bytes", maxClaimValue)
	}
	if !utf8.ValidString(s) {
		return errors.New("the claim value is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("the claim value contains control characters")
		}
		// Invisible characters (zero-width, bidi overrides, line and
		// paragraph separators) would let two principals' names look the
		// same in records, logs and the approvals an operator decides.
		if textcheck.Invisible(r) {
			return errors.New("the claim value contains invisible formatting characters")
		}
	}
	return nil
}
