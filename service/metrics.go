package service

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// Metric names and labels. Every label value comes from a closed set the
// code defines (tool names, policy codes, Clink endpoints, store
// operations, HTTP status codes): never a customer, a principal, an amount
// or a secret.
const namespace = "clink_mcp"

// metrics are the service's Prometheus collectors.
type metrics struct {
	calls        *prometheus.CounterVec   // tool, decision
	callSeconds  *prometheus.HistogramVec // tool
	replays      *prometheus.CounterVec   // tool
	clinkCalls   *prometheus.CounterVec   // endpoint, outcome
	clinkSeconds *prometheus.HistogramVec // endpoint
	storeSeconds *prometheus.HistogramVec // operation
	storeErrors  *prometheus.CounterVec   // operation
	httpRequests *prometheus.CounterVec   // handler, code
	approvals    *prometheus.CounterVec   // event
}

// newRegistry is a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "tool_calls_total",
			Help: "Tool calls by tool and decision (the audit trail's code: created, replayed, budget_exceeded, ...).",
		}, []string{"tool", "decision"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "tool_call_duration_seconds",
			Help:    "Time from a tool call's arrival at the core to its result, by tool.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tool"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "replays_total",
			Help: "Calls answered with an identical earlier call's result (the duplicate guard), by tool.",
		}, []string{"tool"}),
		clinkCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "clink_requests_total",
			Help: "Calls to Clink's API by endpoint and outcome: ok, refused, unauthorized, outcome_unknown, not_sent.",
		}, []string{"endpoint", "outcome"}),
		clinkSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "clink_request_duration_seconds",
			Help:    "Time of calls to Clink's API (retries included), by endpoint.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "store_operation_duration_seconds",
			Help:    "Time of state store operations (hold, complete, append_audit, ...).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_errors_total",
			Help: "State store operations that failed (a budget's or rate limit's refusal is not a failure), by operation.",
		}, []string{"operation"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests to /mcp by status code (401 and 403 are authentication and access refusals).",
		}, []string{"handler", "code"}),
	}
	m.approvals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "approvals_total",
		Help: "Approvals of payments above a threshold, by event: requested, approved, denied (by an operator or the client's user), expired.",
	}, []string{"event"})
	for _, c := range []prometheus.Collector{m.calls, m.callSeconds, m.replays, m.clinkCalls, m.clinkSeconds, m.storeSeconds, m.storeErrors, m.httpRequests, m.approvals} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// CallEnded implements [gate.Observer].
func (m *metrics) CallEnded(tool string, code policy.Code, replayed bool, elapsed time.Duration) {
	m.calls.WithLabelValues(tool, string(code)).Inc()
	m.callSeconds.WithLabelValues(tool).Observe(elapsed.Seconds())
	if replayed {
		m.replays.WithLabelValues(tool).Inc()
	}
}

var _ gate.Observer = (*metrics)(nil)

// instrumentHTTP counts the requests h answers by status code.
func (m *metrics) instrumentHTTP(name string, h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.httpRequests.MustCurryWith(prometheus.Labels{"handler": name}), h)
}

// payments wraps p to time and count every Clink call.
func (m *metrics) payments(p tools.Payments) tools.Payments { return &instrumentedPayments{p, m} }

type instrumentedPayments struct {
	next tools.Payments
	m    *metrics
}

// Clink's endpoints, as the metrics name them.
const (
	endpointAgentSession       = "POST /order/payment-session"
	endpointCheckoutSession    = "POST /checkout/session"
	endpointGetAgentSession    = "GET /order/payment-session"
	endpointGetCheckoutSession = "GET /checkout/session"
)

// GetAgentPaymentSession implements [tools.Payments].
func (p *instrumentedPayments) GetAgentPaymentSession(ctx context.Context, id string) (*clink.AgentPaymentSessionInfo, error) {
	start := time.Now()
	s, err := p.next.GetAgentPaymentSession(ctx, id)
	p.m.clink(endpointGetAgentSession, start, err)
	return s, err
}

// GetCheckoutSession implements [tools.Payments].
func (p *instrumentedPayments) GetCheckoutSession(ctx context.Context, id string) (*clink.CheckoutSessionInfo, error) {
	start := time.Now()
	s, err := p.next.GetCheckoutSession(ctx, id)
	p.m.clink(endpointGetCheckoutSession, start, err)
	return s, err
}

func (p *instrumentedPayments) CreateAgentPaymentSession(ctx context.Context, req *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error) {
	start := time.Now()
	s, err := p.next.CreateAgentPaymentSession(ctx, req)
	p.m.clink(endpointAgentSession, start, err)
	return s, err
}

