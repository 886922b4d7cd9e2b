package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/policy"
)

// ToolCheckPaymentPolicy is the name of the dry-run tool.
const ToolCheckPaymentPolicy = "check_payment_policy"

// checkPolicyArgs are the arguments of check_payment_policy.
type checkPolicyArgs struct {
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
}

// checkPolicyResult is its structured content.
type checkPolicyResult struct {
	Tool          string        `json:"tool"`
	Allowed       bool          `json:"allowed"`
	Code          policy.Code   `json:"code"`
	Message       string        `json:"message,omitempty"`
	Problems      []string      `json:"problems,omitempty"`
	NeedsApproval bool          `json:"needsApproval"`
	RetryAt       string        `json:"retryAt,omitempty"`
	ApprovalID    string        `json:"approvalId,omitempty"`
	Limits        []limitStatus `json:"limits"`
}

// limitStatus is one budget or rate limit as the agent sees it.
type limitStatus struct {
	Rule string `json:"rule"`
	Kind string `json:"kind"`
	Max  string `json:"max"`
	Used string `json:"used"`
	Left string `json:"left"`
}

const checkPolicyInputSchema = `{
  "type": "object",
  "properties": {
    "tool": {
      "type": "string",
      "enum": ["create_agent_payment_session", "create_checkout_session"],
      "description": "The create tool you intend to call. Example: \"create_checkout_session\"."
    },
    "arguments": {
      "type": "object",
      "description": "The arguments you intend to pass to that tool, exactly as you would pass them. Example: {\"customerEmail\": \"alice@example.com\", \"amount\": 19.99, \"currency\": \"USD\"}."
    }
  },
  "required": ["tool", "arguments"],
  "additionalProperties": false
}`

const checkPolicyOutputSchema = `{
  "type": "object",
  "properties": {
    "tool": {"type": "string", "description": "The create tool checked."},
    "allowed": {"type": "boolean", "description": "Whether the call would pass the operator's policy now (after a person's approval, when needsApproval is true)."},
    "code": {"type": "string", "description": "The code the create tool would answer with: \"allowed\", \"approval_required\", \"replayed\" (an identical call made or in flight within the duplicate window would answer it, and no new session would be created), or the refusing rule's code (amount_over_cap, budget_exceeded, rate_limited, idempotency_key_reused, invalid_arguments, ...)."},
    "message": {"type": "string", "description": "What would refuse the call and what to do about it."},
    "problems": {"type": "array", "items": {"type": "string"}, "description": "What is wrong with the arguments, when code is invalid_arguments."},
    "needsApproval": {"type": "boolean", "description": "Whether the call would wait for a person's approval before the session is created."},
    "retryAt": {"type": "string", "format": "date-time", "description": "When a budget or rate limit that refuses the call frees up enough, or when a refused or expired approval of an identical call stops answering it (RFC 3339, UTC)."},
    "approvalId": {"type": "string", "description": "The approval of an identical call that would answer this one: pending, approved, or refused (code approval_declined, approval_denied or approval_expired)."},
    "limits": {
      "type": "array",
      "description": "Every budget and rate limit that applies to this call, with what is left now.",
      "items": {
        "type": "object",
        "properties": {
          "rule": {"type": "string", "description": "The limit, e.g. \"rolling 24h USD budget, per customer\"."},
          "kind": {"type": "string", "enum": ["budget", "rate"]},
          "max": {"type": "string", "description": "The limit's size: an amount with its currency, or a number of calls."},
          "used": {"type": "string", "description": "What is used within the window now."},
          "left": {"type": "string", "description": "What is left within the window now."}
        },
        "required": ["rule", "kind", "max", "used", "left"],
        "additionalProperties": false
      }
    }
  },
  "required": ["tool", "allowed", "code", "needsApproval", "limits"],
  "additionalProperties": false
}`

// checkPolicy is check_payment_policy: a dry run of a create tool's call.
func (ts *toolset) checkPolicy() Tool {
	tool := mcp.Tool{
		Name:  ToolCheckPaymentPolicy,
		Title: "Check a payment against the policy",
		Description: "Check, without creating anything, whether a call to create_agent_payment_session or create_checkout_session " +
			"would be allowed now: which rule would refuse it, what is left of each budget and rate limit that applies, " +
			"whether a person would have to approve it, and whether an identical earlier call (or its idempotencyKey) would answer it instead. " +
			"It records nothing, reserves nothing and never calls Clink; " +
			"the actual call may still be refused if other calls spend the budget first.",
		RawInputSchema:  json.RawMessage(checkPolicyInputSchema),
		RawOutputSchema: json.RawMessage(checkPolicyOutputSchema),
		Annotations:     readOnly("Check a payment against the policy"),
	}
	return Tool{Tool: tool, Handler: ts.handleCheckPolicy}
}

