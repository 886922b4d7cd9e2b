package policy

import (
	"strings"
)

// Render returns the effective policy as plain text, one fact per line, in a
// stable order (currencies by code, budgets and rate limits and email
// patterns as written, tools in a fixed order). It is what `clink-mcp policy
// check FILE` prints for the operator, so it does list the email patterns
// and the store path.
func (p *Policy) Render() string {
	var b strings.Builder
	b.WriteString("Policy: " + p.source + "\n")
	b.WriteString("Currencies and per-session limits:\n")
	for _, c := range p.currencies.codes {
		b.WriteString("  " + p.currencies.describe(c))
		if a := p.currencies.byCode[c].approve; !a.IsZero() {
			b.WriteString(", approval above " + a.Amount())
		}
		b.WriteString("\n")
	}
	if p.hasThresholds() {
		b.WriteString("Approvals: " + p.approvalsRule() + "\n")
	} else {
		b.WriteString("Approvals: none (no approve_above)\n")
	}
	b.WriteString("Customer emails:\n")
	if p.allowAnyEmail {
		b.WriteString("  allowed: any valid address\n")
	} else if len(p.allow.patterns) == 0 {
		b.WriteString("  allowed: none\n")
	} else {
		b.WriteString("  allowed: " + joinPatterns(p.allow.patterns) + "\n")
	}
	if len(p.deny.patterns) > 0 {
		b.WriteString("  denied (wins over allowed): " + joinPatterns(p.deny.patterns) + "\n")
	}
	if p.allowWithoutEmail {
		b.WriteString("  checkout without an email: allowed when customerId or referenceCustomerId is given\n")
		if !p.allowAnyEmail || len(p.deny.patterns) > 0 {
			// checkCustomer: with allow_without_email a customerId is
			// accepted beside any email the lists pass, or none.
			b.WriteString("  note: the email lists do not bind a checkout without an email, nor one naming a customerId\n" +
				"    (Clink charges that customer whatever the email); allow_without_email: false makes them hold for every call\n")
		}
	} else {
		b.WriteString("  checkout without an email: refused\n")
	}
	b.WriteString("Redirect URLs (" + redirectFieldsText + "): " + p.urlsRule() + "\n")
	if len(p.budgets) == 0 {
		b.WriteString("Budgets: none\n")
	} else {
		b.WriteString("Budgets (rolling windows, all tools together):\n")
		for i := range p.budgets {
			b.WriteString("  " + p.budgets[i].perAmountWindow() + "\n")
		}
	}
	if len(p.rates) == 0 {
		b.WriteString("Rate limits: none\n")
	} else {
		b.WriteString("Rate limits (rolling windows, all tools together):\n")
		for i := range p.rates {
			b.WriteString("  " + p.rates[i].perCallsWindow() + "\n")
		}
	}
	b.WriteString("Duplicate calls: " + p.duplicatesRule() + "\n")
	b.WriteString("Tools:\n")
	for _, name := range knownTools {
		t := p.tools[name]
		switch {
		case !t.enabled:
			b.WriteString("  " + name + ": disabled\n")
			continue
		case t.narrowed:
			b.WriteString("  " + name + ": " + t.currencies.describeAll() + "\n")
		default:
			b.WriteString("  " + name + ": " + t.currencies.describeAll() + " (the global limits)\n")
		}
		if len(t.thresholds) > 0 {
			b.WriteString("    approval above: " + thresholdsText(t.thresholds, ", ") + "\n")
		}
		for i := range t.budgets {
			b.WriteString("    own budget: " + t.budgets[i].perAmountWindow() + "\n")
		}
		if t.allowDashboardPrices {
			b.WriteString("    dashboard prices (priceId, productId): allowed\n")
		}
	}
	if p.storePath == "" {
		b.WriteString("Store: the default ($XDG_STATE_HOME/clink-mcp/state.db, else ~/.local/state/clink-mcp/state.db)\n")
	} else {
		b.WriteString("Store: " + p.storePath + "\n")
	}
	return b.String()
}

// perAmountWindow renders a budget as a list entry: "USD 2000.00 per 24h",
// "per customer: USD 300.00 per 1h" or "per principal: USD 500.00 per 24h".
func (b *budgetRule) perAmountWindow() string {
	return b.per.prefix() + b.amountWindow()
}

