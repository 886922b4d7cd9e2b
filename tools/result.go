package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/policy"
)

// render turns the core's result into the tool result the model reads: an
// error result with its text, or the structured content with the summary,
// marked "replayed" when it repeats an earlier call's.
func render(res *gate.Result) *mcp.CallToolResult {
	if res.Question != nil {
		return asking(res.Question)
	}
	if res.IsError || len(res.Structured) == 0 {
		r := mcp.NewToolResultText(res.Text)
		r.IsError = res.IsError
		return r
	}
	if !res.Replayed {
		// The JSON goes on the wire as it is, exact digits and all.
		return mcp.NewToolResultStructured(res.Structured, res.Text)
	}
	// A replay says so in its structured content too. Decoded with
	// UseNumber, amounts keep their exact digits.
	var structured map[string]any
	dec := json.NewDecoder(bytes.NewReader(res.Structured))
	dec.UseNumber()
	if err := dec.Decode(&structured); err != nil {
		return mcp.NewToolResultText(res.Text)
	}
	structured["replayed"] = true
	return mcp.NewToolResultStructured(structured, res.Text)
}

// created is what a tool's Commit returns for a new session: its structured
// content as JSON and its summary. It never fails: the session exists, and
// an error from Commit would say it was never sent. Content that cannot be
// encoded (it cannot happen with the tools' result types) is left out.
func created(sessionID string, structured any, summary string, unread []string) (*gate.Created, error) {
	b, err := json.Marshal(structured)
	if err != nil {
		b = nil
	}
	return &gate.Created{SessionID: sessionID, Structured: b, Summary: summary, Unread: unread}, nil
}

// unreadNote follows a created session's summary: nothing when Clink's answer
// gave its URL and expiry, else which it did not give in a form that reads
// (the session exists all the same) and the tool that follows it.
func unreadNote(noURL, noExpiry bool, follow string) string {
	var missing string
	switch {
	case noURL && noExpiry:
		missing = "its checkout URL or expiry"
	case noURL:
		missing = "its checkout URL"
	case noExpiry:
		missing = "its expiry"
	default:
		return ""
	}
	return " The session was created, but Clink's answer did not give " + missing +
		" in a form this server could read: do not create it again; " + follow + " with its sessionId shows what Clink holds."
}

// prepared is a create tool's call made ready for the gate, or what
// stopped it on the way: the arguments' problems, the policy's rule on
// URLs, or a failure of the tool's own.
type prepared struct {
	tool     string
	order    *gate.Order
	email    string           // the customer email as far as it was read
	problems []string         // invalid arguments
	refusal  *policy.Decision // refused by policy.Policy.CheckURL
	err      error            // the tool's own failure
}

// create runs a prepared call through the gate: every path leaves its
// record.
func (ts *toolset) create(ctx context.Context, req mcp.CallToolRequest, p *prepared) *mcp.CallToolResult {
	caller := ts.caller(ctx)
	switch {
	case p.err != nil:
		return ts.internal(ctx, caller, p.tool, p.err)
	case len(p.problems) > 0:
		return render(ts.gate.Invalid(ctx, caller, p.tool, p.email, p.problems))
	case p.refusal != nil:
		return render(ts.gate.Refused(ctx, caller, p.tool, p.email, *p.refusal))
	}
	p.order.CanAsk = canAsk(ctx, req)
	p.order.Answer = answerOf(req)
	res := ts.gate.Create(ctx, caller, p.order)
	noteQuestion(ctx, res.Question)
	return render(noteAskFailure(ctx, res))
}

// internal records a failure of the tool's own (it could not build the
// request) and returns the generic result; the detail goes to the
// operator's log only.
func (ts *toolset) internal(ctx context.Context, caller, tool string, err error) *mcp.CallToolResult {
	ts.log.ErrorContext(ctx, "tool call failed", "tool", tool, "err", err)
	return render(ts.gate.Internal(ctx, caller, tool))
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
