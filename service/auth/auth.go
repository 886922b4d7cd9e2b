package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Methods by which a [Principal] authenticated.
const (
	MethodToken = "token" // a static bearer token from the principals file
	MethodOAuth = "oauth" // an OAuth 2.1 access token (a JWT)
)

// OAuthPrefix starts the name of every OAuth principal: "oauth:" followed
// by the value of the configured claim (sub or client_id). Token principal
// names cannot contain a colon, so the two never collide.
const OAuthPrefix = "oauth:"

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in records and per-principal limits: a
	// token principal's name, or [OAuthPrefix] + the claim value.
	Name string
	// Policy is the caller's policy file (resolved path); "" means the
	// server's default policy.
	Policy string
	// Method is how the caller authenticated: [MethodToken] or [MethodOAuth].
	Method string
	// Admin marks a principal the principals file lets decide pending
	// approvals through the admin endpoint.
	Admin bool
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal in ctx, put there by [NewContext] (as
// [Authenticator.Middleware] does).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Sentinel errors matched (with errors.Is) by the [*Error] values that
// [Authenticator.Authenticate] returns.
var (
	// ErrNoToken means the request has no bearer token in its
	// Authorization header (HTTP 401).
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken means the token is unknown, malformed, expired, for
	// another audience or issuer, or cannot be verified now (HTTP 401,
	// error="invalid_token").
	ErrInvalidToken = errors.New("invalid token")
	// ErrInsufficientScope means a valid OAuth token lacks a required
	// scope (HTTP 403, error="insufficient_scope").
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrForbidden means a valid OAuth token names a principal that the
	// principals file does not admit (HTTP 403).
	ErrForbidden = errors.New("principal not allowed")
)

// Error is why a request was not authenticated. Reason is safe to show the
// caller and to log: it never contains the token.
type Error struct {
	// Kind is one of [ErrNoToken], [ErrInvalidToken],
	// [ErrInsufficientScope], [ErrForbidden].
	Kind error
	// Reason says what was wrong, for the caller and the log.
	Reason string
	// Scopes are the required scopes, set with [ErrInsufficientScope].
	Scopes []string
}

// Error returns the kind and the reason.
func (e *Error) Error() string { return "auth: " + e.Kind.Error() + ": " + e.Reason }

// Unwrap returns the Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Status returns the HTTP status for the error: 401 for [ErrNoToken] and
// [ErrInvalidToken], 403 for [ErrInsufficientScope] and [ErrForbidden].
func (e *Error) Status() int {
	switch e.Kind {
	case ErrInsufficientScope, ErrForbidden:
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}

// code is the error code of RFC 6750 §3.1 ("" for none) or, for a refused
// principal, access_denied, used in the JSON body.
func (e *Error) code() string {
	switch e.Kind {
	case ErrInvalidToken:
		return "invalid_token"
	case ErrInsufficientScope:
		return "insufficient_scope"
	case ErrForbidden:
		return "access_denied"
	default:
		return ""
	}
}

func invalidf(format string, args ...any) *Error {
	return &Error{Kind: ErrInvalidToken, Reason: fmt.Sprintf(format, args...)}
}

// Option configures an [Authenticator].
type Option func(*Authenticator)

// WithHTTPClient sets the client used to fetch the issuer's metadata and
// keys; its timeout and redirect policy are its own. Default: a client with
// a 10 s timeout that follows at most 5 redirects, to https URLs (or http
// on a loopback host) only.
func WithHTTPClient(c *http.Client) Option {
	return func(a *Authenticator) {
		if c != nil {
			a.client = c
		}
	}
}

// WithLogger sets where refused requests (at info level) and problems
// fetching the issuer's keys (at warn level) are logged; tokens never are.
// Default: nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(a *Authenticator) {
		if l != nil {
			a.log = l
		}
	}
}

// WithClock sets the clock used for token lifetimes and key refetch limits.
// Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(a *Authenticator) {
		if now != nil {
			a.now = now
		}
	}
}

