package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perKind is whom a budget or rate limit gives an allowance of its own:
// the policy file's per.
type perKind uint8

const (
	// perAll: one allowance for every call the policy governs, whichever
	// principal makes it and whichever customer it is for (no per).
	perAll perKind = iota
	// perCustomer: one allowance per customer (per: customer).
	perCustomer
	// perPrincipal: one allowance per principal, the agent making the call
	// (per: principal).
	perPrincipal
)

// String returns how the policy file writes k: "customer", "principal",
// or "" for perAll.
func (k perKind) String() string {
	switch k {
	case perCustomer:
		return "customer"
	case perPrincipal:
		return "principal"
	}
	return ""
}

// budgetRule is one rolling-window spending budget from the policy file.
type budgetRule struct {
	tool   string // "" for a global budget
	max    Money  // its currency is the budget's
	window time.Duration
	per    perKind
	key    string // the store key, without the last part
}

// rateRule is one rolling-window rate limit from the policy file.
type rateRule struct {
	window time.Duration
	max    int64
	per    perKind
	key    string // the store key, without the last part
}

// Store keys. Every key has a fixed number of "|"-separated fields, the
// last being the part that says whose allowance it is, so no two rules
// share a key and a customer key or principal name (whatever it contains)
// can never be read as another field:
//
//	budget|TOOL|CUR|WINDOW|PART   e.g. budget|*|USD|24h0m0s|
//	rate|TOOL|WINDOW|PART         e.g. rate|*|1m0s|c:3f9a…
//
// TOOL is "*" for a global rule; WINDOW is Go's canonical duration text;
// PART is
//
//   - "" for a limit shared by every call (no per);
//   - for a per-customer limit, "c:" followed by the caller's opaque
//     customer key, or [noCustomerPart] for a call with no customer;
//   - for a per-principal limit, "p:" followed by the principal's name
//     ([Request.Principal]), e.g. rate|*|1m0s|p:local.
//
// A per-customer PART starts with "c:" or is [noCustomerPart], a
// per-principal one starts with "p:", a shared one is empty: a per-customer,
// a per-principal and a shared rule never share a key, even with the same
// tool, currency and window. Changing a rule's currency, window or per
// starts a fresh counter; changing its max keeps the counter.
const (
	keyGlobalTool   = "*"
	customerPrefix  = "c:"
	principalPrefix = "p:"
	// noCustomerPart is the one shared bucket per-customer limits use for
	// calls without a customer identity: those calls fail closed, sharing
	// one allowance, instead of each getting a fresh one.
	noCustomerPart = "no-customer"
)

func (b *budgetRule) keyPrefix() string {
	tool := b.tool
	if tool == "" {
		tool = keyGlobalTool
	}
	return "budget|" + tool + "|" + b.max.cur.code + "|" + b.window.String() + "|"
}

func (r *rateRule) keyPrefix() string {
	return "rate|" + keyGlobalTool + "|" + r.window.String() + "|"
}

// amountWindow renders a budget for people: "USD 2000.00 per 24h".
func (b *budgetRule) amountWindow() string {
	return b.max.cur.code + " " + b.max.Amount() + " per " + formatWindow(b.window)
}

// describe is amountWindow plus " per customer" or " per principal" where
// it applies.
func (b *budgetRule) describe() string {
	return b.amountWindow() + b.per.suffix()
}

// scope names what makes a budget distinct: "USD per 24h per customer".
func (b *budgetRule) scope() string {
	return b.max.cur.code + " per " + formatWindow(b.window) + b.per.suffix()
}

// suffix is " per customer" or " per principal", or "" for perAll.
func (k perKind) suffix() string {
	if k == perAll {
		return ""
	}
	return " per " + k.String()
}

// callsWindow renders a rate limit: "at most 10 calls per 1m".
func (r *rateRule) callsWindow() string {
	return "at most " + calls(r.max) + " per " + formatWindow(r.window)
}

func (r *rateRule) scope() string {
	return formatWindow(r.window) + r.per.suffix()
}

func calls(n int64) string {
	if n == 1 {
		return "1 call"
	}
	return strconv.FormatInt(n, 10) + " calls"
}

// limitRule is one rule [Policy.Limits] turns into a [Limit].
type limitRule struct {
	key    string // without the last part
	per    perKind
	kind   Kind
	window time.Duration
	max    int64
	cur    Currency // a budget's currency
}

