package clink

import (
	"context"
	"net/http"
)

// Checkout UI modes (CheckoutSessionRequest.UIMode).
const (
	UIModeHostedPage = "hostedPage" // redirect to Clink's hosted checkout page
	UIModeElements   = "elements"   // embedded checkout; needs ReturnURL
)

// PaymentMethodTypes are the payment methods Clink documents for PaymentMethodType and
// PaymentMethodTypeBlackList.
var PaymentMethodTypes = []string{"CARD", "CASHAPP", "WECHAT", "KAKAO", "PIX", "ALIPAY", "UPI", "PAYPAL", "GOOGLEPAY", "APPLEPAY", "QRIS", "GCASH"}

// DirectQRPaymentMethodTypes are the values Clink documents for
// DirectPaymentQrCodePaymentMethodType.
var DirectQRPaymentMethodTypes = []string{"CASHAPP", "QRIS"}

// Checkout session states (CheckoutSessionInfo.Status).
const (
	StatusOpen      = "open"
	StatusCompleted = "completed"
	StatusExpired   = "expired"
)

// Checkout payment states (CheckoutSessionInfo.PaymentStatus).
const (
	PaymentStatusUnpaid     = "unpaid"
	PaymentStatusProcessing = "processing"
	PaymentStatusPaid       = "paid"
)

// PriceData is a one-time line item of a checkout session, for purchases without products
// configured in the Clink dashboard.
type PriceData struct {
	Name       string `json:"name"`
	UnitAmount Amount `json:"unitAmount"`         // > 0
	Quantity   int64  `json:"quantity,omitempty"` // >= 1 when set
	Currency   string `json:"currency,omitempty"`
	ImageURL   string `json:"imageUrl,omitempty"`
}

// CheckoutSessionRequest asks Clink for a checkout session. At least one of CustomerID,
// CustomerEmail and ReferenceCustomerID is required (else CUSTOMER_NOT_FOUND); identifiers
// naming different customers fail with CUSTOMER_IDENTIFIER_NOT_MATCHED.
type CheckoutSessionRequest struct {
	OriginalAmount                       Amount            `json:"originalAmount"`   // > 0
	OriginalCurrency                     string            `json:"originalCurrency"` // ISO 4217
	CustomerID                           string            `json:"customerId,omitempty"`
	CustomerEmail                        string            `json:"customerEmail,omitempty"`
	ReferenceCustomerID                  string            `json:"referenceCustomerId,omitempty"` // the merchant's own customer ID
	MerchantReferenceID                  string            `json:"merchantReferenceId,omitempty"` // tracking only: not unique, not an idempotency key
	PriceID                              string            `json:"priceId,omitempty"`
	ProductID                            string            `json:"productId,omitempty"`
	UIMode                               string            `json:"uiMode,omitempty"`    // UIModeHostedPage or UIModeElements
	ReturnURL                            string            `json:"returnUrl,omitempty"` // required for elements; {ELEMENTS_SESSION_ID} is replaced
	SuccessURL                           string            `json:"successUrl,omitempty"`
	CancelURL                            string            `json:"cancelUrl,omitempty"`
	PaymentMethodType                    string            `json:"paymentMethodType,omitempty"` // one of PaymentMethodTypes
	PaymentMethodTypeBlackList           []string          `json:"paymentMethodTypeBlackList,omitempty"`
	DirectPaymentQrCodePaymentMethodType string            `json:"directPaymentQrCodePaymentMethodType,omitempty"` // one of DirectQRPaymentMethodTypes; only effective when equal to PaymentMethodType
	PriceDataList                        []PriceData       `json:"priceDataList,omitempty"`
	AllowPromotionCodes                  *bool             `json:"allowPromotionCodes,omitempty"`
	PromotionCode                        string            `json:"promotionCode,omitempty"` // only effective with AllowPromotionCodes
	ShowPromotionCode                    *bool             `json:"showPromotionCode,omitempty"`
	Metadata                             map[string]string `json:"metadata,omitempty"` // <= 20 keys, key <= 40, value <= 500 chars
}

// CheckoutSession is a created checkout session. TokenValue is a secret access token for
// the session; it prints as [REDACTED].
type CheckoutSession struct {
	SessionID           string `json:"sessionId"`
	URL                 string `json:"url"` // the hosted checkout page
	ExpireTime          Time   `json:"expireTime"`
	CustomerID          string `json:"customerId"`
	OriginalAmount      Amount `json:"originalAmount"`
	OriginalCurrency    string `json:"originalCurrency"`
	UIMode              string `json:"uiMode"`
	ReturnURL           string `json:"returnUrl"`
	MerchantReferenceID string `json:"merchantReferenceId"`
	TokenValue          Secret `json:"tokenValue"`
	// Unread names the fields of Clink's answer that could not be read,
	// left zero: the session was created all the same.
	Unread []string `json:"-"`
}

