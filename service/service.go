// Package service wires clink-mcp into something to run or to embed: the
// core (package gate) for each policy file, the MCP tools over it, the
// principals who may call them, and, for HTTP, one [http.Handler] serving
// MCP streamable HTTP at /mcp beside /healthz, /readyz, /metrics and the
// OAuth protected resource metadata.
//
// The clink-mcp command is built on it (serve over stdio or HTTP), and so
// can an agent platform's own Go program: build a [Service] from a [Config]
// and mount [Service.Handler], or talk to [Service.MCPServer] with mcp-go's
// in-process client. See the Example.
//
// # Principals and policies
//
// Every call is made by a principal: over HTTP the one the principals file
// authenticates (package auth), otherwise [gate.LocalPrincipal]. Each
// principal is governed by one policy file, the server's unless the
// principals file names another. Each policy file gets its own gate and its
// own MCP server (whose tool descriptions state that policy's limits); all
// share one store, with the counters of each policy file kept apart
// ([gate.Config.Scope]), so a budget without "per" counts every call that
// policy governs, whichever principal made it.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service/auth"
	"github.com/clink-mcp/clink-mcp/tools"
)

// Config is what a [Service] is built from.
type Config struct {
	// Policy governs the local principal and every principal the
	// principals file gives no policy of its own. Required.
	Policy *policy.Policy
	// Principals authenticates HTTP callers; nil means none do: every call
	// is the local principal's, which suits stdio, an in-process client, or
	// an HTTP listener on loopback only (the command refuses any other
	// address without a principals file).
	Principals *auth.File
	// LoadPolicy loads the policy files the principals file names, by
	// their resolved path. Nil means [policy.Load].
	LoadPolicy func(path string) (*policy.Policy, error)
	// Payments makes the Clink calls, normally a *clink.Client. Required.
	Payments tools.Payments
	// Account names the Clink account calls go to ([gate.AccountID]).
	Account string
	// Store keeps budgets, rate limits, claims and the audit trail for
	// every policy file. Required. The service does not close it. A
	// wrapper of a [state.Memory] should say what it wraps with a method
	// Unwrap() state.Store: the answer to a call awaiting an operator then
	// does not send the operator to `clink-mcp approvals`, which cannot see
	// a store in memory.
	Store state.Store
	// Secret is the state secret ([gate.LoadSecret]), at least
	// [gate.MinSecretLen] bytes. Required.
	Secret []byte
	// Version is the server version MCP clients are told.
	Version string
	// Sandbox says Payments is a Clink sandbox (the built-in one, or
	// Clink's sandbox environment), where sessions move no real money; the
	// servers' instructions say so ([tools.Deps].Sandbox). False means
	// production.
	Sandbox bool
	// Logger receives one line per call and the service's own events. Nil
	// discards.
	Logger *slog.Logger
	// Metrics is where the service registers its Prometheus collectors.
	// Nil means a registry of its own, served at /metrics with the Go and
	// process collectors.
	Metrics *prometheus.Registry
	// AuthOptions are passed to [auth.New] (an HTTP client for the OAuth
	// issuer, a clock).
	AuthOptions []auth.Option
}

// Service is a wired clink-mcp: gates, MCP servers and the HTTP handler.
// Build it with [New]; it is safe for concurrent use.
type Service struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	registry *prometheus.Registry
	auth     *auth.Authenticator // nil without a principals file
	store    state.Store

	// scopes are the policy files in use, the server's first; each has
	// its gate and MCP server. byPolicy finds them by the path a principal
	// names ("" for the server's).
	scopes   []*scope
	byPolicy map[string]*scope
	// inflight are the requests /mcp is serving, for cancellations.
	inflight inflight

	mu       sync.Mutex
	draining bool
}

// scope is one policy file's gate and MCP server.
type scope struct {
	path   string // the policy file as the principals file resolves it; "" for the server's
	key    string // the gate's Scope: what keeps this file's counters apart
	policy *policy.Policy
	gate   *gate.Gate
	mcp    *server.MCPServer
	http   *server.StreamableHTTPServer
}

