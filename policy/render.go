package policy

import (
	"strings"
)

// Render returns the effective policy as plain text, one fact per line, in a
// stable order (currencies by code, tools in a fixed order, email patterns
// as written). It is what `clink-mcp policy check FILE` prints for the
// operator, so it does list the email patterns.
func (p *Policy) Render() string {
	var b strings.Builder
	b.WriteString("Policy: " + p.source + "\n")
	b.WriteString("Currencies and per-session limits:\n")
	for _, c := range p.currencies.codes {
		b.WriteString("  " + p.currencies.describe(c) + "\n")
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
	} else {
		b.WriteString("  checkout without an email: refused\n")
	}
	b.WriteString("Tools:\n")
	for _, name := range knownTools {
		t := p.tools[name]
		switch {
		case !t.enabled:
			b.WriteString("  " + name + ": disabled\n")
		case t.narrowed:
			b.WriteString("  " + name + ": " + t.currencies.describeAll() + "\n")
		default:
			b.WriteString("  " + name + ": " + t.currencies.describeAll() + " (the global limits)\n")
		}
	}
	return b.String()
}

// Summary returns one or two lines telling an agent what it may do with a
// tool: currencies, per-session limits and the customer email rule. It
// names no email address or pattern: a tricked agent must not learn the
// operator's customer list.
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
	b.WriteString(" Customer email: ")
	switch {
	case tool == ToolAgentPaymentSession:
		b.WriteString("required")
	case p.allowWithoutEmail:
		b.WriteString("required unless customerId or referenceCustomerId is given")
	default:
		b.WriteString("required")
	}
	switch {
	case !p.allowAnyEmail:
		b.WriteString("; only addresses on the operator's allowlist are accepted.")
	case len(p.deny.patterns) > 0:
		b.WriteString("; any valid address except ones the operator blocks.")
	default:
		b.WriteString("; any valid address.")
	}
	return b.String()
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
