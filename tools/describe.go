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

// customerSentence says, for the checkout's description, how a checkout
// identifies its customer under the policy in force.
func (ts *toolset) customerSentence() string {
	switch ts.policy.CheckoutCustomerIDUse() {
	case policy.CustomerIDWithoutEmail:
		return "Identify the customer by customerEmail, customerId or referenceCustomerId (at least one). "
	case policy.CustomerIDBesideEmail:
		return "customerEmail is required; customerId and referenceCustomerId may be given beside it. "
	case policy.CustomerIDRefused:
		return "customerEmail is required and customerId is refused, since this server restricts customer emails; referenceCustomerId may be given beside the email. "
	}
	return "Identify the customer by customerEmail (see the limits below for customerId and referenceCustomerId). "
}
