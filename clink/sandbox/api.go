package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayout is how the sandbox writes date-times: RFC 3339 in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

var (
	paymentMethodTypes = []string{"CARD", "CASHAPP", "WECHAT", "KAKAO", "PIX", "ALIPAY", "UPI", "PAYPAL", "GOOGLEPAY", "APPLEPAY", "QRIS", "GCASH"}
	directQRTypes      = []string{"CASHAPP", "QRIS"}
	minAgentAmount     = big.NewRat(1, 2)
)

type agentSession struct {
	id, email, customerID string
	amount                json.Number
	currency              string
	created, expires      time.Time
}

type checkoutSession struct {
	id, customerID                           string
	amount                                   json.Number
	currency                                 string
	uiMode, returnURL, successURL, cancelURL string
	merchantRef                              string
	priceData                                []priceData
	token                                    string
	created, expires                         time.Time
}

type agentRequest struct {
	CustomerEmail string      `json:"customerEmail"`
	Amount        json.Number `json:"amount"`
	Currency      string      `json:"currency"`
}

type priceData struct {
	Name       string      `json:"name"`
	UnitAmount json.Number `json:"unitAmount"`
	Quantity   *int64      `json:"quantity,omitempty"`
	Currency   string      `json:"currency,omitempty"`
	ImageURL   string      `json:"imageUrl,omitempty"`
}

type checkoutRequest struct {
	OriginalAmount                       json.Number       `json:"originalAmount"`
	OriginalCurrency                     string            `json:"originalCurrency"`
	CustomerID                           string            `json:"customerId"`
	CustomerEmail                        string            `json:"customerEmail"`
	ReferenceCustomerID                  string            `json:"referenceCustomerId"`
	MerchantReferenceID                  string            `json:"merchantReferenceId"`
	PriceID                              string            `json:"priceId"`
	ProductID                            string            `json:"productId"`
	UIMode                               string            `json:"uiMode"`
	ReturnURL                            string            `json:"returnUrl"`
	SuccessURL                           string            `json:"successUrl"`
	CancelURL                            string            `json:"cancelUrl"`
	PaymentMethodType                    string            `json:"paymentMethodType"`
	PaymentMethodTypeBlackList           []string          `json:"paymentMethodTypeBlackList"`
	DirectPaymentQrCodePaymentMethodType string            `json:"directPaymentQrCodePaymentMethodType"`
	PriceDataList                        []priceData       `json:"priceDataList"`
	AllowPromotionCodes                  *bool             `json:"allowPromotionCodes"`
	PromotionCode                        string            `json:"promotionCode"`
	ShowPromotionCode                    *bool             `json:"showPromotionCode"`
	Metadata                             map[string]string `json:"metadata"`
}

// envelope builds a JSON answer in Clink's envelope.
func envelope(status, code int, msg string, data any) response {
	body, err := json.Marshal(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
		Data any    `json:"data"`
	}{code, msg, data})
	if err != nil { // only sandbox-made values get here; a failure is a sandbox bug
		body = []byte(`{"code":500,"msg":"SANDBOX_ENCODING_ERROR","data":null}`)
		status = http.StatusInternalServerError
	}
	return response{status, "application/json", body}
}

func success(data any) response { return envelope(http.StatusOK, CodeSuccess, MsgSuccess, data) }

// fail is a business error: HTTP 200, a non-200 code.
func fail(code int, msg string) response { return envelope(http.StatusOK, code, msg, nil) }

func invalid(format string, args ...any) response {
	return fail(CodeBadRequest, MsgInvalidParameter+": "+fmt.Sprintf(format, args...))
}

func badAmount(format string, args ...any) response {
	return fail(CodeAmountOrCurrency, MsgAmountOrCurrency+": "+fmt.Sprintf(format, args...))
}

// handle checks authentication and the timestamp, then routes.
func (s *Server) handle(r *http.Request, body []byte) response {
	if !s.authorized(r) {
		return errorPage(http.StatusUnauthorized)
	}
	if resp, ok := s.checkTimestamp(r); !ok {
		return resp
	}
	path := r.URL.EscapedPath()
	for _, ep := range []struct {
		prefix string
		create func(*Server, []byte) response
		get    func(*Server, string) response
	}{
		{"/order/payment-session", (*Server).createAgent, (*Server).getAgent},
		{"/checkout/session", (*Server).createCheckout, (*Server).getCheckout},
	} {
		if path == ep.prefix {
			if r.Method != http.MethodPost {
				return envelope(http.StatusMethodNotAllowed, CodeMethodNotAllowed, MsgMethodNotAllowed, nil)
			}
			if resp, ok := checkJSONBody(r, body); !ok {
				return resp
			}
			return ep.create(s, body)
		}
		if rest, ok := strings.CutPrefix(path, ep.prefix+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			if r.Method != http.MethodGet {
				return envelope(http.StatusMethodNotAllowed, CodeMethodNotAllowed, MsgMethodNotAllowed, nil)
			}
			id, err := url.PathUnescape(rest)
			if err != nil {
				break
			}
			return ep.get(s, id)
		}
	}
	return envelope(http.StatusNotFound, CodeNotFound, MsgNotFound, nil)
}