// Authenticator authenticates HTTP requests against a principals file. It
// is safe for concurrent use.
type Authenticator struct {
	file   *File
	tokens []tokenEntry
	oauth  *verifier // nil without OAuth
	meta   []byte    // protected resource metadata JSON; nil without OAuth
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
}

type tokenEntry struct {
	hash [sha256.Size]byte
	p    Principal
}

// New returns an Authenticator for f. It checks f again (it may have been
// built in code), but does not contact the OAuth issuer: keys are fetched on
// the first OAuth request (or by [Authenticator.Warm]), so the server starts
// even while the issuer is down.
func New(f *File, opts ...Option) (*Authenticator, error) {
	if f == nil {
		return nil, errors.New("auth: no principals file")
	}
	if len(f.Principals) == 0 && f.OAuth == nil {
		return nil, errors.New("auth: the principals file has neither principals nor oauth")
	}
	a := &Authenticator{
		file:   f,
		client: &http.Client{Timeout: 10 * time.Second, CheckRedirect: checkRedirect},
		log:    slog.New(slog.DiscardHandler),
		now:    time.Now,
	}
	for _, o := range opts {
		o(a)
	}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for _, p := range f.Principals {
		if err := CheckName(p.Name); err != nil {
			return nil, fmt.Errorf("auth: principal: %w", err)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("auth: principal %s is listed twice", p.Name)
		}
		names[p.Name] = true
		if err := checkHash(p.TokenSHA256); err != nil {
			return nil, fmt.Errorf("auth: principal %s: token_sha256 %w", p.Name, err)
		}
		var h [sha256.Size]byte
		_, _ = hex.Decode(h[:], []byte(p.TokenSHA256))
		if hashes[h] {
			return nil, fmt.Errorf("auth: principal %s has the same token_sha256 as another", p.Name)
		}
		hashes[h] = true
		a.tokens = append(a.tokens, tokenEntry{hash: h, p: Principal{Name: p.Name, Policy: p.Policy, Method: MethodToken, Admin: p.Admin}})
	}
	if o := f.OAuth; o != nil {
		v, err := newVerifier(o, a)
		if err != nil {
			return nil, err
		}
		a.oauth = v
		a.meta, err = json.Marshal(protectedResourceMetadata{
			Resource:               o.Resource,
			AuthorizationServers:   []string{o.Issuer},
			BearerMethodsSupported: []string{"header"},
			ScopesSupported:        o.Scopes,
		})
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	return a, nil
}

// checkRedirect keeps the issuer's metadata and keys on https: a redirect
// must not downgrade what checkURL required.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	u := req.URL
	if u.Scheme != "https" && (u.Scheme != "http" || !isLoopback(u.Hostname())) {
		return fmt.Errorf("refused a redirect to %s: https is required", u.Redacted())
	}
	return nil
}

// OAuthEnabled reports whether OAuth access tokens are accepted.
func (a *Authenticator) OAuthEnabled() bool { return a.oauth != nil }

// Policies returns the distinct policy paths the principals use, sorted,
// with "" standing for the server's default policy (see [File.Policies]).
// The server loads each one at start.
func (a *Authenticator) Policies() []string { return a.file.Policies() }

// Warm fetches the OAuth issuer's metadata and keys now, so that the first
// request does not wait for them. Its error is worth a warning, not a
// failed start: requests are refused (401) until the keys can be fetched,
// and fetching is retried on later requests. Without OAuth it does nothing.
func (a *Authenticator) Warm(ctx context.Context) error {
	if a.oauth == nil {
		return nil
	}
	return a.oauth.warm(ctx)
}

// maxTokenLen bounds a bearer token; real JWTs are a few kilobytes.
const maxTokenLen = 16 << 10

// Authenticate returns the request's principal, from its Authorization:
// Bearer header (never from the URL or the body). Its error is an [*Error]
// whose [Error.Status] is the HTTP status to answer.
//
// A token is first compared with every token principal's hash, in constant
// time; a token that matches none is, with OAuth configured, verified as a
// JWT access token.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	token, err := bearer(r)
	if err != nil {
		return Principal{}, err
	}
	if p, ok := a.matchToken(token); ok {
		return p, nil
	}
	if a.oauth == nil || strings.HasPrefix(token, TokenPrefix) {
		return Principal{}, invalidf("unknown bearer token")
	}
	return a.oauth.authenticate(r.Context(), token)
}