func (p *instrumentedPayments) CreateCheckoutSession(ctx context.Context, req *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	start := time.Now()
	s, err := p.next.CreateCheckoutSession(ctx, req)
	p.m.clink(endpointCheckoutSession, start, err)
	return s, err
}

func (m *metrics) clink(endpoint string, start time.Time, err error) {
	m.clinkSeconds.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	m.clinkCalls.WithLabelValues(endpoint, clinkOutcome(err)).Inc()
}

// clinkOutcome classifies a Clink call's error for the metrics.
func clinkOutcome(err error) string {
	var ce *clink.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, clink.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, clink.ErrUnauthorized):
		return "unauthorized"
	case errors.As(err, &ce):
		return "refused"
	}
	return "not_sent" // no response, and provably never sent
}

// store wraps st to time every operation and count its failures.
func (m *metrics) store(st state.Store) state.Store { return &instrumentedStore{st, m} }

type instrumentedStore struct {
	next state.Store
	m    *metrics
}

// observe records one operation that started at start and ended with err.
// A refusal by a limit, an unknown ID and an identical call holding the
// claim (RequestApproval's signal to replay it) are answers, not failures.
func (s *instrumentedStore) observe(op string, start time.Time, err error) {
	s.m.storeSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	var denied *policy.Denied
	if err != nil && !errors.As(err, &denied) && !errors.Is(err, state.ErrNotFound) && !errors.Is(err, state.ErrClaimHeld) {
		s.m.storeErrors.WithLabelValues(op).Inc()
	}
}

func (s *instrumentedStore) Check(ctx context.Context, at time.Time, limits []policy.Limit) error {
	start := time.Now()
	err := s.next.Check(ctx, at, limits)
	s.observe("check", start, err)
	return err
}

func (s *instrumentedStore) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	start := time.Now()
	id, err := s.next.Reserve(ctx, at, limits)
	s.observe("reserve", start, err)
	return id, err
}

func (s *instrumentedStore) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	start := time.Now()
	d, err := s.next.Clock(ctx, at)
	s.observe("clock", start, err)
	return d, err
}

func (s *instrumentedStore) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	start := time.Now()
	err := s.next.Settle(ctx, id, outcome)
	s.observe("settle", start, err)
	return err
}

func (s *instrumentedStore) Claim(ctx context.Context, c state.Claim) (state.Prior, error) {
	start := time.Now()
	p, err := s.next.Claim(ctx, c)
	s.observe("claim", start, err)
	return p, err
}

// LookClaim implements [state.Store].
func (s *instrumentedStore) LookClaim(ctx context.Context, c state.Claim) (state.Prior, error) {
	start := time.Now()
	p, err := s.next.LookClaim(ctx, c)
	s.observe("look_claim", start, err)
	return p, err
}

func (s *instrumentedStore) Finish(ctx context.Context, key string, result []byte) error {
	start := time.Now()
	err := s.next.Finish(ctx, key, result)
	s.observe("finish", start, err)
	return err
}

func (s *instrumentedStore) Drop(ctx context.Context, key string) error {
	start := time.Now()
	err := s.next.Drop(ctx, key)
	s.observe("drop", start, err)
	return err
}

func (s *instrumentedStore) AppendAudit(ctx context.Context, rec *state.AuditRecord) error {
	start := time.Now()
	err := s.next.AppendAudit(ctx, rec)
	s.observe("append_audit", start, err)
	return err
}

func (s *instrumentedStore) ScanAudit(ctx context.Context, fn func(*state.AuditRecord) error) error {
	start := time.Now()
	err := s.next.ScanAudit(ctx, fn)
	s.observe("scan_audit", start, err)
	return err
}

func (s *instrumentedStore) AuditHead(ctx context.Context) (int64, string, error) {
	start := time.Now()
	seq, hash, err := s.next.AuditHead(ctx)
	s.observe("audit_head", start, err)
	return seq, hash, err
}

func (s *instrumentedStore) Intents(ctx context.Context) ([]state.Intent, error) {
	start := time.Now()
	in, err := s.next.Intents(ctx)
	s.observe("intents", start, err)
	return in, err
}

func (s *instrumentedStore) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	start := time.Now()
	held, err := s.next.Hold(ctx, h)
	s.observe("hold", start, err)
	return held, err
}

func (s *instrumentedStore) Complete(ctx context.Context, c *state.Completion) error {
	start := time.Now()
	err := s.next.Complete(ctx, c)
	s.observe("complete", start, err)
	return err
}

