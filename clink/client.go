package clink

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/internal/loopback"
)

// DefaultUserAgent is the User-Agent a Client sends unless WithUserAgent
// sets one. The clink-mcp command sends "clink-mcp/" and its version, which
// it owns (set at link time).
const DefaultUserAgent = "clink-mcp"

// Environment names a Clink environment: Sandbox (Clink's UAT system) or Production.
type Environment string

// The Clink environments. Each has its own base URL and its own kind of API key.
const (
	Sandbox    Environment = "sandbox"
	Production Environment = "production"
)

// Base URLs of the Clink environments, from Clink's API documentation.
const (
	SandboxBaseURL    = "https://uat-api.clinkbill.com/api/"
	ProductionBaseURL = "https://api.clinkbill.com/api/"
)

// Key prefixes Clink issues for each environment.
const (
	sandboxKeyPrefix    = "sk_test_"
	productionKeyPrefix = "sk_prod_"
)

// Defaults of the client options.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 3
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 2 * time.Second
)

// ParseEnvironment returns the Environment named s: "sandbox" or "production".
func ParseEnvironment(s string) (Environment, error) {
	switch e := Environment(s); e {
	case Sandbox, Production:
		return e, nil
	}
	return "", fmt.Errorf("clink: unknown environment %s: want %q or %q", quoteShort(s), Sandbox, Production)
}

// DefaultBaseURL returns the environment's base URL, or "" for an unknown environment.
func (e Environment) DefaultBaseURL() string {
	switch e {
	case Sandbox:
		return SandboxBaseURL
	case Production:
		return ProductionBaseURL
	}
	return ""
}

// config is what the options set; NewClient turns it into a Client.
type config struct {
	env         Environment
	baseURL     string
	httpClient  *http.Client
	timeout     time.Duration
	userAgent   string
	now         func() time.Time
	maxAttempts int
	backoffBase time.Duration
	backoffMax  time.Duration
	errs        []error
}

func (c *config) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("clink: "+format, args...))
}

// Option configures a Client. An invalid option makes NewClient fail.
type Option func(*config)

// WithEnvironment selects the Clink environment. Default: Sandbox, so that a forgotten setting
// never moves real money. The API key must not belong to the other environment.
func WithEnvironment(env Environment) Option {
	return func(c *config) {
		if env.DefaultBaseURL() == "" {
			c.fail("unknown environment %s: want %q or %q", quoteShort(string(env)), Sandbox, Production)
			return
		}
		c.env = env
	}
}

// WithBaseURL overrides the environment's base URL (default: SandboxBaseURL or
// ProductionBaseURL; an empty u keeps it, so an unset setting can be passed through). It must
// be an absolute http or https URL without user info, query or fragment; a missing trailing
// slash is added, and endpoint paths are resolved below it. The key check against the
// environment still applies.
func WithBaseURL(u string) Option {
	return func(c *config) { c.baseURL = u }
}

// defaultIdleConns is how many idle connections to Clink the default transport keeps.
const defaultIdleConns = 64

// WithHTTPClient sets the HTTP client that sends requests. Default: a client with its own
// clone of http.DefaultTransport keeping up to 64 idle connections to Clink (the clone's
// default is 2, which makes a busy server dial for nearly every call). The client is copied, not modified: the copy never follows
// redirects (the API key must not follow a redirect to another host), and WithTimeout still
// bounds every attempt whatever the client's own Timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) {
		if hc == nil {
			c.fail("WithHTTPClient: nil *http.Client")
			return
		}
		c.httpClient = hc
	}
}

// WithTimeout bounds each attempt (request sent and response read). Default: DefaultTimeout
// (30s). A duration <= 0 is refused: a call must never wait forever. A call that retries can
// take up to WithMaxAttempts times this plus the backoff; bound the whole call with its
// context.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail("WithTimeout: timeout must be positive, got %v", d)
			return
		}
		c.timeout = d
	}
}

// WithUserAgent sets the User-Agent header. Default: DefaultUserAgent.
func WithUserAgent(ua string) Option {
	return func(c *config) {
		if ua == "" || !isHeaderSafe(ua, true) {
			c.fail("WithUserAgent: user agent must be non-empty printable ASCII")
			return
		}
		c.userAgent = ua
	}
}

// WithClock sets the clock used for X-Timestamp. Default: time.Now. For tests.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail("WithClock: nil clock")
			return
		}
		c.now = now
	}
}

// WithMaxAttempts sets how many times a call may be tried in total, retries included, when
// its failure allows a retry at all (see the package documentation). Default:
// DefaultMaxAttempts (3). 1 disables retries; n < 1 is refused.
func WithMaxAttempts(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("WithMaxAttempts: need at least 1 attempt, got %d", n)
			return
		}
		c.maxAttempts = n
	}
}

// WithBackoff sets the wait between attempts: base before the first retry, doubling for each
// further retry, capped at max, each wait jittered to between half and all of its value.
// Default: DefaultBackoffBase (200ms) and DefaultBackoffMax (2s). Both must be positive and
// base <= max. Tests use it to keep retries fast.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) {
		if base <= 0 || max < base {
			c.fail("WithBackoff: need 0 < base <= max, got base %v, max %v", base, max)
			return
		}
		c.backoffBase, c.backoffMax = base, max
	}
}