// bearer extracts the token of the request's Authorization: Bearer header.
func bearer(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	switch len(hs) {
	case 0:
		return "", &Error{Kind: ErrNoToken, Reason: "this server needs a bearer token in the Authorization header"}
	case 1:
	default:
		return "", invalidf("the request has several Authorization headers")
	}
	scheme, token, _ := strings.Cut(hs[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// RFC 6750 §3.1: an unsupported method is like no credentials.
		return "", &Error{Kind: ErrNoToken, Reason: "this server accepts only bearer tokens in the Authorization header"}
	}
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return "", &Error{Kind: ErrNoToken, Reason: "the Authorization header has an empty bearer token"}
	case len(token) > maxTokenLen:
		return "", invalidf("the bearer token is longer than %d bytes", maxTokenLen)
	case strings.ContainsAny(token, " \t"):
		return "", invalidf("the bearer token contains spaces")
	}
	return token, nil
}

// matchToken compares the token's hash with every principal's, in constant
// time and without stopping at a match, so timing reveals neither whether
// nor which principal matched.
func (a *Authenticator) matchToken(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], a.tokens[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Principal{}, false
	}
	return a.tokens[found].p, true
}

// Middleware authenticates every request before next sees it: it answers
// 401 or 403 itself (see [Authenticator.WriteError]), or calls next with the
// [Principal] in the request's context ([FromContext]). The Authorization
// header is removed from the request next sees, so nothing downstream can
// log or forward the token.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			a.logRefusal(r, err)
			a.WriteError(w, err)
			return
		}
		a.log.Debug("auth: authenticated", "principal", p.Name, "method", p.Method)
		r2 := r.Clone(NewContext(r.Context(), p))
		r2.Header.Del("Authorization")
		next.ServeHTTP(w, r2)
	})
}

func (a *Authenticator) logRefusal(r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		a.log.Warn("auth: request refused", "status", http.StatusUnauthorized, "reason", "internal error", "remote", r.RemoteAddr)
		return
	}
	a.log.Info("auth: request refused", "status", e.Status(), "error", e.Kind.Error(), "reason", e.Reason, "remote", r.RemoteAddr, "path", r.URL.Path)
}

// WriteError answers a request that [Authenticator.Authenticate] refused:
// the status of the [*Error] (401 for anything else), a WWW-Authenticate
// challenge, and a small JSON body {"error", "error_description"} with the
// reason.
//
// The challenge is, for a 401, with OAuth configured:
//
//	Bearer resource_metadata="<MetadataURL>"
//	Bearer resource_metadata="<MetadataURL>", error="invalid_token"
//
// and without OAuth:
//
//	Bearer realm="clink-mcp"
//	Bearer realm="clink-mcp", error="invalid_token"
//
// the second form when a token was given. A missing scope (403) challenges
// with error="insufficient_scope" and the required scope; a refused
// principal (403) gets no challenge, since another token of the same
// caller would not help.
func (a *Authenticator) WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = invalidf("the request could not be authenticated")
	}
	base := `realm="clink-mcp"`
	if a.oauth != nil {
		base = `resource_metadata="` + a.oauth.metadataURL + `"`
	}
	switch e.Kind {
	case ErrForbidden:
	case ErrInsufficientScope:
		w.Header().Set("WWW-Authenticate", `Bearer `+base+`, error="insufficient_scope", scope="`+strings.Join(e.Scopes, " ")+`"`)
	case ErrNoToken:
		w.Header().Set("WWW-Authenticate", `Bearer `+base)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer `+base+`, error="invalid_token"`)
	}
	code := e.code()
	if code == "" {
		code = "unauthorized"
	}
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, e.Reason})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status())
	_, _ = w.Write(append(body, '\n'))
}
