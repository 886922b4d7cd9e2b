package policy

import (
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Approval thresholds: a currency's approve_above in the policy file. A
// session above it is not refused: it waits for a person's decision (see
// [Policy.NeedsApproval]); who decides and for how long is the approvals
// section ([Policy.ApprovalsByOperator], [Policy.ApprovalTimeout]).

const (
	// defaultApprovalTimeout is how long an approval waits when the policy
	// file does not say: long enough for a person to notice and answer,
	// short enough that a forgotten request does not linger.
	defaultApprovalTimeout = 15 * time.Minute
	// minApprovalTimeout and maxApprovalTimeout bound approvals.timeout:
	// less than a minute leaves nobody time to answer; more than a day
	// keeps an agent's call, and its reservation, open for too long.
	minApprovalTimeout = time.Minute
	maxApprovalTimeout = 24 * time.Hour
)

// The values of approvals.by.
const (
	approvalsByClient   = "client"
	approvalsByOperator = "operator"
)

// approvals parses the approvals section into p.
func (fp *fileParser) approvals(n *yaml.Node, p *Policy) {
	f := fp.fields(n, "approvals", "timeout", "by")
	if f == nil {
		return
	}
	if e, ok := f["timeout"]; ok {
		if d, ok := fp.approvalTimeout(e.val); ok {
			p.approvalTimeout = d
		}
	}
	if e, ok := f["by"]; ok {
		switch v := e.val; {
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == approvalsByClient:
			p.approvalsByOperator = false
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == approvalsByOperator:
			p.approvalsByOperator = true
		default:
			fp.errorf(v, "approvals: by must be client (ask the agent's user through the MCP client when it can, else an operator) or operator (always an operator)")
		}
	}
}

// approvalTimeout reads approvals.timeout: a duration (Go syntax, or whole
// days) of whole seconds between minApprovalTimeout and maxApprovalTimeout.
func (fp *fileParser) approvalTimeout(n *yaml.Node) (time.Duration, bool) {
	const what = "approvals: timeout"
	if n.Kind != yaml.ScalarNode {
		fp.errorf(n, "%s must be a duration like 5m, 15m or 1h", what)
		return 0, false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		fp.errorf(n, "%s must be a duration like 5m, 15m or 1h, not %s", what, strings.TrimPrefix(n.ShortTag(), "!!"))
		return 0, false
	}
	d, err := parseWindow(n.Value)
	switch {
	case err != nil:
		fp.errorf(n, "%s %s is not a duration; write it like 5m, 15m or 1h", what, quoteInput(n.Value))
	case d < minApprovalTimeout:
		fp.errorf(n, "%s %s is shorter than the least allowed, %s", what, n.Value, formatWindow(minApprovalTimeout))
	case d > maxApprovalTimeout:
		fp.errorf(n, "%s %s is longer than the most allowed, %s", what, n.Value, formatWindow(maxApprovalTimeout))
	case d%time.Second != 0:
		fp.errorf(n, "%s %s must be a whole number of seconds", what, n.Value)
	default:
		return d, true
	}
	return 0, false
}

// thresholds returns the approval thresholds of r, by currency code.
func (r *currencyRules) thresholds() []Money {
	var out []Money
	for _, c := range r.codes {
		if a := r.byCode[c].approve; !a.IsZero() {
			out = append(out, a)
		}
	}
	return out
}

// NeedsApproval reports whether req must wait for a person's approval
// before its session is created: whether, for its tool, it spends more
// than the approval threshold (approve_above) of a currency that has one.
// What a request spends in a currency is what the budgets count (see
// [Request.Spend]): in its own currency the larger of the amount and its
// line items in that currency, in another the line items in it. An amount
// exactly at the threshold needs no approval.
//
// It does not evaluate req: call it for a request [Policy.Evaluate]
// allowed. It is false for a nil policy or request and for a tool the
// policy does not govern, which Evaluate refuses anyway.
func (p *Policy) NeedsApproval(req *Request) bool {
	if p == nil || req == nil {
		return false
	}
	t, ok := p.tools[req.Tool]
	if !ok {
		return false
	}
	for _, th := range t.thresholds {
		if involves(req, th.cur) && budgetAmount(req, th.cur) > th.minor {
			return true
		}
	}
	return false
}

// ApprovalThreshold returns the approval threshold in effect for tool in
// the currency with ISO 4217 code currency: a session spending more than it
// needs approval (see [Policy.NeedsApproval]). ok is false when there is
// none: no approve_above for the currency, a currency or tool the policy
// does not allow, or a global threshold at or above the tool's narrower
// max_amount, which no session of the tool can exceed.
func (p *Policy) ApprovalThreshold(tool string, currency string) (threshold Money, ok bool) {
	if p == nil {
		return Money{}, false
	}
	t, ok := p.tools[tool]
	if !ok {
		return Money{}, false
	}
	for _, th := range t.thresholds {
		if th.cur.code == currency {
			return th, true
		}
	}
	return Money{}, false
}

// ApprovalTimeout returns how long a pending approval waits for a person's
// decision before it expires and the call is refused: approvals.timeout,
// 15 minutes when the policy file does not say.
func (p *Policy) ApprovalTimeout() time.Duration {
	if p == nil || p.approvalTimeout == 0 {
		return defaultApprovalTimeout
	}
	return p.approvalTimeout
}

// ApprovalsByOperator reports whether approvals always go to an operator
// (approvals.by: operator). When false (by: client, the default), the
// agent's user is asked through the MCP client when the client can ask,
// and an operator otherwise.
func (p *Policy) ApprovalsByOperator() bool { return p != nil && p.approvalsByOperator }

// HasApprovals reports whether any call may need approval: whether an
// approval threshold (approve_above) is in effect, for a tool or in the
// global currencies list.
func (p *Policy) HasApprovals() bool { return p != nil && p.hasThresholds() }

// hasThresholds reports whether any approval threshold is in effect, for a
// tool or in the global currencies list.
func (p *Policy) hasThresholds() bool {
	if len(p.currencies.thresholds()) > 0 {
		return true
	}
	for _, t := range p.tools {
		if len(t.thresholds) > 0 {
			return true
		}
	}
	return false
}

// approvalsRule renders who approves and for how long, for the operator.
func (p *Policy) approvalsRule() string {
	who := "the agent's user, asked through the MCP client when it can, else an operator"
	if p.approvalsByOperator {
		who = "an operator"
	}
	return "sessions above approve_above wait for " + who + "; unanswered after " + formatWindow(p.ApprovalTimeout()) + ", the call is refused"
}

// thresholdsText renders thresholds for people: "USD 200.00 or EUR 150.00".
func thresholdsText(ths []Money, sep string) string {
	parts := make([]string, len(ths))
	for i, th := range ths {
		parts[i] = th.cur.code + " " + th.Amount()
	}
	return strings.Join(parts, sep)
}

// approvalSentence tells the agent t's thresholds, or "" when it has none:
// "Sessions above USD 200.00 need a person's approval before they are
// created."
func (t *toolRules) approvalSentence() string {
	if len(t.thresholds) == 0 {
		return ""
	}
	return "Sessions above " + thresholdsText(t.thresholds, " or ") + " need a person's approval before they are created."
}
