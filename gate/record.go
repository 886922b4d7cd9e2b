package gate

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// outcomeUnknownMessage is what the agent reads when a create may or may
// not have happened: Clink has no idempotency key, so a blind retry could
// create a second session.
const outcomeUnknownMessage = "outcome unknown: the session may have been created; do not retry blindly. " +
	"Clink did not confirm the request (timeout, connection failure or server error). " +
	"Ask the user or operator to check for the session in the Clink dashboard before trying again."

// orphanMessage is the unknown outcome of a call whose server stopped
// before it could record Clink's answer.
const orphanMessage = "outcome unknown: the server handling this call stopped before it recorded Clink's answer, so the session may have been created; do not retry blindly. " +
	"Ask the user or operator to check for the session in the Clink dashboard before trying again."

// call is one call in flight: what its records and its log line say.
type call struct {
	g       *Gate
	id      string
	caller  string // the principal: never "" (see LocalPrincipal)
	tool    string
	at      time.Time // the call's time by the gate's clock
	started time.Time // for the duration

	amount, currency, amounts string
	emailMasked, emailHash    string
	customerIDHash, refHash   string
	customerKeys              []string // every identifier's, for per-customer limits

	recorded *Result // the result whose outcome record is with the journal, which lands it

	answerSpent bool // its approval answer was used by the call it answered: look again without it
}

// LocalPrincipal is the principal of calls made with caller "": the local
// user of a stdio server. The gate records, logs and counts such calls
// under this name, so that every record and log line names a principal.
const LocalPrincipal = "local"

// Principal is the principal caller names: itself, or [LocalPrincipal]
// for "". Records and logs name it.
func Principal(caller string) string { return principal(caller) }

// principal is the principal caller names: itself, or [LocalPrincipal]
// for "".
func principal(caller string) string {
	if caller == "" {
		return LocalPrincipal
	}
	return caller
}

func (g *Gate) begin(caller, tool string, req *policy.Request) *call {
	c := &call{g: g, id: newCallID(), caller: principal(caller), tool: tool, at: g.now(), started: time.Now()}
	if req == nil {
		return c
	}
	if req.Amount.Currency().Code() != "" {
		c.amount, c.currency = req.Amount.Amount(), req.Amount.Currency().Code()
	}
	var parts []string
	for _, m := range req.Spend() {
		parts = append(parts, m.Currency().Code()+" "+m.Amount())
	}
	c.amounts = strings.Join(parts, ", ")
	c.customerKeys = policy.CustomerKeys(g.keys.customer, req)
	if c.setEmail(req.CustomerEmail) {
		c.emailHash = c.customerKeys[0] // the email's key comes first
	}
	c.customerIDHash = policy.CustomerIDKey(g.keys.customer, req.CustomerID)
	c.refHash = policy.ReferenceKey(g.keys.customer, req.ReferenceCustomerID)
	return c
}

// setEmail records the customer email, masked, for the log line and the
// audit trail: "***" when it does not normalise. It reports whether it did.
func (c *call) setEmail(email string) bool {
	if email == "" {
		return false
	}
	addr, err := policy.NormalizeEmail(email)
	if err != nil {
		c.emailMasked = "***"
		return false
	}
	c.emailMasked = policy.MaskEmail(addr)
	return true
}

// record is the call's audit record of kind, ending with res.
func (c *call) record(kind string, res *Result) state.AuditRecord {
	r := state.AuditRecord{
		Time: c.at.UTC(), Kind: kind, Call: c.id, Caller: c.caller, Tool: c.tool, Decision: string(res.Code),
		Amount: c.amount, Currency: c.currency, Amounts: c.amounts, EmailMasked: c.emailMasked,
		EmailHash: c.emailHash, CustomerIDHash: c.customerIDHash, ReferenceHash: c.refHash,
	}
	if kind == state.KindOutcome {
		r.SessionID = res.SessionID
		r.Duration = time.Since(c.started)
	}
	return r
}

// end records a call that never held anything (refused, replayed, failed
// before its hold) and writes its log line.
func (c *call) end(ctx context.Context, res *Result) *Result {
	rec := c.record(state.KindOutcome, res)
	c.g.journal.append(ctx, &rec)
	c.recorded = res
	c.log(ctx, res)
	return res
}

