// Command clink-mcp is an MCP server that lets LLM agents create Clink
// payment sessions inside a policy set by its operator.
//
// Run "clink-mcp help" for the commands and every flag with its environment
// twin; docs/operations.md explains each setting, and README.md lists the
// commands and the other pages.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	_ "github.com/clink-mcp/clink-mcp/internal/startheap" // the start runs no collection
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

func main() {
	ctx, stop := notifyContext()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// notifyContext returns a context that the first SIGINT or SIGTERM
// cancels, with "<signal> signal received" as its cause, which starts the
// drain; a second ends the process at once (Ctrl-C twice), by that signal,
// as it would without the drain. Both wait in the channel's buffer, so a
// second signal is never lost, however soon it follows the first (with
// signal.NotifyContext, a second signal that came before the drain had
// stopped the notifications was swallowed). stop ends the notifications.
func notifyContext() (ctx context.Context, stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		s := <-sigs
		cancel(errors.New(s.String() + " signal received"))
		s = <-sigs
		signal.Stop(sigs) // the runtime's default again: the signal ends the process
		if p, err := os.FindProcess(os.Getpid()); err == nil && p.Signal(s) == nil {
			time.Sleep(250 * time.Millisecond) // the signal's end comes first
		}
		// Where a process cannot signal itself (Windows), or the signal
		// was ignored when the process started (a background job of a
		// shell: signal.Stop ignores it again).
		os.Exit(2)
	}()
	return ctx, func() { signal.Stop(sigs); cancel(nil) }
}

// run is the whole program behind main, with its environment passed in so
// tests can call it. It returns the exit code; an error is one line on stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Before any command can quote an argument in its error.
	if err := screenArgs(args); err != nil {
		fmt.Fprintf(stderr, "clink-mcp: %v\n", err)
		return 1
	}
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == "serve" && slices.ContainsFunc(args, isVersionFlag) {
		cmd, args = "version", nil
	}
	// Help, however asked for, goes to stdout and exits 0.
	if usage, ok := commandUsage[cmd]; ok && wantsHelp(args) {
		usage(stdout)
		return 0
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
	case "approvals":
		err = approvalsCommand(ctx, args, getenv, stdout, stderr)
	case "token":
		err = tokenCommand(args, stdout)
	case "version":
		fmt.Fprintln(stdout, build)
	case "help":
		err = helpCommand(args, stdout)
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

// serveCommand serves MCP over stdio until stdin ends or ctx is cancelled,
// or over streamable HTTP (--http) until ctx is cancelled.
func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	// A client that dies closes both pipes. Go ends a process that writes
	// to a closed stdout or stderr with SIGPIPE unless the signal is
	// ignored: the drain's first answer or log line would kill the server
	// with calls still at Clink, unrecorded. Ignored, the write fails with
	// EPIPE, which the stdio conn and the logger already handle.
	signal.Ignore(syscall.SIGPIPE)
	cfg, rest, err := parseConfig("clink-mcp serve", args, getenv, stdout, printUsage)
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
	if _, err := cfg.stdioWorkers(); err != nil {
		// Checked before anything is wired, like every setting, and
		// over HTTP too, where it has no use: a bad value is named wherever
		// it is set.
		return err
	}
	var listener *httpListener
	if cfg.httpAddr != "" {
		// The address and TLS files are checked before anything is wired,
		// so that a bad one costs no store or sandbox.
		if listener, err = cfg.listen(); err != nil {
			return err
		}
		defer listener.Close()
	} else if err := cfg.checkStdioOnly(); err != nil {
		return err
	}
	a, err := newApp(cfg, logger, nil)
	if err != nil {
		return err
	}
	defer func() {
		// A call whose outcome is not on record makes the exit say so.
		if cerr := a.close(); cerr != nil && err == nil {
			err = fmt.Errorf("shut down without recording every call's outcome (%v): their intents stay open, and the next start resolves them as outcome_unknown; check them in the Clink dashboard", cerr)
		}
	}()
	if cfg.sandbox {
		fmt.Fprintln(stderr, "clink-mcp: serving against the built-in sandbox: sessions are simulated, nothing is charged.")
	}
	if listener != nil {
		return serveHTTP(ctx, cfg, a, listener, logger)
	}
	return serveStdio(ctx, cfg, a, stdin, stdout, logger)
}

