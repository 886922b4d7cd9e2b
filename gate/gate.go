// Package gate owns the life of a payment call, whatever transport brought
// it (MCP over stdio or HTTP, or a Go program embedding clink-mcp). It
// imports neither mcp-go nor net/http: transports decode and validate
// arguments into an [Order], hand it to [Gate.Create] with the caller's
// identity, and render the [Result].
//
// A call goes through four phases, in order:
//
//  1. decide: the policy's stateless rules ([policy.Policy.Evaluate]), pure;
//  2. hold: the duplicate guard's claim, the budgets' and rate limits'
//     reservation and the intent record, in one store transaction
//     ([state.Store.Hold]); an identical call in flight is waited for, a
//     finished one replayed;
//  3. commit: the Clink call. From here the call is no longer the caller's
//     to cancel: it runs to its end, bounded by the Clink client's timeout,
//     so that what Clink did is known and recorded;
//  4. settle: the reservation's settlement, the claim's replay and the
//     outcome record, in one transaction ([state.Store.Complete]). A write
//     that fails is kept in memory and retried until it lands or the
//     process ends; an intent left open by a process that ended is
//     resolved as an unknown outcome by the next one ([Gate.Recover]).
//
// Every call, whatever its end, leaves an outcome record in the audit trail
// and one log line, under one vocabulary: [policy.Code].
package gate

