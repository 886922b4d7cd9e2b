package gate

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// A call the policy wants a person to approve (policy.Policy.NeedsApproval)
// goes through an approval before its hold. The approval is requested in
// the store, which reserves the call's budgets and rate limits at once, so
// pending approvals together never exceed a budget; a denial or an expiry
// gives the reservation back, and an approved call is held on it.
//
// Who decides: the caller's own user when the transport can ask them
// ([Order.CanAsk]: an MCP client that declares elicitation) and the
// policy does not insist on an operator; an operator otherwise, out of
// band ([Gate.DecideApproval]: `clink-mcp approvals approve ID`, or the
// admin endpoint). Asked in the client, the call ends with a [Question]
// carrying a sealed state; the transport puts the question and repeats the
// call with the answer ([Order.Answer]). The state is sealed with
// AES-256-GCM under a key of the state secret, bound to the principal and
// the call's key, and holds the approval's ID and expiry; since deciding
// needs the approval pending, an answer counts once.

// Question is what a call that waits for its caller's user asks them.
type Question struct {
	// Message states the payment plainly: tool, amount and currency,
	// customer.
	Message string
	// State is the sealed state to send back with the answer.
	State string
	// ApprovalID names the pending approval.
	ApprovalID string
	// ExpiresAt is when the approval, and the question, expire.
	ExpiresAt time.Time
}

// Answer is the caller's user's answer to a [Question], brought back by
// the transport with the repeated call.
type Answer struct {
	// State is the Question's State, as the client echoed it.
	State string
	// Accept is set when the user approved the payment; anything else
	// (declined, cancelled, approve unticked) is a refusal.
	Accept bool
}

// approvalPrefix starts every approval ID.
const approvalPrefix = "apr_"

// clientDecider starts DecidedBy for decisions made in the caller's client.
const clientDecider = "client:"

// OperatorDecider starts DecidedBy for decisions made by an operator
// ([Gate.DecideApproval] with by "operator:NAME").
const OperatorDecider = "operator:"

// questionState is what a sealed question state holds.
type questionState struct {
	ID      string `json:"id"`
	Expires int64  `json:"exp"` // Unix seconds
}

// callKey is the key identical calls share (the duplicate guard's claim
// key: by idempotency key when there is one, else by arguments) and the
// keyed fingerprint of the arguments.
func (g *Gate) callKey(c *call, o *Order) (key, fingerprint string) {
	fingerprint = g.keys.fingerprint(c.tool, o.Fingerprint)
	if o.IdempotencyKey != "" {
		return g.keys.claimKey(c.tool, c.caller, g.account, "key", o.IdempotencyKey), fingerprint
	}
	return g.keys.claimKey(c.tool, c.caller, g.account, "args", fingerprint), fingerprint
}

// keyReusedMessage is the refusal of an idempotencyKey used with other
// arguments.
const keyReusedMessage = "this idempotencyKey was already used with different arguments; use a new key for a new payment, or repeat the original arguments exactly"

