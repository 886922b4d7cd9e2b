package policy

import (
	"strconv"
	"strings"
	"time"
)

// LimitStatus is where one budget or rate-limit counter stands, for the
// agent: what the rule is, how much of it is used and how much is left.
type LimitStatus struct {
	// Rule names the rule in words, as [Policy.LimitDecision] does:
	// "rolling 24h USD budget", "rolling 24h USD budget for
	// create_checkout_session, per customer", "rolling 1m rate limit, per
	// principal".
	Rule string
	// Kind is what the counter counts.
	Kind Kind
	// Currency is a budget's ISO 4217 code; "" for a rate limit.
	Currency string
	// Tool is the tool a tool's own budget applies to; "" for a rule over
	// every tool.
	Tool string
	// Per is "customer" or "principal" for a rule that gives each its own
	// allowance, "" for one shared by every call.
	Per string
	// Window is the rule's rolling window.
	Window time.Duration
	// Max, Used and Left are the counter's size, its use within the window
	// and what is left (Max-Used, never below 0): minor units of Currency
	// for a budget, calls for a rate limit.
	Max, Used, Left int64
	// MaxText, UsedText and LeftText are Max, Used and Left for people:
	// exact money for a budget ("1000.00 USD"), calls for a rate limit
	// ("7 calls").
	MaxText, UsedText, LeftText string
}

// keyInfo is what a store key built by [Policy.Limits] says about its rule.
type keyInfo struct {
	kind Kind
	tool string // "" for a rule over every tool
	cur  Currency
	per  perKind
}

// parseKey reads a store key built by [Policy.Limits]; ok is false for a
// key it did not build.
func parseKey(key string) (info keyInfo, ok bool) {
	var part string
	switch {
	case strings.HasPrefix(key, "budget|"):
		fields := strings.SplitN(key, "|", 5)
		if len(fields) != 5 {
			return keyInfo{}, false
		}
		cur, err := ParseCurrency(fields[2])
		if err != nil {
			return keyInfo{}, false
		}
		info = keyInfo{kind: KindBudget, tool: fields[1], cur: cur}
		part = fields[4]
	case strings.HasPrefix(key, "rate|"):
		fields := strings.SplitN(key, "|", 4)
		if len(fields) != 4 {
			return keyInfo{}, false
		}
		info = keyInfo{kind: KindRate, tool: fields[1]}
		part = fields[3]
	default:
		return keyInfo{}, false
	}
	if info.tool == keyGlobalTool {
		info.tool = ""
	}
	switch {
	case strings.HasPrefix(part, principalPrefix):
		info.per = perPrincipal
	case part != "":
		info.per = perCustomer
	}
	return info, true
}

// DescribeLimits says where each of limits stands: limits as
// [Policy.Limits] or [Policy.StandingLimits] returned them, used[i] what
// the store says limits[i]'s counter holds within its window (missing or
// negative counts as 0). The rule is read back from each limit's key; a
// limit whose key the policy did not build is described only by its kind.
func (p *Policy) DescribeLimits(limits []Limit, used []int64) []LimitStatus {
	if len(limits) == 0 {
		return nil
	}
	out := make([]LimitStatus, len(limits))
	for i, l := range limits {
		var u int64
		if i < len(used) {
			u = max(used[i], 0)
		}
		s := LimitStatus{Kind: l.Kind, Window: l.Window, Max: l.Max, Used: u, Left: max(l.Max-u, 0)}
		info, ok := parseKey(l.Key)
		if ok && info.kind != l.Kind {
			ok = false
		}
		if ok {
			s.Tool, s.Per = info.tool, info.per.String()
			s.Rule = info.rule(l.Window)
			if l.Kind == KindBudget {
				s.Currency = info.cur.code
			}
		}
		text := func(n int64) string { return strconv.FormatInt(n, 10) }
		switch {
		case l.Kind == KindRate:
			if !ok {
				s.Rule = "a rate limit of this server's policy"
			}
			text = calls
		case ok:
			text = func(n int64) string { return Money{minor: n, cur: info.cur}.String() }
		default:
			s.Rule = "a budget of this server's policy"
		}
		s.MaxText, s.UsedText, s.LeftText = text(s.Max), text(s.Used), text(s.Left)
		out[i] = s
	}
	return out
}

// rule names a rule in words: "rolling 24h USD budget for
// create_checkout_session, per customer".
func (k keyInfo) rule(window time.Duration) string {
	s := "rolling " + formatWindow(window)
	if k.kind == KindBudget {
		s += " " + k.cur.code + " budget"
	} else {
		s += " rate limit"
	}
	if k.tool != "" {
		s += " for " + k.tool
	}
	if k.per != perAll {
		s += ", per " + k.per.String()
	}
	return s
}

// StandingLimits returns the counters an agent can be told about without a
// request: every budget and rate limit of the policy that is not per
// customer, with Add 0, keyed exactly as [Policy.Limits] keys them for a
// request by principal. The order is stable: global budgets, each enabled
// tool's own budgets (tools in a fixed order), rate limits, each in file
// order. A disabled tool's own budgets are left out: no call can spend
// them. Per-customer rules have a counter per customer, which a
// request names; [Policy.AgentMarkdown] describes them as rules.
func (p *Policy) StandingLimits(principal string) []Limit {
	if p == nil {
		return nil
	}
	var out []Limit
	add := func(key string, per perKind, kind Kind, window time.Duration, max int64) {
		switch per {
		case perCustomer:
			return
		case perPrincipal:
			key += principalPrefix + principal
		}
		for _, l := range out {
			if l.Key == key {
				return
			}
		}
		out = append(out, Limit{Key: key, Kind: kind, Window: window, Max: max})
	}
	budgets := func(bs []budgetRule) {
		for i := range bs {
			b := &bs[i]
			add(b.key, b.per, KindBudget, b.window, b.max.minor)
		}
	}
	budgets(p.budgets)
	for _, name := range knownTools {
		if t := p.tools[name]; t.enabled {
			budgets(t.budgets)
		}
	}
	for i := range p.rates {
		r := &p.rates[i]
		add(r.key, r.per, KindRate, r.window, r.max)
	}
	return out
}
