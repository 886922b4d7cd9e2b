package policy

import (
	"fmt"
	"time"
)

// LineItem is one line of a checkout session: UnitAmount times Quantity.
type LineItem struct {
	UnitAmount Money
	Quantity   int64 // at least 1
}

// Request is what [Policy.Evaluate] decides on: one tool call, with its
// amounts already parsed into exact [Money].
type Request struct {
	Tool                string
	Amount              Money  // the session amount (checkout: originalAmount)
	CustomerEmail       string // raw, as the agent sent it; "" if none
	CustomerID          string
	ReferenceCustomerID string
	LineItems           []LineItem // checkout only
	// PriceID and ProductID name prices configured in the Clink dashboard
	// (checkout only), whose amounts the policy cannot see.
	PriceID, ProductID string
	// Principal names the principal (the authenticated agent) making the
	// call; per-principal budgets and rate limits count by it (see
	// [Policy.Limits]). Evaluate does not read it. The gate sets it from
	// the caller it is given; transports leave it alone.
	Principal string
}

// Decision is the outcome of [Policy.Evaluate] or [Policy.LimitDecision].
// The zero Decision is a denial, so code that forgets to fill one in fails
// closed. It holds no pointers to fill on the allowed path, so returning one
// allocates nothing.
type Decision struct {
	Allowed bool
	Code    Code
	// Message tells the model what was refused and which limit refused it;
	// "" when allowed. It never lists the operator's email allow or deny
	// lists.
	Message string
	// Limit is the cap or minimum a denial with CodeAmountOverCap or
	// CodeAmountUnderMin hit, or the whole budget for CodeBudgetExceeded;
	// the zero Money otherwise.
	Limit Money
	// Remaining is what is left of the budget that refused the call, for
	// CodeBudgetExceeded; the zero Money otherwise.
	Remaining Money
	// RetryAt is when enough of a rolling window will have passed for the
	// call to fit, for CodeBudgetExceeded and CodeRateLimited (UTC, rounded
	// up to the second); the zero time when there is none (a budget the
	// amount can never fit, and every other code).
	RetryAt time.Time
}

var allowed = Decision{Allowed: true, Code: CodeAllowed}

