// Package policy is the operator's promise about what an agent may do: which
// tools it may call, in which currencies, for how much per session and over
// rolling windows, how often, and for which customers.
//
// Money is exact: amounts are parsed from their decimal text into integer
// minor units of an ISO 4217 currency (see [ParseMoney]) and never pass
// through a float. A policy is loaded once from a YAML file (see [Load]) or
// taken from the built-in sandbox demo ([Demo]); after that it is immutable,
// and [Policy.Evaluate] is a pure function of the policy and the request,
// safe for concurrent use and free of I/O.
//
// The policy fails closed: a request it cannot positively allow is denied
// with a stable [Code] and a message the model can act on.
//
// Budgets and rate limits need memory, which the policy does not keep: for
// an allowed request, [Policy.Limits] lists the counters it must fit, the
// caller reserves them in its ledger (gate/state), and
// [Policy.LimitDecision] turns the ledger's refusal into a Decision:
//
//	d := p.Evaluate(req)
//	if d.Allowed {
//		limits := p.Limits(req, policy.CustomerKeys(secret, req))
//		id, err := st.Reserve(ctx, now, limits)
//		var den *Denied
//		if errors.As(err, &den) {
//			d = p.LimitDecision(limits, den, now)
//		}
//		...
//	}
//
// A request the policy allows may still need a person's approval before its
// session is created: [Policy.NeedsApproval] says whether it spends more
// than a currency's approval threshold, and [Policy.ApprovalTimeout] and
// [Policy.ApprovalsByOperator] say how long an approval waits and who is
// asked. For the agent, [Policy.Summary] describes a tool in a few
// sentences and [Policy.AgentMarkdown] the whole policy, with what is left
// of its budgets and rate limits ([Policy.StandingLimits],
// [Policy.DescribeLimits]).
//
// The package knows nothing of MCP or of the Clink API; tools are named by
// their string names ([ToolAgentPaymentSession], [ToolCheckoutSession]).
package policy
