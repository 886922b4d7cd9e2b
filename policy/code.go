package policy

// Code is a stable, machine-readable reason for a [Decision].
type Code string

// The codes. They are stable: clients, logs and audit records may match on
// them. They are the one vocabulary of a call's outcome: the policy's
// decisions, and what the core (gate) decides around them, used alike by
// the audit trail, the log line and the result the agent reads.
const (
	CodeAllowed                    Code = "allowed"                        // the call may go ahead
	CodeCurrencyNotAllowed         Code = "currency_not_allowed"           // the session's currency is not on the tool's allowlist
	CodeLineItemCurrencyNotAllowed Code = "line_item_currency_not_allowed" // a line item's currency is not on the tool's allowlist
	CodeAmountOverCap              Code = "amount_over_cap"                // the amount, or a line-item sum, is above the per-session cap
	CodeAmountUnderMin             Code = "amount_under_min"               // the amount is below the per-session minimum
	CodeEmailNotAllowed            Code = "email_not_allowed"              // the email is denied, or not on the allowlist
	CodeEmailRequired              Code = "email_required"                 // no email, and the call may not go without one
	CodeEmailInvalid               Code = "email_invalid"                  // the email is not a single bare address
	CodeCustomerIDNotAllowed       Code = "customer_id_not_allowed"        // a customerId beside an email the email rules alone cannot vouch for
	CodeDashboardPriceNotAllowed   Code = "dashboard_price_not_allowed"    // a priceId or productId, which the tool's rules do not allow
	CodeToolDisabled               Code = "tool_disabled"                  // the policy turns the tool off
	CodeUnknownTool                Code = "unknown_tool"                   // the policy does not govern the tool, so refuses it
	CodeInvalidRequest             Code = "invalid_request"                // the request is malformed (no amount, quantity below 1, ...)
	CodeNoPolicy                   Code = "no_policy"                      // Evaluate was called on a nil *Policy

	// CodeBudgetExceeded: the call's amount does not fit what is left of a
	// rolling-window budget (see [Policy.LimitDecision]). The message says
	// how much is left and when enough frees up.
	CodeBudgetExceeded Code = "budget_exceeded"
	// CodeRateLimited: a rolling-window rate limit has no call left (see
	// [Policy.LimitDecision]). The message says when to retry.
	CodeRateLimited Code = "rate_limited"
	// CodeDuplicateConflict: an idempotency key was used again with
	// different arguments. The duplicate guard returns it; a new key is a
	// deliberate new session.
	CodeDuplicateConflict Code = "idempotency_key_reused"

	// CodeApprovalRequired: the call is above an approval threshold and
	// waits for a person's decision; nothing was created yet. The result
	// names the pending approval, what it is for and when it expires.
	CodeApprovalRequired Code = "approval_required"
	// CodeApprovalDeclined: the client's user declined the payment when
	// asked (MCP elicitation); nothing was created.
	CodeApprovalDeclined Code = "approval_declined"
	// CodeApprovalDenied: an operator denied the pending approval; nothing
	// was created.
	CodeApprovalDenied Code = "approval_denied"
	// CodeApprovalExpired: nobody decided the approval before it expired;
	// nothing was created.
	CodeApprovalExpired Code = "approval_expired"
	// CodeApprovalInvalid: the approval answer the client sent back (its
	// requestState) was tampered with, used already, made for another call
	// or principal, or expired; nothing was created.
	CodeApprovalInvalid Code = "approval_invalid"
	// Outcomes around the policy's decision.
	CodeInvalidArguments  Code = "invalid_arguments"   // the arguments failed decoding or validation; nothing was decided
	CodeCreated           Code = "created"             // Clink created the session
	CodeReplayed          Code = "replayed"            // an identical earlier call's result was returned; nothing was sent
	CodeDuplicateInFlight Code = "duplicate_in_flight" // an identical call was still in flight after the wait
	CodeUpstreamRefused   Code = "upstream_refused"    // Clink refused the request; nothing was created
	CodeUpstreamAuth      Code = "upstream_auth"       // Clink refused the API key; nothing was created
	CodeOutcomeUnknown    Code = "outcome_unknown"     // the request may have reached Clink; whether a session exists is unknown
	CodeCancelled         Code = "cancelled"           // the caller cancelled the call before it was sent to Clink
	CodeShuttingDown      Code = "shutting_down"       // the server is stopping and takes no new call
	CodeInternal          Code = "internal_error"      // the server failed; details are in the operator's log
)

// Settlement returns what becomes of the reservation of a call that
// reached the commit step and ended with c: [Spent] when Clink created
// the session, [Unknown] when it may have, and [Released] for everything
// else, which Clink definitely did not act on.
func (c Code) Settlement() Settlement {
	switch c {
	case CodeCreated:
		return Spent
	case CodeOutcomeUnknown:
		return Unknown
	}
	return Released
}