import (
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// Policy is what the gate needs of the operator's policy. *policy.Policy
// satisfies it. Every method must be safe for concurrent use.
type Policy interface {
	// Evaluate decides one request by the stateless rules.
	Evaluate(req *policy.Request) policy.Decision
	// Limits returns the budget and rate-limit counters req is checked
	// against; customers are the opaque keys of the customer identifiers
	// it names (policy.CustomerKeys).
	Limits(req *policy.Request, customers []string) []policy.Limit
	// LimitDecision explains a ledger's refusal of limits[d.Limit].
	LimitDecision(limits []policy.Limit, d *policy.Denied, now time.Time) policy.Decision
	// DuplicatesWindow is how long an identical call is answered with the
	// earlier result; 0 turns the guard off.
	DuplicatesWindow() time.Duration
	// NeedsApproval reports whether req needs a person's approval before
	// it is created.
	NeedsApproval(req *policy.Request) bool
	// ApprovalTimeout is how long an approval waits for its decision, and
	// then for its use.
	ApprovalTimeout() time.Duration
	// ApprovalsByOperator reports that approvals are decided by an
	// operator even when the caller's client could ask its user.
	ApprovalsByOperator() bool
	// HasApprovals reports whether any call may need approval.
	HasApprovals() bool
	// DescribeLimits explains limits (as Limits returned them) with what
	// each counter holds.
	DescribeLimits(limits []policy.Limit, used []int64) []policy.LimitStatus
	// StandingLimits are the counters every call of principal counts
	// against, whatever its customer (budgets and rate limits not per
	// customer), with Add 0.
	StandingLimits(principal string) []policy.Limit
}

var _ Policy = (*policy.Policy)(nil)

// Config is what a [Gate] is built from.
type Config struct {
	// Policy decides every call. Required.
	Policy Policy
	// Store keeps the ledger, the claims and the journal. Required.
	Store state.Store
	// Secret is the state secret (see [LoadSecret]): it keys the hashes that
	// stand for customers in the store and encrypts stored replays. At
	// least 32 bytes. Required. It does not depend on the Clink API key, so
	// rotating the key keeps per-customer limits and replays readable.
	Secret []byte
	// Account names the Clink environment and account calls go to (see
	// [AccountID]); claims are bound to it, so a store used against another
	// account never replays this one's sessions.
	Account string
	// Scope keeps this gate's budget and rate-limit counters apart from
	// those of gates with another scope on the same store: gates count
	// together exactly when their scopes are equal. It is how policy files
	// share one store: a server that governs its principals by several
	// policy files builds one gate per file, each with the file's path as
	// the operator wrote it in the principals file as its Scope (two
	// spellings of one path are two scopes). A server under one policy
	// file (stdio, or HTTP without a principals file) passes "", which
	// keeps the keys the policy makes unchanged, so an existing store keeps
	// its counters. Claims and the audit trail are not scoped: claims are
	// bound to the caller, and records name it.
	Scope string
	// Clock is the time of calls for the ledger, claims and the journal.
	// Nil means time.Now.
	Clock func() time.Time
	// Logger receives one line per call and the journal's troubles. Nil
	// discards.
	Logger *slog.Logger
	// Observer is told how every call ended, as its log line is written
	// (for metrics). Nil tells no one.
	Observer Observer
	// Operators says how an operator can decide an approval on this
	// server, which the answer to a call awaiting one tells the agent.
	// The zero value is OperatorsCommand.
	Operators Operators
}

// Operators is how an operator can decide approvals on a server.
type Operators int

// The ways an operator can decide approvals.
const (
	// OperatorsCommand: with `clink-mcp approvals`, which reads the
	// server's store (and through the admin endpoint, if the server has one).
	OperatorsCommand Operators = iota
	// OperatorsEndpoint: through the admin endpoint only (the server keeps
	// its approvals in memory, where the command cannot see them).
	OperatorsEndpoint
	// OperatorsNone: no operator can (approvals in memory and no admin
	// endpoint): only a client that can ask its user gets an approval.
	OperatorsNone
)

// Observer is told how each call ended. Its method runs on the call's
// goroutine, so it must be quick and safe for concurrent use.
type Observer interface {
	// CallEnded reports a call to tool that ended with code after elapsed;
	// replayed is set when an earlier identical call's result answered it.
	CallEnded(tool string, code policy.Code, replayed bool, elapsed time.Duration)
}

// Gate runs calls through their lifecycle. It is safe for concurrent use.
type Gate struct {
	policy    Policy
	store     state.Store
	keys      keys
	replays   cipher.AEAD
	questions cipher.AEAD // seals approval questions' states
	account   string
	scope     string // the prefix of the store's counter keys: scopePrefix(Config.Scope)
	now       func() time.Time
	log       *slog.Logger
	observer  Observer
	operators Operators // Config.Operators
	journal   *journal
	mu        sync.Mutex
	closing   bool
	inFlight  sync.WaitGroup
	active    atomic.Int64   // the calls inFlight counts, for Drain to read
	drained   chan struct{}  // closed when closing and nothing is in flight
	closed    bool           // Close has waited for the late answers: none is taken now
	late      sync.WaitGroup // the answers recorded while closing (enterLate)
	lateN     atomic.Int64   // the answers late counts, for waitLate to read

	lastSweep time.Time // of orphaned intents, under mu

	stopClock  chan struct{} // closed by Close: the clock goroutine ends
	clockDone  chan struct{}
	clockEvery time.Duration // clockEvery, or less for a store's short lease
	closeOnce  sync.Once
}

// Clock publishing: every clockEvery the gate publishes its time to the
// store (so that other processes sharing it judge windows by a time no
// live process is behind, and a store with a lease renews it) and logs,
// at most once per skewReportEvery, a skew beyond skewTolerance. A store
// whose lease ([state.Leaser]) is shorter than three times clockEvery is
// called every third of its lease instead, so that a call waiting for a
// slow Clink is never taken for one of a dead process.
const (
	clockEvery      = 5 * time.Second
	skewTolerance   = 2 * time.Second
	skewReportEvery = time.Minute
)

// New returns a gate over cfg. It panics when a required field is missing:
// that is a wiring bug, not a runtime condition.
func New(cfg Config) *Gate {
	if cfg.Policy == nil || cfg.Store == nil || len(cfg.Secret) < 32 {
		panic("gate: Config.Policy, Store and a Secret of at least 32 bytes are required")
	}
	g := &Gate{
		policy:    cfg.Policy,
		store:     cfg.Store,
		keys:      deriveKeys(cfg.Secret),
		account:   cfg.Account,
		scope:     scopePrefix(cfg.Scope),
		now:       cfg.Clock,
		log:       cfg.Logger,
		observer:  cfg.Observer,
		operators: cfg.Operators,
	}
	g.replays = newAEAD(g.keys.replay)
	g.questions = newAEAD(g.keys.question)
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.journal = newJournal(g.store, g.log)
	g.stopClock, g.clockDone = make(chan struct{}), make(chan struct{})
	g.clockEvery = clockEvery
	if l, ok := g.store.(state.Leaser); ok && l.Lease() > 0 && l.Lease()/3 < g.clockEvery {
		g.clockEvery = l.Lease() / 3
	}
	go g.publishClock()
	return g
}

// Now is the gate's clock: the time of calls, by which a [Question]'s
// ExpiresAt is set.
func (g *Gate) Now() time.Time { return g.now() }

// publishClock publishes the gate's time to the store until Close,
// reports clocks that disagree with the other processes', and resolves the
// calls that processes gone have left open.
func (g *Gate) publishClock() {
	defer close(g.clockDone)
	var reported time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), g.clockEvery)
		ahead, err := g.store.Clock(ctx, g.now())
		// Calls left open by a process that died while this one runs (a
		// replica killed mid-call) are resolved here, not only at start or
		// when an identical call waits for one.
		g.sweepOrphans(ctx)
		g.expireApprovals(ctx)
		cancel()
		switch {
		case err != nil:
			g.log.Warn("publishing the clock to the store failed", "err", err)
		case (ahead > skewTolerance || ahead < -skewTolerance) && time.Since(reported) >= skewReportEvery:
			reported = time.Now()
			who := "ahead of"
			if ahead < 0 {
				who, ahead = "behind", -ahead
			}
			g.log.Error("CLOCK SKEW: the store's clock (another process sharing it, or the database server) is "+who+" this one; "+
				"on a shared file, windows are judged by the clock furthest behind, so capacity returns late; on a database, by the database's clock. Fix the clocks (NTP)",
				"skew", ahead.Round(time.Second))
		}
		select {
		case <-g.stopClock:
			return
		case <-time.After(g.clockEvery):
		}
	}
}

