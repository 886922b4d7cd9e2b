package clink

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
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
	// Unread names the fields of Clink's answer that could not be read,
	// left zero: the session was created all the same.
	Unread []string `json:"-"`
}

func (s *AgentPaymentSession) setUnread(f []string) { s.Unread = f }

func (s *AgentPaymentSession) validate() error {
	return checkAnsweredID(s.SessionID)
}

// AgentPaymentSessionInfo is an agent payment session as GET /order/payment-session/{id}
// returns it. Fields Clink does not send stay zero; fields not listed here are ignored.
// CustomerID, MerchantID and TenantID are read from a JSON string or, should Clink's backend
// send one as a number, from its digits.
type AgentPaymentSessionInfo struct {
	SessionID     string `json:"sessionId"`
	CustomerEmail string `json:"customerEmail"`
	CustomerID    string `json:"customerId"`
	Amount        Amount `json:"amount"` // exact digits, as Clink sent them
	Currency      string `json:"currency"`
	MerchantID    string `json:"merchantId"`
	TenantID      string `json:"tenantId"`
	CreateTime    Time   `json:"createTime"`
	ExpireTime    Time   `json:"expireTime"`
}

// agentPaymentSessionInfo is AgentPaymentSessionInfo without its methods, for decoding.
type agentPaymentSessionInfo AgentPaymentSessionInfo

// agentPaymentSessionWire is what GET /order/payment-session/{id} answers: the identifiers
// that may arrive as numbers shadow the string fields of the embedded struct.
type agentPaymentSessionWire struct {
	*agentPaymentSessionInfo
	CustomerID idText `json:"customerId"`
	MerchantID idText `json:"merchantId"`
	TenantID   idText `json:"tenantId"`
}

// UnmarshalJSON decodes the session from Clink's data object.
func (d *AgentPaymentSessionInfo) UnmarshalJSON(b []byte) error {
	w := agentPaymentSessionWire{(*agentPaymentSessionInfo)(d), idText(d.CustomerID), idText(d.MerchantID), idText(d.TenantID)}
	if err := decodeObject(b, &w, "agentPaymentSessionInfo"); err != nil {
		return err
	}
	d.CustomerID, d.MerchantID, d.TenantID = string(w.CustomerID), string(w.MerchantID), string(w.TenantID)
	return nil
}

func (d *AgentPaymentSessionInfo) validate() error {
	return checkAnsweredID(d.SessionID)
}

var (
	errNoSessionID  = errors.New("data has no sessionId")
	errBadSessionID = errors.New("data has a sessionId with control characters or invalid UTF-8")
)

// checkAnsweredID accepts a session ID in Clink's answer that can be
// recorded, shown and sent back as it is: not empty, valid UTF-8, without
// control characters (a NUL, which PostgreSQL's text refuses, a newline in
// a log line). Any other makes the answer malformed: for a create, an
// unknown outcome. It is looser than checkSessionID, the rule for IDs an
// agent sends, so that an ID Clink made with other printable characters
// still counts as created.
func checkAnsweredID(id string) error {
	if id == "" {
		return errNoSessionID
	}
	if !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return errBadSessionID
	}
	return nil
}

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

// GetAgentPaymentSession fetches an agent payment session by its ID
// (GET /order/payment-session/{id}). An ID that ValidSessionID refuses is refused with
// ErrInvalidRequest before anything is sent. A read creates nothing, so it is retried on
// network failures, 5xx, 429 and timestamp rejections, and its errors never match
// ErrOutcomeUnknown. An unknown ID is an *Error with Clink's code (Clink does not document
// which).
func (c *Client) GetAgentPaymentSession(ctx context.Context, id string) (*AgentPaymentSessionInfo, error) {
	path, err := sessionIDPath("order/payment-session/", id)
	if err != nil {
		return nil, err
	}
	op := operation{name: "get agent payment session", method: http.MethodGet, path: path}
	var out AgentPaymentSessionInfo
	if err := c.do(ctx, op, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
