package policy

import (
	"strconv"
	"strings"
)

// AgentMarkdown returns the agent's view of the policy as Markdown, for the
// clink://policy resource: for each tool whether it is enabled, its
// currencies with their per-session limits, its approval thresholds, the
// customer email rule and, for checkouts, the dashboard price and redirect
// URL rules; then who approves and how long an approval waits; then the
// budgets and rate limits, each with what is left, from standing (what
// [Policy.DescribeLimits] made of [Policy.StandingLimits](principal) and
// the store's counts), per-customer rules described as rules without a
// figure; then the duplicate guard. The order is stable.
//
// Like [Policy.Summary], it names no email address or pattern: a tricked
// agent must not learn the operator's customer list. It names the redirect
// hosts, the operator's own sites, so the agent can use them. With no
// standing (the store cannot be read), the budgets and rate limits that
// are not per customer are listed without what is left.
func (p *Policy) AgentMarkdown(principal string, standing []LimitStatus) string {
	if p == nil {
		return "# Payment policy\n\nNo policy is loaded, so every payment call is refused.\n"
	}
	var b strings.Builder
	b.WriteString("# Payment policy\n\n")
	b.WriteString("What this server's operator allows payment calls to do. Amounts are exact, in each currency's own units; windows are rolling: what a call counts stops counting once the window has passed since it.")
	if principal != "" {
		b.WriteString(" Figures are for principal " + strconv.QuoteToGraphic(principal) + ".")
	}
	b.WriteString("\n")

	for _, name := range knownTools {
		t := p.tools[name]
		b.WriteString("\n## " + name + "\n\n")
		if !t.enabled {
			b.WriteString("- Disabled by this server's policy: calls to it are refused.\n")
			continue
		}
		b.WriteString("- Enabled.\n")
		b.WriteString("- Currencies and per-session limits: " + t.currencies.describeAll() + ".\n")
		if a := t.approvalSentence(); a != "" {
			b.WriteString("- " + a + "\n")
		}
		b.WriteString("- Customer email: " + p.emailRule(name) + "\n")
		if name == ToolCheckoutSession {
			if t.allowDashboardPrices {
				b.WriteString("- priceId and productId are accepted.\n")
			} else {
				b.WriteString("- " + noDashboardPrices + "\n")
			}
			if u := p.urlsSummary(); u != "" {
				b.WriteString("- " + strings.TrimSpace(u) + "\n")
			}
		}
	}

	if p.agentHasThresholds() {
		b.WriteString("\n## Approvals\n\n")
		b.WriteString("A session above its currency's approval threshold waits for a person's approval before it is created: ")
		if p.approvalsByOperator {
			b.WriteString("an operator of this server decides.")
		} else {
			b.WriteString("the user of your MCP client is asked when the client can ask, otherwise an operator of this server.")
		}
		b.WriteString(" A request nobody answers within " + formatWindow(p.ApprovalTimeout()) + " expires, and nothing is created.\n")
	}

	b.WriteString("\n## Budgets and rate limits\n\n")
	wrote := false
	if len(standing) > 0 {
		b.WriteString("| Rule | Limit | Used | Left |\n| --- | --- | --- | --- |\n")
		for _, s := range standing {
			b.WriteString("| " + s.Rule + " | " + s.MaxText + " | " + s.UsedText + " | " + s.LeftText + " |\n")
		}
		wrote = true
	} else if rules := p.DescribeLimits(p.StandingLimits(principal), nil); len(rules) > 0 {
		b.WriteString("What is left of these is not available right now:\n\n")
		for _, s := range rules {
			b.WriteString("- " + s.Rule + ": " + s.MaxText + "\n")
		}
		wrote = true
	}
	if perCustomer := p.perCustomerRules(); len(perCustomer) > 0 {
		if wrote {
			b.WriteString("\n")
		}
		b.WriteString("Each customer has an allowance of its own under these rules; a call must fit what is left of its customer's:\n\n")
		for _, r := range perCustomer {
			b.WriteString("- " + r + "\n")
		}
		wrote = true
	}
	if !wrote {
		b.WriteString("None.\n")
	}

	b.WriteString("\n## Duplicate calls\n\n")
	if p.dupWindow > 0 {
		b.WriteString(p.duplicatesSummary() + "\n")
	} else {
		// An idempotencyKey is honoured all the same (the gate keeps its
		// claim for a window of its own).
		b.WriteString("Not detected: a call creates a session of its own unless it repeats an earlier call's idempotencyKey, which returns that call's result (see the create tools' idempotencyKey argument).\n")
	}
	return b.String()
}

// agentHasThresholds reports whether an enabled tool has an approval
// threshold.
func (p *Policy) agentHasThresholds() bool {
	for _, t := range p.tools {
		if t.enabled && len(t.thresholds) > 0 {
			return true
		}
	}
	return false
}

// perCustomerRules describes the per-customer budgets and rate limits,
// which [Policy.StandingLimits] leaves out, in its order: "per customer:
// 500.00 USD per 24h", "per customer, for create_checkout_session: 50.00
// USD per 7d", "per customer: at most 20 calls per 1h".
func (p *Policy) perCustomerRules() []string {
	var out []string
	budgets := func(bs []budgetRule) {
		for i := range bs {
			b := &bs[i]
			if b.per != perCustomer {
				continue
			}
			s := "per customer"
			if b.tool != "" {
				s += ", for " + b.tool
			}
			out = append(out, s+": "+b.max.String()+" per "+formatWindow(b.window))
		}
	}
	budgets(p.budgets)
	for _, name := range knownTools {
		if t := p.tools[name]; t.enabled {
			budgets(t.budgets)
		}
	}
	for i := range p.rates {
		if r := &p.rates[i]; r.per == perCustomer {
			out = append(out, "per customer: "+r.callsWindow())
		}
	}
	return out
}
