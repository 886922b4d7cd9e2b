package tools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/gate/state"
)

// Outcome codes of a call that are not policy decisions. Together with the
// policy's codes they are the "decision" of the log line.
const (
	codeInvalidArguments  = "invalid_arguments"
	codeCreated           = "created"
	codeUpstreamRefused   = "upstream_refused"
	codeUpstreamAuth      = "upstream_auth"
	codeOutcomeUnknown    = "outcome_unknown"
	codeReplayed          = "replayed"
	codeDuplicateInFlight = "duplicate_in_flight"
	codeInternal          = "internal_error"
)

// outcomeUnknownMessage is what the model reads when a create may or may not
// have happened: Clink has no idempotency key, so a blind retry could create
// a second session.
const outcomeUnknownMessage = "outcome unknown: the session may have been created; do not retry blindly. " +
	"Clink did not confirm the request (timeout, connection failure or server error). " +
	"Ask the user or operator to check for the session in the Clink dashboard before trying again."

// call is one tool call in flight: it builds the result and writes the one
// log line every call gets.
type call struct {
	ts       *toolset
	tool     string
	at       time.Time // the call's time by the toolset's clock
	started  time.Time // for the duration
	code     string
	session  string
	email    string // masked
	amount   string // exact decimal, once parsed
	currency string
	customer string // keyed hash of the customer, see policy.CustomerKey
}

func (ts *toolset) begin(tool string) *call {
	return &call{ts: ts, tool: tool, at: ts.now(), started: time.Now()}
}

// setMoney records the call's amount for the log line and the audit trail.
func (c *call) setMoney(m policy.Money) {
	c.amount, c.currency = m.Amount(), m.Currency().Code()
}

// setEmail records the customer email for the log line, masked.
func (c *call) setEmail(email string) {
	if email != "" {
		c.email = policy.MaskEmail(email)
	}
}

// finish writes the call's audit record and log line.
func (c *call) finish(ctx context.Context) {
	if c.code == "" {
		// The handler is unwinding from a panic, which recovering reports.
		c.code = codeInternal
	}
	duration := time.Since(c.started)
	rec := &state.AuditRecord{
		Time: c.at.UTC(), Tool: c.tool, Decision: c.code, Amount: c.amount, Currency: c.currency,
		EmailMasked: c.email, SessionID: c.session, Duration: duration,
	}
	if c.email != "" {
		rec.EmailHash = c.customer
	}
	if err := c.ts.state.AppendAudit(context.WithoutCancel(ctx), rec); err != nil {
		c.ts.log.ErrorContext(ctx, "audit trail: append failed", "tool", c.tool, "decision", c.code, "err", err)
	}

	level := slog.LevelInfo
	switch c.code {
	case codeInternal, codeOutcomeUnknown, codeUpstreamAuth:
		level = slog.LevelError
	case codeCreated:
	default:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("tool", c.tool),
		slog.String("decision", c.code),
		slog.Duration("duration", duration),
	}
	if c.session != "" {
		attrs = append(attrs, slog.String("session_id", c.session))
	}
	if c.email != "" {
		attrs = append(attrs, slog.String("email", c.email))
	}
	if c.amount != "" {
		attrs = append(attrs, slog.String("amount", c.amount+" "+c.currency))
	}
	c.ts.log.LogAttrs(ctx, level, "tool call", attrs...)
}

// invalid is the result for arguments that failed decoding or validation.
func (c *call) invalid(problems []string) *mcp.CallToolResult {
	c.code = codeInvalidArguments
	msg := "invalid arguments: " + strings.Join(problems, "; ")
	if !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return mcp.NewToolResultError(msg + " Nothing was created.")
}

// denied is the result for a call the policy refused.
func (c *call) denied(d policy.Decision) *mcp.CallToolResult {
	c.code = string(d.Code)
	return mcp.NewToolResultError(fmt.Sprintf("refused by policy (%s): %s. Nothing was created.", d.Code, d.Message))
}

// upstreamFailure is the result for a Clink call that did not succeed, and
// what it means for the reservation: Released when Clink definitely created
// nothing, Unknown when it may have. The error itself goes to the
// operator's log; the model gets what it can act on.
func (c *call) upstreamFailure(ctx context.Context, err error) (*mcp.CallToolResult, policy.Settlement) {
	var cerr *clink.Error
	switch {
	case errors.Is(err, clink.ErrOutcomeUnknown):
		c.code = codeOutcomeUnknown
		c.ts.log.ErrorContext(ctx, "clink outcome unknown", "tool", c.tool, "err", err)
		return mcp.NewToolResultError(outcomeUnknownMessage), policy.Unknown
	case errors.As(err, &cerr):
		c.code = codeUpstreamRefused
		if cerr.HTTPStatus == 401 || (cerr.Code >= 80102221 && cerr.Code <= 80102223) {
			c.code = codeUpstreamAuth
		}
		c.ts.log.WarnContext(ctx, "clink refused", "tool", c.tool, "err", err)
		return mcp.NewToolResultError(fmt.Sprintf("Clink refused the request (%s): %s Nothing was created.", refusalLabel(cerr), cerr.Explanation())), policy.Released
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.code = codeInternal
		return mcp.NewToolResultError("the call was cancelled before it reached Clink. Nothing was created."), policy.Released
	default:
		// The client reports every failure after sending as an unknown
		// outcome, so anything else happened before the request left.
		return c.internal(ctx, err), policy.Released
	}
}

// internal is the result for a failure the model cannot act on: the detail
// goes to the operator's log only.
func (c *call) internal(ctx context.Context, err error) *mcp.CallToolResult {
	c.code = codeInternal
	c.ts.log.ErrorContext(ctx, "tool call failed", "tool", c.tool, "err", err)
	return mcp.NewToolResultError("internal error: the session was not created; the operator's log has the details.")
}

// stateFailure is the result when the state store (budgets, rate limits,
// duplicate guard) cannot answer: the call fails closed, before Clink.
func (c *call) stateFailure(ctx context.Context, op string, err error) *mcp.CallToolResult {
	c.code = codeInternal
	c.ts.log.ErrorContext(ctx, "state store failed; refusing the call", "tool", c.tool, "op", op, "err", err)
	return mcp.NewToolResultError("internal error: the server could not check its spending limits, so nothing was created; the operator's log has the details.")
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

// ResultText is the text content of a tool result, joined.
func ResultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, content := range res.Content {
		if t, ok := mcp.AsTextContent(content); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// created is the successful result: structured content matching the tool's
// output schema and a one-line summary.
func (c *call) created(sessionID string, structured any, summary string) *mcp.CallToolResult {
	c.code = codeCreated
	c.session = sessionID
	return mcp.NewToolResultStructured(structured, summary)
}
