// Package tools is the MCP face of clink-mcp: each tool's schema and
// annotations, strict decoding and validation of its arguments into an
// order for the core (package gate), and the rendering of the core's result
// as an MCP tool result.
//
// A call is handled in this order, and nothing reaches Clink before the
// last step:
//
//  1. strict decoding: unknown, duplicate and case-variant arguments and
//     wrong JSON types are refused by name;
//  2. validation (validator/v10, exact money parsing, URLs and metadata
//     that could mislead Clink or what reads its data), every problem at
//     once, then the policy's rule on redirect URLs;
//  3. the core's lifecycle (gate.Gate.Create): the policy's decision, the
//     duplicate guard, budgets and rate limits, the journal's intent, the
//     Clink call, and its settlement.
//
// Every call of a create tool, whatever its outcome, leaves an outcome
// record in the audit trail and one log line, written by the core; the
// read-only tools (check_payment_policy and the status tools) record nothing
// in the audit trail. Every failure is a tool result with
// isError set and a message the model can act on; it never carries the API
// key, Clink's tokenValue, a stack trace or a raw upstream body.
package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/policy"
)

// Payments is what the tools need of Clink. *clink.Client satisfies it; tests
// pass fakes.
type Payments interface {
	CreateAgentPaymentSession(ctx context.Context, req *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error)
	CreateCheckoutSession(ctx context.Context, req *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error)
	GetCheckoutSession(ctx context.Context, id string) (*clink.CheckoutSessionInfo, error)
	GetAgentPaymentSession(ctx context.Context, id string) (*clink.AgentPaymentSessionInfo, error)
}

// Policy is what the tools need of the operator's policy beyond the core:
// the sentence each tool's description gives of its limits, and the rule
// on redirect URLs, which a policy.Request does not carry.
// *policy.Policy satisfies it.
type Policy interface {
	// Summary describes a tool's limits in a sentence or two for the model.
	Summary(tool string) string
	// CheckURL decides the policy's rule on one URL argument of a tool.
	CheckURL(tool, field, raw string) policy.Decision
	// AgentMarkdown is the agent's view of its limits (the clink://policy
	// resource), with what is left of the standing ones.
	AgentMarkdown(principal string, standing []policy.LimitStatus) string
	// DuplicatesWindow is how long an identical call is answered with the
	// first call's result; 0 means the duplicate guard is off. The
	// descriptions and instructions say which.
	DuplicatesWindow() time.Duration
	// CheckoutCustomerIDUse says what a checkout may do with customer
	// identifiers, for the checkout's description.
	CheckoutCustomerIDUse() policy.CustomerIDUse
}

var (
	_ Payments = (*clink.Client)(nil)
	_ Policy   = (*policy.Policy)(nil)
)

// Deps are what the tools are built from.
type Deps struct {
	// Payments creates the sessions. Required.
	Payments Payments
	// Policy describes the limits in the tools' descriptions. Required.
	Policy Policy
	// Gate runs every call's lifecycle. Required.
	Gate *gate.Gate
	// Caller names the principal making a call from its context: "" for
	// the local user of a stdio server. Nil means always "".
	Caller func(ctx context.Context) string
	// Logger receives what goes wrong outside a call's lifecycle (a panic
	// in decoding). Nil discards.
	Logger *slog.Logger
	// Sandbox says the server runs against a Clink sandbox (the built-in
	// one, or Clink's sandbox environment), where sessions move no real
	// money; the server's instructions say so. False means production.
	Sandbox bool
}

// Tool is one tool definition with its handler, as registered with the MCP
// server.
type Tool = server.ServerTool

// toolset holds what every tool's handler shares.
type toolset struct {
	payments Payments
	policy   Policy
	gate     *gate.Gate
	caller   func(ctx context.Context) string
	log      *slog.Logger
	validate *validator.Validate
}

func newToolset(d Deps) *toolset {
	if d.Payments == nil || d.Policy == nil || d.Gate == nil {
		panic("tools: Deps.Payments, Policy and Gate are required")
	}
	ts := &toolset{payments: d.Payments, policy: d.Policy, gate: d.Gate, caller: d.Caller, log: logger(d.Logger), validate: newValidator()}
	if ts.caller == nil {
		ts.caller = func(context.Context) string { return "" }
	}
	return ts
}

// logger is l, or a logger that discards for a nil l.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// All returns every tool, in a stable order, ready to register.
func All(d Deps) []Tool {
	ts := newToolset(d)
	all := []Tool{
		ts.agentPaymentSession(),
		ts.checkoutSession(),
		ts.checkPolicy(),
		ts.getAgentPaymentSession(),
		ts.getCheckoutSession(),
	}
	for i := range all {
		all[i].Handler = ts.recovering(all[i].Handler)
	}
	return all
}