// perCallsWindow renders a rate limit as a list entry: "at most 10 calls
// per 1m", "per customer: at most 20 calls per 1h" or "per principal: at
// most 5 calls per 1m".
func (r *rateRule) perCallsWindow() string {
	return r.per.prefix() + r.callsWindow()
}

// prefix is "per customer: " or "per principal: ", or "" for perAll.
func (k perKind) prefix() string {
	if k == perAll {
		return ""
	}
	return "per " + k.String() + ": "
}

func (p *Policy) duplicatesRule() string {
	if p.dupWindow == 0 {
		return "not detected (duplicates window 0)"
	}
	return "an identical call within " + formatWindow(p.dupWindow) + " returns the first call's result instead of creating another session"
}

// Summary returns a few sentences telling an agent what it may do with a
// tool: currencies, per-session limits, approval thresholds, the budgets in
// those currencies and the rate limits, the customer email rule, the
// redirect hosts allowed and the duplicate guard. It names no email address or pattern: a tricked agent
// must not learn the operator's customer list. It does name the redirect
// hosts, which are the operator's own sites, so the agent can use them.
func (p *Policy) Summary(tool string) string {
	t, ok := p.tools[tool]
	if !ok {
		return tool + " is not governed by this server's policy and is refused."
	}
	if !t.enabled {
		return tool + " is disabled by this server's policy."
	}
	var b strings.Builder
	b.WriteString("Allowed currencies and per-session limits: " + t.currencies.describeAll() + ".")
	if a := t.approvalSentence(); a != "" {
		b.WriteString(" " + a)
	}
	n := 0
	for _, bs := range [2][]budgetRule{p.budgets, t.budgets} {
		for i := range bs {
			r := &bs[i]
			if _, ok := t.currencies.byCode[r.max.cur.code]; !ok {
				continue // a budget in a currency this tool cannot use
			}
			if n == 0 {
				b.WriteString(" Budgets (rolling windows): ")
			} else {
				b.WriteString("; ")
			}
			if r.tool != "" {
				b.WriteString("this tool only, ")
			}
			b.WriteString(r.perAmountWindow())
			n++
		}
	}
	if n > 0 {
		b.WriteString(".")
	}
	for i := range p.rates {
		if i == 0 {
			b.WriteString(" Rate limits (rolling windows, all tools together): ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(p.rates[i].perCallsWindow())
	}
	if len(p.rates) > 0 {
		b.WriteString(".")
	}
	b.WriteString(" Customer email: " + p.emailRule(tool))
	if tool == ToolCheckoutSession && !t.allowDashboardPrices {
		b.WriteString(" " + noDashboardPrices)
	}
	if tool == ToolCheckoutSession {
		b.WriteString(p.urlsSummary())
	}
	if p.dupWindow > 0 {
		b.WriteString(" " + p.duplicatesSummary())
	}
	return b.String()
}

// noDashboardPrices tells the agent a checkout takes no dashboard prices.
const noDashboardPrices = "priceId and productId are not accepted: give amount, and priceDataList for line items."

// emailRule tells the agent the customer email rule for tool, naming no
// address or pattern: "required; any valid address."
func (p *Policy) emailRule(tool string) string {
	s := "required"
	if tool != ToolAgentPaymentSession && p.allowWithoutEmail {
		s = "required unless customerId or referenceCustomerId is given"
	}
	switch {
	case !p.allowAnyEmail:
		return s + "; only addresses on the operator's allowlist are accepted."
	case len(p.deny.patterns) > 0:
		return s + "; any valid address except ones the operator blocks."
	}
	return s + "; any valid address."
}

// duplicatesSummary tells the agent the duplicate guard's rule, when it is
// on.
func (p *Policy) duplicatesSummary() string {
	return "An identical call repeated within " + formatWindow(p.dupWindow) + " returns the first call's result instead of creating another session."
}

// describe renders one currency's limits: "USD 1.00–500.00" or
// "EUR up to 400.00".
func (r *currencyRules) describe(code string) string {
	l := r.byCode[code]
	if l.min.IsZero() {
		return code + " up to " + l.max.Amount()
	}
	return code + " " + l.min.Amount() + "–" + l.max.Amount()
}

func (r *currencyRules) describeAll() string {
	parts := make([]string, len(r.codes))
	for i, c := range r.codes {
		parts[i] = r.describe(c)
	}
	return strings.Join(parts, ", ")
}

func joinPatterns(ps []emailPattern) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}
