package gate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// defaultKeyWindow is how long an explicit idempotency key is honoured when
// the policy turns the implicit duplicate guard off.
const defaultKeyWindow = 24 * time.Hour

// maxClaimWait bounds how long a call waits for an identical call in flight.
const maxClaimWait = 2 * time.Minute

// claimPoll is how often a call waiting for an identical one looks again,
// on a store that cannot say when a claim finishes.
const claimPoll = 20 * time.Millisecond

// claimWaitSlice bounds one wait on a store that notifies (ClaimWaiter), so
// that a notification missed between the look and the wait, or an orphaned
// call's process found gone, costs at most this much.
const claimWaitSlice = time.Second

// ClaimWaiter is what a store shared by several processes offers so that
// a call waiting for an identical call in flight (perhaps on another
// replica) wakes when that call finishes rather than polling the store.
type ClaimWaiter interface {
	// WaitClaim returns when the claim key may have finished or been
	// dropped, when ctx ends (with ctx's error), or at once with
	// errors.ErrUnsupported when the store cannot tell.
	WaitClaim(ctx context.Context, key string) error
}

// orphanSweep is how often, at most, a waiting call looks for intents left
// by a process that has ended.
const orphanSweep = time.Second

// Create runs one call through its lifecycle (see the package doc) on
// behalf of caller, the principal making it ("" for the local user of a
// stdio server, recorded as [LocalPrincipal]), and returns how it ended.
// The gate sets o.Request.Principal to it, on a copy of o. Cancelling ctx
// stops the call only until it is sent to Clink; after that it runs to its
// end and its real outcome is recorded.
func (g *Gate) Create(ctx context.Context, caller string, o *Order) (res *Result) {
	c := g.begin(caller, o.Request.Tool, &o.Request)
	order := *o
	order.Request.Principal = c.caller
	o = &order
	if !g.enter() {
		if o.Answer != nil && g.enterLate() {
			// The user answered a question asked before the drain: the
			// answer is kept, though the call is not made.
			defer g.leaveLate()
			return c.end(ctx, g.answerWhileClosing(ctx, c, o))
		}
		return c.end(ctx, shuttingDown())
	}
	defer g.leave()

	var (
		held      *state.Held
		claimKey  string
		committed *Result // Clink's answer, once commit has returned
	)
	// A panic is a bug: the operator gets the stack. Before Clink answered,
	// the agent gets a plain internal error and a held call is settled as
	// unknown (the money may be committed) with its claim dropped, never
	// left in flight. Once Clink answered, its answer stands: the agent
	// gets it, and it is recorded unless settle had handed it to the
	// journal (which retries a store that panics) before the panic. A
	// result already with the journal is never recorded twice.
	defer func() {
		if r := recover(); r != nil {
			g.log.ErrorContext(ctx, "panic in a call", "tool", c.tool, "call", c.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			switch {
			case c.recorded != nil:
				res = c.recorded
			case committed != nil:
				res = committed
				comp, replay := g.safeCompletion(ctx, c, claimKey, committed)
				g.journal.complete(ctx, comp, replay)
				c.recorded = committed
			case held != nil:
				res = internalResult()
				g.settle(ctx, c, held, claimKey, res, policy.Unknown)
			default:
				res = internalResult()
				c.end(ctx, res)
			}
		}
	}()

	// 1. Decide.
	if d := g.policy.Evaluate(&o.Request); !d.Allowed {
		return c.end(ctx, denied(d))
	}
	// 2. Approve, when the policy wants a person's yes: the approval
	// reserves the limits, and the hold then uses its reservation.
	// An identical call holding the duplicate guard's claim answers this
	// one instead (the hold replays or waits for it); should that claim be
	// gone by the time the hold looks, the approval is looked at again.
	needsApproval := g.policy.NeedsApproval(&o.Request)
	if !needsApproval {
		switch d, err := g.keyOfApproval(ctx, c, o, g.now()); {
		case d != nil:
			return c.end(ctx, denied(*d))
		case ctx.Err() != nil:
			return c.end(ctx, cancelled())
		case err != nil:
			g.log.ErrorContext(ctx, "store failed; refusing the call", "tool", c.tool, "call", c.id, "op", "call approval", "err", err)
			return c.end(ctx, &Result{Code: policy.CodeInternal, IsError: true,
				Text: "internal error: the server could not check whether this idempotencyKey waits for an approval, so nothing was created; the operator's log has the details."})
		}
	}
	for attempt := 0; ; attempt++ {
		var (
			approval  string
			claimOnly bool
		)
		if needsApproval {
			var r *Result
			if approval, r, claimOnly = g.approval(ctx, c, o); r != nil {
				return c.end(ctx, r)
			}
		}
		// 3. Hold.
		var unsure bool
		held, claimKey, res, unsure = g.hold(ctx, c, o, approval, claimOnly)
		if unsure {
			return g.abandon(ctx, c, claimKey, res)
		}
		if res != nil {
			return c.end(ctx, res)
		}
		if held != nil {
			break
		}
		if attempt == 3 {
			return c.end(ctx, denied(policy.Decision{Code: policy.CodeDuplicateInFlight,
				Message: "identical calls keep racing for this payment's approval; wait a moment and repeat the call once"}))
		}
	}
	// 4. Commit.
	res = g.commit(ctx, c, o)
	committed = res
	// 5. Settle.
	g.settle(ctx, c, held, claimKey, res, res.Code.Settlement())
	return res
}

// Checked is what [Gate.Check] found.
type Checked struct {
	// Decision is what Create would decide now, before any approval: the
	// policy's rules, then the budgets and rate limits as they stand.
	Decision policy.Decision
	// NeedsApproval reports that the call, if allowed, would wait for a
	// person's approval before it is created.
	NeedsApproval bool
	// Limits are the budgets and rate limits that apply to the call, with
	// what each holds and what is left, in the policy's order; nil when
	// the policy's rules refuse the call.
	Limits []policy.LimitStatus
	// ApprovalID names the approval of an identical call that would answer
	// this one (pending, approved, or refused within the time it is
	// remembered); "" when there is none.
	ApprovalID string
}

// Check decides o as Create would for caller ("" for the local user),
// recording and reserving nothing: the policy's rules, the duplicate guard
// (an identical call made or in flight within its window would be
// answered with its result, code replayed; an idempotencyKey used with
// other arguments is refused), the approval of an identical call where the
// call needs one (see checkApproval), then the budgets and rate limits as
// they stand, caller's own where they are per principal. The gate sets the
// request's Principal, on a copy. The error is for a store that cannot
// answer.
func (g *Gate) Check(ctx context.Context, caller string, o *Order) (*Checked, error) {
	var req *policy.Request
	if o != nil {
		r := o.Request
		r.Principal = principal(caller)
		req = &r
	}
	out := &Checked{Decision: g.policy.Evaluate(req)}
	if !out.Decision.Allowed {
		return out, nil
	}
	out.NeedsApproval = g.policy.NeedsApproval(req)
	now := g.now()
	limits, stored := g.limits(req, policy.CustomerKeys(g.keys.customer, req))
	used, err := g.store.Usage(ctx, now, stored)
	if err != nil {
		return nil, err
	}
	out.Limits = g.policy.DescribeLimits(limits, used)
	if !out.NeedsApproval {
		c := g.begin(caller, req.Tool, req)
		if d, err := g.keyOfApproval(ctx, c, o, now); err != nil || d != nil {
			if d != nil {
				out.Decision = *d
			}
			return out, err
		}
	}
	if d, err := g.checkClaim(ctx, caller, o, req, out.NeedsApproval, now); err != nil || d != nil {
		if d != nil {
			out.Decision, out.NeedsApproval = *d, false
		}
		return out, err
	}
	if out.NeedsApproval {
		a, err := g.checkApproval(ctx, caller, o, req, now)
		if err != nil {
			return out, err
		}
		if a != nil {
			out.Decision, out.NeedsApproval, out.ApprovalID = a.decision, a.needsApproval, a.id
			if a.approved.IsZero() {
				return out, nil
			}
			// A hold on an approved approval checks its limits again, as
			// of the hold: judge them so.
			var denied *policy.Denied
			switch err := g.store.Check(ctx, now, approvedLimits(stored, a.approved, now)); {
			case errors.As(err, &denied):
				out.Decision = g.policy.LimitDecision(limits, denied, now)
				out.Decision.Message += outlivesApproval(a.id, a.usableUntil, out.Decision.RetryAt)
			case err != nil:
				return nil, err
			}
			return out, nil
		}
	}
	var denied *policy.Denied
	switch err := g.store.Check(ctx, now, stored); {
	case errors.As(err, &denied):
		out.Decision = g.policy.LimitDecision(limits, denied, now)
	case err != nil:
		return nil, err
	}
	return out, nil
}

// claimWindow returns the window of the duplicate guard's claim a call
// takes, and whether it takes one: with the guard on, or with an
// idempotencyKey (keyed; its own window when the guard is off). A call
// made on an approval (onApproval) always keeps its result for identical
// calls, at least as long as approvals wait: repeating it must not ask
// again, nor create it twice.
func (g *Gate) claimWindow(onApproval, keyed bool) (time.Duration, bool) {
	window := g.policy.DuplicatesWindow()
	if onApproval {
		window = max(window, g.policy.ApprovalTimeout())
	}
	if window <= 0 {
		return defaultKeyWindow, keyed
	}
	return window, true
}

// checkClaim looks, writing nothing, at the duplicate guard's claim the
// call o would take, and returns what Create would answer because of it:
// a replay of an identical call, or the refusal of an idempotencyKey used
// with other arguments; nil when the call would go on.
func (g *Gate) checkClaim(ctx context.Context, caller string, o *Order, req *policy.Request, needsApproval bool, now time.Time) (*policy.Decision, error) {
	window, claims := g.claimWindow(needsApproval, o.IdempotencyKey != "")
	if !claims {
		return nil, nil
	}
	c := g.begin(caller, req.Tool, req)
	key, fingerprint := g.callKey(c, o)
	prior, err := g.store.LookClaim(ctx, state.Claim{Key: key, Call: c.id, Fingerprint: fingerprint, At: now, Window: window})
	if err != nil {
		return nil, err
	}
	switch prior.State {
	case state.ClaimDone:
		return &policy.Decision{Allowed: true, Code: policy.CodeReplayed,
			Message: "an identical call (the same arguments, or the same idempotencyKey) was made within the duplicate window: this call would return its result, and create no new session"}, nil
	case state.ClaimInFlight:
		return &policy.Decision{Allowed: true, Code: policy.CodeReplayed,
			Message: "an identical call (the same arguments, or the same idempotencyKey) is in flight: this call would wait for it and return its result, and create no new session"}, nil
	case state.ClaimConflict:
		return &policy.Decision{Code: policy.CodeDuplicateConflict, Message: keyReusedMessage}, nil
	}
	return nil, nil
}

// keyOfApproval refuses, as the reuse of its key, a call that needs no
// approval but whose idempotencyKey is that of a call with other arguments
// waiting for its approval, or approved and not yet made: the key is that
// payment's. (The duplicate guard's claim, which refuses such reuse
// otherwise, is taken when the approved call is made, not while it waits.)
// A call that needs approval meets the approval itself (see approval). It
// reads the store only for a call with an idempotencyKey under a policy
// with approvals, and writes nothing: a call that takes the key while the
// other's approval is being requested goes ahead, and the approved call is
// then refused as the key's reuse when it is made, its reservation
// released when the approval expires.
func (g *Gate) keyOfApproval(ctx context.Context, c *call, o *Order, now time.Time) (*policy.Decision, error) {
	if o.IdempotencyKey == "" || !g.policy.HasApprovals() {
		return nil, nil
	}
	key, fingerprint := g.callKey(c, o)
	a, err := g.store.CallApproval(ctx, key, now, g.policy.ApprovalTimeout())
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case a.Fingerprint != fingerprint && (a.State == state.ApprovalPending || a.State == state.ApprovalApproved):
		return &policy.Decision{Code: policy.CodeDuplicateConflict, Message: keyReusedMessage +
			" (a payment with this key is waiting for its approval, " + a.ID + ")"}, nil
	}
	return nil, nil
}