// rulesFor yields the rules req is checked against, in Limits' order:
// global budgets, the tool's budgets, rate limits. A budget applies to a
// call that involves its currency: the call's own, or a line item's.
func (p *Policy) rulesFor(req *Request) iter.Seq[limitRule] {
	tool := req.Tool
	return func(yield func(limitRule) bool) {
		var own []budgetRule
		if t, ok := p.tools[tool]; ok {
			own = t.budgets
		}
		for _, bs := range [2][]budgetRule{p.budgets, own} {
			for i := range bs {
				b := &bs[i]
				if !involves(req, b.max.cur) {
					continue
				}
				if !yield(limitRule{b.key, b.per, KindBudget, b.window, b.max.minor, b.max.cur}) {
					return
				}
			}
		}
		for i := range p.rates {
			r := &p.rates[i]
			if !yield(limitRule{r.key, r.per, KindRate, r.window, r.max, Currency{}}) {
				return
			}
		}
	}
}

// Limits returns the budget and rate-limit counters req is checked against,
// in a stable order: global budgets, then the tool's own budgets (each in
// file order), then rate limits. Call it for a request [Policy.Evaluate]
// allowed, and reserve the result in the store before calling Clink.
//
// A budget applies to every request that involves its currency: the
// request's own (req.Amount's) or a line item's. For the request's currency
// it counts the larger of req.Amount and the sum of the line items in that
// currency (the rule the per-session cap uses); for another currency, the
// sum of the line items in it, since Clink's docs do not say which amount
// is charged and the budget must hold either way. Amounts are in minor
// units; a request with no positive amount counts as more than any budget
// in its currency, so it never fits one. A rate limit counts 1.
//
// customers are opaque keys, one per customer identifier the request names
// (see [CustomerKeys]); they must never be raw emails, since keys are
// stored. A per-customer rule yields one counter per customer key, each
// its own allowance, and the call must fit every one: a customer cannot be
// given a fresh allowance by changing another of its identifiers. With no
// customer key (no email, no customer ID), the call counts against one
// shared "no-customer" counter per rule, so calls without a customer
// identity fail closed instead of each getting a fresh allowance.
//
// A per-principal rule yields one counter for req.Principal, its own
// allowance; a rule without per, one counter for every call the policy
// governs, whichever principal makes it. A request without a principal
// counts as one more principal, its name "", whose allowance every such
// request shares.
func (p *Policy) Limits(req *Request, customers []string) []Limit {
	if p == nil || req == nil {
		return nil
	}
	parts := make([]string, 0, max(len(customers), 1))
	for _, c := range customers {
		if c != "" && !slices.Contains(parts, customerPrefix+c) {
			parts = append(parts, customerPrefix+c)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, noCustomerPart)
	}
	var out []Limit
	for r := range p.rulesFor(req) {
		l := Limit{Key: r.key, Kind: r.kind, Window: r.window, Max: r.max, Add: 1}
		if r.kind == KindBudget {
			l.Add = budgetAmount(req, r.cur)
		}
		switch r.per {
		case perCustomer:
			for _, part := range parts {
				l.Key = r.key + part
				out = append(out, l)
			}
		case perPrincipal:
			l.Key = r.key + principalPrefix + req.Principal
			out = append(out, l)
		default:
			out = append(out, l)
		}
	}
	return out
}

// involves reports whether req is in cur or has a line item in cur.
func involves(req *Request, cur Currency) bool {
	if req.Amount.cur == cur {
		return true
	}
	for _, li := range req.LineItems {
		if li.UnitAmount.cur == cur {
			return true
		}
	}
	return false
}

// budgetAmount is what a request counts against cur's budgets, in minor
// units: for the request's currency the larger of the amount and the line
// items in it, for another the line items in it.
func budgetAmount(req *Request, cur Currency) int64 {
	var amt int64
	if req.Amount.cur == cur {
		amt = req.Amount.minor
		if amt <= 0 {
			// Evaluate refuses such a request; should one get here anyway, it
			// fails closed rather than spending nothing, or less than nothing.
			return MaxMinor + 1
		}
	}
	if s := lineTotal(req.LineItems, cur); s > amt {
		amt = s
	}
	if amt <= 0 {
		// A line item in cur that lineTotal skips (no positive unit amount
		// or quantity): Evaluate refuses it; fail closed all the same.
		return MaxMinor + 1
	}
	return amt
}