// approval runs the approval of a call that needs one. It returns the ID
// of an approved approval to hold the call on, or the result to end the
// call with instead; claimed reports that an identical call holds the
// duplicate guard's claim, which the hold answers (replay or wait).
func (g *Gate) approval(ctx context.Context, c *call, o *Order) (id string, res *Result, claimed bool) {
	key, fingerprint := g.callKey(c, o)
	now := g.now()
	timeout := g.policy.ApprovalTimeout()
	answer := o.Answer
	if c.answerSpent {
		answer = nil // see below: the call is looked at again without it
	}
	if answer != nil && g.policy.ApprovalsByOperator() {
		// A question asked while the client could decide (before the
		// policy changed, or on a replica with the older policy) is the
		// operator's now: the answer counts for nothing, the approval
		// stays pending.
		g.log.WarnContext(ctx, "an approval answer was ignored: approvals are decided by the operator", "tool", c.tool, "call", c.id)
		answer = nil
	}
	if answer != nil {
		id, res, used := g.answered(ctx, c, answer, key, fingerprint, now, timeout)
		if used {
			// The same yes again (a client whose answer's response was
			// lost repeats its request): the approval was used by the
			// call it answered, whose claim answers this one (replay, or
			// wait for it). Should the claim be gone (Clink refused that
			// call), the call is looked at again without the answer: it
			// asks afresh.
			c.answerSpent = true
			return "", nil, true
		}
		return id, res, false
	}
	_, stored := g.limits(&o.Request, c.customerKeys)
	a := state.Approval{
		ID: newApprovalID(), Key: key, Fingerprint: fingerprint, Caller: c.caller, Tool: c.tool,
		Amount: c.amount, Currency: c.currency, Amounts: c.amounts, EmailMasked: c.emailMasked,
		RequestedAt: now, ExpiresAt: now.Add(timeout),
	}
	rec := c.record(state.KindApproval, &Result{Code: policy.CodeApprovalRequired})
	rec.Call = a.ID
	got, _, err := g.store.RequestApproval(ctx, &state.ApprovalRequest{
		At: now, Approval: a, Limits: stored, Record: rec, Remember: timeout,
	})
	var denial *policy.Denied
	switch {
	case errors.Is(err, state.ErrClaimHeld):
		return "", nil, true
	case errors.As(err, &denial):
		limits, _ := g.limits(&o.Request, c.customerKeys)
		return "", denied(g.policy.LimitDecision(limits, denial, now)), false
	case ctx.Err() != nil:
		return "", cancelled(), false
	case err != nil:
		g.log.ErrorContext(ctx, "store failed; refusing the call", "tool", c.tool, "call", c.id, "op", "request approval", "err", err)
		return "", &Result{Code: policy.CodeInternal, IsError: true,
			Text: "internal error: the server could not record the approval this payment needs, so nothing was created; the operator's log has the details."}, false
	}
	if got.Fingerprint != fingerprint {
		return "", denied(policy.Decision{Code: policy.CodeDuplicateConflict, Message: keyReusedMessage}), false
	}
	switch got.State {
	case state.ApprovalApproved:
		return got.ID, nil, false
	case state.ApprovalPending:
		if o.CanAsk && !g.policy.ApprovalsByOperator() {
			return "", g.question(c, o, got, key), false
		}
		return "", g.pendingResult(c, got), false
	}
	return "", decidedResult(got, timeout), false
}