// Order is a decoded, validated call, ready for the gate.
type Order struct {
	// Request is what the policy decides; Request.Tool names the tool.
	Request policy.Request
	// IdempotencyKey is the agent's explicit key, or "".
	IdempotencyKey string
	// Fingerprint is the canonical form of what Clink will receive (its
	// JSON, where a tool may write a documented default as not given):
	// identical fingerprints are identical calls.
	Fingerprint []byte
	// Commit makes the Clink call. Its context is not cancelled by the
	// caller: once sent, a call runs to its end.
	Commit func(ctx context.Context) (*Created, error)
	// CanAsk reports that the transport can put a [Question] to the
	// caller's user (an MCP client that declares elicitation): a call
	// that needs approval then asks them rather than an operator, unless
	// the policy says otherwise.
	CanAsk bool
	// Answer is the user's answer to the Question an earlier round of this
	// same call asked, or nil.
	Answer *Answer
}

// Created is what a successful Clink call returns, as the agent will see
// it.
type Created struct {
	// SessionID is Clink's ID of the new session.
	SessionID string
	// Structured is the result's structured content (JSON).
	Structured json.RawMessage
	// Summary is a one-line description for the agent.
	Summary string
	// Unread names the fields of Clink's answer the client could not read
	// (see clink.CheckoutSession): the session was created; a warning in
	// the log names them.
	Unread []string
}

// Result is how a call ended, ready for a transport to render.
type Result struct {
	// Code is the outcome.
	Code policy.Code
	// IsError is set for every outcome but a created session or its replay.
	IsError bool
	// Text is what the agent reads: the summary, or what was refused and
	// what to do about it. It never holds a secret or a raw upstream body.
	Text string
	// SessionID is Clink's session ID, when one was created or replayed.
	SessionID string
	// Structured is the structured content of a created session (JSON), or
	// nil.
	Structured json.RawMessage
	// Replayed is set when the result repeats an identical earlier call's.
	Replayed bool
	// RetryAt is when a call refused by a budget or rate limit may fit.
	RetryAt time.Time
	// Question is set, with Code policy.CodeApprovalRequired, when the
	// caller's user is to approve the call: the transport asks it and
	// repeats the call with the answer ([Order.Answer]). A transport that
	// cannot ask renders Text, which says what to do.
	Question *Question
}

