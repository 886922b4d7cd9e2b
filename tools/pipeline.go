package tools

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/gate/state"
)

// order is a decoded, validated call, ready for the policy and the stateful
// steps.
type order struct {
	// request is what the policy decides.
	request policy.Request
	// idempotencyKey is the agent's explicit key, or "".
	idempotencyKey string
	// wire is the request Clink will receive; its JSON is the call's
	// fingerprint for the duplicate guard.
	wire any
	// create makes the Clink call.
	create func(ctx context.Context) (*created, error)
}

// created is a successful Clink call, as the model will see it.
type created struct {
	sessionID  string
	structured any
	summary    string
}

// replay is what the duplicate guard stores of a finished call, to answer
// an identical call within the window without calling Clink again.
type replay struct {
	At         time.Time       `json:"at"`
	Decision   string          `json:"decision"`
	IsError    bool            `json:"isError,omitempty"`
	Text       string          `json:"text"`
	SessionID  string          `json:"sessionId,omitempty"`
	Structured json.RawMessage `json:"structured,omitempty"`
}

// defaultKeyWindow is how long an explicit idempotency key is honoured when
// the policy turns the implicit duplicate guard off.
const defaultKeyWindow = 24 * time.Hour

// maxClaimWait bounds how long a call waits for an identical call in flight.
const maxClaimWait = 2 * time.Minute

// claimPoll is how often a call waiting for an identical one looks again.
const claimPoll = 20 * time.Millisecond

// execute runs steps 3 to 5 of a call: the policy decision, the duplicate
// guard and the budget and rate-limit reservation, then the Clink call, and
// settles the reservation by the outcome.
func (ts *toolset) execute(ctx context.Context, c *call, o *order) *mcp.CallToolResult {
	c.setMoney(o.request.Amount)
	c.customer = policy.CustomerKey(ts.auditKey, &o.request)

	// 3. The stateless rules.
	if d := ts.policy.Evaluate(&o.request); !d.Allowed {
		return c.denied(d)
	}

	// 4. The duplicate guard.
	claimKey, res := ts.claim(ctx, c, o)
	if res != nil {
		return res
	}
	drop := func() {
		if claimKey != "" {
			if err := ts.state.Drop(context.WithoutCancel(ctx), claimKey); err != nil {
				ts.log.ErrorContext(ctx, "duplicate guard: drop", "tool", c.tool, "err", err)
			}
			claimKey = ""
		}
	}
	// Should anything below panic, the claim must not stay in flight nor
	// the reservation unsettled: the reservation is kept (the money may be
	// committed) and the claim dropped; the handler's recovery reports it.
	var reservation string
	defer func() {
		if r := recover(); r != nil {
			if reservation != "" {
				ts.settle(ctx, c, reservation, policy.Unknown)
			}
			drop()
			panic(r)
		}
	}()

	// 5. Budgets and rate limits, reserved before Clink is called.
	now := ts.now()
	limits := ts.policy.Limits(&o.request, c.customer)
	reservation, err := ts.state.Reserve(ctx, now, limits)
	var denied *policy.Denied
	switch {
	case errors.As(err, &denied):
		drop()
		return c.denied(ts.policy.LimitDecision(limits, denied, now))
	case err != nil:
		drop()
		return c.stateFailure(ctx, "reserve", err)
	}

	// 6. Clink.
	out, err := ts.safeCreate(ctx, c, o)
	var result *mcp.CallToolResult
	outcome := policy.Spent
	if err != nil {
		result, outcome = c.upstreamFailure(ctx, err)
	} else {
		result = c.created(out.sessionID, out.structured, out.summary)
	}
	ts.settle(ctx, c, reservation, outcome)
	reservation = ""
	if claimKey == "" {
		return result
	}
	if outcome == policy.Released {
		drop() // Clink definitely made nothing: a retry may try again.
		return result
	}
	rec, err := ts.sealReplay(claimKey, replay{At: now.UTC(), Decision: c.code, IsError: result.IsError,
		Text: ResultText(result), SessionID: c.session, Structured: structuredJSON(out)})
	if err == nil {
		err = ts.state.Finish(context.WithoutCancel(ctx), claimKey, rec)
	}
	if err != nil {
		ts.log.ErrorContext(ctx, "duplicate guard: finish", "tool", c.tool, "err", err)
	}
	return result
}

// settle records a reservation's outcome; a failure is the operator's to
// see, since the call itself has already happened.
func (ts *toolset) settle(ctx context.Context, c *call, reservation string, outcome policy.Settlement) {
	if err := ts.state.Settle(context.WithoutCancel(ctx), reservation, outcome); err != nil {
		ts.log.ErrorContext(ctx, "settle reservation", "tool", c.tool, "outcome", outcome, "err", err)
	}
}

// sealReplay encrypts a replay for the store (AES-256-GCM, bound to its
// claim key): results hold the customer's email, which the store must not.
func (ts *toolset) sealReplay(key string, r replay) ([]byte, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, ts.replayAEAD.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return ts.replayAEAD.Seal(nonce, nonce, plain, []byte(key)), nil
}