func (s *Server) checkTimestamp(r *http.Request) (response, bool) {
	raw := r.Header.Get("X-Timestamp")
	if raw == "" {
		return fail(CodeTimestampMissing, MsgTimestampMissing), false
	}
	// Digits only: strconv.ParseInt would also take a sign ("+1767268800000").
	if strings.TrimLeft(raw, "0123456789") != "" {
		return fail(CodeTimestampInvalid, MsgTimestampInvalid), false
	}
	ms, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return fail(CodeTimestampInvalid, MsgTimestampInvalid), false
	}
	diff := s.now().Sub(time.UnixMilli(ms))
	if diff > s.skew || diff < -s.skew {
		return fail(CodeTimestampExpired, MsgTimestampExpired), false
	}
	return response{}, true
}

// checkJSONBody checks the content type and the size of a body read with a limit of
// maxBody+1 bytes.
func checkJSONBody(r *http.Request, body []byte) (response, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return envelope(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, MsgUnsupportedMediaType, nil), false
	}
	if len(body) > maxBody {
		return envelope(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, MsgRequestTooLarge, nil), false
	}
	return response{}, true
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown fields. Field names
// must match exactly: encoding/json alone would accept "paymentMethodTypeBlacklist" for
// "paymentMethodTypeBlackList", and a Java backend would not. Amounts must be JSON numbers:
// encoding/json alone fills a json.Number from a string holding a number ("10.00"). A key
// given twice in one object is refused, where encoding/json would keep the last value.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := uniqueKeys(dec, ""); err != nil {
		return err
	}
	return exactFields(body, reflect.TypeOf(v).Elem())
}

// uniqueKeys reads one JSON value, already known to be valid, from dec and checks that no
// object in it, at any depth, has a key twice. path names the value in the error
// ("priceDataList[0]"), empty for the body itself.
func uniqueKeys(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := make(map[string]bool)
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			name := key
			if path != "" {
				name = path + "." + key
			}
			if seen[key] {
				return fmt.Errorf("json: duplicate field %q", name)
			}
			seen[key] = true
			if err := uniqueKeys(dec, name); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := uniqueKeys(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		return nil // a scalar
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// numberType is the type of the amount fields, which Clink documents as JSON numbers.
var numberType = reflect.TypeFor[json.Number]()

// exactFields checks that every object key in data is spelt exactly as a json tag of t, a
// struct type, and that every json.Number field holds a JSON number (or null), not a
// string, recursing into struct and slice-of-struct fields. A string is refused as
// encoding/json refuses a bool there, with an *json.UnmarshalTypeError.
func exactFields(data []byte, t reflect.Type) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil // not an object (null); the typed decode has judged it
	}
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[name] = t.Field(i).Type
	}
	for key, raw := range obj {
		ft, ok := fields[key]
		if !ok {
			return fmt.Errorf("json: unknown field %q", key)
		}
		if ft == numberType && len(raw) > 0 && raw[0] == '"' {
			return &json.UnmarshalTypeError{Value: "string", Type: ft, Struct: t.Name(), Field: key}
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			var items []json.RawMessage
			if err := json.Unmarshal(raw, &items); err != nil {
				continue // null
			}
			for _, item := range items {
				if err := exactFields(item, ft.Elem()); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
			}
		}
	}
	return nil
}