func deny(code Code, format string, args ...any) Decision {
	return Decision{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Evaluate decides whether the policy allows req. The checks run in a fixed
// order (tool, request shape, currency, amounts, line items, customer) and
// the first failure is returned. It is pure: no I/O, no shared mutable
// state, and on the allowed path no allocation beyond normalising an email
// that is not already in normal form.
//
// For a checkout session the per-session cap applies to the larger of the
// total and the sum of its line items in the total's currency; line items in
// another currency must be in a currency the tool allows, and their sum must
// be within that currency's cap. Sums saturate rather than overflow.
//
// Customers: an agent payment session always needs an email. A checkout
// session with an email has it checked; without one, it is allowed only when
// the policy sets allow_without_email and a customer ID or reference
// customer ID is given. The deny list wins over the allow list; with no
// allow list any valid address that is not denied passes.
func (p *Policy) Evaluate(req *Request) Decision {
	if p == nil {
		return deny(CodeNoPolicy, "no policy is loaded, so nothing is allowed")
	}
	if req == nil {
		return deny(CodeInvalidRequest, "empty request")
	}
	t, ok := p.tools[req.Tool]
	if !ok {
		return deny(CodeUnknownTool, "tool %s is not governed by this server's policy, so it is refused", quoteInput(req.Tool))
	}
	if !t.enabled {
		return deny(CodeToolDisabled, "%s is disabled by this server's policy", t.name)
	}

	amt := req.Amount
	if amt.cur.code == "" || amt.minor <= 0 {
		return deny(CodeInvalidRequest, "the amount must be greater than zero, with a currency")
	}
	lim, ok := t.currencies.byCode[amt.cur.code]
	if !ok {
		return deny(CodeCurrencyNotAllowed, "currency %s is not allowed for %s; allowed: %s", amt.cur.code, t.name, t.currencies.list())
	}
	if !lim.min.IsZero() && amt.minor < lim.min.minor {
		d := deny(CodeAmountUnderMin, "amount %s is below the per-session minimum of %s for %s", amt, lim.min, t.name)
		d.Limit = lim.min
		return d
	}
	if amt.minor > lim.max.minor {
		return overCap("amount "+amt.String(), lim.max, t.name)
	}

	// A dashboard price's amount is set in Clink and unknown here, and
	// Clink does not document whether it or the amount sent is charged: it
	// is refused unless the operator allows it.
	if (req.PriceID != "" || req.ProductID != "") && !t.allowDashboardPrices {
		return deny(CodeDashboardPriceNotAllowed, "priceId and productId name prices set in the Clink dashboard, which this server cannot check against its limits, and its policy does not allow them for %s; describe the purchase with amount and priceDataList instead", t.name)
	}

	if len(req.LineItems) > 0 {
		if req.Tool != ToolCheckoutSession {
			return deny(CodeInvalidRequest, "%s takes no line items", t.name)
		}
		if d := t.checkLineItems(req.LineItems); !d.Allowed {
			return d
		}
	}

	return p.checkCustomer(t.name, req)
}

func overCap(what string, limit Money, tool string) Decision {
	d := deny(CodeAmountOverCap, "%s exceeds the per-session cap of %s for %s", what, limit, tool)
	d.Limit = limit
	return d
}

// lineSum is the running total of a request's line items in one currency.
type lineSum struct {
	cur Currency
	sum int64 // saturates at MaxMinor+1
}

// total is UnitAmount x Quantity in minor units, saturating at
// MaxMinor+1, for a line item with a positive unit amount and quantity.
func (li LineItem) total() int64 { return mulCapped(li.UnitAmount.minor, li.Quantity) }

// lineTotal is the sum of the line items in currency cur, saturating at
// MaxMinor+1. Items Evaluate would refuse (no unit amount, quantity below 1)
// add nothing: they cannot make a sum smaller, only go unchecked here.
func lineTotal(items []LineItem, cur Currency) int64 {
	var sum int64
	for _, li := range items {
		if li.UnitAmount.cur != cur || li.UnitAmount.minor <= 0 || li.Quantity < 1 {
			continue
		}
		sum = addCapped(sum, li.total())
	}
	return sum
}

func (t *toolRules) checkLineItems(items []LineItem) Decision {
	var buf [4]lineSum // most checkouts use one currency; more spill to the heap
	sums := buf[:0]
	for i, li := range items {
		n := i + 1
		if li.Quantity < 1 {
			return deny(CodeInvalidRequest, "line item %d: quantity must be at least 1", n)
		}
		u := li.UnitAmount
		if u.cur.code == "" || u.minor <= 0 {
			return deny(CodeInvalidRequest, "line item %d: the unit amount must be greater than zero, with a currency", n)
		}
		if _, ok := t.currencies.byCode[u.cur.code]; !ok {
			return deny(CodeLineItemCurrencyNotAllowed, "line item %d is in %s, which is not allowed for %s; allowed: %s", n, u.cur.code, t.name, t.currencies.list())
		}
		line := li.total()
		j := 0
		for j < len(sums) && sums[j].cur != u.cur {
			j++
		}
		if j == len(sums) {
			sums = append(sums, lineSum{cur: u.cur})
		}
		sums[j].sum = addCapped(sums[j].sum, line)
	}
	// The total itself passed its cap; a line sum in the total's currency
	// may still exceed it, and sums in other currencies have their own caps.
	for _, s := range sums {
		lim := t.currencies.byCode[s.cur.code]
		if s.sum > lim.max.minor {
			what := "line items in " + s.cur.code + " add up to " + Money{minor: s.sum, cur: s.cur}.String() + ", which"
			if s.sum > MaxMinor {
				what = "line items in " + s.cur.code + " add up to more than " + Money{minor: MaxMinor, cur: s.cur}.String() + ", which"
			}
			return overCap(what, lim.max, t.name)
		}
	}
	return allowed
}

// CustomerIDUse is how a checkout may identify its customer under a policy.
type CustomerIDUse int

// The uses of a checkout's customer identifiers.
const (
	// CustomerIDWithoutEmail: any of customerEmail, customerId and
	// referenceCustomerId identifies the customer (allow_without_email).
	CustomerIDWithoutEmail CustomerIDUse = iota + 1
	// CustomerIDBesideEmail: customerEmail is required; customerId and
	// referenceCustomerId may be given beside it.
	CustomerIDBesideEmail
	// CustomerIDRefused: customerEmail is required and customerId is
	// refused (CodeCustomerIDNotAllowed), since the policy restricts
	// emails and Clink charges a customerId's customer whatever the email.
	CustomerIDRefused
)

// CheckoutCustomerIDUse says what a checkout may do with customer
// identifiers under p: the rule checkCustomer applies, for the tool's
// description.
func (p *Policy) CheckoutCustomerIDUse() CustomerIDUse {
	switch {
	case p.allowWithoutEmail:
		return CustomerIDWithoutEmail
	case !p.allowAnyEmail || len(p.deny.patterns) > 0:
		return CustomerIDRefused
	}
	return CustomerIDBesideEmail
}

func (p *Policy) checkCustomer(tool string, req *Request) Decision {
	if req.CustomerEmail == "" {
		if tool == ToolAgentPaymentSession {
			return deny(CodeEmailRequired, "%s requires customerEmail", tool)
		}
		if !p.allowWithoutEmail {
			return deny(CodeEmailRequired, "%s requires customerEmail on this server", tool)
		}
		if req.CustomerID == "" && req.ReferenceCustomerID == "" {
			return deny(CodeEmailRequired, "%s needs customerEmail, or customerId or referenceCustomerId", tool)
		}
		return allowed
	}
	addr, err := NormalizeEmail(req.CustomerEmail)
	if err != nil {
		return deny(CodeEmailInvalid, "customerEmail is not usable: %v", err)
	}
	if p.deny.matchMailbox(addr) {
		return deny(CodeEmailNotAllowed, "the customer email is blocked by this server's policy")
	}
	if !p.allowAnyEmail && !p.allow.match(addr) {
		return deny(CodeEmailNotAllowed, "the customer email is not on this server's allowlist")
	}
	// With a customerId, Clink charges that customer whatever the email
	// says, so where emails are restricted and calls may not go by
	// identifier alone, the email rules could be dodged with one.
	if req.CustomerID != "" && !p.allowWithoutEmail && (!p.allowAnyEmail || len(p.deny.patterns) > 0) {
		return deny(CodeCustomerIDNotAllowed, "customerId cannot be used on this server: Clink charges the customerId's customer whatever the email, and this server checks customers by email; send customerEmail without customerId")
	}
	return allowed
}

// list returns the allowed codes for messages: "EUR, JPY, USD".
func (r *currencyRules) list() string {
	s := ""
	for i, c := range r.codes {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	if s == "" {
		return "none"
	}
	return s
}