// answered decides the approval an answer is for, and returns its ID when
// approved, or the result to end the call with. The answer counts only for
// the call it was asked about: the state is bound to the principal and the
// call's key, and the approval must be for these very arguments (an
// idempotencyKey repeated with other arguments has the same key). used
// reports a yes brought again to the approval it made, which the call it
// answered has used since: that call's claim answers this one.
func (g *Gate) answered(ctx context.Context, c *call, ans *Answer, key, fingerprint string, now time.Time, timeout time.Duration) (id string, res *Result, used bool) {
	st, err := g.openQuestion(ans.State, c.caller, key)
	if err != nil {
		g.log.WarnContext(ctx, "an approval answer was refused", "tool", c.tool, "call", c.id, "err", err)
		return "", invalidAnswer("it does not belong to this call (altered, made for other arguments or another principal, or not a state this server issued)"), false
	}
	// Whether the approval is still open is the store's to say, by its
	// clock (a database's, for replicas), not this server's: the state's
	// expiry only names what a forgotten approval was.
	switch a, err := g.store.Approval(ctx, st.ID); {
	case errors.Is(err, state.ErrNotFound) && !now.Before(time.Unix(st.Expires, 0)):
		return "", decidedResult(&state.Approval{ID: st.ID, State: state.ApprovalExpired}, 0), false
	case errors.Is(err, state.ErrNotFound):
		return "", invalidAnswer("its approval is unknown to this server"), false
	case err != nil:
		g.log.ErrorContext(ctx, "store failed; refusing the call", "tool", c.tool, "call", c.id, "op", "approval", "err", err)
		return "", &Result{Code: policy.CodeInternal, IsError: true,
			Text: "internal error: the server could not read the approval this answer is for, so nothing was created; the operator's log has the details."}, false
	case a.Key != key || a.Fingerprint != fingerprint:
		g.log.WarnContext(ctx, "an approval answer was brought to other arguments", "tool", c.tool, "call", c.id, "approval", st.ID)
		return "", invalidAnswer("it was given for other arguments: the person approved a different payment"), false
	}
	by := clientDecider + c.caller
	a, err := g.store.DecideApproval(ctx, now, st.ID, ans.Accept, by, now.Add(timeout))
	switch {
	case errors.Is(err, state.ErrApprovalNotPending) && a != nil && (a.State == state.ApprovalExpired || a.State == state.ApprovalDenied):
		// Expired, or denied (by an operator while the user was asked):
		// the answer changes nothing, and the call is told which.
		return "", decidedResult(a, timeout), false
	case errors.Is(err, state.ErrApprovalNotPending) && a != nil && a.State == state.ApprovalApproved:
		// An operator approved it while the user was being asked: the
		// user's yes goes ahead on that approval; a no ends this call,
		// and the approval stays the operator's.
		// An operator's decision cannot be withdrawn from here (of two
		// decisions, the first wins): the user is told it stands.
		if ans.Accept {
			return a.ID, nil, false
		}
		who := "it was approved already"
		if strings.HasPrefix(a.DecidedBy, OperatorDecider) {
			who = "an operator had approved it already"
		}
		stands := "and that approval stands until " + a.ExpiresAt.UTC().Format(time.RFC3339)
		if !now.Before(a.ExpiresAt) {
			stands = "though that approval ran out at " + a.ExpiresAt.UTC().Format(time.RFC3339) + " unused"
		}
		return "", &Result{Code: policy.CodeApprovalDeclined, IsError: true,
			Text: fmt.Sprintf("approval declined (%s): the user declined this payment, but %s (approval %s), %s. Nothing was created; tell your user, and do not repeat the call unless the user asks.",
				policy.CodeApprovalDeclined, who, a.ID, stands)}, false
	case errors.Is(err, state.ErrApprovalNotPending) && a != nil && a.State == state.ApprovalUsed && ans.Accept:
		return "", nil, true
	case errors.Is(err, state.ErrApprovalNotPending) && a != nil && a.State == state.ApprovalUsed:
		// A no to an approval a yes has used: the call that yes answered
		// went to Clink, and this answer cannot call it back.
		return "", &Result{Code: policy.CodeApprovalInvalid, IsError: true,
			Text: fmt.Sprintf("approval answer refused (%s): approval %s was already used: an identical call went ahead on its yes, and this no cannot undo it. "+
				"Repeat the call without the answer to get that call's result (the session, if Clink created it), and tell your user.", policy.CodeApprovalInvalid, a.ID)}, false
	case errors.Is(err, state.ErrApprovalNotPending), errors.Is(err, state.ErrNotFound):
		return "", invalidAnswer("it was used already: an answer counts once"), false
	case ctx.Err() != nil:
		return "", cancelled(), false
	case err != nil:
		g.log.ErrorContext(ctx, "store failed; refusing the call", "tool", c.tool, "call", c.id, "op", "decide approval", "err", err)
		return "", &Result{Code: policy.CodeInternal, IsError: true,
			Text: "internal error: the server could not record the approval's answer, so nothing was created; the operator's log has the details."}, false
	}
	if !ans.Accept {
		return "", decidedResult(a, timeout), false
	}
	return a.ID, nil, false
}

