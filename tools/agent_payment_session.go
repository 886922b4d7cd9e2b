package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/policy"
)

// agentPaymentSessionArgs are the arguments of create_agent_payment_session.
// The json tags are the argument names; the schema below must list the same.
type agentPaymentSessionArgs struct {
	CustomerEmail  string      `json:"customerEmail" validate:"required,max=254,email"`
	Amount         json.Number `json:"amount" validate:"required"`
	Currency       string      `json:"currency" validate:"required,iso4217"`
	IdempotencyKey string      `json:"idempotencyKey" validate:"omitempty,min=8,max=128,printascii"`
}

var agentPaymentSessionShape = shapeOf(reflect.TypeFor[agentPaymentSessionArgs]())

// agentPaymentSessionResult is the structured content of a success.
type agentPaymentSessionResult struct {
	SessionID     string      `json:"sessionId"`
	ExpireTime    string      `json:"expireTime,omitempty"` // absent when Clink's answer had none that read
	Amount        json.Number `json:"amount"`
	Currency      string      `json:"currency"`
	CustomerEmail string      `json:"customerEmail"`
	Replayed      bool        `json:"replayed,omitempty"`
}

const agentPaymentSessionInputSchema = `{
  "type": "object",
  "properties": {
    "customerEmail": {
      "type": "string",
      "format": "email",
      "maxLength": 254,
      "description": "Email address of the customer who will pay, exactly one address without a display name. Example: \"alice@example.com\"."
    },
    "amount": {
      "type": "number",
      "minimum": 0.5,
      "description": "Amount to charge, in major units of the currency (dollars, not cents), as a JSON number with no more decimals than the currency has (USD 2, JPY 0, KWD 3). At least 0.5. Example: 19.99."
    },
    "currency": {
      "type": "string",
      "pattern": "^[A-Z]{3}$",
      "description": "ISO 4217 currency code in capitals. Example: \"USD\"."
    },
    "idempotencyKey": ` + idempotencyKeySchema + `
  },
  "required": ["customerEmail", "amount", "currency"],
  "additionalProperties": false
}`

const agentPaymentSessionOutputSchema = `{
  "type": "object",
  "properties": {
    "sessionId": {"type": "string", "description": "Clink's ID of the agent payment session; hand it to the customer's payment agent."},
    "expireTime": {"type": "string", "format": "date-time", "description": "When the session expires (RFC 3339, UTC). Absent only when Clink's answer gave none that could be read."},
    "amount": {"type": "number", "description": "Amount of the session, in major units of the currency."},
    "currency": {"type": "string", "description": "ISO 4217 currency code of the session."},
    "customerEmail": {"type": "string", "description": "The customer's email as sent to Clink (normalised: lower-cased)."},
    "replayed": ` + replayedSchema + `
  },
  "required": ["sessionId", "amount", "currency", "customerEmail"],
  "additionalProperties": false
}`

// agentPaymentSession is create_agent_payment_session: Clink's
// POST /order/payment-session.
func (ts *toolset) agentPaymentSession() Tool {
	tool := mcp.Tool{
		Name:  policy.ToolAgentPaymentSession,
		Title: "Create agent payment session",
		Description: "Create a Clink agent payment session: a payment request bound to a customer's email, an amount and a currency, " +
			"which the customer's payment agent then pays. Returns the sessionId to hand to that agent and when it expires. " +
			ts.repeatSentence() +
			"Limits set by this server's operator: " + ts.policy.Summary(policy.ToolAgentPaymentSession),
		RawInputSchema:  json.RawMessage(agentPaymentSessionInputSchema),
		RawOutputSchema: json.RawMessage(agentPaymentSessionOutputSchema),
		Annotations:     annotations("Create agent payment session"),
	}
	return Tool{Tool: tool, Handler: ts.handleAgentPaymentSession}
}

func (ts *toolset) handleAgentPaymentSession(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return ts.create(ctx, req, ts.prepareAgentPaymentSession(rawArguments(req))), nil
}