// LimitDecision turns a store's denial of limits[d.Limit] into a
// [Decision] the model can act on:
//
//   - a budget: [CodeBudgetExceeded], saying how much of the budget is left
//     and when enough of the window frees up ("amount 300.00 USD exceeds
//     what is left of the rolling 24h USD budget (2000.00 USD, 150.00 USD
//     left); enough frees up at 2026-11-21T14:03:00Z (in 3h12m5s)"), or
//     that the amount can never fit when d.RetryAt is zero. Limit is the
//     budget and Remaining what is left of it.
//   - a rate limit: [CodeRateLimited], saying when to retry ("rate limit of
//     10 calls per 1m reached; retry after 2026-11-21T14:03:00Z (in 42s)").
//
// Limits that apply per customer or per principal say so. Times are RFC 3339 in UTC, rounded
// up to the second (so is the Decision's RetryAt), and waits are measured
// from now; policy reads no clock. limits must be what [Policy.Limits]
// returned for the call. A denial it cannot interpret is still a denial.
func (p *Policy) LimitDecision(limits []Limit, d *Denied, now time.Time) Decision {
	if d == nil || d.Limit < 0 || d.Limit >= len(limits) {
		return deny(CodeBudgetExceeded, "a budget or rate limit of this server's policy refuses the call")
	}
	l := &limits[d.Limit]
	var retry time.Time
	if !d.RetryAt.IsZero() {
		retry = ceilSecond(d.RetryAt.UTC())
	}
	when := ""
	if !retry.IsZero() {
		when = retry.Format(time.RFC3339) + " (in " + formatWait(retry.Sub(now)) + ")"
	}
	if l.Kind == KindRate {
		dec := Decision{Code: CodeRateLimited, RetryAt: retry}
		name := "rate limit of " + calls(l.Max) + " per " + formatWindow(l.Window) + ruleScope(l.Key, 4, 1, 3)
		if when != "" {
			dec.Message = name + " reached; retry after " + when
		} else {
			dec.Message = name + " reached"
		}
		return dec
	}

	var cur Currency
	if parts := strings.SplitN(l.Key, "|", 5); len(parts) == 5 && parts[0] == "budget" {
		cur, _ = ParseCurrency(parts[2])
	}
	if l.Kind != KindBudget || cur.code == "" {
		return Decision{Code: CodeBudgetExceeded, RetryAt: retry,
			Message: "the amount exceeds what is left of a budget of this server's policy"}
	}
	name := "the rolling " + formatWindow(l.Window) + " " + cur.code + " budget" + ruleScope(l.Key, 5, 1, 4)
	budget := Money{minor: l.Max, cur: cur}
	left := Money{minor: max(l.Max-max(d.Used, 0), 0), cur: cur}
	amount := Money{minor: l.Add, cur: cur}
	dec := Decision{Code: CodeBudgetExceeded, Limit: budget, Remaining: left, RetryAt: retry}
	switch {
	case retry.IsZero():
		dec.Message = fmt.Sprintf("amount %s is more than %s allows in all (%s), so it can never fit this budget", amount, name, budget)
	default:
		dec.Message = fmt.Sprintf("amount %s exceeds what is left of %s (%s, %s left); enough frees up at %s", amount, name, budget, left, when)
	}
	return dec
}

// ruleScope reads the tool and last fields of a key with n fields and says
// " for TOOL" and " per customer" or " per principal" where they apply.
func ruleScope(key string, n, toolField, partField int) string {
	parts := strings.SplitN(key, "|", n)
	if len(parts) != n {
		return ""
	}
	s := ""
	if t := parts[toolField]; t != keyGlobalTool && t != "" {
		s += " for " + t
	}
	switch part := parts[partField]; {
	case strings.HasPrefix(part, principalPrefix):
		s += perPrincipal.suffix()
	case part != "":
		s += perCustomer.suffix()
	}
	return s
}

// DuplicatesWindow returns how long an identical call is answered with the
// earlier one's result; 0 means the duplicate guard is off. It is 10 minutes
// when the policy file does not say.
func (p *Policy) DuplicatesWindow() time.Duration { return p.dupWindow }

// StorePath returns the file's store.path, the state file (budgets, rate
// limits, the duplicate guard, the audit trail), with "~" expanded and a
// relative path resolved against the policy file's directory; "" when the
// file sets none (as the [Demo] policy does). [Policy.StoreFile] applies
// the default.
func (p *Policy) StorePath() string { return p.storePath }

