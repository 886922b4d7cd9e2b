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
	"slices"
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
	// every policy file. Required. The service does not close it.
	Store state.Store
	// Secret is the state secret ([gate.LoadSecret]), at least
	// [gate.MinSecretLen] bytes. Required.
	Secret []byte
	// Version is the server version MCP clients are told.
	Version string
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

	// scopes are the policy files in use, the server's ("") first; each
	// has its gate and MCP server.
	scopes   []*scope
	byPolicy map[string]*scope

	mu       sync.Mutex
	draining bool
}

// scope is one policy file's gate and MCP server.
type scope struct {
	name   string // the policy file's path as the principals file names it; "" for the server's
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

	policies := map[string]*policy.Policy{"": cfg.Policy}
	names := []string{""}
	if cfg.Principals != nil {
		for _, p := range cfg.Principals.Policies() {
			if _, ok := policies[p]; ok || p == "" {
				continue
			}
			pol, err := cfg.LoadPolicy(p)
			if err != nil {
				return nil, fmt.Errorf("principals: policy %s: %w", p, err)
			}
			if sp := pol.StorePath(); sp != "" && sp != cfg.Policy.StorePath() {
				s.log.Warn("a principal's policy names a store of its own, which is not used: every policy's limits are kept in the server's one store",
					"policy", p, "unused_store_path", sp)
			}
			policies[p] = pol
			names = append(names, p)
		}
		if s.auth, err = auth.New(cfg.Principals, append([]auth.Option{auth.WithLogger(s.log)}, cfg.AuthOptions...)...); err != nil {
			return nil, err
		}
	}
	slices.Sort(names[1:])
	for _, name := range names {
		sc := &scope{name: name, policy: policies[name]}
		sc.gate = gate.New(gate.Config{
			Policy: sc.policy, Store: s.store, Secret: cfg.Secret, Account: cfg.Account,
			Scope: name, Logger: s.log, Observer: s.metrics,
		})
		sc.mcp = tools.NewServer(tools.Deps{
			Payments: payments, Policy: sc.policy, Gate: sc.gate,
			Caller: principalName, Logger: s.log,
		}, cfg.Version)
		sc.http = newStreamable(sc.mcp, s.log)
		s.scopes = append(s.scopes, sc)
		s.byPolicy[name] = sc
	}
	return s, nil
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
// principal.
func (s *Service) MCPServer() *server.MCPServer { return s.scopes[0].mcp }

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
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	var errs []error
	for _, sc := range s.scopes {
		errs = append(errs, sc.gate.Drain(ctx))
	}
	return errors.Join(errs...)
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
		return fmt.Errorf("store unreachable: %v", err)
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