// openReplay decrypts what sealReplay stored under key.
func (ts *toolset) openReplay(key string, sealed []byte) (replay, error) {
	var r replay
	n := ts.replayAEAD.NonceSize()
	if len(sealed) < n {
		return r, errors.New("stored result too short")
	}
	plain, err := ts.replayAEAD.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return r, fmt.Errorf("stored result: %w", err)
	}
	err = json.Unmarshal(plain, &r)
	return r, err
}

// newReplayAEAD derives the cipher for stored replays from the audit key.
func newReplayAEAD(auditKey []byte) cipher.AEAD {
	m := hmac.New(sha256.New, auditKey)
	m.Write([]byte("clink-mcp replay encryption v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic("tools: " + err.Error()) // a 32-byte key cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("tools: " + err.Error())
	}
	return aead
}

// errCreatePanicked marks a Clink call that panicked: it may have sent the
// request, so its outcome is unknown.
var errCreatePanicked = fmt.Errorf("%w: the Clink call panicked", clink.ErrOutcomeUnknown)

// safeCreate makes the Clink call, turning a panic into an unknown outcome
// so the reservation and the duplicate guard are still settled.
func (ts *toolset) safeCreate(ctx context.Context, c *call, o *order) (out *created, err error) {
	defer func() {
		if r := recover(); r != nil {
			ts.log.ErrorContext(ctx, "panic in the Clink call", "tool", c.tool, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, err = nil, errCreatePanicked
		}
	}()
	return o.create(ctx)
}

func structuredJSON(out *created) json.RawMessage {
	if out == nil {
		return nil
	}
	b, err := json.Marshal(out.structured)
	if err != nil {
		return nil
	}
	return b
}

// claim takes the duplicate guard's slot for the call. It returns the
// claim's key when the call now owns it (or "" when the guard is off), or
// the result to answer with instead: a replay, a conflict, or a failure.
func (ts *toolset) claim(ctx context.Context, c *call, o *order) (string, *mcp.CallToolResult) {
	window := ts.policy.DuplicatesWindow()
	if window <= 0 && o.idempotencyKey == "" {
		return "", nil
	}
	if window <= 0 {
		window = defaultKeyWindow
	}
	wire, err := json.Marshal(o.wire)
	if err != nil {
		return "", c.internal(ctx, fmt.Errorf("fingerprint: %w", err))
	}
	sum := sha256.Sum256(append([]byte(c.tool+"\n"), wire...))
	fingerprint := hex.EncodeToString(sum[:])
	key := c.tool + "|args|" + fingerprint
	if o.idempotencyKey != "" {
		key = c.tool + "|key|" + o.idempotencyKey
	}
	deadline := time.NewTimer(maxClaimWait)
	defer deadline.Stop()
	for {
		prior, err := ts.state.Claim(ctx, state.Claim{Key: key, Fingerprint: fingerprint, At: ts.now(), Window: window})
		if err != nil {
			return "", c.stateFailure(ctx, "claim", err)
		}
		switch prior.State {
		case state.ClaimNew:
			return key, nil
		case state.ClaimDone:
			return "", c.replayed(ctx, key, prior.Result)
		case state.ClaimConflict:
			return "", c.denied(policy.Decision{Code: policy.CodeDuplicateConflict,
				Message: "this idempotencyKey was already used with different arguments; use a new key for a new payment, or repeat the original arguments exactly"})
		}
		// In flight: wait for the identical call to finish, then replay it.
		select {
		case <-ctx.Done():
			return "", c.internal(ctx, fmt.Errorf("waiting for an identical call in flight: %w", ctx.Err()))
		case <-deadline.C:
			return "", c.denied(policy.Decision{Code: codeDuplicateInFlight,
				Message: "an identical call is still in flight; wait for its result instead of repeating it"})
		case <-time.After(claimPoll):
		}
	}
}

// replayed answers a call with the stored result of an identical earlier
// one, marked as a replay.
func (c *call) replayed(ctx context.Context, key string, stored []byte) *mcp.CallToolResult {
	r, err := c.ts.openReplay(key, stored)
	if err != nil {
		return c.internal(ctx, fmt.Errorf("duplicate guard: %w", err))
	}
	c.code = codeReplayed
	c.session = r.SessionID
	text := fmt.Sprintf("Replay: an identical call was made at %s; this is its result, and no new session was created. %s",
		r.At.Format(time.RFC3339), r.Text)
	if r.IsError {
		return mcp.NewToolResultError(text)
	}
	var structured map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Structured))
	dec.UseNumber()
	if err := dec.Decode(&structured); err != nil {
		return c.internal(ctx, fmt.Errorf("duplicate guard: stored result: %w", err))
	}
	structured["replayed"] = true
	return mcp.NewToolResultStructured(structured, text)
}