// prepareAgentPaymentSession decodes and validates the arguments of
// create_agent_payment_session into its order.
func (ts *toolset) prepareAgentPaymentSession(raw []byte) *prepared {
	p := &prepared{tool: policy.ToolAgentPaymentSession}

	// 1. Strict decoding.
	var args agentPaymentSessionArgs
	if err := decodeStrict(raw, agentPaymentSessionShape, &args); err != nil {
		p.problems = err.(decodeProblems)
		return p
	}
	args.CustomerEmail = strings.TrimSpace(args.CustomerEmail)

	// 2. Validation.
	problems := validate(ts.validate, &args)
	var amount policy.Money
	var email string
	if len(problems) == 0 {
		var err error
		if amount, err = parseAmount("amount", args.Amount, "currency", args.Currency); err != nil {
			problems = append(problems, err.Error())
		} else if !atLeastHalf(amount) {
			problems = append(problems, fmt.Sprintf(`argument "amount" must be at least 0.5 (got %s)`, amount))
		}
		if email, err = policy.NormalizeEmail(args.CustomerEmail); err != nil {
			problems = append(problems, fmt.Sprintf(`argument "customerEmail": %v`, err))
		}
	}
	if len(problems) > 0 {
		p.email, p.problems = args.CustomerEmail, problems
		return p
	}

	// 3. The order, with exactly the money the policy will see.
	p.email = email
	wire, err := clink.ParseAmount(amount.Amount())
	if err != nil {
		p.err = err
		return p
	}
	request := &clink.AgentPaymentSessionRequest{
		CustomerEmail: email,
		Amount:        wire,
		Currency:      amount.Currency().Code(),
	}
	fingerprint, err := json.Marshal(request)
	if err != nil {
		p.err = err
		return p
	}
	p.order = &gate.Order{
		Request: policy.Request{
			Tool:          p.tool,
			Amount:        amount,
			CustomerEmail: email,
		},
		IdempotencyKey: args.IdempotencyKey,
		Fingerprint:    fingerprint,
		Commit: func(ctx context.Context) (*gate.Created, error) {
			sess, err := ts.payments.CreateAgentPaymentSession(ctx, request)
			if err != nil {
				return nil, err
			}
			out := agentPaymentSessionResult{
				SessionID:     sess.SessionID,
				ExpireTime:    formatTime(sess.ExpireTime.Time),
				Amount:        json.Number(amount.Amount()),
				Currency:      amount.Currency().Code(),
				CustomerEmail: email,
			}
			summary := fmt.Sprintf("Created agent payment session %s for %s, paid by %s", out.SessionID, amount, email)
			if out.ExpireTime != "" {
				summary += "; expires " + out.ExpireTime
			}
			summary += "."
			return created(out.SessionID, out, summary+unreadNote(false, out.ExpireTime == "", ToolGetAgentPaymentSession), sess.Unread)
		},
	}
	return p
}

// parseAmount turns an amount argument into exact money in currency, given
// by the argument currencyArg, naming in the error the argument at fault:
// the currency's when the currency cannot be paid in (not legal tender),
// else the amount's.
func parseAmount(arg string, amount json.Number, currencyArg, currency string) (policy.Money, error) {
	m, err := policy.ParseMoney(string(amount), currency)
	switch {
	case errors.Is(err, policy.ErrNotTender) || errors.Is(err, policy.ErrUnknownCurrency):
		return policy.Money{}, fmt.Errorf("argument %q: %v", currencyArg, err)
	case err != nil:
		return policy.Money{}, fmt.Errorf("argument %q: %v", arg, err)
	}
	return m, nil
}

// atLeastHalf reports whether m is at least 0.5 of its currency's major unit,
// Clink's minimum for an agent payment session.
func atLeastHalf(m policy.Money) bool {
	unit := int64(1)
	for range m.Currency().Digits() {
		unit *= 10
	}
	return m.Minor() >= unit-unit/2 // ceil(unit/2): 1 for a currency without decimals
}
