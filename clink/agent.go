package clink

import (
	"context"
	"errors"
	"net/http"
)

// AgentPaymentSessionRequest asks Clink for an agent payment session: a session bound to an
// amount and currency that the customer's payment agent then pays.
type AgentPaymentSessionRequest struct {
	CustomerEmail string `json:"customerEmail"` // the paying customer's email
	Amount        Amount `json:"amount"`        // at least 0.5 (Clink's rule)
	Currency      string `json:"currency"`      // ISO 4217 code, e.g. "USD"
}

// AgentPaymentSession is a created agent payment session.
type AgentPaymentSession struct {
	SessionID  string `json:"sessionId"`
	ExpireTime Time   `json:"expireTime"`
}

func (s *AgentPaymentSession) validate() error {
	if s.SessionID == "" {
		return errNoSessionID
	}
	return nil
}

// AgentPaymentSessionDetails is an agent payment session as GET /order/payment-session/{id}
// returns it.
type AgentPaymentSessionDetails struct {
	SessionID     string `json:"sessionId"`
	CustomerEmail string `json:"customerEmail"`
	CustomerID    string `json:"customerId"`
	Amount        Amount `json:"amount"`
	Currency      string `json:"currency"`
	MerchantID    string `json:"merchantId"`
	TenantID      string `json:"tenantId"`
	CreateTime    Time   `json:"createTime"`
	ExpireTime    Time   `json:"expireTime"`
}

func (d *AgentPaymentSessionDetails) validate() error {
	if d.SessionID == "" {
		return errNoSessionID
	}
	return nil
}

var errNoSessionID = errors.New("data has no sessionId")

// CreateAgentPaymentSession creates an agent payment session (POST /order/payment-session).
// It is retried only when the request provably never reached Clink or Clink rejected its
// timestamp; an error matching ErrOutcomeUnknown means the session may exist.
func (c *Client) CreateAgentPaymentSession(ctx context.Context, req *AgentPaymentSessionRequest) (*AgentPaymentSession, error) {
	switch {
	case req == nil:
		return nil, invalidRequest("nil AgentPaymentSessionRequest")
	case req.Amount.IsZero():
		return nil, invalidRequest("amount is unset")
	}
	op := operation{name: "create agent payment session", method: http.MethodPost, path: "order/payment-session", create: true}
	var out AgentPaymentSession
	if err := c.do(ctx, op, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAgentPaymentSession fetches an agent payment session by ID
// (GET /order/payment-session/{id}).
func (c *Client) GetAgentPaymentSession(ctx context.Context, sessionID string) (*AgentPaymentSessionDetails, error) {
	path, err := idPath("order/payment-session/", sessionID)
	if err != nil {
		return nil, err
	}
	op := operation{name: "get agent payment session", method: http.MethodGet, path: path}
	var out AgentPaymentSessionDetails
	if err := c.do(ctx, op, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
