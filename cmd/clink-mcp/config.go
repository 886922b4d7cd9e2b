package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lmittmann/tint"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// config is everything the server is run with, from flags and their
// environment twins (flags win).
type config struct {
	sandbox    bool
	env        string // "" until resolved: sandbox | production
	baseURL    string
	apiKeyFile string
	policyPath string
	logLevel   string
	logFormat  string
	secretFile string
	grace      string
	delay      string
	workers    string // stdio worker pool size

	httpAddr       string
	principalsPath string
	tlsCert        string
	tlsKey         string
	allowedOrigins string
	allowedHosts   string

	apiKey string // from CLINK_API_KEY or apiKeyFile, never a flag
	// keyFrom names the setting the API key came from, for messages:
	// "CLINK_API_KEY" or "api-key-file (CLINK_API_KEY_FILE)".
	keyFrom string
	// databaseURL is CLINK_DATABASE_URL, never a flag, never logged: it
	// holds a password.
	databaseURL string
}

// setting is one flag with its environment twin, so that the flag set, the
// environment and --help are written from one list.
type setting struct {
	flag, env, def, usage string
	boolean               bool
	target                func(*config) any // *string or *bool
}

var settings = []setting{
	{flag: "sandbox", env: "CLINK_SANDBOX", boolean: true, usage: "serve against the built-in Clink sandbox: sessions are simulated, no account needed",
		target: func(c *config) any { return &c.sandbox }},
	{flag: "env", env: "CLINK_ENV", usage: "Clink environment: sandbox or production (default: from the API key's prefix, production if it has none)",
		target: func(c *config) any { return &c.env }},
	{flag: "base-url", env: "CLINK_BASE_URL", usage: "override the Clink API base URL (https; plain http against the sandbox, or in production to a loopback proxy only)",
		target: func(c *config) any { return &c.baseURL }},
	{flag: "api-key-file", env: "CLINK_API_KEY_FILE", usage: "read the Clink API key from this file (else CLINK_API_KEY; never a flag)",
		target: func(c *config) any { return &c.apiKeyFile }},
	{flag: "policy", env: "CLINK_POLICY", usage: "policy file (YAML); required in production, the built-in demo policy otherwise",
		target: func(c *config) any { return &c.policyPath }},
	{flag: "state-secret-file", env: "CLINK_STATE_SECRET_FILE", usage: "the state secret (keys customer hashes and replays; give replicas the same one); default: generated beside the store",
		target: func(c *config) any { return &c.secretFile }},
	{flag: "shutdown-delay", env: "CLINK_SHUTDOWN_DELAY", def: "0s", usage: "over HTTP, on SIGTERM or SIGINT, how long /readyz answers 503 while calls are still taken, before the drain: time for a load balancer to stop sending calls here",
		target: func(c *config) any { return &c.delay }},
	{flag: "shutdown-grace", env: "CLINK_SHUTDOWN_GRACE", def: "30s", usage: "on SIGTERM, SIGINT or end of input, how long calls in flight may take to finish",
		target: func(c *config) any { return &c.grace }},
	{flag: "http", env: "CLINK_HTTP_ADDR", usage: "serve MCP streamable HTTP at /mcp on this address (e.g. 127.0.0.1:8080) instead of stdio",
		target: func(c *config) any { return &c.httpAddr }},
	{flag: "principals", env: "CLINK_PRINCIPALS", usage: "principals file (YAML): who may call over HTTP, with their token hashes, OAuth and policies; without one, HTTP listens on loopback only",
		target: func(c *config) any { return &c.principalsPath }},
	{flag: "tls-cert", env: "CLINK_TLS_CERT", usage: "serve HTTPS with this certificate file (PEM; with --tls-key)",
		target: func(c *config) any { return &c.tlsCert }},
	{flag: "tls-key", env: "CLINK_TLS_KEY", usage: "the private key file (PEM) of --tls-cert",
		target: func(c *config) any { return &c.tlsKey }},
	{flag: "allowed-origins", env: "CLINK_ALLOWED_ORIGINS", usage: "comma-separated browser origins allowed to call /mcp besides the server's own (e.g. https://app.example.com)",
		target: func(c *config) any { return &c.allowedOrigins }},
	{flag: "allowed-hosts", env: "CLINK_ALLOWED_HOSTS", usage: "comma-separated Host names a reverse proxy on this machine forwards with to a loopback listener (e.g. mcp.example.com); other names are refused there (DNS rebinding)",
		target: func(c *config) any { return &c.allowedHosts }},
	{flag: "stdio-workers", env: "CLINK_STDIO_WORKERS", def: "64", usage: "over stdio, how many tool calls run at once (1 to 100): calls wait on Clink, not on the CPU",
		target: func(c *config) any { return &c.workers }},
	{flag: "log-level", env: "CLINK_LOG_LEVEL", def: "info", usage: "log level: debug, info, warn or error",
		target: func(c *config) any { return &c.logLevel }},
	{flag: "log-format", env: "CLINK_LOG_FORMAT", def: "text", usage: "log format on stderr: text or json",
		target: func(c *config) any { return &c.logFormat }},
}

