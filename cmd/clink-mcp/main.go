// Command clink-mcp is an MCP server that lets LLM agents create Clink
// payment sessions inside a policy set by its operator.
//
// Run "clink-mcp help" for the commands and every flag with its environment
// twin; README.md has the full reference.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/tools"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program behind main, with its environment passed in so
// tests can call it. It returns the exit code; an error is one line on stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serveCommand(ctx, args, getenv, stdin, stdout, stderr)
	case "demo":
		err = demoCommand(ctx, args, stdout, stderr)
	case "policy":
		err = policyCommand(args, stdout, stderr)
	case "audit":
		err = auditCommand(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "clink-mcp %s\n", clink.Version)
	case "help":
		printUsage(stdout)
	default:
		err = fmt.Errorf("unknown command %q (run clink-mcp help)", cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp): // the usage has been printed
		return 0
	case errors.Is(err, errFailed): // already reported
		return 1
	}
	fmt.Fprintf(stderr, "clink-mcp: %v\n", err)
	return 1
}

// errFailed means a command has already said what went wrong.
var errFailed = errors.New("failed")

// serveCommand serves MCP over stdio until stdin ends or ctx is cancelled.
func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, rest, err := parseConfig("clink-mcp serve", args, getenv, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", rest[0])
	}
	logger, err := newLogger(stderr, cfg.logLevel, cfg.logFormat, getenv)
	if err != nil {
		return err
	}
	a, err := newApp(cfg, logger, nil)
	if err != nil {
		return err
	}
	defer a.close()
	if cfg.sandbox {
		fmt.Fprintln(stderr, "clink-mcp: serving against the built-in sandbox: sessions are simulated, nothing is charged.")
	}
	logger.Info("serving MCP over stdio", "version", clink.Version, "env", string(a.env), "policy", a.policy.Source())

	stdio := server.NewStdioServer(a.mcp)
	stdio.SetErrorLogger(log.New(&slogWriter{logger}, "", 0))
	err = stdio.Listen(ctx, stdin, stdout)
	if ctx.Err() != nil {
		logger.Info("shutting down", "reason", context.Cause(ctx))
		return nil
	}
	return err
}

// app is a wired server: policy, Clink client (and the sandbox it talks to,
// if built in) and the MCP server.
type app struct {
	env     clink.Environment
	policy  *policy.Policy
	client  *clink.Client
	sandbox *sandbox.Server // nil unless built in
	mcp     *server.MCPServer
	close   func()
}

// newApp wires everything from cfg, under pol when it is not nil. Otherwise
// in production a policy file is required; without one the sandbox runs
// under the built-in demo policy.
func newApp(cfg *config, logger *slog.Logger, pol *policy.Policy) (*app, error) {
	if err := cfg.resolveAPIKey(); err != nil {
		return nil, err
	}
	env, err := cfg.resolveEnv()
	if err != nil {
		return nil, err
	}
	a := &app{env: env, policy: pol, close: func() {}}
	switch {
	case pol != nil:
	case cfg.policyPath != "":
		if a.policy, err = policy.Load(cfg.policyPath); err != nil {
			return nil, fmt.Errorf("policy (CLINK_POLICY): %v", err)
		}
	case env == clink.Sandbox:
		a.policy = policy.Demo()
	default:
		return nil, errors.New("policy (CLINK_POLICY): production needs a policy file; without one nothing limits what an agent can charge. Set --policy or CLINK_POLICY (see README, \"The policy file\")")
	}

	key := cfg.apiKey
	opts := []clink.Option{clink.WithEnvironment(env)}
	if cfg.sandbox {
		if cfg.baseURL != "" {
			return nil, errors.New("base-url (CLINK_BASE_URL): cannot be combined with --sandbox, which serves its own")
		}
		a.sandbox = sandbox.New()
		url, shutdown, err := a.sandbox.Listen()
		if err != nil {
			return nil, fmt.Errorf("sandbox: %v", err)
		}
		a.close = func() { _ = shutdown(context.Background()) }
		key = sandbox.DefaultAPIKey
		opts = append(opts, clink.WithBaseURL(url))
	} else {
		if key == "" {
			return nil, errors.New("CLINK_API_KEY is not set: set it or CLINK_API_KEY_FILE, or run with --sandbox to try the built-in sandbox")
		}
		if cfg.baseURL != "" {
			opts = append(opts, clink.WithBaseURL(cfg.baseURL))
		}
	}
	if a.client, err = clink.NewClient(key, opts...); err != nil {
		a.close()
		return nil, fmt.Errorf("CLINK_API_KEY: %v", err)
	}
	// The built-in sandbox keeps its state in memory, like its sessions;
	// everything else uses the durable store the policy names, and a store
	// that cannot be opened stops the server: it never runs without its
	// limits.
	var st state.Store
	if cfg.sandbox {
		st = state.NewMemory()
	} else {
		path, err := a.policy.StoreFile()
		if err == nil {
			st, err = state.OpenSQLite(path)
		}
		if err != nil {
			a.close()
			return nil, fmt.Errorf("store (the policy's state.path): %v", err)
		}
	}
	closeSandbox := a.close
	a.close = func() {
		if err := st.Close(); err != nil {
			logger.Error("closing the store", "err", err)
		}
		closeSandbox()
	}
	a.mcp = tools.NewServer(tools.Deps{
		Payments: a.client, Policy: a.policy, State: st, AuditKey: auditKey(key), Logger: logger,
	}, clink.Version)
	return a, nil
}

// auditKey derives the key of the hash that stands for a customer in the
// store and the audit trail from the API key, so the store alone is not
// enough to test guesses of an address against it.
func auditKey(apiKey string) []byte {
	m := hmac.New(sha256.New, []byte(apiKey))
	m.Write([]byte("clink-mcp audit key v1"))
	return m.Sum(nil)
}

// slogWriter turns the MCP library's log lines into warnings on our logger,
// so nothing is written outside it.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("mcp", "detail", string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
