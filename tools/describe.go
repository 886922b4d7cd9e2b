package tools

import "github.com/clink-mcp/clink-mcp/policy"

// repeatSentence is what a create tool's description says of repeated
// calls when the duplicate guard is off. When it is on, the policy's
// summary, part of the description, says that an identical call returns
// the first call's result.
func (ts *toolset) repeatSentence() string {
	if ts.policy.DuplicatesWindow() > 0 {
		return ""
	}
	return "Without an idempotencyKey, each call creates a new session. "
}

// customerIDUse is what the policy in force does with a checkout's
// customer identifiers.
type customerIDUse int

const (
	customerIDUnknown      customerIDUse = iota // the policy could not be asked
	customerIDWithoutEmail                      // any of customerEmail, customerId, referenceCustomerId
	customerIDBesideEmail                       // customerEmail required; customerId allowed beside it
	customerIDRefused                           // customerEmail required; customerId refused
)

// customerSentence says, for the checkout's description, how a checkout
// identifies its customer under the policy in force.
func (ts *toolset) customerSentence() string {
	switch checkoutCustomerIDUse(ts.policy) {
	case customerIDWithoutEmail:
		return "Identify the customer by customerEmail, customerId or referenceCustomerId (at least one). "
	case customerIDBesideEmail:
		return "customerEmail is required; customerId and referenceCustomerId may be given beside it. "
	case customerIDRefused:
		return "customerEmail is required and customerId is refused, since this server restricts customer emails; referenceCustomerId may be given beside the email. "
	}
	return "Identify the customer by customerEmail (see the limits below for customerId and referenceCustomerId). "
}

// checkoutCustomerIDUse learns what the policy does with a checkout's
// customerId by asking it to decide probe checkouts, which find the rule
// without reading the policy's insides: a customerId is refused beside an
// email exactly when the policy restricts emails (an allow or a deny list)
// and does not take a checkout without an email.
//
// It first finds an amount the policy takes: the smallest unit, or the
// minimum it answers with, in the first currency it allows. Then a
// checkout with customerId and no email is allowed exactly when the policy
// takes checkouts without an email; and one with customerId beside an
// email is refused as customer_id_not_allowed when the email passes but
// customerId does not, or as email_not_allowed when the email is
// restricted. A policy that answers otherwise, or panics, leaves the use
// unknown.
func checkoutCustomerIDUse(p Policy) (use customerIDUse) {
	defer func() {
		if recover() != nil {
			use = customerIDUnknown
		}
	}()
	amount, ok := takenAmount(p)
	if !ok {
		return customerIDUnknown
	}
	probe := func(email string) policy.Decision {
		return p.Evaluate(&policy.Request{Tool: policy.ToolCheckoutSession, Amount: amount,
			CustomerEmail: email, CustomerID: "cus_description_probe"})
	}
	alone, beside := probe(""), probe("customer@example.com")
	switch {
	case alone.Allowed:
		return customerIDWithoutEmail
	case alone.Code != policy.CodeEmailRequired:
		return customerIDUnknown
	case beside.Allowed:
		return customerIDBesideEmail
	case beside.Code == policy.CodeCustomerIDNotAllowed || beside.Code == policy.CodeEmailNotAllowed:
		return customerIDRefused
	}
	return customerIDUnknown
}

// takenAmount returns an amount the policy takes for a checkout, as far as
// currency and per-session limits go.
func takenAmount(p Policy) (policy.Money, bool) {
	for _, code := range policy.TenderCodes() {
		cur, err := policy.ParseCurrency(code)
		if err != nil {
			continue
		}
		m := policy.NewMoney(1, cur)
		d := p.Evaluate(&policy.Request{Tool: policy.ToolCheckoutSession, Amount: m})
		switch d.Code {
		case policy.CodeCurrencyNotAllowed:
			continue
		case policy.CodeAmountUnderMin:
			m = d.Limit
		case policy.CodeToolDisabled, policy.CodeUnknownTool, policy.CodeNoPolicy:
			return policy.Money{}, false
		}
		return m, true
	}
	return policy.Money{}, false
}