// parseConfig reads the environment, then args (flags win), into a config.
// It does not touch the network or the policy file. Asked for help (-h,
// --help), it prints usage to stdout and returns flag.ErrHelp.
func parseConfig(name string, args []string, getenv func(string) string, stdout io.Writer, usage func(io.Writer)) (*config, []string, error) {
	c := &config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, s := range settings {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		if what, where := misplacedSecret(def); what != "" {
			return nil, nil, misplaced(s, what, where)
		}
		switch p := s.target(c).(type) {
		case *bool:
			b, err := parseBool(def)
			if err != nil {
				return nil, nil, fmt.Errorf("%s (%s): %v", s.flag, s.env, err)
			}
			fs.BoolVar(p, s.flag, b, s.usage)
		case *string:
			fs.StringVar(p, s.flag, def, s.usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil, nil, flag.ErrHelp
		}
		return nil, nil, fmt.Errorf("%v (run clink-mcp help)", err)
	}
	c.apiKey, c.keyFrom = strings.TrimSpace(getenv("CLINK_API_KEY")), "CLINK_API_KEY"
	c.databaseURL = strings.TrimSpace(getenv("CLINK_DATABASE_URL"))
	return c, fs.Args(), nil
}

// screenArgs refuses a command line holding what looks like a secret (see
// misplacedSecret), naming the flag it was given to (if any) but never
// showing it: commands quote their arguments in errors ("unknown command",
// "no approval ...", flag parsing). run calls it before any command.
func screenArgs(args []string) error {
	for _, a := range args {
		what, where := misplacedSecret(a)
		if what == "" {
			continue
		}
		if name, _, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok && strings.HasPrefix(a, "-") {
			for _, s := range settings {
				if s.flag == name {
					return misplaced(s, what, where)
				}
			}
		}
		return fmt.Errorf("an argument looks like %s, which is never given on the command line, where other users and logs can see it (the argument is not shown): %s", what, where)
	}
	return nil
}

// misplacedSecret tells what secret s (a setting's value, an argument or
// --flag=value) looks like, and where that secret goes, or "" when it looks
// like none. No setting takes a secret as its value, and an error, a log
// line or the process list must not repeat one: a Clink API key (sk_test_
// or sk_prod_, see looksLikeAPIKey), a bearer token (clk_, as `token new`
// makes them), a PostgreSQL URL with user info (its password, if any) or one that does not parse, or a long hex string (a
// state secret, as `openssl rand -hex 32` makes them). A path is not, nor
// the name of a file that exists.
func misplacedSecret(s string) (what, where string) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '='); i >= 0 && strings.HasPrefix(s, "-") {
		s = s[i+1:] // --flag=value
	}
	if looksLikeAPIKey(s) {
		return "a Clink API key", "the key goes in CLINK_API_KEY, or in a file named by --api-key-file (CLINK_API_KEY_FILE)"
	}
	lower := strings.ToLower(s)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		if u, err := url.Parse(s); err != nil || u.User != nil {
			return "a database URL", "a database URL goes in CLINK_DATABASE_URL, never on the command line"
		}
	}
	if _, err := os.Stat(s); err == nil {
		return "", ""
	}
	if rest, ok := strings.CutPrefix(s, auth.TokenPrefix); ok && len(rest) >= 16 && onlyOf(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		return "a bearer token", "a client sends its token; the principals file holds only its SHA-256 (clink-mcp token new)"
	}
	if len(s) >= 32 && onlyOf(s, "0123456789abcdefABCDEF") {
		return "a secret (a long hex string)", "a state secret goes in a file named by --state-secret-file (CLINK_STATE_SECRET_FILE)"
	}
	return "", ""
}

// onlyOf reports whether every byte of s is one of set.
func onlyOf(s, set string) bool {
	return strings.Trim(s, set) == ""
}