// checkedApproval is what the approval of an identical call would make of
// a call Check looks at.
type checkedApproval struct {
	id            string
	decision      policy.Decision
	needsApproval bool
	// approved is, for an approved approval, when its reservation was
	// made (its request), and usableUntil when it expires unused; the
	// zero time otherwise.
	approved, usableUntil time.Time
}

// outlivesApproval is what the refusal of a call on approval id, usable
// until, adds when the limit that refuses it allows it again only at
// retry, too late: the approval will expire unused, and retrying then
// would not find it.
func outlivesApproval(id string, until, retry time.Time) string {
	if retry.IsZero() || retry.Before(until) {
		return ""
	}
	return fmt.Sprintf("; but this payment's approval (%s) can be used only until %s, which is sooner: it will expire unused, and the payment will need a new approval (tell your user)",
		id, until.UTC().Format(time.RFC3339))
}

// approvedLimits is what a hold on an approved approval, whose
// reservation was made at reserved, checks at now: the call's limits
// (stored), the reservation moved to now. A limit whose window still
// holds the reservation is not added to again; one whose window it has
// left gets the call's amount (a budget) or the call (a rate limit) anew.
// Whether the window still holds the reservation is judged by the gate's
// clock, the store's windows by its own (bounded by other handles', or
// the database's): within that skew of the window's edge, Check may
// answer otherwise than the hold. So it may for a limit added to the
// policy since the request (the reservation never counted it, and it is
// taken for counted), and in the memory store for a reservation whose
// entry was coalesced into a bucket that outlives it: Check advises.
func approvedLimits(stored []policy.Limit, reserved, now time.Time) []policy.Limit {
	out := slices.Clone(stored)
	for i, l := range out {
		if reserved.After(now.Add(-l.Window)) {
			out[i].Add = 0
		}
	}
	return out
}