// serveStdio serves MCP over stdio, as the local principal, until stdin
// ends or ctx is cancelled.
func serveStdio(ctx context.Context, cfg *config, a *app, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	logger.Info("serving MCP over stdio", "version", build.Version, "env", string(a.env), "policy", a.policy.Source())

	// Calls already sent to Clink finish whatever happens to the client: the
	// end of stdin and a signal each stop new calls and wait, up to the
	// grace period, for those in flight and their answers.
	grace := cfg.graceDuration()
	conn := newStdioConn(stdin, stdout)
	conn.log = logger
	conn.SetDrainTimeout(grace)
	listenCtx, stopListening := context.WithCancel(context.WithoutCancel(ctx))
	defer stopListening()
	conn.SetDrainDeadline(listenCtx)
	go func() {
		select {
		case <-ctx.Done():
			logger.Info("shutting down: finishing the calls in flight", "reason", context.Cause(ctx), "grace", grace)
			drainCtx, cancel := context.WithDeadline(context.Background(), a.beginShutdown(grace))
			defer cancel()
			_ = a.svc.Drain(drainCtx)
			_ = conn.Wait(drainCtx)
			stopListening()
		case <-listenCtx.Done():
		}
	}()
	workers, err := cfg.stdioWorkers()
	if err != nil {
		return err
	}
	stdio := server.NewStdioServer(a.mcp)
	stdio.SetErrorLogger(log.New(&slogWriter{logger}, "", 0))
	server.WithWorkerPoolSize(workers)(stdio)
	// Room for the calls a client may have in flight beyond the workers, so
	// that reading stdin rarely waits on a full queue; the conn refuses a
	// request beyond that many in flight, so that mcp-go never finds the
	// queue full (it would run the call on the loop that reads stdin).
	queue := 16 * workers
	server.WithQueueSize(queue)(stdio)
	conn.maxPending = queue
	err = stdio.Listen(listenCtx, conn.Reader(), conn.Writer())
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// app is a wired server: policy, Clink client (and the sandbox it talks to,
// if built in), store and the service (gates and MCP servers).
type app struct {
	env        clink.Environment
	policy     *policy.Policy
	principals *auth.File // nil without --principals
	client     *clink.Client
	sandbox    *sandbox.Server // nil unless built in
	svc        *service.Service
	mcp        *server.MCPServer // the server's own policy's, for stdio
	// close closes the service (landing what the journal holds), the store
	// and the sandbox, by shutdownBy when it is set, else within the grace
	// period. It reports what was not recorded.
	close func() error
	// shutdownBy is the end (Unix nanoseconds) of the grace period of a
	// shutdown under way, 0 before one: closing shares it rather than
	// starting another. Set by beginShutdown, from the goroutine that
	// handles the signal.
	shutdownBy atomic.Int64
}

// beginShutdown starts the grace period of a shutdown and returns its end.
func (a *app) beginShutdown(grace time.Duration) time.Time {
	by := time.Now().Add(grace)
	a.shutdownBy.Store(by.UnixNano())
	return by
}

// newApp wires everything from cfg, under pol when it is not nil. Otherwise
// in production a policy file is required; without one the sandbox runs
// under the built-in demo policy.
func newApp(cfg *config, logger *slog.Logger, pol *policy.Policy) (*app, error) {
	if err := cfg.resolveAPIKey(); err != nil {
		return nil, err
	}
	if err := cfg.checkGrace(); err != nil {
		return nil, err
	}
	env, err := cfg.resolveEnv()
	if err != nil {
		return nil, err
	}
	if pol == nil && !cfg.sandbox && cfg.apiKey == "" && cfg.policyPath == "" {
		// A bare start: most likely someone trying it for the first time.
		return nil, errors.New("nothing to serve: no Clink API key and no policy file. To try it, run with --sandbox (the built-in sandbox: no account, nothing is charged), or run clink-mcp demo. " +
			"To serve Clink, set CLINK_API_KEY (or --api-key-file, CLINK_API_KEY_FILE) and a policy file (--policy, CLINK_POLICY)")
	}
	a := &app{env: env, policy: pol, close: func() error { return nil }}
	switch {
	case pol != nil:
	case cfg.policyPath != "":
		if a.policy, err = policy.Load(cfg.policyPath); err != nil {
			return nil, fmt.Errorf("policy (CLINK_POLICY): %v", err)
		}
	case env == clink.Sandbox:
		a.policy = policy.Demo()
	default:
		return nil, errors.New("policy (CLINK_POLICY): production needs a policy file; without one nothing limits what an agent can charge. Set --policy or CLINK_POLICY (see docs/policy.md), or run with --sandbox to try the built-in sandbox")
	}
	// The principals file names policy files of its own; each is loaded
	// once, here, so that a broken one stops the server at the line that
	// names it.
	policies := map[string]*policy.Policy{}
	if cfg.principalsPath != "" {
		a.principals, err = auth.Load(cfg.principalsPath, func(path string) error {
			p, err := policy.Load(path)
			if err == nil {
				policies[path] = p
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("principals (CLINK_PRINCIPALS): %v", err)
		}
	}

	key := cfg.apiKey
	opts := []clink.Option{clink.WithEnvironment(env), clink.WithUserAgent(build.userAgent())}
	if cfg.sandbox {
		if cfg.baseURL != "" {
			return nil, errors.New("base-url (CLINK_BASE_URL): cannot be combined with --sandbox, which serves its own")
		}
		// In process and in memory: no listener, no socket.
		a.sandbox = sandbox.New()
		key = sandbox.DefaultAPIKey
		opts = append(opts, clink.WithBaseURL(sandbox.BaseURL),
			clink.WithHTTPClient(&http.Client{Transport: a.sandbox.Transport()}))
	} else {
		if key == "" {
			return nil, errors.New("CLINK_API_KEY is not set: set it or --api-key-file (CLINK_API_KEY_FILE), or run with --sandbox to try the built-in sandbox")
		}
		if cfg.baseURL != "" {
			if err := checkBaseURL(cfg.baseURL, env); err != nil {
				return nil, err
			}
			opts = append(opts, clink.WithBaseURL(cfg.baseURL))
		}
	}
	if a.client, err = clink.NewClient(key, opts...); err != nil {
		a.close()
		from := cfg.keyFrom
		if cfg.sandbox {
			from = "sandbox (CLINK_SANDBOX)"
		}
		return nil, fmt.Errorf("%s: %s", from, strings.TrimPrefix(err.Error(), "clink: "))
	}
	// The built-in sandbox keeps its state in memory, like its sessions;
	// everything else uses a durable store (the database of
	// CLINK_DATABASE_URL, else the SQLite file the policy names), and a
	// store that cannot be opened stops the server: it never runs without
	// its limits. One store serves every policy file.
	var (
		st     state.Store
		secret []byte
		where  string // the store, for the log
	)
	if cfg.sandbox {
		if cfg.databaseURL != "" {
			a.close()
			return nil, errors.New("CLINK_DATABASE_URL: cannot be combined with --sandbox, which keeps its state in memory")
		}
		st = state.NewMemory()
		secret = make([]byte, gate.MinSecretLen)
		if _, err := rand.Read(secret); err != nil {
			a.close()
			return nil, err
		}
		where = storeInMemory
	} else {
		so, err := openStore(context.Background(), cfg, a.policy, "")
		if err != nil {
			a.close()
			return nil, err
		}
		st = so.st
		if secret, err = loadSecret(cfg, so); err != nil {
			st.Close()
			a.close()
			return nil, err
		}
		where = so.where
	}
	a.svc, err = service.New(service.Config{
		Policy: a.policy, Principals: a.principals,
		// The instructions say whether sessions move real money.
		Sandbox: a.env == clink.Sandbox,
		LoadPolicy: func(path string) (*policy.Policy, error) {
			if p, ok := policies[path]; ok {
				return p, nil
			}
			return policy.Load(path)
		},
		Payments: a.client, Account: gate.AccountID(a.client.BaseURL(), key),
		Store: st, Secret: secret, Version: build.Version, Logger: logger,
		Metrics: stdioRegistry(cfg),
	})
	if err != nil {
		st.Close()
		a.close()
		return nil, err
	}
	a.mcp = a.svc.MCPServer()
	closeSandbox := a.close
	a.close = func() error {
		by := time.Now().Add(cfg.graceDuration())
		if n := a.shutdownBy.Load(); n != 0 {
			by = time.Unix(0, n)
		}
		ctx, cancel := context.WithDeadline(context.Background(), by)
		defer cancel()
		err := a.svc.Close(ctx)
		if err != nil {
			logger.Error("closing the journal", "err", err)
		}
		if serr := st.Close(); serr != nil {
			// Logged, not an unrecorded call: what was written stays.
			logger.Error("closing the store", "err", serr)
		}
		_ = closeSandbox()
		return err
	}
	// Calls left open by a server that stopped mid-call are resolved now,
	// so that identical retries get their outcome at once.
	if n, err := a.svc.Recover(context.Background()); err != nil {
		a.close()
		return nil, fmt.Errorf("store: resolving calls left open: %v", err)
	} else if n > 0 {
		logger.Warn("resolved calls left open by a server that stopped mid-call as outcome_unknown; check them in the Clink dashboard", "calls", n)
	}
	logWiring(logger, cfg, a, where)
	return a, nil
}

// stdioRegistry is the metrics registry of a server over stdio: one
// without the Go runtime and process collectors, which only /metrics reads
// and which cost every start some 0.35 ms of CPU (perf, 30 starts). Over HTTP
// it is nil: the service's own registry, with them, served at /metrics.
func stdioRegistry(cfg *config) *prometheus.Registry {
	if cfg.httpAddr != "" {
		return nil
	}
	return prometheus.NewRegistry()
}

// storeInMemory is where --sandbox keeps its state, for the log.
const storeInMemory = "in memory (--sandbox): budgets, rate limits, approvals and the audit trail end with the process"

// logWiring logs, once the server is wired, what an operator checks first:
// where Clink is (its base URL, never the key) and where the state is (the
// SQLite file, "the database (CLINK_DATABASE_URL)" without the URL, or
// memory), with a warning for a key file others may read and for a
// store.path or state secret file that --sandbox does not use. Errors before it stay one line.
func logWiring(logger *slog.Logger, cfg *config, a *app, where string) {
	if cfg.sandbox {
		logger.Info("clink: the built-in sandbox, in process", "base_url", a.client.BaseURL(), "env", string(a.env))
	} else {
		logger.Info("clink", "base_url", a.client.BaseURL(), "env", string(a.env))
	}
	logger.Info("store", "where", where)
	if path := a.policy.StorePath(); cfg.sandbox && path != "" {
		logger.Warn("the policy's store.path is not used with --sandbox, which keeps its state in memory",
			"policy", a.policy.Source(), "store.path", path)
	}
	if cfg.sandbox && cfg.secretFile != "" {
		logger.Warn("the state secret file is not used with --sandbox, whose state in memory has a secret of its own",
			"file", cfg.secretFile)
	}
	if mode, open := cfg.keyFileOpen(); open {
		logger.Warn("the API key file is open to its group or others: make it readable by its owner alone",
			"file", cfg.apiKeyFile, "mode", fmt.Sprintf("%04o", mode), "fix", "chmod 600 "+cfg.apiKeyFile)
	}
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