// decimal parses an amount: a JSON number literal (the decoder has checked its syntax) with a
// small exponent, since a huge one would cost big.Rat memory.
func decimal(n json.Number) (*big.Rat, bool) {
	if n == "" || len(n) > 64 {
		return nil, false
	}
	if i := strings.IndexAny(string(n), "eE"); i >= 0 {
		exp, err := strconv.Atoi(string(n[i+1:]))
		if err != nil || exp > 40 || exp < -40 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(string(n))
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

func validEmail(e string) bool {
	local, domain, ok := strings.Cut(e, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(e, " \t\r\n") && !strings.Contains(domain, "@")
}

func newID(prefix string) string { return prefix + rand.Text() }

func (s *Server) createAgent(body []byte) response {
	var req agentRequest
	if err := decodeStrict(body, &req); err != nil {
		return invalid("%v", err)
	}
	switch {
	case req.CustomerEmail == "":
		return invalid("customerEmail is required")
	case !validEmail(req.CustomerEmail):
		return invalid("customerEmail is not an email address")
	case req.Amount == "":
		return invalid("amount is required")
	}
	amount, ok := decimal(req.Amount)
	switch {
	case !ok:
		return invalid("amount is not a number")
	case amount.Cmp(minAgentAmount) < 0:
		return badAmount("amount must be at least 0.5")
	case !validCurrency(req.Currency):
		return badAmount("currency must be a three-letter ISO 4217 code in capitals")
	}
	now := s.now()
	sess := &agentSession{
		id: newID("aps_"), email: req.CustomerEmail, amount: req.Amount, currency: req.Currency,
		created: now, expires: now.Add(s.ttl),
	}
	s.mu.Lock()
	c, _ := s.resolveCustomerLocked("", req.CustomerEmail, "")
	sess.customerID = c.ID
	s.agent[sess.id] = sess
	s.rememberLocked(sess.id)
	s.mu.Unlock()
	return success(struct {
		SessionID  string `json:"sessionId"`
		ExpireTime string `json:"expireTime"`
	}{sess.id, sess.expires.UTC().Format(timeLayout)})
}

// rememberLocked records that the session id was just stored, forgetting the oldest
// sessions beyond maxSessions. s.mu must be held.
func (s *Server) rememberLocked(id string) {
	s.order = append(s.order, id)
	for len(s.order) > s.maxSessions {
		delete(s.agent, s.order[0])
		delete(s.checkout, s.order[0])
		s.order[0] = ""
		s.order = s.order[1:] // append reallocates the array once it is full, so it stays O(maxSessions)
	}
}

// notFound is the answer to a GET of a session the sandbox does not hold. Clink does not
// document its answer for an unknown session ID; an HTTP 200 business error with code 404 and
// SESSION_NOT_FOUND is the sandbox's guess.
func notFound() response { return fail(CodeNotFound, MsgSessionNotFound) }

func (s *Server) getAgent(id string) response {
	s.mu.Lock()
	sess, ok := s.agent[id]
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	return success(struct {
		SessionID     string      `json:"sessionId"`
		CustomerEmail string      `json:"customerEmail"`
		CustomerID    string      `json:"customerId"`
		Amount        json.Number `json:"amount"`
		Currency      string      `json:"currency"`
		MerchantID    string      `json:"merchantId"`
		TenantID      string      `json:"tenantId"`
		CreateTime    string      `json:"createTime"`
		ExpireTime    string      `json:"expireTime"`
	}{sess.id, sess.email, sess.customerID, sess.amount, sess.currency, MerchantID, TenantID,
		sess.created.UTC().Format(timeLayout), sess.expires.UTC().Format(timeLayout)})
}

// checkCheckout applies Clink's rules for a checkout session, except the customer's.
func checkCheckout(req *checkoutRequest) (response, bool) {
	if req.OriginalAmount == "" {
		return invalid("originalAmount is required"), false
	}
	amount, ok := decimal(req.OriginalAmount)
	switch {
	case !ok:
		return invalid("originalAmount is not a number"), false
	case amount.Sign() <= 0:
		return badAmount("originalAmount must be greater than 0"), false
	case !validCurrency(req.OriginalCurrency):
		return badAmount("originalCurrency must be a three-letter ISO 4217 code in capitals"), false
	case req.CustomerEmail != "" && !validEmail(req.CustomerEmail):
		return invalid("customerEmail is not an email address"), false
	case req.UIMode != "" && req.UIMode != "hostedPage" && req.UIMode != "elements":
		return invalid("uiMode must be hostedPage or elements"), false
	case req.UIMode == "elements" && req.ReturnURL == "":
		return fail(CodeBadRequest, MsgReturnURLRequired), false
	case req.PaymentMethodType != "" && !slices.Contains(paymentMethodTypes, req.PaymentMethodType):
		return invalid("paymentMethodType is not a supported payment method"), false
	case req.DirectPaymentQrCodePaymentMethodType != "" && !slices.Contains(directQRTypes, req.DirectPaymentQrCodePaymentMethodType):
		return invalid("directPaymentQrCodePaymentMethodType must be CASHAPP or QRIS"), false
	case req.ShowPromotionCode != nil && !*req.ShowPromotionCode && req.PromotionCode == "":
		return invalid("promotionCode is required when showPromotionCode is false"), false
	case len(req.Metadata) > 20:
		return invalid("metadata has more than 20 keys"), false
	}
	for _, m := range req.PaymentMethodTypeBlackList {
		if !slices.Contains(paymentMethodTypes, m) {
			return invalid("paymentMethodTypeBlackList has an unsupported payment method"), false
		}
	}
	for k, v := range req.Metadata {
		if len([]rune(k)) > 40 || len([]rune(v)) > 500 {
			return invalid("metadata keys are limited to 40 characters and values to 500"), false
		}
	}
	for i, p := range req.PriceDataList {
		if p.Name == "" {
			return invalid("priceDataList[%d].name is required", i), false
		}
		if p.UnitAmount == "" {
			return invalid("priceDataList[%d].unitAmount is required", i), false
		}
		ua, ok := decimal(p.UnitAmount)
		switch {
		case !ok:
			return invalid("priceDataList[%d].unitAmount is not a number", i), false
		case ua.Sign() <= 0:
			return badAmount("priceDataList[%d].unitAmount must be greater than 0", i), false
		case p.Quantity != nil && *p.Quantity < 1:
			return invalid("priceDataList[%d].quantity must be at least 1", i), false
		case p.Currency != "" && !validCurrency(p.Currency):
			return badAmount("priceDataList[%d].currency must be a three-letter ISO 4217 code in capitals", i), false
		}
	}
	return response{}, true
}

func (s *Server) createCheckout(body []byte) response {
	var req checkoutRequest
	if err := decodeStrict(body, &req); err != nil {
		return invalid("%v", err)
	}
	if resp, ok := checkCheckout(&req); !ok {
		return resp
	}
	id := newID("sess_")
	uiMode := req.UIMode
	if uiMode == "" {
		uiMode = "hostedPage"
	}
	sess := &checkoutSession{
		id: id, amount: req.OriginalAmount, currency: req.OriginalCurrency,
		uiMode: uiMode, returnURL: strings.ReplaceAll(req.ReturnURL, "{ELEMENTS_SESSION_ID}", id),
		successURL: req.SuccessURL, cancelURL: req.CancelURL, merchantRef: req.MerchantReferenceID,
		priceData: req.PriceDataList, token: s.token(),
	}
	sess.created = s.now()
	sess.expires = sess.created.Add(s.ttl)
	s.mu.Lock()
	c, msg := s.resolveCustomerLocked(req.CustomerID, req.CustomerEmail, req.ReferenceCustomerID)
	if c != nil {
		sess.customerID = c.ID
		s.checkout[id] = sess
		s.rememberLocked(id)
	}
	s.mu.Unlock()
	if c == nil {
		return fail(CodeBadRequest, msg)
	}
	return success(struct {
		SessionID           string      `json:"sessionId"`
		URL                 string      `json:"url"`
		ExpireTime          string      `json:"expireTime"`
		CustomerID          string      `json:"customerId"`
		OriginalAmount      json.Number `json:"originalAmount"`
		OriginalCurrency    string      `json:"originalCurrency"`
		UIMode              string      `json:"uiMode"`
		ReturnURL           string      `json:"returnUrl,omitempty"`
		MerchantReferenceID string      `json:"merchantReferenceId,omitempty"`
		TokenValue          string      `json:"tokenValue"`
	}{sess.id, s.checkoutBase + sess.id, sess.expires.UTC().Format(timeLayout), sess.customerID,
		sess.amount, sess.currency, sess.uiMode, sess.returnURL, sess.merchantRef, sess.token})
}

func (s *Server) getCheckout(id string) response {
	s.mu.Lock()
	sess, ok := s.checkout[id]
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	status := "open"
	if !s.now().Before(sess.expires) {
		status = "expired"
	}
	return success(struct {
		SessionID           string      `json:"sessionId"`
		URL                 string      `json:"url"`
		Status              string      `json:"status"`
		PaymentStatus       string      `json:"paymentStatus"`
		OrderID             *string     `json:"orderId"`
		CreateTime          string      `json:"createTime"`
		ExpireTime          string      `json:"expireTime"`
		CustomerID          string      `json:"customerId"`
		OriginalAmount      json.Number `json:"originalAmount"`
		OriginalCurrency    string      `json:"originalCurrency"`
		Amount              json.Number `json:"amount"`
		Currency            string      `json:"currency"`
		UIMode              string      `json:"uiMode"`
		ReturnURL           string      `json:"returnUrl,omitempty"`
		SuccessURL          string      `json:"successUrl,omitempty"`
		CancelURL           string      `json:"cancelUrl,omitempty"`
		MerchantReferenceID string      `json:"merchantReferenceId,omitempty"`
		PriceDataList       []priceData `json:"priceDataList,omitempty"`
		TokenValue          string      `json:"tokenValue"`
	}{sess.id, s.checkoutBase + sess.id, status, "unpaid", nil, sess.created.UTC().Format(timeLayout),
		sess.expires.UTC().Format(timeLayout), sess.customerID, sess.amount, sess.currency, sess.amount,
		sess.currency, sess.uiMode, sess.returnURL, sess.successURL,
		sess.cancelURL, sess.merchantRef, sess.priceData, sess.token})
}