// shuttingDown is the result of a call the gate, draining, does not make.
func shuttingDown() *Result {
	return &Result{Code: policy.CodeShuttingDown, IsError: true,
		Text: "the server is shutting down and takes no new call. Nothing was created; try again in a moment."}
}

// answerWhileClosing is the result of a call that brings its user's answer
// while the gate drains: it makes no call, but the answer counts. A no
// refuses the approval (giving its reservation back), a yes approves it
// for an identical call made once the server is back; either way the
// user's word is not lost with the process.
func (g *Gate) answerWhileClosing(ctx context.Context, c *call, o *Order) *Result {
	closing := shuttingDown()
	if g.policy.ApprovalsByOperator() {
		return closing
	}
	key, fingerprint := g.callKey(c, o)
	now := g.now()
	id, res, used := g.answered(ctx, c, o.Answer, key, fingerprint, now, g.policy.ApprovalTimeout())
	switch {
	case used:
		closing.Text = "the server is shutting down and takes no new call. This approval was already used by the call it answered: " +
			"repeat this exact call once the server is back to get that call's result."
		return closing
	case res != nil:
		return res
	}
	until := "it expires"
	if a, err := g.store.Approval(ctx, id); err == nil {
		until = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	closing.Text = fmt.Sprintf("the server is shutting down and takes no new call, so nothing was created yet. The user's approval (%s) is recorded: "+
		"repeat this exact call once the server is back, before %s, to create the session on it.", id, until)
	return closing
}

// DecideApproval records an operator's decision on the pending approval
// id in st: approve, or deny (which gives its reservation back). by names
// the operator; it is recorded as "operator:" + by. An approved approval
// must then be used within as long as it could wait for its decision (the
// approvals.timeout of the policy it was asked under), from now: the
// agent's identical call creates the session. It returns the approval as
// it now is; [state.ErrApprovalNotPending] (with the approval) when it was
// decided or expired already, [state.ErrNotFound] for an unknown ID.
// `clink-mcp approvals` and the admin endpoint decide through it.
func DecideApproval(ctx context.Context, st state.Approvals, id string, approve bool, by string) (*state.Approval, error) {
	if strings.TrimSpace(by) == "" {
		return nil, errors.New("gate: an approval's decision needs the name of who decides")
	}
	a, err := st.Approval(ctx, id)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return st.DecideApproval(ctx, now, id, approve, OperatorDecider+by, now.Add(max(a.ExpiresAt.Sub(a.RequestedAt), time.Minute)))
}

// MaxApprovalsListed is the most approvals [ListApprovals] lists at once.
const MaxApprovalsListed = 10000

// ListApprovals lists the approvals of st in the given states (every state
// when none), newest request first, at most limit of them (100 when limit
// <= 0), and says whether more matched. It first expires those past their
// time, as a running server's sweep does every few seconds: with no server
// running, or between two sweeps, an approval is never shown pending (or
// approved) past its expiry.
func ListApprovals(ctx context.Context, st state.Approvals, states []string, limit int) (list []state.Approval, more bool, err error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxApprovalsListed)
	if _, err := st.ExpireApprovals(ctx, time.Now()); err != nil {
		return nil, false, err
	}
	if list, err = st.ListApprovals(ctx, states, limit+1); err != nil {
		return nil, false, err
	}
	if len(list) > limit {
		return list[:limit], true, nil
	}
	return list, false, nil
}

// expireApprovals gives back the reservations of approvals nobody decided
// or used in time. The clock beat runs it.
func (g *Gate) expireApprovals(ctx context.Context) {
	n, err := g.store.ExpireApprovals(ctx, g.now())
	switch {
	case err != nil && ctx.Err() == nil:
		g.log.WarnContext(ctx, "expiring approvals failed", "err", err)
	case n > 0:
		g.log.InfoContext(ctx, "approvals expired undecided; their budgets are given back", "count", n)
	}
}