func (s *CheckoutSession) setUnread(f []string) { s.Unread = f }

func (s *CheckoutSession) validate() error {
	return checkAnsweredID(s.SessionID)
}

// CheckoutSessionInfo is a checkout session as GET /checkout/session/{id} returns it. Clink
// documents this answer loosely: fields it does not send stay zero, fields not listed here are
// ignored, and OrderID, CustomerID and MerchantReferenceID are read from a JSON string or,
// should Clink send one as a number, from its digits. The session's tokenValue, which Clink
// may send here too, is never decoded: it has no field, so no result, log line or error can
// carry it.
type CheckoutSessionInfo struct {
	SessionID           string      `json:"sessionId"`
	Status              string      `json:"status"`        // StatusOpen, StatusCompleted or StatusExpired
	PaymentStatus       string      `json:"paymentStatus"` // PaymentStatusUnpaid, ...Processing or ...Paid
	OrderID             string      `json:"orderId"`       // empty until the session has an order
	CustomerID          string      `json:"customerId"`
	OriginalAmount      Amount      `json:"originalAmount"` // exact digits, as Clink sent them
	OriginalCurrency    string      `json:"originalCurrency"`
	Amount              Amount      `json:"amount"`   // if Clink sends it; unset otherwise
	Currency            string      `json:"currency"` // if Clink sends it
	URL                 string      `json:"url"`      // the hosted checkout page
	SuccessURL          string      `json:"successUrl"`
	CancelURL           string      `json:"cancelUrl"`
	ReturnURL           string      `json:"returnUrl"`
	UIMode              string      `json:"uiMode"` // UIModeHostedPage or UIModeElements
	MerchantReferenceID string      `json:"merchantReferenceId"`
	ExpireTime          Time        `json:"expireTime"`
	CreateTime          Time        `json:"createTime"` // if Clink sends it; zero otherwise
	PriceDataList       []PriceData `json:"priceDataList"`
}

// checkoutSessionInfo is CheckoutSessionInfo without its methods, for decoding.
type checkoutSessionInfo CheckoutSessionInfo

// checkoutSessionWire is what GET /checkout/session/{id} answers: the identifiers that may
// arrive as numbers shadow the string fields of the embedded struct.
type checkoutSessionWire struct {
	*checkoutSessionInfo
	OrderID             idText `json:"orderId"`
	CustomerID          idText `json:"customerId"`
	MerchantReferenceID idText `json:"merchantReferenceId"`
}

// UnmarshalJSON decodes the session from Clink's data object, leaving tokenValue out.
func (d *CheckoutSessionInfo) UnmarshalJSON(b []byte) error {
	w := checkoutSessionWire{(*checkoutSessionInfo)(d), idText(d.OrderID), idText(d.CustomerID), idText(d.MerchantReferenceID)}
	if err := decodeObject(b, &w, "checkoutSessionInfo"); err != nil {
		return err
	}
	d.OrderID, d.CustomerID, d.MerchantReferenceID = string(w.OrderID), string(w.CustomerID), string(w.MerchantReferenceID)
	return nil
}

func (d *CheckoutSessionInfo) validate() error {
	return checkAnsweredID(d.SessionID)
}

// CreateCheckoutSession creates a checkout session (POST /checkout/session). It is retried
// only when the request provably never reached Clink or Clink rejected its timestamp; an
// error matching ErrOutcomeUnknown means the session may exist.
func (c *Client) CreateCheckoutSession(ctx context.Context, req *CheckoutSessionRequest) (*CheckoutSession, error) {
	if req == nil {
		return nil, invalidRequest("nil CheckoutSessionRequest")
	}
	if req.OriginalAmount.IsZero() {
		return nil, invalidRequest("originalAmount is unset")
	}
	for i, p := range req.PriceDataList {
		if p.UnitAmount.IsZero() {
			return nil, invalidRequest("priceDataList[%d].unitAmount is unset", i)
		}
	}
	op := operation{name: "create checkout session", method: http.MethodPost, path: "checkout/session", create: true}
	var out CheckoutSession
	if err := c.do(ctx, op, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCheckoutSession fetches a checkout session by its ID (GET /checkout/session/{id}). An
// ID that ValidSessionID refuses is refused with ErrInvalidRequest before anything is sent. A
// read creates nothing, so it is retried on network failures, 5xx, 429 and timestamp
// rejections, and its errors never match ErrOutcomeUnknown. An unknown ID is an *Error with
// Clink's code (Clink does not document which).
func (c *Client) GetCheckoutSession(ctx context.Context, id string) (*CheckoutSessionInfo, error) {
	path, err := sessionIDPath("checkout/session/", id)
	if err != nil {
		return nil, err
	}
	op := operation{name: "get checkout session", method: http.MethodGet, path: path}
	var out CheckoutSessionInfo
	if err := c.do(ctx, op, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