func (ts *toolset) handleCheckPolicy(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, problem := decodeCheckPolicy(rawArguments(req))
	if problem != "" {
		return errorText("invalid arguments: " + problem + ". Nothing was checked."), nil
	}
	var p *prepared
	switch args.Tool {
	case policy.ToolAgentPaymentSession:
		p = ts.prepareAgentPaymentSession(args.Arguments)
	case policy.ToolCheckoutSession:
		p = ts.prepareCheckoutSession(args.Arguments)
	default:
		return errorText(fmt.Sprintf(`invalid arguments: argument "tool" must be %q or %q. Nothing was checked.`,
			policy.ToolAgentPaymentSession, policy.ToolCheckoutSession)), nil
	}
	out := checkPolicyResult{Tool: p.tool, Limits: []limitStatus{}}
	switch {
	case p.err != nil:
		ts.log.ErrorContext(ctx, "check_payment_policy failed", "tool", p.tool, "err", p.err)
		return errorText("internal error: the call could not be checked; the operator's log has the details."), nil
	case len(p.problems) > 0:
		out.Code, out.Problems = policy.CodeInvalidArguments, p.problems
		out.Message = "the arguments would be refused before the policy is consulted: " + strings.Join(p.problems, "; ")
	case p.refusal != nil:
		out.Code, out.Message = p.refusal.Code, p.refusal.Message
	default:
		checked, err := ts.gate.Check(ctx, ts.caller(ctx), p.order)
		if err != nil {
			ts.log.ErrorContext(ctx, "check_payment_policy: the store failed", "tool", p.tool, "err", err)
			return errorText("internal error: the server could not read its spending limits, so the call could not be checked; the operator's log has the details."), nil
		}
		d := checked.Decision
		out.Allowed, out.Code, out.Message = d.Allowed, d.Code, d.Message
		out.NeedsApproval = d.Allowed && checked.NeedsApproval
		out.ApprovalID = checked.ApprovalID
		if out.NeedsApproval {
			out.Code = policy.CodeApprovalRequired
			if out.Message == "" {
				out.Message = "the call is within the policy, and would wait for a person's approval before the session is created"
			}
		}
		if !d.RetryAt.IsZero() {
			out.RetryAt = formatTime(d.RetryAt)
		}
		for _, l := range checked.Limits {
			out.Limits = append(out.Limits, limitStatusOf(l))
		}
	}
	return mcp.NewToolResultStructured(out, checkSummary(&out)), nil
}

// decodeCheckPolicy reads check_payment_policy's arguments strictly (as
// the create tools read theirs: unknown, repeated and case-variant keys
// refused by name): exactly "tool", a string, and "arguments", an object
// (decoded strictly later, by the create tool's own decoder).
func decodeCheckPolicy(raw []byte) (checkPolicyArgs, string) {
	var args checkPolicyArgs
	if err := decodeStrict(raw, checkPolicyShape, &args); err != nil {
		return args, joinProblems(err.(decodeProblems))
	}
	if args.Tool == "" {
		return args, `argument "tool" is required, as a string`
	}
	if len(args.Arguments) == 0 || string(args.Arguments) == "null" {
		return args, `argument "arguments" is required, as an object: the arguments you would pass to the tool`
	}
	return args, ""
}

var checkPolicyShape = shapeOf(reflect.TypeFor[checkPolicyArgs]())

// limitStatusOf renders one limit's status.
func limitStatusOf(l policy.LimitStatus) limitStatus {
	kind := "budget"
	if l.Kind == policy.KindRate {
		kind = "rate"
	}
	return limitStatus{Rule: l.Rule, Kind: kind, Max: l.MaxText, Used: l.UsedText, Left: l.LeftText}
}

// checkSummary is the text beside the structured content.
func checkSummary(out *checkPolicyResult) string {
	var b strings.Builder
	switch {
	case out.NeedsApproval && out.ApprovalID != "":
		fmt.Fprintf(&b, "%s with these arguments would wait for a person's approval: %s.", out.Tool, out.Message)
	case out.NeedsApproval:
		b.WriteString(out.Tool + " with these arguments is within the policy now, and would need a person's approval before it is created.")
	case out.Allowed && out.ApprovalID != "":
		fmt.Fprintf(&b, "%s with these arguments would be allowed now: %s.", out.Tool, out.Message)
	case out.Code == policy.CodeReplayed:
		fmt.Fprintf(&b, "%s with these arguments would be answered by an identical earlier call: %s.", out.Tool, out.Message)
	case out.Allowed:
		b.WriteString(out.Tool + " with these arguments would be allowed now.")
	default:
		fmt.Fprintf(&b, "%s with these arguments would be refused (%s): %s.", out.Tool, out.Code, out.Message)
	}
	for _, l := range out.Limits {
		fmt.Fprintf(&b, " %s: %s left of %s.", l.Rule, l.Left, l.Max)
	}
	b.WriteString(" Nothing was created or reserved.")
	return b.String()
}

// errorText is a tool error result with text.
func errorText(text string) *mcp.CallToolResult {
	r := mcp.NewToolResultText(text)
	r.IsError = true
	return r
}

// readOnly is the annotations of a tool that changes nothing: read-only,
// so neither destructive nor anything but idempotent; open world when it
// asks Clink.
func readOnly(title string) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{
		Title:           title,
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}
}