// checkApproval looks, writing nothing, for the approval Create would find
// for the call o, which needs one, and returns what Create would answer
// because of it; nil when Create would request a new approval. A pending
// or approved approval already holds its reservation in the limits, so
// the call is not judged against them again: a pending one would be
// waited for, an approved one used. A refused or expired one answers
// identical calls for as long as approvals wait (until RetryAt).
func (g *Gate) checkApproval(ctx context.Context, caller string, o *Order, req *policy.Request, now time.Time) (*checkedApproval, error) {
	c := g.begin(caller, req.Tool, req)
	key, fingerprint := g.callKey(c, o)
	remember := g.policy.ApprovalTimeout()
	a, err := g.store.CallApproval(ctx, key, now, remember)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case a.Fingerprint != fingerprint:
		return &checkedApproval{decision: policy.Decision{Code: policy.CodeDuplicateConflict, Message: keyReusedMessage}}, nil
	}
	out := &checkedApproval{id: a.ID}
	until := a.ExpiresAt.UTC().Format(time.RFC3339)
	switch a.State {
	case state.ApprovalPending:
		out.needsApproval = true
		out.decision = policy.Decision{Allowed: true, Code: policy.CodeAllowed,
			Message: fmt.Sprintf("an identical call's approval (%s) is pending until %s: this call would be answered with it, and go ahead once a person approves it; its reservation is already counted in the limits", a.ID, until)}
		return out, nil
	case state.ApprovalApproved:
		out.approved, out.usableUntil = a.RequestedAt, a.ExpiresAt
		out.decision = policy.Decision{Allowed: true, Code: policy.CodeAllowed,
			Message: fmt.Sprintf("an identical call's approval (%s) was approved, and may be used until %s: this call would create the session on it, its budgets and rate limits checked again as of now; its reservation is already counted in the limits", a.ID, until)}
		return out, nil
	}
	refused := decidedResult(a, remember)
	var why string
	switch refused.Code {
	case policy.CodeApprovalDeclined:
		why = "the user declined an identical call"
	case policy.CodeApprovalDenied:
		why = "an operator denied an identical call"
	case policy.CodeApprovalExpired:
		why = "nobody approved an identical call, or made it once approved, in time"
	default:
		why = "an identical call's approval cannot be used"
	}
	retry := refused.RetryAt
	out.decision = policy.Decision{Code: refused.Code, RetryAt: retry,
		Message: fmt.Sprintf("%s (approval %s): this call would be refused with that answer until %s; ask your user before trying again", why, a.ID, retry.Format(time.RFC3339))}
	return out, nil
}

