package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/policy"
)

// The status tools' names.
const (
	ToolGetCheckoutSession     = "get_checkout_session"
	ToolGetAgentPaymentSession = "get_agent_payment_session"
)

// getSessionArgs are the arguments of both status tools.
type getSessionArgs struct {
	SessionID string `json:"sessionId" validate:"required,max=128"`
}

var getSessionShape = shapeOf(reflect.TypeFor[getSessionArgs]())

const getSessionInputSchema = `{
  "type": "object",
  "properties": {
    "sessionId": {
      "type": "string",
      "minLength": 1,
      "maxLength": 128,
      "pattern": "^[A-Za-z0-9_-]+$",
      "description": "The session's ID, as a create tool of this server returned it. Example: \"sess_4f2a9c\"."
    }
  },
  "required": ["sessionId"],
  "additionalProperties": false
}`

// checkoutStatusResult is get_checkout_session's structured content.
type checkoutStatusResult struct {
	SessionID     string      `json:"sessionId"`
	Status        string      `json:"status"`
	PaymentStatus string      `json:"paymentStatus"`
	Amount        json.Number `json:"amount,omitempty"`
	Currency      string      `json:"currency,omitempty"`
	URL           string      `json:"url,omitempty"`
	OrderID       string      `json:"orderId,omitempty"`
	ExpireTime    string      `json:"expireTime,omitempty"`
}

const checkoutStatusOutputSchema = `{
  "type": "object",
  "properties": {
    "sessionId": {"type": "string", "description": "Clink's ID of the checkout session."},
    "status": {"type": "string", "description": "The session's status as Clink reports it: open, completed or expired."},
    "paymentStatus": {"type": "string", "description": "The payment's status as Clink reports it: unpaid, processing or paid."},
    "amount": {"type": "number", "description": "The session's amount, in major units of the currency."},
    "currency": {"type": "string", "description": "ISO 4217 currency code of the session."},
    "url": {"type": "string", "description": "The hosted checkout page."},
    "orderId": {"type": "string", "description": "Clink's order ID, once the customer has paid."},
    "expireTime": {"type": "string", "format": "date-time", "description": "When the session expires (RFC 3339, UTC)."}
  },
  "required": ["sessionId", "status", "paymentStatus"],
  "additionalProperties": false
}`

// agentPaymentStatusResult is get_agent_payment_session's structured content.
type agentPaymentStatusResult struct {
	SessionID     string      `json:"sessionId"`
	Status        string      `json:"status"`
	PaymentStatus string      `json:"paymentStatus"`
	Amount        json.Number `json:"amount,omitempty"`
	Currency      string      `json:"currency,omitempty"`
	CustomerEmail string      `json:"customerEmail,omitempty"`
	CreateTime    string      `json:"createTime,omitempty"`
	ExpireTime    string      `json:"expireTime,omitempty"`
}

const agentPaymentStatusOutputSchema = `{
  "type": "object",
  "properties": {
    "sessionId": {"type": "string", "description": "Clink's ID of the agent payment session."},
    "status": {"type": "string", "enum": ["open", "expired"], "description": "open until expireTime, expired after it. Clink reports no status for agent payment sessions: this is read from expireTime."},
    "paymentStatus": {"type": "string", "enum": ["unknown"], "description": "Clink does not report whether an agent payment session was paid: always unknown."},
    "amount": {"type": "number", "description": "The session's amount, in major units of the currency; absent when Clink does not report it."},
    "currency": {"type": "string", "description": "ISO 4217 currency code of the session; absent when Clink does not report it."},
    "customerEmail": {"type": "string", "description": "The paying customer's email."},
    "createTime": {"type": "string", "format": "date-time", "description": "When the session was created (RFC 3339, UTC)."},
    "expireTime": {"type": "string", "format": "date-time", "description": "When the session expires (RFC 3339, UTC)."}
  },
  "required": ["sessionId", "status", "paymentStatus"],
  "additionalProperties": false
}`

// getCheckoutSession is get_checkout_session: Clink's GET /checkout/session/{id}.
func (ts *toolset) getCheckoutSession() Tool {
	return Tool{Tool: mcp.Tool{
		Name:  ToolGetCheckoutSession,
		Title: "Get checkout session status",
		Description: "Look up a checkout session this server created: whether it is open, completed or expired, and whether it is paid. " +
			"Read-only. Sessions created elsewhere are refused.",
		RawInputSchema:  json.RawMessage(getSessionInputSchema),
		RawOutputSchema: json.RawMessage(checkoutStatusOutputSchema),
		Annotations:     readOnlyClink("Get checkout session status"),
	}, Handler: ts.handleGetSession(ToolGetCheckoutSession, func(ctx context.Context, id string) (any, string, error) {
		s, err := ts.payments.GetCheckoutSession(ctx, id)
		if err != nil {
			return nil, "", err
		}
		out := checkoutStatusResult{
			SessionID: s.SessionID, Status: s.Status, PaymentStatus: s.PaymentStatus,
			URL: s.URL, OrderID: s.OrderID, ExpireTime: formatTime(s.ExpireTime.Time),
		}
		if s.OriginalCurrency != "" && !s.OriginalAmount.IsZero() {
			out.Amount, out.Currency = json.Number(s.OriginalAmount.String()), s.OriginalCurrency
		}
		return out, fmt.Sprintf("Checkout session %s: status %s, payment %s.", out.SessionID, out.Status, out.PaymentStatus), nil
	})}
}