// Close closes the store underneath. Neither the gates nor the service call
// it: the store belongs to whoever opened it.
func (s *instrumentedStore) Close() error { return s.next.Close() }

// WaitClaim passes on the store's notice that a claim finished
// ([gate.ClaimWaiter]), or says it has none.
func (s *instrumentedStore) WaitClaim(ctx context.Context, key string) error {
	if w, ok := s.next.(gate.ClaimWaiter); ok {
		return w.WaitClaim(ctx, key)
	}
	return errors.ErrUnsupported
}

var _ gate.ClaimWaiter = (*instrumentedStore)(nil)

// Ping checks the store answers (see ping).
func (s *instrumentedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := ping(ctx, s.next)
	s.observe("ping", start, err)
	return err
}

// Usage implements [state.Store].
func (s *instrumentedStore) Usage(ctx context.Context, at time.Time, limits []policy.Limit) ([]int64, error) {
	start := time.Now()
	used, err := s.next.Usage(ctx, at, limits)
	s.observe("usage", start, err)
	return used, err
}

// SessionTool implements [state.Store]. (Its op label keeps the name it
// had before the method told the tool.)
func (s *instrumentedStore) SessionTool(ctx context.Context, id, caller string) (string, error) {
	start := time.Now()
	tool, err := s.next.SessionTool(ctx, id, caller)
	s.observe("session_created", start, err)
	return tool, err
}

// RequestApproval implements [state.Store], and counts the approvals
// requested.
func (s *instrumentedStore) RequestApproval(ctx context.Context, r *state.ApprovalRequest) (*state.Approval, bool, error) {
	start := time.Now()
	a, created, err := s.next.RequestApproval(ctx, r)
	s.observe("request_approval", start, err)
	if err == nil && created {
		s.m.approvals.WithLabelValues("requested").Inc()
	}
	return a, created, err
}

// Approval implements [state.Store].
func (s *instrumentedStore) Approval(ctx context.Context, id string) (*state.Approval, error) {
	start := time.Now()
	a, err := s.next.Approval(ctx, id)
	s.observe("approval", start, err)
	return a, err
}

// CallApproval implements [state.Store].
func (s *instrumentedStore) CallApproval(ctx context.Context, key string, at time.Time, remember time.Duration) (*state.Approval, error) {
	start := time.Now()
	a, err := s.next.CallApproval(ctx, key, at, remember)
	s.observe("call_approval", start, err)
	return a, err
}

// ListApprovals implements [state.Store].
func (s *instrumentedStore) ListApprovals(ctx context.Context, states []string, limit int) ([]state.Approval, error) {
	start := time.Now()
	list, err := s.next.ListApprovals(ctx, states, limit)
	s.observe("list_approvals", start, err)
	return list, err
}

// DecideApproval implements [state.Store], and counts the decisions.
func (s *instrumentedStore) DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*state.Approval, error) {
	start := time.Now()
	a, err := s.next.DecideApproval(ctx, at, id, approve, by, useBy)
	if errors.Is(err, state.ErrApprovalNotPending) {
		s.observe("decide_approval", start, nil) // a refusal, not a failure
	} else {
		s.observe("decide_approval", start, err)
	}
	if err == nil {
		s.m.approvals.WithLabelValues(a.State).Inc()
	}
	return a, err
}

// ExpireApprovals implements [state.Store], and counts the expiries.
func (s *instrumentedStore) ExpireApprovals(ctx context.Context, at time.Time) (int, error) {
	start := time.Now()
	n, err := s.next.ExpireApprovals(ctx, at)
	s.observe("expire_approvals", start, err)
	if n > 0 {
		s.m.approvals.WithLabelValues("expired").Add(float64(n))
	}
	return n, err
}

// Lease passes [state.Leaser] through: the gates renew the lease of the
// store underneath; 0 when it has none.
func (s *instrumentedStore) Lease() time.Duration {
	if l, ok := s.next.(state.Leaser); ok {
		return l.Lease()
	}
	return 0
}

var _ state.Leaser = (*instrumentedStore)(nil)

// AuditStart passes [state.AuditStarter] through, for a store that forgets
// its oldest records (the memory store), so that verifying the wrapped
// store starts where it does.
func (s *instrumentedStore) AuditStart(ctx context.Context) (int64, string, error) {
	if st, ok := s.next.(state.AuditStarter); ok {
		return st.AuditStart(ctx)
	}
	return 1, "", nil
}