// Standing describes the limits caller's calls count against whatever
// their customer: the policy's budgets and rate limits that are not per
// customer (Policy.StandingLimits), with what each holds now. It records
// nothing.
func (g *Gate) Standing(ctx context.Context, caller string) ([]policy.LimitStatus, error) {
	own := g.policy.StandingLimits(principal(caller))
	used, err := g.store.Usage(ctx, g.now(), g.scoped(own))
	if err != nil {
		return nil, err
	}
	return g.policy.DescribeLimits(own, used), nil
}

// SessionTool returns the tool that created the session id for caller, as
// the audit trail records it (this server, or any replica sharing its
// store), or "" if none did: a principal looks up only the sessions its
// own calls created, with the status tool of their kind.
func (g *Gate) SessionTool(ctx context.Context, caller, id string) (string, error) {
	return g.store.SessionTool(ctx, id, principal(caller))
}

// Invalid records a call whose arguments failed decoding or validation,
// and returns its result. email is the customer email as far as it was
// read, or "".
func (g *Gate) Invalid(ctx context.Context, caller, tool, email string, problems []string) *Result {
	c := g.begin(caller, tool, nil)
	c.setEmail(email)
	msg := "invalid arguments: " + strings.Join(problems, "; ")
	if !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return c.end(ctx, &Result{Code: policy.CodeInvalidArguments, IsError: true, Text: msg + " Nothing was created."})
}