// question is the result of a call whose caller's user is asked.
func (g *Gate) question(c *call, o *Order, a *state.Approval, key string) *Result {
	return &Result{
		Code: policy.CodeApprovalRequired, IsError: true,
		Text: g.pendingResult(c, a).Text,
		Question: &Question{
			Message:    approvalMessage(c, &o.Request, a),
			State:      g.sealQuestion(questionState{ID: a.ID, Expires: a.ExpiresAt.Unix()}, c.caller, key),
			ApprovalID: a.ID,
			ExpiresAt:  a.ExpiresAt,
		},
	}
}

// paymentOf states a payment of amount in currency, with what it counts in
// every currency (amounts, as the budgets count it) when its line items
// count for more than its amount: those may be why it needs approval.
func paymentOf(currency, amount, amounts string) string {
	what := strings.TrimSpace(currency + " " + amount)
	if amounts != "" && amounts != what {
		what += " (counting line items: " + amounts + ")"
	}
	return what
}

// approvalMessage states the payment plainly for the person asked.
func approvalMessage(c *call, req *policy.Request, a *state.Approval) string {
	customer := "no customer email"
	switch {
	case req.CustomerEmail != "":
		customer = req.CustomerEmail
	case req.CustomerID != "":
		customer = "Clink customer " + req.CustomerID
	case req.ReferenceCustomerID != "":
		customer = "the customer with reference " + req.ReferenceCustomerID
	}
	return fmt.Sprintf("Approve a payment request of %s for %s? An AI agent asks to create it with %s. Approval %s; unanswered, it expires at %s.",
		paymentOf(a.Currency, a.Amount, a.Amounts), customer, c.tool, a.ID, a.ExpiresAt.UTC().Format(time.RFC3339))
}

// pendingResult is the answer to a call whose approval an operator is to
// decide: how one can (Config.Operators), or that none can.
func (g *Gate) pendingResult(c *call, a *state.Approval) *Result {
	what := paymentOf(a.Currency, a.Amount, a.Amounts)
	head := fmt.Sprintf("approval required (%s): this payment of %s needs a person's approval before it is created. "+
		"Approval ID %s, pending until %s (in %s). Nothing was created yet. ",
		policy.CodeApprovalRequired, what, a.ID, a.ExpiresAt.UTC().Format(time.RFC3339),
		max(time.Until(a.ExpiresAt), 0).Round(time.Second))
	var how string
	switch g.operators {
	case OperatorsNone:
		return &Result{Code: policy.CodeApprovalRequired, IsError: true,
			Text: head + "No operator can approve it on this server (it keeps its approvals in memory and has no admin endpoint), " +
				"so it will expire unanswered: only the user, asked through an MCP client that can ask (elicitation) where the policy lets users decide, could approve it. " +
				"Tell your user; a payment at or below the policy's approve_above needs no approval."}
	case OperatorsEndpoint:
		how = "an operator, an admin principal other than the one that asked, decides it through the server's admin endpoint: POST /admin/approvals/" + a.ID + "/approve"
	default:
		how = "an operator decides it with: clink-mcp approvals approve " + a.ID
	}
	return &Result{Code: policy.CodeApprovalRequired, IsError: true,
		Text: head + "Tell your user that the payment awaits approval (" + how + "); " +
			"once it is approved, repeat this exact call (the same arguments, or the same idempotencyKey) to create the session. " +
			"Repeating it before then answers that it is still pending."}
}