// looksLikeAPIKey reports whether s is shaped like a Clink API key: sk_test_
// or sk_prod_, then printable characters with no space, / or . in them. It
// is a value no setting but the key takes, and that an error must not
// repeat. A path (with a / or a .) is not, nor the name of a file that
// exists (--api-key-file sk_test_key).
func looksLikeAPIKey(s string) bool {
	rest, ok := strings.CutPrefix(s, "sk_test_")
	if !ok {
		rest, ok = strings.CutPrefix(s, "sk_prod_")
	}
	if !ok || rest == "" || strings.ContainsFunc(rest, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' || r == '.' }) {
		return false
	}
	_, err := os.Stat(s)
	return err != nil
}

// misplaced is the error for setting s given what looks like a secret
// (what), which goes where.
func misplaced(s setting, what, where string) error {
	return fmt.Errorf("%s (%s): its value looks like %s, which this setting does not take (the value is not shown): %s", s.flag, s.env, what, where)
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", s)
}

// printUsage writes --help: the commands, then every flag with its
// environment twin.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, `clink-mcp %s: an MCP server that creates Clink payment sessions inside an operator's policy.

Usage:
  clink-mcp [serve] [flags]     serve MCP over stdio, or streamable HTTP with --http (needs CLINK_API_KEY, or --sandbox)
  clink-mcp token new NAME      make a bearer token for a principal: prints it once, and the line for the principals file
  clink-mcp demo                run the server against the built-in sandbox and show what it does
  clink-mcp policy check FILE   validate a policy file and print the effective policy
  clink-mcp audit verify        check the audit trail's hash chain (the store of CLINK_DATABASE_URL, else of --policy)
  clink-mcp audit export        write the audit trail to stdout as JSON lines
  clink-mcp approvals list      list the payments waiting for a person's approval (--all: decided ones too)
  clink-mcp approvals approve ID --by NAME   approve one: the agent's identical call then creates it
  clink-mcp approvals deny ID --by NAME      deny one: its budgets are given back
  clink-mcp version             print the version
  clink-mcp help                print this help

Flags (each has an environment twin; a flag wins over its variable):
`, build.Version)
	for _, s := range settings {
		name := "--" + s.flag
		if !s.boolean {
			name += " VALUE"
		}
		def := ""
		if s.def != "" {
			def = fmt.Sprintf(" (default %q)", s.def)
		}
		fmt.Fprintf(w, "  %-24s %-20s %s%s\n", name, s.env, s.usage, def)
	}
	fmt.Fprintf(w, `