// Refused records a call that a policy rule outside the request
// (policy.Policy.CheckURL) refused before it became an order, and returns
// its result. email is the customer email as far as it was read, or "".
func (g *Gate) Refused(ctx context.Context, caller, tool, email string, d policy.Decision) *Result {
	c := g.begin(caller, tool, nil)
	c.setEmail(email)
	return c.end(ctx, denied(d))
}

// hold takes the claim, reserves the limits and writes the intent, waiting
// for an identical call in flight. It returns the hold and the claim's key
// ("" without a claim), or the result to answer with instead. unsure
// reports a hold that failed in a way that may still have committed (the
// connection to the store was lost, or ctx ended, during the write): the
// result then goes to [Gate.abandon] with the claim's key.
//
// approval is the approved approval the call is held on (its reservation
// stands for the limits), or "". claimOnly makes the hold only look for an
// identical call holding the claim: when there is none, it writes nothing
// and returns neither a hold nor a result, and the caller looks at the
// approval again.
func (g *Gate) hold(ctx context.Context, c *call, o *Order, approval string, claimOnly bool) (_ *state.Held, key string, _ *Result, unsure bool) {
	var claim *state.Claim
	if window, claims := g.claimWindow(approval != "" || claimOnly, o.IdempotencyKey != ""); claims {
		key, fingerprint := g.callKey(c, o)
		claim = &state.Claim{Key: key, Call: c.id, Fingerprint: fingerprint, Window: window}
	}
	limits, stored := g.limits(&o.Request, c.customerKeys)
	h := &state.Hold{Claim: claim, Limits: stored, Intent: c.record(state.KindIntent, &Result{Code: policy.CodeAllowed}),
		Approval: approval, ClaimOnly: claimOnly}
	deadline := time.Now().Add(maxClaimWait)
	for {
		h.At = g.now()
		if claim != nil {
			claim.At = h.At
		}
		held, err := g.store.Hold(ctx, h)
		var denial *policy.Denied
		claimKey := ""
		if claim != nil {
			claimKey = claim.Key
		}
		switch {
		case err == nil:
			// Held: whatever happens to ctx now, the call goes on, so that
			// the hold is settled.
		case errors.As(err, &denial):
			d := g.policy.LimitDecision(limits, denial, h.At)
			if approval != "" {
				// Refused, the approval stands: say whether it will still
				// stand when the limit allows the call.
				if a, err := g.store.Approval(ctx, approval); err == nil {
					d.Message += outlivesApproval(approval, a.ExpiresAt, d.RetryAt)
				}
			}
			return nil, "", denied(d), false
		case approval != "" && (errors.Is(err, state.ErrApprovalNotPending) || errors.Is(err, state.ErrNotFound)):
			// Nothing was written. Used by an identical call meanwhile (this
			// one waited for its claim, which is gone: Clink refused it, or
			// it was cancelled before reaching Clink): the approval was for
			// that one payment, so the call asks afresh. Else it expired
			// between its look and the hold.
			if a, err := g.store.Approval(ctx, approval); err == nil && a.State == state.ApprovalUsed {
				return nil, "", nil, false
			}
			return nil, "", decidedResult(&state.Approval{ID: approval, State: state.ApprovalExpired}, 0), false
		case ctx.Err() != nil:
			return nil, claimKey, cancelled(), true
		case err != nil:
			g.log.ErrorContext(ctx, "store failed; refusing the call", "tool", c.tool, "call", c.id, "op", "hold", "err", err)
			return nil, claimKey, &Result{Code: policy.CodeInternal, IsError: true,
				Text: "internal error: the server could not check its spending limits, so nothing was created; the operator's log has the details."}, true
		}
		switch held.Prior.State {
		case state.ClaimNew:
			if claimOnly {
				return nil, "", nil, false // nothing written: look at the approval again
			}
			return held, claimKey, nil, false
		case state.ClaimDone:
			return nil, "", g.replayed(ctx, c, claim.Key, held.Prior.Result), false
		case state.ClaimConflict:
			return nil, "", denied(policy.Decision{Code: policy.CodeDuplicateConflict, Message: keyReusedMessage}), false
		}
		// In flight: this process may hold its result already, waiting for
		// the store; else wait for the call to finish, or for its process
		// to be found gone.
		if r, at := g.journal.replayFor(claim.Key); r != nil {
			return nil, "", replayOf(r, at), false
		}
		g.sweepOrphans(ctx)
		if time.Now().After(deadline) {
			return nil, "", denied(policy.Decision{Code: policy.CodeDuplicateInFlight,
				Message: "an identical call is still in flight; wait for its result instead of repeating it"}), false
		}
		if !g.waitClaim(ctx, claim.Key) {
			return nil, "", cancelled(), false
		}
	}
}