// recovering turns a panic in a handler into a generic tool result and an
// operator log line with the stack: the panic's text, which could hold
// anything, never reaches the model.
func (ts *toolset) recovering(h server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		defer func() {
			if r := recover(); r != nil {
				ts.log.ErrorContext(ctx, "panic in a tool handler", "tool", req.Params.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				res, err = render(ts.gate.Internal(ctx, ts.caller(ctx), req.Params.Name)), nil
			}
		}()
		return h(ctx, req)
	}
}

// Instructions returns the server's instructions text for the agent: for a
// Clink sandbox or production, and with the duplicate guard on (a window
// above 0) or off.
func Instructions(sandbox bool, duplicates time.Duration) string {
	var b strings.Builder
	b.WriteString(instructionsTools)
	b.WriteString("\n\nEvery call is checked against limits the operator set (allowed currencies, per-session amount caps, allowed customer emails, and more); each tool's description states them. A refused call says which limit applied: do not try to get around a limit by splitting or reshaping a payment, ask the user instead.")
	if sandbox {
		b.WriteString(" This server runs against a Clink sandbox: the sessions it creates are test sessions and move no real money.")
	} else {
		b.WriteString(" These tools create real payment requests.")
	}
	if duplicates > 0 {
		b.WriteString(` An identical call repeated within the duplicate window each create tool's description states returns the first call's result (marked "replayed") instead of creating a second session; pass an idempotencyKey to make that explicit.`)
	} else {
		b.WriteString(` Only a call that repeats an earlier call's idempotencyKey returns that call's result (marked "replayed") instead of creating a second session: pass one so that a repeated call cannot pay twice.`)
	}
	b.WriteString(" If a result says the outcome is unknown, do not retry blindly.")
	return b.String()
}

// instructionsTools is the part of the instructions that lists the tools,
// the same in every mode.
const instructionsTools = `This server creates payment sessions on Clink, a payment platform, on behalf of its operator.

- create_agent_payment_session: a session that a customer's payment agent pays, bound to the customer's email, an amount and a currency. Use it when a task needs payment from a customer through their agent.
- create_checkout_session: a hosted (or embedded) checkout page for a customer. Give the url from the result to the customer.
- check_payment_policy: before a create call, check whether it would be allowed, what is left of the budgets, and whether a person must approve it. It creates and records nothing.
- get_checkout_session, get_agent_payment_session: follow a session this server created.
- The resource clink://policy describes your limits and what is left of them.

A payment above an approval threshold waits for a person's yes: your client may ask its user, or the result says the approval is pending; then tell your user, and repeat the identical call once it is approved.`

// NewServer returns an MCP server offering every tool, with the server's
// instructions, recovering from panics in handlers.
func NewServer(d Deps, version string) *server.MCPServer {
	s := server.NewMCPServer("clink-mcp", version,
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithElicitation(),
		server.WithInstructions(Instructions(d.Sandbox, d.Policy.DuplicatesWindow())),
		server.WithRecovery(),
		server.WithToolHandlerMiddleware(askUntilExpiry(d.Gate, logger(d.Logger))),
	)
	s.AddTools(All(d)...)
	r := PolicyResource(d)
	s.AddResource(r.Resource, r.Handler)
	return s
}

// rawArguments returns a call's arguments as JSON: the bytes the client sent
// when the call came over the wire, so duplicate keys can still be seen.
func rawArguments(req mcp.CallToolRequest) []byte {
	if len(req.Params.RawArguments) > 0 {
		return req.Params.RawArguments
	}
	if req.Params.Arguments == nil {
		return nil
	}
	b, err := json.Marshal(req.Params.Arguments)
	if err != nil {
		return []byte("invalid")
	}
	return b
}

// annotations are the same for both tools, and set explicitly: creating a
// payment session writes (not read-only), adds rather than destroys (not
// destructive), may make a new session on a repeated call (not idempotent:
// the duplicate guard answers a repeat only within its window) and talks to
// Clink (open world).
func annotations(title string) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{
		Title:           title,
		ReadOnlyHint:    mcp.ToBoolPtr(false),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(false),
		OpenWorldHint:   mcp.ToBoolPtr(true),
	}
}

// formatTime writes a session's expiry for the model.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// idempotencyKeySchema is the idempotencyKey property, the same on both tools.
const idempotencyKeySchema = `{
      "type": "string",
      "minLength": 8,
      "maxLength": 128,
      "pattern": "^[ -~]+$",
      "description": "Optional key you choose for this payment, e.g. a UUID (8 to 128 printable ASCII characters). A later call with the same key returns the first call's result instead of creating a second session, within the duplicate window this tool's description states, or 24 hours when it states none; the same key with different arguments is refused. Example: \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"."
    }`

// replayedSchema is the replayed property of both tools' results.
const replayedSchema = `{"type": "boolean", "description": "Present and true when this result repeats an identical earlier call's (the duplicate guard); no new session was created."}`