Environment only:
  CLINK_API_KEY            the Clink secret API key (sk_test_... or sk_prod_...)
  CLINK_DATABASE_URL       PostgreSQL URL of a store shared by replicas (postgres://...); else SQLite at the policy's store.path
  NO_COLOR                 disable coloured logs
`)
}

// keyFileSetting names --api-key-file and its twin in messages.
const keyFileSetting = "api-key-file (CLINK_API_KEY_FILE)"

// resolveAPIKey reads the key from its file when one is named. A key from a
// file wins over CLINK_API_KEY, since naming a file is the more deliberate
// act. The file holds the key alone, on one line; surrounding whitespace
// and a final newline are ignored.
func (c *config) resolveAPIKey() error {
	if c.apiKeyFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.apiKeyFile)
	if err != nil {
		return fmt.Errorf("%s: cannot read %s: %v", keyFileSetting, c.apiKeyFile, errors.Unwrap(err))
	}
	key := strings.TrimSpace(string(b))
	switch {
	case key == "":
		return fmt.Errorf("%s: %s is empty; it must hold the Clink API key", keyFileSetting, c.apiKeyFile)
	case strings.ContainsAny(key, "\r\n"):
		return fmt.Errorf("%s: %s has more than one line; it must hold the Clink API key alone", keyFileSetting, c.apiKeyFile)
	}
	c.apiKey, c.keyFrom = key, keyFileSetting
	return nil
}

// keyFileOpen reports whether the API key file is open to its group or
// others (any of the mode bits 0o077), and its mode: a key file they may
// read or change is a secret shared with them. Windows has no such bits.
func (c *config) keyFileOpen() (os.FileMode, bool) {
	if c.apiKeyFile == "" || runtime.GOOS == "windows" {
		return 0, false
	}
	fi, err := os.Stat(c.apiKeyFile)
	if err != nil {
		return 0, false
	}
	mode := fi.Mode().Perm()
	return mode, mode&0o077 != 0
}

// resolveEnv settles the Clink environment: the explicit setting, else
// sandbox for the built-in sandbox or a test key, else production, the one
// that demands a policy file.
func (c *config) resolveEnv() (clink.Environment, error) {
	if c.env != "" {
		env, err := clink.ParseEnvironment(c.env)
		if err != nil {
			return "", fmt.Errorf("env (CLINK_ENV): %q is not sandbox or production", c.env)
		}
		if c.sandbox && env != clink.Sandbox {
			return "", errors.New("sandbox (CLINK_SANDBOX): the built-in sandbox cannot run with env (CLINK_ENV) production")
		}
	}
	if c.sandbox && strings.HasPrefix(c.apiKey, "sk_prod_") {
		// A CLINK_SANDBOX left in a production configuration would serve
		// simulated payment links in place of real ones.
		return "", fmt.Errorf("sandbox (CLINK_SANDBOX): the built-in sandbox cannot run with a production key (%s holds an sk_prod_ key): unset CLINK_SANDBOX to serve production, or the key to try the sandbox", c.keyFrom)
	}
	if c.env != "" {
		return clink.ParseEnvironment(c.env)
	}
	if c.sandbox || strings.HasPrefix(c.apiKey, "sk_test_") {
		return clink.Sandbox, nil
	}
	return clink.Production, nil
}

// newLogger builds the stderr logger: tint for people (colour only on a
// terminal, never with NO_COLOR), JSON for machines.
func newLogger(w io.Writer, level, format string, getenv func(string) string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level (CLINK_LOG_LEVEL): %q is not debug, info, warn or error", level)
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
	case "text", "":
		return slog.New(tint.NewTextHandler(w, &tint.Options{
			Level:      lvl,
			TimeFormat: "15:04:05.000",
			NoColor:    getenv("NO_COLOR") != "" || !isTerminal(w),
		})), nil
	}
	return nil, fmt.Errorf("log-format (CLINK_LOG_FORMAT): %q is not text or json", format)
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// graceDuration is the shutdown grace period, already checked by
// checkGrace; 30 s if unset.
func (c *config) graceDuration() time.Duration {
	d, err := time.ParseDuration(c.grace)
	if err != nil || d < 0 {
		return 30 * time.Second
	}
	return d
}

// delayDuration is the shutdown delay, already checked by checkGrace; 0 if
// unset.
func (c *config) delayDuration() time.Duration {
	d, err := time.ParseDuration(c.delay)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// stdioWorkers is the stdio worker pool's size: how many tool calls run at
// once on one stdio connection.
func (c *config) stdioWorkers() (int, error) {
	if c.workers == "" {
		return defaultStdioWorkers, nil
	}
	n, err := strconv.Atoi(c.workers)
	if err != nil || n < 1 || n > maxStdioWorkers {
		return 0, fmt.Errorf("stdio-workers (CLINK_STDIO_WORKERS): %q is not a number from 1 to %d", c.workers, maxStdioWorkers)
	}
	return n, nil
}

// The stdio worker pool: calls spend their time waiting on Clink (tens to
// hundreds of milliseconds), not on the CPU, so one connection runs many
// at once. mcp-go allows at most 100.
const (
	defaultStdioWorkers = 64
	maxStdioWorkers     = 100
)

// checkGrace refuses a shutdown grace or delay that is not a duration.
func (c *config) checkGrace() error {
	if c.grace == "" {
		c.grace = "30s"
	}
	if d, err := time.ParseDuration(c.grace); err != nil || d < 0 {
		return fmt.Errorf("shutdown-grace (CLINK_SHUTDOWN_GRACE): %q is not a duration such as 30s", c.grace)
	}
	if c.delay != "" {
		if d, err := time.ParseDuration(c.delay); err != nil || d < 0 {
			return fmt.Errorf("shutdown-delay (CLINK_SHUTDOWN_DELAY): %q is not a duration such as 5s", c.delay)
		}
	}
	return nil
}

// checkBaseURL refuses a --base-url the Clink client would refuse, under
// its own name: the client is built with the API key too, and its errors
// would otherwise be reported as the key's. The placeholder key has no
// environment prefix, so only the URL can fail.
func checkBaseURL(raw string, env clink.Environment) error {
	if _, err := clink.NewClient("placeholder", clink.WithEnvironment(env), clink.WithBaseURL(raw)); err != nil {
		return fmt.Errorf("base-url (CLINK_BASE_URL): %s", strings.TrimPrefix(err.Error(), "clink: "))
	}
	return nil
}