// ErrClosed is returned by [Gate.Close] when some journal writes never
// landed; each was logged in full first.
var ErrClosed = errors.New("gate: closed with journal writes that did not land")

// enter admits a call unless the gate is closing.
func (g *Gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.inFlight.Add(1)
	g.active.Add(1)
	return true
}

// leave ends a call enter admitted.
func (g *Gate) leave() {
	g.active.Add(-1)
	g.inFlight.Done()
}

// enterLate admits, while the gate drains, a call that only records its
// user's answer (answerWhileClosing), for Close to wait for before the
// journal closes and its caller closes the store. It reports false once
// Close has stopped waiting for them; a true is ended with leaveLate.
func (g *Gate) enterLate() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.late.Add(1)
	g.lateN.Add(1)
	return true
}

// leaveLate ends a late answer enterLate admitted.
func (g *Gate) leaveLate() {
	g.lateN.Add(-1)
	g.late.Done()
}

// waitLate stops admitting late answers and waits, until ctx is done, for
// those admitted to end.
func (g *Gate) waitLate(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.late.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if g.lateN.Load() == 0 {
			return nil // as in Drain: only answers still running make it an error
		}
		return ctx.Err()
	}
}

// Drain stops taking new calls (they are refused with
// [policy.CodeShuttingDown]) and waits until the calls in flight have
// ended, or ctx is done. Calls already sent to Clink are never cut short;
// Drain only stops waiting for them.
func (g *Gate) Drain(ctx context.Context) error {
	g.mu.Lock()
	if !g.closing {
		g.closing = true
		g.drained = make(chan struct{})
		go func(done chan struct{}) { g.inFlight.Wait(); close(done) }(g.drained)
	}
	drained := g.drained
	g.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		// Both may be ready (a ctx already done, calls all ended before
		// the goroutine above closed drained): only calls still running
		// make it an error.
		if g.active.Load() == 0 {
			return nil
		}
		return ctx.Err()
	}
}

// Close drains the gate (see [Gate.Drain]) and then tries, until ctx is
// done, to land the journal writes still pending. A write that never lands
// is logged at error level with everything it held (call, decision,
// session ID) and Close returns [ErrClosed]: the intent stays open in the
// store and the next server resolves it. Calls still in flight when ctx
// is done are not waited for: Close returns [ErrCallsInFlight] too, since
// their outcomes may never be recorded (their intents stay open, as
// above). The gate keeps publishing its clock (renewing a store's lease)
// until then, so that no other process takes the calls it waits for as
// ones of a dead process. Close does not close the store.
func (g *Gate) Close(ctx context.Context) error {
	var drainErr error
	if err := g.Drain(ctx); err != nil {
		g.log.Error("shutting down with calls still in flight", "err", err)
		drainErr = fmt.Errorf("%w (%v)", ErrCallsInFlight, err)
	}
	// Late answers stop being taken whatever the drain's end; they are
	// waited for only when it ended in time (ctx is done otherwise).
	if err := g.waitLate(ctx); err != nil && drainErr == nil {
		g.log.Error("shutting down while a user's answer was still being recorded", "err", err)
		drainErr = fmt.Errorf("%w (%v)", ErrCallsInFlight, err)
	}
	err := errors.Join(drainErr, g.journal.close(ctx))
	g.closeOnce.Do(func() { close(g.stopClock) })
	<-g.clockDone
	return err
}

// ErrCallsInFlight is returned by [Gate.Close] when calls were still in
// flight at its deadline.
var ErrCallsInFlight = errors.New("gate: closed with calls still in flight")