// New wires a service from cfg: it loads the policy files the principals
// name, builds a gate and an MCP server for each, and registers the
// metrics. Call [Service.Recover] before serving and [Service.Close] at the
// end.
func New(cfg Config) (*Service, error) {
	if cfg.Policy == nil || cfg.Payments == nil || cfg.Store == nil {
		return nil, errors.New("service: Config.Policy, Payments and Store are required")
	}
	if len(cfg.Secret) < gate.MinSecretLen {
		return nil, fmt.Errorf("service: Config.Secret must be at least %d bytes", gate.MinSecretLen)
	}
	if cfg.LoadPolicy == nil {
		cfg.LoadPolicy = policy.Load
	}
	s := &Service{cfg: cfg, log: cfg.Logger, registry: cfg.Metrics, byPolicy: map[string]*scope{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.registry == nil {
		s.registry = newRegistry()
	}
	var err error
	if s.metrics, err = newMetrics(s.registry); err != nil {
		return nil, err
	}
	s.store = s.metrics.store(cfg.Store)
	payments := s.metrics.payments(cfg.Payments)

	s.addScope(&scope{policy: cfg.Policy}, payments)
	if cfg.Principals != nil {
		for _, path := range cfg.Principals.Policies() {
			if path == "" {
				continue
			}
			// A principal naming the server's own policy file, or one
			// already loaded under another spelling, shares its gate and
			// counters: one file, one set of budgets.
			if same := s.scopeOfFile(path); same != nil {
				s.byPolicy[path] = same
				continue
			}
			pol, err := cfg.LoadPolicy(path)
			if err != nil {
				return nil, fmt.Errorf("principals: policy %s: %w", path, err)
			}
			if sp := pol.StorePath(); sp != "" && sp != cfg.Policy.StorePath() {
				s.log.Warn("a principal's policy names a store of its own, which is not used: every policy's limits are kept in the server's one store",
					"policy", path, "unused_store_path", sp)
			}
			s.addScope(&scope{path: path, key: scopeKey(cfg.Principals.Path, path), policy: pol}, payments)
		}
		if s.auth, err = auth.New(cfg.Principals, append([]auth.Option{auth.WithLogger(s.log)}, cfg.AuthOptions...)...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// addScope builds sc's gate and MCP server and adds it.
func (s *Service) addScope(sc *scope, payments tools.Payments) {
	sc.gate = gate.New(gate.Config{
		Policy: sc.policy, Store: s.store, Secret: s.cfg.Secret, Account: s.cfg.Account,
		Scope: sc.key, Logger: s.log, Observer: s.metrics, Operators: s.operators(),
	})
	sc.mcp = tools.NewServer(tools.Deps{
		Payments: payments, Policy: sc.policy, Gate: sc.gate,
		Caller: principalName, Logger: s.log, Sandbox: s.cfg.Sandbox,
	}, s.cfg.Version)
	sc.http = newStreamable(sc.mcp, s.log)
	s.scopes = append(s.scopes, sc)
	s.byPolicy[sc.path] = sc
}

// operators is how an operator can decide approvals on this server: the
// command reads a store that outlives the process; a store in memory is
// reached through the admin endpoint only, which a principal marked admin
// may use.
func (s *Service) operators() gate.Operators {
	if !inMemory(s.cfg.Store) {
		return gate.OperatorsCommand
	}
	if f := s.cfg.Principals; f != nil {
		for _, p := range f.Principals {
			if p.Admin {
				return gate.OperatorsEndpoint
			}
		}
		if f.OAuth != nil {
			for _, p := range f.OAuth.Principals {
				if p.Admin {
					return gate.OperatorsEndpoint
				}
			}
		}
	}
	return gate.OperatorsNone
}

// inMemory reports whether st keeps its state in this process only: a
// [state.Memory], or a wrapper of one that says so with Unwrap.
func inMemory(st state.Store) bool {
	for {
		switch s := st.(type) {
		case *state.Memory:
			return true
		case interface{ Unwrap() state.Store }:
			st = s.Unwrap()
		default:
			return false
		}
	}
}

// scopeOfFile returns the scope whose policy file is the file at path (the
// server's, or one loaded under another name), or nil.
func (s *Service) scopeOfFile(path string) *scope {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	for _, sc := range s.scopes {
		file := sc.path
		if file == "" {
			file = s.cfg.Policy.Source()
		}
		if other, err := os.Stat(file); err == nil && os.SameFile(fi, other) {
			return sc
		}
	}
	return nil
}

// scopeKey is the counter scope of a principal's policy file: its path
// relative to the principals file's folder (as the operator wrote it, in
// the usual case), so that replicas with the same configuration agree
// whatever their working directory or where they mount it. Moving the file
// relative to the principals file starts its counters afresh, as renaming
// a budget's window does.
func scopeKey(principalsFile, policyFile string) string {
	dir, err1 := filepath.Abs(filepath.Dir(principalsFile))
	file, err2 := filepath.Abs(policyFile)
	if err1 == nil && err2 == nil {
		if rel, err := filepath.Rel(dir, file); err == nil {
			return filepath.ToSlash(rel)
		}
	}
	return filepath.ToSlash(filepath.Clean(policyFile))
}

// principalName names the principal making a call from its context: the
// authenticated one, or the local principal.
func principalName(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.Name
	}
	return gate.LocalPrincipal
}

// MCPServer returns the MCP server governed by the server's own policy,
// for stdio or mcp-go's in-process client. Its calls are made by the
// principal in their context ([auth.NewContext]), else by the local
// principal, under the server's policy whatever the principal's: for a
// principal with a policy file of its own, use [Service.MCPServerFor].
func (s *Service) MCPServer() *server.MCPServer { return s.scopes[0].mcp }

// MCPServerFor returns the MCP server governed by p's policy file (p.Policy,
// "" for the server's), for an in-process client calling as p: put p in
// the calls' context with [auth.NewContext]. It fails for a policy file the
// principals file does not name.
func (s *Service) MCPServerFor(p auth.Principal) (*server.MCPServer, error) {
	sc, ok := s.byPolicy[p.Policy]
	if !ok {
		return nil, fmt.Errorf("service: no policy %q is loaded (the principals file names none such)", p.Policy)
	}
	return sc.mcp, nil
}

// Gate returns the core that runs the calls governed by the server's own
// policy.
func (s *Service) Gate() *gate.Gate { return s.scopes[0].gate }

// Registry returns the Prometheus registry the service's metrics are in.
func (s *Service) Registry() *prometheus.Registry { return s.registry }

// Recover resolves the calls left open by a process that stopped mid-call
// (see [gate.Gate.Recover]) and returns how many it resolved.
func (s *Service) Recover(ctx context.Context) (int, error) {
	return s.scopes[0].gate.Recover(ctx)
}

// Drain stops new calls (they are refused as shutting_down and /readyz
// answers 503) and waits until the calls in flight have ended or ctx is
// done.
func (s *Service) Drain(ctx context.Context) error {
	s.Unready()
	// Every gate stops taking calls at once; each then waits for its own.
	errs := make([]error, len(s.scopes))
	var wg sync.WaitGroup
	for i, sc := range s.scopes {
		wg.Go(func() { errs[i] = sc.gate.Drain(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Unready turns /readyz to 503 ("shutting down") while calls are still
// taken: the time a load balancer needs to stop sending calls here before
// [Service.Drain] refuses them.
func (s *Service) Unready() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Close drains, then lands or reports every completion still pending
// ([gate.Gate.Close]). It does not close the store.
func (s *Service) Close(ctx context.Context) error {
	var errs []error
	for _, sc := range s.scopes {
		errs = append(errs, sc.gate.Close(ctx))
	}
	return errors.Join(errs...)
}

// Ready reports why the service cannot take calls, or nil: it is
// draining, or the store does not answer.
func (s *Service) Ready(ctx context.Context) error {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return errors.New("shutting down")
	}
	if err := ping(ctx, s.store); err != nil {
		// /readyz answers anyone: the driver's text, which may name hosts,
		// users or paths, goes to the log only.
		s.log.WarnContext(ctx, "not ready: the store does not answer", "err", err)
		return errors.New("store unreachable")
	}
	return nil
}

// ping checks that st answers: with its Ping method if it has one, else by
// reading the audit trail's head.
func ping(ctx context.Context, st state.Store) error {
	if p, ok := st.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	_, _, err := st.AuditHead(ctx)
	return err
}