// waitClaim waits before the next look at an identical call in flight:
// until the store says its claim finished (at most claimWaitSlice), or
// claimPoll on a store that cannot say. It reports false when ctx ended.
func (g *Gate) waitClaim(ctx context.Context, key string) bool {
	if w, ok := g.store.(ClaimWaiter); ok {
		wctx, cancel := context.WithTimeout(ctx, claimWaitSlice)
		err := w.WaitClaim(wctx, key)
		cancel()
		if !errors.Is(err, errors.ErrUnsupported) {
			return ctx.Err() == nil
		}
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(claimPoll):
		return true
	}
}

// commit makes the Clink call, detached from the caller's cancellation,
// and maps its outcome. A panic in the call is an unknown outcome: the
// request may have left. Once the call has returned, its answer stands:
// a panic in a log line written about it changes nothing (logSafely).
func (g *Gate) commit(ctx context.Context, c *call, o *Order) *Result {
	ctx = context.WithoutCancel(ctx)
	created, err := g.callClink(ctx, c, o)
	switch {
	case errors.Is(err, errCommitPanicked):
		return unknownResult(outcomeUnknownMessage)
	case err != nil:
		return g.upstreamFailure(ctx, c, err)
	}
	if len(created.Unread) > 0 {
		logSafely(func() {
			g.log.WarnContext(ctx, "clink created the session, but some fields of its answer could not be read", "tool", c.tool, "call", c.id,
				"session_id", created.SessionID, "fields", created.Unread)
		})
	}
	return &Result{Code: policy.CodeCreated, Text: created.Summary, SessionID: created.SessionID, Structured: created.Structured}
}