// StoreFile returns where the state file is: [Policy.StorePath], or
// [DefaultStorePath] when the policy sets none. It fails only when the
// default location cannot be found.
func (p *Policy) StoreFile() (string, error) {
	if p.storePath != "" {
		return p.storePath, nil
	}
	path, err := DefaultStorePath()
	if err != nil {
		return "", fmt.Errorf("store.path is not set and its default location cannot be found (%v); set store.path in the policy file", err)
	}
	return path, nil
}

// HasState reports whether the policy has any budget, rate limit,
// duplicate guard or approval threshold, that is, whether calls need the
// store for more than the audit trail.
func (p *Policy) HasState() bool {
	if len(p.budgets) > 0 || len(p.rates) > 0 || p.dupWindow > 0 || p.hasThresholds() {
		return true
	}
	for _, t := range p.tools {
		if len(t.budgets) > 0 {
			return true
		}
	}
	return false
}

// CustomerKeys returns an opaque key for each customer identifier req
// names, for [Policy.Limits]: its email (normalised, sub-address dropped:
// see [SubaddressBase]) and its customer ID, in that order, each the hex of
// the first 16 bytes of HMAC-SHA256 under secret, domain-separated so that
// an ID that looks like an email is not that email's customer. Clink
// charges a customerId's customer whatever the email says, so both count.
// An email that does not normalise (Evaluate refuses those) gives no key.
// A reference customer ID is not an identity: it is free text the agent
// chooses.
//
// secret must be a server-held random key of at least 16 bytes; without
// one, an email's key could be found by hashing guesses.
func CustomerKeys(secret []byte, req *Request) []string {
	if req == nil {
		return nil
	}
	var keys []string
	if req.CustomerEmail != "" {
		if addr, err := NormalizeEmail(req.CustomerEmail); err == nil {
			keys = append(keys, customerKey(secret, "email", SubaddressBase(addr)))
		}
	}
	if req.CustomerID != "" {
		keys = append(keys, customerKey(secret, "customer_id", req.CustomerID))
	}
	return keys
}

// CustomerIDKey returns the opaque key [CustomerKeys] gives a customer ID,
// or "" for none; ReferenceKey the same for a reference customer ID, under
// a domain of its own.
func CustomerIDKey(secret []byte, id string) string {
	if id == "" {
		return ""
	}
	return customerKey(secret, "customer_id", id)
}

// ReferenceKey returns an opaque key for a reference customer ID, for
// records that must say one was given without storing it; "" for none.
func ReferenceKey(secret []byte, ref string) string {
	if ref == "" {
		return ""
	}
	return customerKey(secret, "reference_customer_id", ref)
}

func customerKey(secret []byte, kind, id string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("clink-mcp customer\x00" + kind + "\x00" + id))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// formatWindow renders a window for people: "24h", "1m", "1h30m", "7d".
func formatWindow(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= 2*day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return trimDuration(d)
}

// formatWait renders a wait rounded up to the second: "42s", "3h12m5s".
func formatWait(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return trimDuration(d)
}

// trimDuration is d.String() without zero minutes and seconds at the end:
// "24h0m0s" becomes "24h", "1m0s" becomes "1m".
func trimDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func ceilSecond(t time.Time) time.Time {
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// LineTotals returns what line items add up to in each currency they use,
// as the per-session cap counts them (saturating above [MaxMinor]), sorted
// by currency code.
func LineTotals(items []LineItem) []Money {
	var out []Money
	for _, li := range items {
		cur := li.UnitAmount.cur
		if cur.code == "" || slices.ContainsFunc(out, func(m Money) bool { return m.cur == cur }) {
			continue
		}
		out = append(out, Money{minor: lineTotal(items, cur), cur: cur})
	}
	slices.SortFunc(out, func(a, b Money) int { return strings.Compare(a.cur.code, b.cur.code) })
	return out
}

// Spend returns what req counts against the budgets of each currency it
// involves (its own and its line items'), as [Policy.Limits] counts it,
// sorted by currency code. The journal records it with every intent.
func (r *Request) Spend() []Money {
	var out []Money
	add := func(cur Currency) {
		for _, m := range out {
			if m.cur == cur {
				return
			}
		}
		out = append(out, Money{minor: budgetAmount(r, cur), cur: cur})
	}
	if r.Amount.cur.code != "" {
		add(r.Amount.cur)
	}
	for _, li := range r.LineItems {
		if li.UnitAmount.cur.code != "" {
			add(li.UnitAmount.cur)
		}
	}
	slices.SortFunc(out, func(a, b Money) int { return strings.Compare(a.cur.code, b.cur.code) })
	return out
}