// Client calls the Clink API. It is safe for concurrent use. Its String, GoString and
// LogValue never reveal the API key.
type Client struct {
	key         string
	env         Environment
	baseURL     string
	hc          *http.Client
	timeout     time.Duration
	userAgent   string
	now         func() time.Time
	maxAttempts int
	backoffBase time.Duration
	backoffMax  time.Duration
}

// NewClient returns a Client that authenticates with apiKey. The key must be non-empty
// printable ASCII; a key whose prefix names the other environment (sk_test_ with Production,
// sk_prod_ with Sandbox) is refused. A key with neither prefix is accepted, because base URL
// overrides (a proxy, the built-in sandbox) and future key formats need it.
func NewClient(apiKey string, opts ...Option) (*Client, error) {
	cfg := config{
		env:         Sandbox,
		timeout:     DefaultTimeout,
		userAgent:   DefaultUserAgent,
		now:         time.Now,
		maxAttempts: DefaultMaxAttempts,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&cfg)
		}
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	if err := checkKey(apiKey, cfg.env); err != nil {
		return nil, err
	}
	base := cfg.env.DefaultBaseURL()
	if cfg.baseURL != "" {
		b, err := normalizeBaseURL(cfg.baseURL)
		if err != nil {
			return nil, err
		}
		if err := checkCleartext(b, cfg.env); err != nil {
			return nil, err
		}
		base = b
	}
	var hc http.Client
	if cfg.httpClient != nil {
		hc = *cfg.httpClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The client talks to one host; a server with many calls in flight
		// keeps that many connections warm instead of dialling (and, in
		// production, shaking hands over TLS) for all but two of them.
		t.MaxIdleConnsPerHost = defaultIdleConns
		hc.Transport = t
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{
		key:         apiKey,
		env:         cfg.env,
		baseURL:     base,
		hc:          &hc,
		timeout:     cfg.timeout,
		userAgent:   cfg.userAgent,
		now:         cfg.now,
		maxAttempts: cfg.maxAttempts,
		backoffBase: cfg.backoffBase,
		backoffMax:  cfg.backoffMax,
	}, nil
}

// checkKey refuses keys that cannot be right. Its errors never contain the key.
func checkKey(key string, env Environment) error {
	switch {
	case key == "":
		return errors.New("clink: empty API key")
	case !isHeaderSafe(key, false):
		return errors.New("clink: API key contains spaces, control or non-ASCII characters")
	case env == Production && strings.HasPrefix(key, sandboxKeyPrefix):
		return errors.New("clink: API key is a sandbox key (sk_test_) but the environment is production")
	case env == Sandbox && strings.HasPrefix(key, productionKeyPrefix):
		return errors.New("clink: API key is a production key (sk_prod_) but the environment is sandbox")
	}
	return nil
}

// isHeaderSafe reports whether s is printable ASCII (spaces allowed only if spaceOK).
func isHeaderSafe(s string, spaceOK bool) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < ' ' || b > '~' || (b == ' ' && !spaceOK) {
			return false
		}
	}
	return true
}

// checkCleartext refuses a production base URL (normalized) that would
// send the API key, which goes with every request, in clear over a network:
// plain http is accepted only to a loopback address (a local proxy that
// speaks TLS onwards).
func checkCleartext(base string, env Environment) error {
	u, err := url.Parse(base)
	if err != nil || env != Production || u.Scheme != "http" {
		return nil
	}
	if loopback.Host(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("clink: base URL %s must use https in production: the API key goes with every request (plain http is accepted to a loopback proxy only)", quoteShort(u.Redacted()))
}

// normalizeBaseURL checks a base URL override. Its errors quote the URL without any password.
func normalizeBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("clink: base URL is not a valid URL")
	}
	switch shown := quoteShort(u.Redacted()); {
	case u.User != nil:
		return "", fmt.Errorf("clink: base URL %s must not contain user info", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("clink: base URL %s must use http or https", shown)
	case u.Host == "":
		return "", fmt.Errorf("clink: base URL %s has no host", shown)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("clink: base URL %s must not have a query or fragment", shown)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u.String(), nil
}

// Environment returns the environment the client was built for.
func (c *Client) Environment() Environment { return c.env }

// BaseURL returns the base URL requests are sent to, always ending in "/".
func (c *Client) BaseURL() string { return c.baseURL }

// CloseIdleConnections closes idle keep-alive connections of the client's transport.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// String describes the client without its API key. It and the other printing methods have
// value receivers so that a dereferenced Client prints safely too.
func (c Client) String() string {
	return fmt.Sprintf("clink.Client{env: %s, baseURL: %s, key: [REDACTED]}", c.env, c.baseURL)
}

// GoString is String, so that %#v does not print the API key.
func (c Client) GoString() string { return c.String() }

// Format prints String for every verb, so that no verb prints the API key.
func (c Client) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue describes the client for log/slog without its API key.
func (c Client) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("env", string(c.env)),
		slog.String("baseURL", c.baseURL),
		slog.String("key", redacted),
	)
}