// errCommitPanicked is callClink's error for a call that panicked, or
// returned neither a session nor an error: what Clink did is unknown.
var errCommitPanicked = errors.New("gate: the Clink call panicked")

// callClink runs o.Commit, turning a panic in it into errCommitPanicked.
// Only the call itself is guarded: what Clink answered is mapped outside.
func (g *Gate) callClink(ctx context.Context, c *call, o *Order) (created *Created, err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := string(debug.Stack())
			logSafely(func() {
				g.log.ErrorContext(ctx, "panic in the Clink call", "tool", c.tool, "call", c.id, "panic", fmt.Sprint(r), "stack", stack)
			})
			created, err = nil, errCommitPanicked
		}
	}()
	created, err = o.Commit(ctx)
	if created == nil && err == nil {
		panic("gate: the order's Commit returned neither a session nor an error")
	}
	return created, err
}

// logSafely writes a log line about a call whose outcome is decided: a
// panic in the log's handler is dropped, so that it cannot change the
// outcome the call reports and records.
func logSafely(log func()) {
	defer func() { _ = recover() }()
	log()
}

// settle writes the call's completion (see [state.Completion]) and its log
// line. The claim keeps the result for identical calls unless Clink
// definitely made nothing, when it is dropped so that a retry may try again.
func (g *Gate) settle(ctx context.Context, c *call, held *state.Held, claimKey string, res *Result, settlement policy.Settlement) {
	comp, replay := g.completion(ctx, c, claimKey, res, settlement)
	g.journal.complete(ctx, comp, replay)
	c.recorded = res
	c.log(ctx, res)
}

// completion is the call's completion, ending with res, and the result
// identical calls get from the journal meanwhile (nil without a claim to
// keep it). The claim keeps res, sealed, for identical calls unless Clink
// definitely made nothing.
func (g *Gate) completion(ctx context.Context, c *call, claimKey string, res *Result, settlement policy.Settlement) (*state.Completion, *Result) {
	var (
		sealed []byte
		replay *Result
	)
	if claimKey != "" && settlement != policy.Released && res.Code != policy.CodeInternal {
		var err error
		if sealed, err = g.seal(claimKey, res, c.at); err != nil {
			// The claim must keep answering identical calls: a created
			// session dropped from it would be created again.
			g.log.ErrorContext(ctx, "sealing the replay failed; keeping it without structured content", "call", c.id, "err", err)
			bare := *res
			bare.Structured = nil
			res = &bare
			if sealed, err = g.seal(claimKey, res, c.at); err != nil {
				panic("gate: sealing a replay: " + err.Error()) // only crypto/rand failing gets here
			}
		}
		replay = res
	}
	return &state.Completion{
		Call: c.id, Settlement: settlement,
		ClaimKey: claimKey, Replay: sealed, Record: c.record(state.KindOutcome, res),
	}, replay
}

// safeCompletion is completion for a recover: should sealing the replay
// panic too (crypto/rand failing), the completion drops the claim rather
// than keep it without a result.
func (g *Gate) safeCompletion(ctx context.Context, c *call, claimKey string, res *Result) (comp *state.Completion, replay *Result) {
	defer func() {
		if recover() != nil {
			comp, replay = &state.Completion{Call: c.id, Settlement: res.Code.Settlement(),
				ClaimKey: claimKey, Record: c.record(state.KindOutcome, res)}, nil
		}
	}()
	return g.completion(ctx, c, claimKey, res, res.Code.Settlement())
}

// abandon ends a call whose hold failed but may have committed (see
// [Gate.hold]) with res. Clink was never called, so an intent the store
// turns out to hold is completed as released, giving its reservation
// back and dropping its claim; without one, the outcome is recorded on
// its own. Either way the journal retries until the store answers, so
// neither the reservation nor the record is lost.
func (g *Gate) abandon(ctx context.Context, c *call, claimKey string, res *Result) *Result {
	g.journal.resolve(ctx, &state.Completion{
		Call: c.id, Settlement: policy.Released, ClaimKey: claimKey,
		Record: c.record(state.KindOutcome, res), OnlyIfOpen: true,
	})
	c.log(ctx, res)
	return res
}