// log writes the call's one log line, and tells the observer. The email is masked; no secret is in
// any field.
func (c *call) log(ctx context.Context, res *Result) {
	// A bug in the observer or the log's handler must not change how the
	// call ended: its outcome is on record by now.
	defer func() {
		if r := recover(); r != nil {
			func() {
				defer func() { _ = recover() }() // the log itself may be what panics
				c.g.log.ErrorContext(ctx, "panic while logging a call", "call", c.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}()
		}
	}()
	if c.g.observer != nil {
		c.g.observer.CallEnded(c.tool, res.Code, res.Replayed, time.Since(c.started))
	}
	level := slog.LevelWarn
	switch res.Code {
	case policy.CodeCreated, policy.CodeReplayed:
		level = slog.LevelInfo
	case policy.CodeInternal, policy.CodeOutcomeUnknown, policy.CodeUpstreamAuth:
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("tool", c.tool),
		slog.String("decision", string(res.Code)),
		slog.Duration("duration", time.Since(c.started)),
		slog.String("call", c.id),
		slog.String("caller", c.caller),
	}
	if res.SessionID != "" {
		attrs = append(attrs, slog.String("session_id", res.SessionID))
	}
	if c.emailMasked != "" {
		attrs = append(attrs, slog.String("email", c.emailMasked))
	}
	if c.amount != "" {
		attrs = append(attrs, slog.String("amount", c.amount+" "+c.currency))
	}
	if c.amounts != "" && c.amounts != c.currency+" "+c.amount {
		attrs = append(attrs, slog.String("amounts", c.amounts)) // line items count too
	}
	if c.customerIDHash != "" {
		attrs = append(attrs, slog.String("customer_id_hash", c.customerIDHash))
	}
	if c.refHash != "" {
		attrs = append(attrs, slog.String("reference_hash", c.refHash))
	}
	c.g.log.LogAttrs(ctx, level, "tool call", attrs...)
}

// denied is the result of a call the policy refused.
func denied(d policy.Decision) *Result {
	return &Result{Code: d.Code, IsError: true, RetryAt: d.RetryAt,
		Text: fmt.Sprintf("refused by policy (%s): %s. Nothing was created.", d.Code, d.Message)}
}

// cancelled is the result of a call its caller cancelled before it was sent
// to Clink. A transport that honours cancellation does not deliver it; it
// is recorded all the same.
func cancelled() *Result {
	return &Result{Code: policy.CodeCancelled, IsError: true, Text: "the call was cancelled before it reached Clink. Nothing was created."}
}

// internalResult is the result of a failure the agent cannot act on; the
// details are in the operator's log.
func internalResult() *Result {
	return &Result{Code: policy.CodeInternal, IsError: true,
		Text: "internal error: the session was not created; the operator's log has the details. Check with the operator before retrying."}
}

func unknownResult(text string) *Result {
	return &Result{Code: policy.CodeOutcomeUnknown, IsError: true, Text: text}
}

// storedReplay is what the duplicate guard keeps of a finished call, sealed.
type storedReplay struct {
	At         time.Time       `json:"at"`
	Code       policy.Code     `json:"code"`
	IsError    bool            `json:"isError,omitempty"`
	Text       string          `json:"text"`
	SessionID  string          `json:"sessionId,omitempty"`
	Structured json.RawMessage `json:"structured,omitempty"`
}

// seal encrypts res for the store (AES-256-GCM under the state secret's
// replay key, bound to the claim's key): results hold the customer's email,
// which the store must not.
func (g *Gate) seal(claimKey string, res *Result, at time.Time) ([]byte, error) {
	plain, err := json.Marshal(storedReplay{At: at.UTC(), Code: res.Code, IsError: res.IsError, Text: res.Text,
		SessionID: res.SessionID, Structured: res.Structured})
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.replays.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.replays.Seal(nonce, nonce, plain, []byte(claimKey)), nil
}

// open decrypts what seal stored under claimKey.
func (g *Gate) open(claimKey string, sealed []byte) (storedReplay, error) {
	var r storedReplay
	n := g.replays.NonceSize()
	if len(sealed) < n {
		return r, errors.New("stored result too short")
	}
	plain, err := g.replays.Open(nil, sealed[:n], sealed[n:], []byte(claimKey))
	if err != nil {
		return r, fmt.Errorf("stored result: %w", err)
	}
	err = json.Unmarshal(plain, &r)
	return r, err
}

// replayed answers a call with the stored result of an identical one.
func (g *Gate) replayed(ctx context.Context, c *call, claimKey string, sealed []byte) *Result {
	r, err := g.open(claimKey, sealed)
	if err != nil {
		g.log.ErrorContext(ctx, "duplicate guard: cannot read the stored result", "tool", c.tool, "call", c.id, "err", err)
		return &Result{Code: policy.CodeInternal, IsError: true,
			Text: "internal error: an identical call was made earlier, but its stored result cannot be read, so it may have created a session; do not retry blindly. The operator's log has the details."}
	}
	return replayOf(&Result{Code: r.Code, IsError: r.IsError, Text: r.Text, SessionID: r.SessionID, Structured: r.Structured}, r.At)
}

// replayOf is res repeated for an identical call, first made at at.
func replayOf(res *Result, at time.Time) *Result {
	return &Result{
		Code: policy.CodeReplayed, IsError: res.IsError, SessionID: res.SessionID, Structured: res.Structured, Replayed: true,
		Text: fmt.Sprintf("Replay: an identical call was made at %s; this is its result, and no new session was created. %s",
			at.UTC().Format(time.RFC3339), res.Text),
	}
}

// refusalLabel names a Clink refusal by its code and message, e.g.
// "code 400 CUSTOMER_NOT_FOUND", or by its HTTP status when it had no code.
func refusalLabel(e *clink.Error) string {
	var parts []string
	if e.Code != 0 {
		parts = append(parts, fmt.Sprintf("code %d", e.Code))
	} else if e.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", e.HTTPStatus))
	}
	if e.Message != "" && isWord(e.Message) {
		parts = append(parts, e.Message)
	}
	if len(parts) == 0 {
		return "no code"
	}
	return strings.Join(parts, " ")
}

// isWord reports whether s is a short identifier-like message such as
// CUSTOMER_NOT_FOUND, which is safe and useful to show verbatim.
func isWord(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r == '.' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