// getAgentPaymentSession is get_agent_payment_session: Clink's
// GET /order/payment-session/{id}.
func (ts *toolset) getAgentPaymentSession() Tool {
	return Tool{Tool: mcp.Tool{
		Name:  ToolGetAgentPaymentSession,
		Title: "Get agent payment session status",
		Description: "Look up an agent payment session this server created: its amount, customer and expiry, and whether it is still open. " +
			"Clink does not report whether it was paid. Read-only. Sessions created elsewhere are refused.",
		RawInputSchema:  json.RawMessage(getSessionInputSchema),
		RawOutputSchema: json.RawMessage(agentPaymentStatusOutputSchema),
		Annotations:     readOnlyClink("Get agent payment session status"),
	}, Handler: ts.handleGetSession(ToolGetAgentPaymentSession, func(ctx context.Context, id string) (any, string, error) {
		s, err := ts.payments.GetAgentPaymentSession(ctx, id)
		if err != nil {
			return nil, "", err
		}
		status := "open"
		if !s.ExpireTime.IsZero() && !time.Now().Before(s.ExpireTime.Time) {
			status = "expired"
		}
		out := agentPaymentStatusResult{
			SessionID: s.SessionID, Status: status, PaymentStatus: "unknown",
			Currency: s.Currency, CustomerEmail: s.CustomerEmail,
			CreateTime: formatTime(s.CreateTime.Time), ExpireTime: formatTime(s.ExpireTime.Time),
		}
		// An amount Clink did not send is left out, never shown as 0.
		what := "amount not reported"
		if !s.Amount.IsZero() {
			out.Amount = json.Number(s.Amount.String())
			what = strings.TrimSpace(s.Amount.String() + " " + s.Currency)
		}
		return out, fmt.Sprintf("Agent payment session %s: %s for %s, %s (expires %s); Clink does not report payment for these sessions.",
			out.SessionID, what, out.CustomerEmail, out.Status, out.ExpireTime), nil
	})}
}

// statusToolOf is the status tool that follows the sessions of each create
// tool.
var statusToolOf = map[string]string{
	policy.ToolCheckoutSession:     ToolGetCheckoutSession,
	policy.ToolAgentPaymentSession: ToolGetAgentPaymentSession,
}

// handleGetSession is a status tool's handler: decode, refuse a session
// this server did not create, or created with the other create tool,
// without calling Clink, then look it up.
func (ts *toolset) handleGetSession(tool string, get func(ctx context.Context, id string) (any, string, error)) func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args getSessionArgs
		if err := decodeStrict(rawArguments(req), getSessionShape, &args); err != nil {
			return errorText("invalid arguments: " + joinProblems(err.(decodeProblems)) + ". Nothing was looked up."), nil
		}
		if problems := validate(ts.validate, &args); len(problems) > 0 {
			return errorText("invalid arguments: " + joinProblems(problems) + ". Nothing was looked up."), nil
		}
		if !clink.ValidSessionID(args.SessionID) {
			return errorText(`invalid arguments: argument "sessionId" may hold only letters, digits, "_" and "-". Nothing was looked up.`), nil
		}
		caller := ts.caller(ctx)
		createdBy, err := ts.gate.SessionTool(ctx, caller, args.SessionID)
		switch {
		case err != nil:
			ts.log.ErrorContext(ctx, "status lookup: the store failed", "tool", tool, "caller", caller, "err", err)
			return errorText("internal error: the server could not check that it created this session; the operator's log has the details."), nil
		case createdBy == "":
			ts.log.WarnContext(ctx, "status lookup refused: not a session this server created for this caller", "tool", tool, "caller", caller, "session_id", args.SessionID)
			return errorText(fmt.Sprintf("refused (session_not_found): %s is not a session this server created for you, so it is not looked up. Use the sessionId a create tool of this server returned to you.", args.SessionID)), nil
		case statusToolOf[createdBy] != tool:
			// Clink keeps each kind of session apart: the other kind's
			// endpoint would answer that this one does not exist.
			follow := statusToolOf[createdBy]
			if follow == "" {
				follow = "the status tool of " + createdBy
			}
			return errorText(fmt.Sprintf("refused (wrong_tool): %s was created by %s; look it up with %s. Nothing was looked up.", args.SessionID, createdBy, follow)), nil
		}
		out, summary, err := get(ctx, args.SessionID)
		if err != nil {
			ts.log.WarnContext(ctx, "status lookup failed", "tool", tool, "caller", caller, "session_id", args.SessionID, "err", err)
			var cerr *clink.Error
			if errors.As(err, &cerr) {
				return errorText(fmt.Sprintf("Clink refused the lookup: %s", cerr.Explanation())), nil
			}
			return errorText("the session could not be looked up: Clink did not answer; try again in a moment."), nil
		}
		ts.log.InfoContext(ctx, "status lookup", "tool", tool, "caller", caller, "session_id", args.SessionID)
		return mcp.NewToolResultStructured(out, summary), nil
	}
}

// joinProblems joins argument problems for a message.
func joinProblems(problems []string) string {
	s := ""
	for i, p := range problems {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	return s
}

// readOnlyClink is the annotations of a tool that only reads from Clink.
func readOnlyClink(title string) mcp.ToolAnnotation {
	a := readOnly(title)
	a.OpenWorldHint = mcp.ToBoolPtr(true)
	return a
}