// upstreamFailure maps a failed Clink call to its result. The error itself
// goes to the operator's log; the agent gets what it can act on.
func (g *Gate) upstreamFailure(ctx context.Context, c *call, err error) *Result {
	var cerr *clink.Error
	switch {
	case errors.Is(err, clink.ErrOutcomeUnknown):
		logSafely(func() { g.log.ErrorContext(ctx, "clink outcome unknown", "tool", c.tool, "call", c.id, "err", err) })
		return unknownResult(outcomeUnknownMessage)
	case errors.As(err, &cerr):
		code := policy.CodeUpstreamRefused
		if errors.Is(err, clink.ErrUnauthorized) {
			code = policy.CodeUpstreamAuth
		}
		logSafely(func() { g.log.WarnContext(ctx, "clink refused", "tool", c.tool, "call", c.id, "err", err) })
		return &Result{Code: code, IsError: true,
			Text: fmt.Sprintf("Clink refused the request (%s): %s Nothing was created.", refusalLabel(cerr), cerr.Explanation())}
	default:
		// The client reports every failure after sending as an unknown
		// outcome, so anything else happened before the request left.
		logSafely(func() {
			g.log.ErrorContext(ctx, "clink call failed before sending", "tool", c.tool, "call", c.id, "err", err)
		})
		return internalResult()
	}
}

// Recover resolves the intents left open by handles that are gone (a
// process that crashed or was killed mid-call): each is recorded as an
// unknown outcome, its reservation stays spent, and its claim answers
// identical calls with that outcome at once. It returns how many it
// resolved. Call it when the server starts; waiting calls also run it.
func (g *Gate) Recover(ctx context.Context) (int, error) {
	intents, err := g.store.Intents(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range intents {
		if !in.Orphaned {
			continue
		}
		res := unknownResult(orphanMessage)
		var sealed []byte
		if in.ClaimKey != "" {
			if sealed, err = g.seal(in.ClaimKey, res, in.Record.Time); err != nil {
				return n, err
			}
		}
		rec := in.Record
		rec.Kind, rec.Decision = state.KindOutcome, string(res.Code)
		rec.Seq, rec.Format, rec.PrevHash, rec.Hash = 0, 0, "", ""
		rec.Duration = max(g.now().Sub(rec.Time), 0)
		err := g.store.Complete(ctx, &state.Completion{
			Call: in.Call, Settlement: policy.Unknown,
			ClaimKey: in.ClaimKey, Replay: sealed, Record: rec, OnlyIfOpen: true,
		})
		switch {
		case errors.Is(err, state.ErrNotFound):
			continue // another process resolved it first
		case err != nil:
			return n, err
		}
		n++
		g.log.WarnContext(ctx, "resolved a call left open by a server that stopped mid-call: outcome unknown",
			"call", in.Call, "tool", rec.Tool, "caller", rec.Caller, "amount", rec.Amount+" "+rec.Currency,
			"started", rec.Time.Format(time.RFC3339))
	}
	return n, nil
}

// sweepOrphans runs Recover at most once per orphanSweep.
func (g *Gate) sweepOrphans(ctx context.Context) {
	g.mu.Lock()
	now := time.Now()
	due := now.Sub(g.lastSweep) >= orphanSweep
	if due {
		g.lastSweep = now
	}
	g.mu.Unlock()
	if !due {
		return
	}
	if _, err := g.Recover(ctx); err != nil && ctx.Err() == nil {
		g.log.WarnContext(ctx, "resolving calls left open failed", "err", err)
	}
}

// newCallID returns a random call ID.
func newCallID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("gate: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}

// Internal records a call that failed in its transport before it reached
// the gate (a bug, whose details the transport logged), and returns its
// result.
func (g *Gate) Internal(ctx context.Context, caller, tool string) *Result {
	return g.begin(caller, tool, nil).end(ctx, internalResult())
}