// decidedResult is the answer to a call whose approval was refused or
// expired. An approval decided at a known time answers identical calls
// the same for remember after (see approvalRetryAt): the answer says until
// when, and, for a refusal that was not an operator's, how the user can
// still have the payment (a new idempotencyKey makes it another call, and
// asks again). An expired approval may have been approved and then not used
// in time (its decision is not kept once it expires): the answer says
// either.
func decidedResult(a *state.Approval, remember time.Duration) *Result {
	retry := approvalRetryAt(a, remember)
	var until, again string
	if !retry.IsZero() {
		until = " An identical call is answered so until " + retry.Format(time.RFC3339) + "."
		again = until + " If the user wants this payment after all, make the call again with a new idempotencyKey: that call asks for approval afresh."
	}
	var r *Result
	switch {
	case a.State == state.ApprovalDenied && strings.HasPrefix(a.DecidedBy, clientDecider):
		r = &Result{Code: policy.CodeApprovalDeclined, IsError: true,
			Text: fmt.Sprintf("approval declined (%s): the user declined this payment (approval %s). Nothing was created; do not repeat it unless the user asks.%s", policy.CodeApprovalDeclined, a.ID, again)}
	case a.State == state.ApprovalDenied:
		r = &Result{Code: policy.CodeApprovalDenied, IsError: true,
			Text: fmt.Sprintf("approval denied (%s): an operator denied this payment (approval %s). Nothing was created; do not repeat it, tell your user.%s", policy.CodeApprovalDenied, a.ID, until)}
	case a.State == state.ApprovalExpired:
		r = &Result{Code: policy.CodeApprovalExpired, IsError: true,
			Text: fmt.Sprintf("approval expired (%s): nobody approved this payment, or made the approved call, in time (approval %s). Nothing was created; ask your user before trying again.%s", policy.CodeApprovalExpired, a.ID, again)}
	default:
		return &Result{Code: policy.CodeApprovalInvalid, IsError: true,
			Text: fmt.Sprintf("approval %s is %s and cannot be used. Nothing was created.", a.ID, a.State)}
	}
	r.RetryAt = retry
	return r
}

// approvalRetryAt is when identical calls stop being answered with the
// refusal or expiry of approval a, remembered for remember after its
// decision (rounded up to the second); zero when a's decision time is not
// known.
func approvalRetryAt(a *state.Approval, remember time.Duration) time.Time {
	if a.DecidedAt.IsZero() || remember <= 0 {
		return time.Time{}
	}
	return a.DecidedAt.Add(remember).UTC().Truncate(time.Second).Add(time.Second)
}

// invalidAnswer is the result of an answer that does not count.
func invalidAnswer(why string) *Result {
	return &Result{Code: policy.CodeApprovalInvalid, IsError: true,
		Text: fmt.Sprintf("approval answer refused (%s): %s. Nothing was created. Repeat the call without it to be asked again.", policy.CodeApprovalInvalid, why)}
}

// questionAD binds a sealed question state to the principal and the call.
func questionAD(caller, key string) []byte {
	return []byte("clink-mcp approval question v1\x00" + caller + "\x00" + key)
}

// sealQuestion seals st for caller's call key.
func (g *Gate) sealQuestion(st questionState, caller, key string) string {
	plain, err := json.Marshal(st)
	if err != nil {
		panic("gate: " + err.Error()) // two plain fields always encode
	}
	nonce := make([]byte, g.questions.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("gate: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(g.questions.Seal(nonce, nonce, plain, questionAD(caller, key)))
}

// openQuestion opens a state sealQuestion made for caller's call key.
func (g *Gate) openQuestion(sealed, caller, key string) (questionState, error) {
	var st questionState
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	n := g.questions.NonceSize()
	if err != nil || len(raw) < n {
		return st, errors.New("approval state: malformed")
	}
	plain, err := g.questions.Open(nil, raw[:n], raw[n:], questionAD(caller, key))
	if err != nil {
		return st, errors.New("approval state: does not open for this principal and call")
	}
	if err := json.Unmarshal(plain, &st); err != nil || !strings.HasPrefix(st.ID, approvalPrefix) {
		return st, errors.New("approval state: malformed content")
	}
	return st, nil
}

// newApprovalID returns a random approval ID.
func newApprovalID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("gate: " + err.Error())
	}
	return approvalPrefix + hex.EncodeToString(b[:])
}
