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
)

// Outcome codes of a call that are not policy decisions. Together with the
// policy's codes they are the "decision" of the log line.
const (
	codeInvalidArguments = "invalid_arguments"
	codeCreated          = "created"
	codeUpstreamRefused  = "upstream_refused"
	codeUpstreamAuth     = "upstream_auth"
	codeOutcomeUnknown   = "outcome_unknown"
	codeInternal         = "internal_error"
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
	ts      *toolset
	tool    string
	started time.Time
	code    string
	session string
	email   string // masked
}

func (ts *toolset) begin(tool string) *call {
	return &call{ts: ts, tool: tool, started: time.Now()}
}

// setEmail records the customer email for the log line, masked.
func (c *call) setEmail(email string) {
	if email != "" {
		c.email = policy.MaskEmail(email)
	}
}

// finish writes the call's log line.
func (c *call) finish(ctx context.Context) {
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
		slog.Duration("duration", time.Since(c.started)),
	}
	if c.session != "" {
		attrs = append(attrs, slog.String("session_id", c.session))
	}
	if c.email != "" {
		attrs = append(attrs, slog.String("email", c.email))
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

// upstreamFailure is the result for a Clink call that did not succeed. The
// error itself goes to the operator's log; the model gets what it can act on.
func (c *call) upstreamFailure(ctx context.Context, err error) *mcp.CallToolResult {
	var cerr *clink.Error
	switch {
	case errors.Is(err, clink.ErrOutcomeUnknown):
		c.code = codeOutcomeUnknown
		c.ts.log.ErrorContext(ctx, "clink outcome unknown", "tool", c.tool, "err", err)
		return mcp.NewToolResultError(outcomeUnknownMessage)
	case errors.As(err, &cerr):
		c.code = codeUpstreamRefused
		if cerr.HTTPStatus == 401 || (cerr.Code >= 80102221 && cerr.Code <= 80102223) {
			c.code = codeUpstreamAuth
		}
		c.ts.log.WarnContext(ctx, "clink refused", "tool", c.tool, "err", err)
		return mcp.NewToolResultError(fmt.Sprintf("Clink refused the request (%s): %s Nothing was created.", refusalLabel(cerr), cerr.Explanation()))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.code = codeInternal
		return mcp.NewToolResultError("the call was cancelled before it reached Clink. Nothing was created.")
	default:
		c.code = codeInternal
		c.ts.log.ErrorContext(ctx, "clink call failed", "tool", c.tool, "err", err)
		return mcp.NewToolResultError("internal error: the session was not created; the operator's log has the details.")
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

// created is the successful result: structured content matching the tool's
// output schema and a one-line summary.
func (c *call) created(sessionID string, structured any, summary string) *mcp.CallToolResult {
	c.code = codeCreated
	c.session = sessionID
	return mcp.NewToolResultStructured(structured, summary)
}
