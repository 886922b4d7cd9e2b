package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-playground/validator/v10"
	"github.com/mark3labs/mcp-go/mcp"
	"golang.org/x/text/unicode/norm"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/policy"
)

// checkoutSessionArgs are the arguments of create_checkout_session, under
// Clink's own names except amount and currency (Clink's originalAmount and
// originalCurrency). The schema below must list the same names.
type checkoutSessionArgs struct {
	Amount                               json.Number       `json:"amount" validate:"required"`
	Currency                             string            `json:"currency" validate:"required,iso4217"`
	CustomerID                           string            `json:"customerId" validate:"omitempty,max=128,visible_id,plain_text"`
	CustomerEmail                        string            `json:"customerEmail" validate:"omitempty,max=254,email"`
	ReferenceCustomerID                  string            `json:"referenceCustomerId" validate:"omitempty,max=128,visible_id,plain_text"`
	MerchantReferenceID                  string            `json:"merchantReferenceId" validate:"omitempty,max=128,visible_id,plain_text"`
	PriceID                              string            `json:"priceId" validate:"omitempty,max=128,visible_id,plain_text"`
	ProductID                            string            `json:"productId" validate:"omitempty,max=128,visible_id,plain_text"`
	UIMode                               string            `json:"uiMode" validate:"omitempty,oneof=hostedPage elements"`
	ReturnURL                            string            `json:"returnUrl" validate:"omitempty,max=2048"`  // and checkURL
	SuccessURL                           string            `json:"successUrl" validate:"omitempty,max=2048"` // and checkURL
	CancelURL                            string            `json:"cancelUrl" validate:"omitempty,max=2048"`  // and checkURL
	PaymentMethodType                    string            `json:"paymentMethodType" validate:"omitempty,oneof=CARD CASHAPP WECHAT KAKAO PIX ALIPAY UPI PAYPAL GOOGLEPAY APPLEPAY QRIS GCASH"`
	PaymentMethodTypeBlackList           []string          `json:"paymentMethodTypeBlackList" validate:"omitempty,max=12,unique,dive,oneof=CARD CASHAPP WECHAT KAKAO PIX ALIPAY UPI PAYPAL GOOGLEPAY APPLEPAY QRIS GCASH"`
	DirectPaymentQrCodePaymentMethodType string            `json:"directPaymentQrCodePaymentMethodType" validate:"omitempty,oneof=CASHAPP QRIS"`
	PriceDataList                        []priceDataArgs   `json:"priceDataList" validate:"omitempty,max=100,dive"`
	AllowPromotionCodes                  *bool             `json:"allowPromotionCodes"`
	PromotionCode                        string            `json:"promotionCode" validate:"omitempty,max=64,visible_id,plain_text"`
	ShowPromotionCode                    *bool             `json:"showPromotionCode"`
	Metadata                             map[string]string `json:"metadata" validate:"omitempty,max=20"` // and checkMetadata
	IdempotencyKey                       string            `json:"idempotencyKey" validate:"omitempty,min=8,max=128,printascii"`
}

// priceDataArgs is one line item of priceDataList.
type priceDataArgs struct {
	Name       string      `json:"name" validate:"required,max=200,plain_text"`
	UnitAmount json.Number `json:"unitAmount" validate:"required"`
	Quantity   *int64      `json:"quantity" validate:"omitempty,min=1,max=10000"`
	Currency   string      `json:"currency" validate:"omitempty,iso4217"`
	ImageURL   string      `json:"imageUrl" validate:"omitempty,max=2048"` // and checkURL
}

var checkoutSessionShape = shapeOf(reflect.TypeFor[checkoutSessionArgs]())

// Tags of the checkout session's cross-field rules, as reported by
// checkoutRules.
const (
	ruleCustomerIdentifier       = "customer_identifier"
	ruleReturnURLForElements     = "return_url_for_elements"
	rulePromotionNeedsAllow      = "promotion_needs_allow"
	ruleHiddenPromotionNeedsCode = "hidden_promotion_needs_code"
	ruleDirectQRMatchesDefault   = "direct_qr_matches_default"
	ruleDefaultNotExcluded       = "default_not_excluded"
)

// checkoutRules is the struct-level validation of the rules that tie
// several checkout arguments together.
func checkoutRules(sl validator.StructLevel) {
	a := sl.Current().Interface().(checkoutSessionArgs)
	if a.CustomerID == "" && a.CustomerEmail == "" && a.ReferenceCustomerID == "" {
		sl.ReportError(a.CustomerEmail, "customerEmail", "CustomerEmail", ruleCustomerIdentifier, "")
	}
	if a.UIMode == clink.UIModeElements && a.ReturnURL == "" {
		sl.ReportError(a.ReturnURL, "returnUrl", "ReturnURL", ruleReturnURLForElements, "")
	}
	if a.PromotionCode != "" && (a.AllowPromotionCodes == nil || !*a.AllowPromotionCodes) {
		sl.ReportError(a.PromotionCode, "promotionCode", "PromotionCode", rulePromotionNeedsAllow, "")
	}
	if a.ShowPromotionCode != nil && !*a.ShowPromotionCode && a.PromotionCode == "" {
		sl.ReportError(a.ShowPromotionCode, "showPromotionCode", "ShowPromotionCode", ruleHiddenPromotionNeedsCode, "")
	}
	if a.DirectPaymentQrCodePaymentMethodType != "" && a.DirectPaymentQrCodePaymentMethodType != a.PaymentMethodType {
		sl.ReportError(a.DirectPaymentQrCodePaymentMethodType, "directPaymentQrCodePaymentMethodType", "DirectPaymentQrCodePaymentMethodType", ruleDirectQRMatchesDefault, "")
	}
	if a.PaymentMethodType != "" && slices.Contains(a.PaymentMethodTypeBlackList, a.PaymentMethodType) {
		sl.ReportError(a.PaymentMethodType, "paymentMethodType", "PaymentMethodType", ruleDefaultNotExcluded, a.PaymentMethodType)
	}
}

// checkoutSessionResult is the structured content of a success. Clink's
// tokenValue is deliberately absent: it is a secret of the merchant's.
type checkoutSessionResult struct {
	SessionID  string      `json:"sessionId"`
	URL        string      `json:"url,omitempty"`        // absent when Clink's answer had none that read
	ExpireTime string      `json:"expireTime,omitempty"` // likewise
	Amount     json.Number `json:"amount"`
	Currency   string      `json:"currency"`
	Replayed   bool        `json:"replayed,omitempty"`
}

// checkoutSession is create_checkout_session: Clink's POST /checkout/session.
func (ts *toolset) checkoutSession() Tool {
	tool := mcp.Tool{
		Name:  policy.ToolCheckoutSession,
		Title: "Create checkout session",
		Description: "Create a Clink checkout session: a hosted payment page (or an embedded one, with uiMode \"elements\") " +
			"where a customer pays an amount in a currency. " + ts.customerSentence() +
			"Returns the checkout url to give the customer, the sessionId and when it expires. " +
			ts.repeatSentence() +
			"Limits set by this server's operator: " + ts.policy.Summary(policy.ToolCheckoutSession),
		RawInputSchema:  checkoutInputSchema(ts.policy.CheckoutCustomerIDUse()),
		RawOutputSchema: json.RawMessage(checkoutSessionOutputSchema),
		Annotations:     annotations("Create checkout session"),
	}
	return Tool{Tool: tool, Handler: ts.handleCheckoutSession}
}

func (ts *toolset) handleCheckoutSession(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return ts.create(ctx, req, ts.prepareCheckoutSession(rawArguments(req))), nil
}

// prepareCheckoutSession decodes and validates the arguments of
// create_checkout_session, applies the policy's rule on URLs, and makes
// the order.
func (ts *toolset) prepareCheckoutSession(raw []byte) *prepared {
	const tool = policy.ToolCheckoutSession
	p := &prepared{tool: tool}

	// 1. Strict decoding.
	var args checkoutSessionArgs
	if err := decodeStrict(raw, checkoutSessionShape, &args); err != nil {
		p.problems = err.(decodeProblems)
		return p
	}
	args.CustomerEmail = strings.TrimSpace(args.CustomerEmail)

	// 2. Validation.
	problems := validate(ts.validate, &args)
	var (
		amount policy.Money
		email  string
		items  []policy.LineItem
	)
	urls := checkoutURLs(&args)
	for _, u := range urls {
		if problem := checkURL(u.field, u.raw, u.field == "returnUrl"); problem != "" {
			problems = append(problems, problem)
		}
	}
	problems = append(problems, checkMetadata(args.Metadata)...)
	if len(problems) == 0 {
		var err error
		if amount, err = parseAmount("amount", args.Amount, "currency", args.Currency); err != nil {
			problems = append(problems, err.Error())
		}
		if args.CustomerEmail != "" {
			if email, err = policy.NormalizeEmail(args.CustomerEmail); err != nil {
				problems = append(problems, fmt.Sprintf(`argument "customerEmail": %v`, err))
			}
		}
		for i, item := range args.PriceDataList {
			currency, currencyArg := item.Currency, fmt.Sprintf("priceDataList[%d].currency", i)
			if currency == "" {
				currency, currencyArg = args.Currency, "currency"
			}
			unit, err := parseAmount(fmt.Sprintf("priceDataList[%d].unitAmount", i), item.UnitAmount, currencyArg, currency)
			if err != nil {
				if !slices.Contains(problems, err.Error()) { // the session's currency, said once
					problems = append(problems, err.Error())
				}
				continue
			}
			items = append(items, policy.LineItem{UnitAmount: unit, Quantity: quantity(item.Quantity)})
		}
	}
	if len(problems) > 0 {
		p.email, p.problems = args.CustomerEmail, problems
		return p
	}
	p.email = email

	// 3. The policy's rule on redirect URLs, which its Request does not
	// carry.
	for _, u := range urls {
		if d := ts.policy.CheckURL(tool, u.field, u.raw); !d.Allowed {
			p.refusal = &d
			return p
		}
	}

	// 4. The order, with exactly the money the policy will see.
	request, err := checkoutRequest(&args, amount, email, items)
	if err != nil {
		p.err = err
		return p
	}
	fingerprint, err := checkoutFingerprint(request)
	if err != nil {
		p.err = err
		return p
	}
	p.order = &gate.Order{
		Request: policy.Request{
			Tool:                policy.ToolCheckoutSession,
			Amount:              amount,
			CustomerEmail:       email,
			CustomerID:          args.CustomerID,
			ReferenceCustomerID: args.ReferenceCustomerID,
			LineItems:           items,
			PriceID:             args.PriceID,
			ProductID:           args.ProductID,
		},
		IdempotencyKey: args.IdempotencyKey,
		Fingerprint:    fingerprint,
		Commit: func(ctx context.Context) (*gate.Created, error) {
			sess, err := ts.payments.CreateCheckoutSession(ctx, request)
			if err != nil {
				return nil, err
			}
			// The result promises a URI (its schema's format): a page URL
			// that is not one is left out as unread, as one that did not
			// decode is.
			unread := sess.Unread
			if sess.URL != "" && !pageURL(sess.URL) {
				ts.log.WarnContext(ctx, "Clink's answer gave a checkout URL that is not an absolute http(s) URI; it is left out of the result",
					"session", sess.SessionID)
				sess.URL, unread = "", append(slices.Clone(unread), "url")
			}
			out := checkoutSessionResult{
				SessionID:  sess.SessionID,
				URL:        sess.URL,
				ExpireTime: formatTime(sess.ExpireTime.Time),
				Amount:     json.Number(amount.Amount()),
				Currency:   amount.Currency().Code(),
			}
			summary := fmt.Sprintf("Created checkout session %s for %s%s", out.SessionID, amount, lineItemTotals(items))
			switch {
			case out.URL != "" && out.ExpireTime != "":
				summary += fmt.Sprintf("; the customer pays at %s (expires %s)", out.URL, out.ExpireTime)
			case out.URL != "":
				summary += "; the customer pays at " + out.URL
			case out.ExpireTime != "":
				summary += "; it expires " + out.ExpireTime
			}
			summary += "."
			if echo := amountEcho(sess, amount); echo != "" {
				ts.log.WarnContext(ctx, "Clink's answer gives the created checkout session another amount than the one requested, which the limits counted",
					"session", sess.SessionID, "requested", amount.String(), "clink", echo)
				summary += fmt.Sprintf(" Clink's answer gives its amount as %s, not the %s requested and counted against the limits: check the session (%s) before telling the customer.",
					echo, amount, ToolGetCheckoutSession)
			}
			return created(out.SessionID, out, summary+unreadNote(out.URL == "", out.ExpireTime == "", ToolGetCheckoutSession), unread)
		},
	}
	return p
}

// checkoutInputSchema is the checkout's input schema under the policy's
// rule for customer identifiers (use), so that a model that follows the
// schema sends what the policy takes: customerEmail required unless
// another identifier may stand in for it, and customerId left out where
// it is refused. The rest is checkoutSessionInputSchema as written, in its
// order.
func checkoutInputSchema(use policy.CustomerIDUse) json.RawMessage {
	if use == policy.CustomerIDWithoutEmail {
		return json.RawMessage(checkoutSessionInputSchema)
	}
	var out bytes.Buffer
	dec := jsontext.NewDecoder(strings.NewReader(checkoutSessionInputSchema))
	enc := jsontext.NewEncoder(&out, jsontext.Multiline(true), jsontext.WithIndent("  "))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic("tools: the checkout's input schema: " + err.Error()) // a constant: a test reads it
		}
		tok = tok.Clone() // the decoder's next call voids it
		// An object's name: the stack index of its object is odd after it.
		depth := dec.StackDepth()
		kind, n := dec.StackIndex(depth)
		isName := kind == '{' && n%2 == 1
		switch {
		case isName && depth == 2 && tok.String() == "customerId" && use == policy.CustomerIDRefused:
			if err := dec.SkipValue(); err != nil {
				panic("tools: the checkout's input schema: " + err.Error())
			}
			continue
		case isName && depth == 1 && tok.String() == "required":
			if err := dec.SkipValue(); err != nil {
				panic("tools: the checkout's input schema: " + err.Error())
			}
			_ = enc.WriteToken(tok)
			_ = enc.WriteValue(jsontext.Value(`["amount", "currency", "customerEmail"]`))
			continue
		}
		if err := enc.WriteToken(tok); err != nil {
			panic("tools: the checkout's input schema: " + err.Error())
		}
	}
	return json.RawMessage(out.Bytes())
}

// urlArg is one URL argument, named as the model sent it.
type urlArg struct{ field, raw string }

// checkoutURLs lists the URL arguments given, redirects first; one longer
// than its limit is left to the validator's message.
func checkoutURLs(a *checkoutSessionArgs) []urlArg {
	var out []urlArg
	add := func(field, raw string) {
		if raw != "" && utf8.RuneCountInString(raw) <= maxURLLength {
			out = append(out, urlArg{field, raw})
		}
	}
	add("successUrl", a.SuccessURL)
	add("cancelUrl", a.CancelURL)
	add("returnUrl", a.ReturnURL)
	for i, item := range a.PriceDataList {
		add(fmt.Sprintf("priceDataList[%d].imageUrl", i), item.ImageURL)
	}
	return out
}

// maxURLLength is the validator's max for URL arguments.
const maxURLLength = 2048

// lineItemTotals renders what the line items add up to in each currency,
// in code order, for the summary: " (line items: 400.00 EUR, 20.00 USD)",
// or "" without line items. The per-session cap applies to these sums as
// well as to amount, so the agent must see them next to it.
func lineItemTotals(items []policy.LineItem) string {
	totals := policy.LineTotals(items)
	if len(totals) == 0 {
		return ""
	}
	parts := make([]string, len(totals))
	for i, m := range totals {
		parts[i] = m.String()
	}
	return " (line items: " + strings.Join(parts, ", ") + ")"
}

// metadataShadows maps the folded form of every name a metadata key may not
// take to that name: each argument of create_checkout_session and each
// field of Clink's checkout request and response, read from their json
// tags so a new field is covered the day it is added. A key like "amount"
// or "Customer_Email" would sit beside the real field in Clink's records
// and webhooks, where something downstream could take it for the real one.
// A line item's fields (name, quantity, ...) are not included: they are
// not the session's, and "name" is an ordinary metadata key.
var metadataShadows = func() map[string]string {
	m := map[string]string{}
	for _, t := range []reflect.Type{
		reflect.TypeFor[checkoutSessionArgs](),
		reflect.TypeFor[clink.CheckoutSessionRequest](),
		reflect.TypeFor[clink.CheckoutSession](),
	} {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				if _, dup := m[foldMetadataKey(name)]; !dup {
					m[foldMetadataKey(name)] = name
				}
			}
		}
	}
	return m
}()

// foldMetadataKey is the form metadata keys are compared in: compatibility
// forms unified (NFKC: full-width letters become ASCII), lower case, and
// only letters and digits kept, so "Amount", "original_amount",
// "Original-Amount" and "ａｍｏｕｎｔ" all meet the field they imitate.
func foldMetadataKey(k string) string {
	var b strings.Builder
	for _, r := range norm.NFKC.String(k) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// Metadata limits, Clink's.
const (
	maxMetadataKey   = 40
	maxMetadataValue = 500
)

// checkMetadata returns what is wrong with the metadata, key by key in
// order: lengths, control characters in keys and values, and keys that
// shadow the session's own fields. Keys are quoted with every control and
// invisible character escaped, and cut short; values are never echoed.
func checkMetadata(m map[string]string) []string {
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		key := quoteMetadataKey(k)
		switch n := utf8.RuneCountInString(k); {
		case n == 0:
			problems = append(problems, fmt.Sprintf(`argument "metadata": an empty key; metadata keys must be 1 to %d characters long`, maxMetadataKey))
		case n > maxMetadataKey:
			problems = append(problems, fmt.Sprintf(`argument "metadata": key %s is too long; metadata keys must be 1 to %d characters long`, key, maxMetadataKey))
		}
		if r, ok := controlRune(k); ok {
			problems = append(problems, fmt.Sprintf(`argument "metadata": key %s contains a control character (%U)`, key, r))
		} else if name, ok := metadataShadows[foldMetadataKey(k)]; ok {
			problems = append(problems, fmt.Sprintf(`argument "metadata": key %s would shadow the checkout's own field %q; choose another key`, key, name))
		}
		if utf8.RuneCountInString(v) > maxMetadataValue {
			problems = append(problems, fmt.Sprintf(`argument "metadata": the value of key %s is too long; metadata values must be at most %d characters long`, key, maxMetadataValue))
		}
		if r, ok := controlRune(v); ok {
			problems = append(problems, fmt.Sprintf(`argument "metadata": the value of key %s contains a control character (%U)`, key, r))
		}
	}
	return problems
}

// controlRune returns the first control character of s: a C0 control
// (NUL, tab, newline, ESC, ...), DEL, a C1 control, a line or paragraph
// separator (U+2028, U+2029), or a bidirectional embedding, override or
// isolate (U+202A–U+202E, U+2066–U+2069), which make text display as
// something else.
func controlRune(s string) (rune, bool) {
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
			('\u202a' <= r && r <= '\u202e') || ('\u2066' <= r && r <= '\u2069') {
			return r, true
		}
	}
	return 0, false
}

// quoteMetadataKey quotes a key for a message: Go syntax, with control and
// invisible characters escaped, cut after maxMetadataKey characters.
func quoteMetadataKey(k string) string {
	if utf8.RuneCountInString(k) <= maxMetadataKey {
		return strconv.Quote(k)
	}
	cut := 0
	for range maxMetadataKey {
		_, size := utf8.DecodeRuneInString(k[cut:])
		cut += size
	}
	return strconv.Quote(k[:cut]) + "…"
}

// quantity is a line item's quantity, 1 when not given.
func quantity(q *int64) int64 {
	if q == nil {
		return 1
	}
	return *q
}

// checkoutFingerprint is what the duplicate guard compares of a checkout:
// the request as sent, except that showPromotionCode: true, Clink's
// documented default, counts as not given, so that a retry spelling the
// default out replays the first call. Other fields are compared as sent:
// Clink documents no other default.
func checkoutFingerprint(r *clink.CheckoutSessionRequest) ([]byte, error) {
	if r.ShowPromotionCode != nil && *r.ShowPromotionCode {
		c := *r
		c.ShowPromotionCode = nil
		r = &c
	}
	return json.Marshal(r)
}

// checkoutRequest builds Clink's request from validated arguments and the
// exact money the policy approved.
func checkoutRequest(a *checkoutSessionArgs, amount policy.Money, email string, items []policy.LineItem) (*clink.CheckoutSessionRequest, error) {
	total, err := clink.ParseAmount(amount.Amount())
	if err != nil {
		return nil, err
	}
	req := &clink.CheckoutSessionRequest{
		OriginalAmount:                       total,
		OriginalCurrency:                     amount.Currency().Code(),
		CustomerID:                           a.CustomerID,
		CustomerEmail:                        email,
		ReferenceCustomerID:                  a.ReferenceCustomerID,
		MerchantReferenceID:                  a.MerchantReferenceID,
		PriceID:                              a.PriceID,
		ProductID:                            a.ProductID,
		UIMode:                               a.UIMode,
		ReturnURL:                            a.ReturnURL,
		SuccessURL:                           a.SuccessURL,
		CancelURL:                            a.CancelURL,
		PaymentMethodType:                    a.PaymentMethodType,
		PaymentMethodTypeBlackList:           a.PaymentMethodTypeBlackList,
		DirectPaymentQrCodePaymentMethodType: a.DirectPaymentQrCodePaymentMethodType,
		AllowPromotionCodes:                  a.AllowPromotionCodes,
		PromotionCode:                        a.PromotionCode,
		ShowPromotionCode:                    a.ShowPromotionCode,
		Metadata:                             a.Metadata,
	}
	for i, item := range items {
		unit, err := clink.ParseAmount(item.UnitAmount.Amount())
		if err != nil {
			return nil, err
		}
		in := a.PriceDataList[i]
		req.PriceDataList = append(req.PriceDataList, clink.PriceData{
			Name:       in.Name,
			UnitAmount: unit,
			Quantity:   quantity(in.Quantity),
			Currency:   item.UnitAmount.Currency().Code(),
			ImageURL:   in.ImageURL,
		})
	}
	return req, nil
}

const checkoutSessionInputSchema = `{
  "type": "object",
  "properties": {
    "amount": {
      "type": "number",
      "exclusiveMinimum": 0,
      "description": "Total amount the customer pays, in major units of the currency (dollars, not cents), as a JSON number with no more decimals than the currency has (USD 2, JPY 0, KWD 3). Sent to Clink as originalAmount. Example: 49.99."
    },
    "currency": {
      "type": "string",
      "pattern": "^[A-Z]{3}$",
      "description": "ISO 4217 currency code of amount, in capitals. Sent to Clink as originalCurrency. Example: \"USD\"."
    },
    "customerEmail": {
      "type": "string",
      "format": "email",
      "maxLength": 254,
      "description": "Customer's email address; Clink finds the customer by it or creates one. Required unless this tool's description says customerId or referenceCustomerId may stand in for it. Example: \"alice@example.com\"."
    },
    "customerId": {
      "type": "string",
      "maxLength": 128,
      "description": "Clink's ID of an existing customer; when given, customerEmail and referenceCustomerId must belong to the same customer. Refused where this tool's description says so. Example: \"cus_8f2a1c\"."
    },
    "referenceCustomerId": {
      "type": "string",
      "maxLength": 128,
      "description": "The merchant's own ID for the customer, used to find, create or bind a Clink customer. Example: \"user-1042\"."
    },
    "merchantReferenceId": {
      "type": "string",
      "maxLength": 128,
      "description": "The merchant's reference for this payment, e.g. an order number, for tracking. Not unique and not an idempotency key. Example: \"order-2026-0042\"."
    },
    "priceId": {
      "type": "string",
      "maxLength": 128,
      "description": "ID of a price configured in the Clink dashboard. Refused unless the operator allows dashboard prices (see the limits in this tool's description). Example: \"price_1a2b3c\"."
    },
    "productId": {
      "type": "string",
      "maxLength": 128,
      "description": "ID of a product configured in the Clink dashboard. Refused unless the operator allows dashboard prices (see the limits in this tool's description). Example: \"prod_9z8y7x\"."
    },
    "uiMode": {
      "type": "string",
      "enum": ["hostedPage", "elements"],
      "description": "Checkout UI: \"hostedPage\" redirects the customer to Clink's page (the usual choice); \"elements\" embeds checkout in the merchant's site and needs returnUrl. Default: Clink's (hosted page)."
    },
    "returnUrl": {
      "type": "string",
      "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
      "maxLength": 2048,
      "description": "Absolute http(s) URL on a public host to return to after embedded checkout; required when uiMode is \"elements\". It may hold the placeholder {ELEMENTS_SESSION_ID} in its path, query or fragment, which Clink replaces by the session ID: a URL template rather than a strict URI. No user info (user@), spaces or control characters. Example: \"https://shop.example.com/complete?session_id={ELEMENTS_SESSION_ID}\"."
    },
    "successUrl": {
      "type": "string",
      "format": "uri",
      "maxLength": 2048,
      "description": "Absolute http(s) URL on a public host the customer is sent to after paying. No user info (user@), spaces or control characters. Example: \"https://shop.example.com/thanks\"."
    },
    "cancelUrl": {
      "type": "string",
      "format": "uri",
      "maxLength": 2048,
      "description": "Absolute http(s) URL on a public host the customer is sent to on cancelling. No user info (user@), spaces or control characters. Example: \"https://shop.example.com/cart\"."
    },
    "paymentMethodType": {
      "type": "string",
      "enum": ["CARD", "CASHAPP", "WECHAT", "KAKAO", "PIX", "ALIPAY", "UPI", "PAYPAL", "GOOGLEPAY", "APPLEPAY", "QRIS", "GCASH"],
      "description": "Payment method selected by default on the checkout page. Must not also be in paymentMethodTypeBlackList. Example: \"CARD\"."
    },
    "paymentMethodTypeBlackList": {
      "type": "array",
      "items": {"type": "string", "enum": ["CARD", "CASHAPP", "WECHAT", "KAKAO", "PIX", "ALIPAY", "UPI", "PAYPAL", "GOOGLEPAY", "APPLEPAY", "QRIS", "GCASH"]},
      "uniqueItems": true,
      "maxItems": 12,
      "description": "Payment methods to hide from this checkout, each at most once. Example: [\"WECHAT\", \"ALIPAY\"]."
    },
    "directPaymentQrCodePaymentMethodType": {
      "type": "string",
      "enum": ["CASHAPP", "QRIS"],
      "description": "Open this method's QR-code flow directly. Only allowed when it equals paymentMethodType. Example: \"CASHAPP\"."
    },
    "priceDataList": {
      "type": "array",
      "maxItems": 100,
      "description": "One-time line items, for a purchase without dashboard products. Give items that add up to amount, the total the customer pays: this server does not check that they do, and what Clink makes of items that do not is not documented. The per-session cap applies to the larger of amount and the sum of unitAmount x quantity.",
      "items": {
        "type": "object",
        "properties": {
          "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Item name shown to the customer, without control characters. Example: \"Team plan, 1 month\"."},
          "unitAmount": {"type": "number", "exclusiveMinimum": 0, "description": "Price of one unit in major units of the item's currency, no more decimals than the currency has. Example: 9.5."},
          "quantity": {"type": "integer", "minimum": 1, "maximum": 10000, "description": "Number of units, a whole number. Default 1. Example: 2."},
          "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of unitAmount. Default: the session's currency. Example: \"USD\"."},
          "imageUrl": {"type": "string", "format": "uri", "maxLength": 2048, "description": "Absolute http(s) URL of an item image, on a public host. Example: \"https://shop.example.com/img/team.png\"."}
        },
        "required": ["name", "unitAmount"],
        "additionalProperties": false
      }
    },
    "allowPromotionCodes": {
      "type": "boolean",
      "description": "Let the customer enter promotion codes at checkout. Required (true) for promotionCode. Example: true."
    },
    "promotionCode": {
      "type": "string",
      "maxLength": 64,
      "description": "Promotion code to pre-fill; needs allowPromotionCodes: true. Example: \"SPRING10\"."
    },
    "showPromotionCode": {
      "type": "boolean",
      "description": "Show the promotion code field (default true). false needs promotionCode. Example: false."
    },
    "metadata": {
      "type": "object",
      "maxProperties": 20,
      "propertyNames": {"minLength": 1, "maxLength": 40},
      "additionalProperties": {"type": "string", "maxLength": 500},
      "description": "Up to 20 string key-value pairs stored with the session (keys up to 40 characters, values up to 500, neither with control characters). A key may not be the name of an argument or Clink field, in any case or spelling (amount, original_amount, customerEmail, ...). Example: {\"orderId\": \"42\"}."
    },
    "idempotencyKey": ` + idempotencyKeySchema + `
  },
  "required": ["amount", "currency"],
  "additionalProperties": false
}`

const checkoutSessionOutputSchema = `{
  "type": "object",
  "properties": {
    "sessionId": {"type": "string", "description": "Clink's ID of the checkout session."},
    "url": {"type": "string", "format": "uri", "description": "The checkout page to give the customer. Absent only when Clink's answer gave none that could be read: the session exists; get the URL with get_checkout_session."},
    "expireTime": {"type": "string", "format": "date-time", "description": "When the session expires (RFC 3339, UTC). Absent only when Clink's answer gave none that could be read."},
    "amount": {"type": "number", "description": "Total amount of the session, in major units of the currency."},
    "currency": {"type": "string", "description": "ISO 4217 currency code of the session."},
    "replayed": ` + replayedSchema + `
  },
  "required": ["sessionId", "amount", "currency"],
  "additionalProperties": false
}`

// amountEcho returns the amount and currency Clink's answer gives a
// created checkout session ("USD 12.50") when they differ from requested,
// the amount the policy allowed and the limits counted; "" when they agree
// or the answer gives none. The amounts are compared as numbers: "12.5"
// and "12.50" agree.
func amountEcho(sess *clink.CheckoutSession, requested policy.Money) string {
	if sess.OriginalAmount.IsZero() && sess.OriginalCurrency == "" {
		return ""
	}
	cur := sess.OriginalCurrency
	if cur == "" {
		cur = requested.Currency().Code()
	}
	want, _ := new(big.Rat).SetString(requested.Amount())
	if !sess.OriginalAmount.IsZero() {
		if got := sess.OriginalAmount.Rat(); got == nil || want == nil || got.Cmp(want) != 0 || cur != requested.Currency().Code() {
			return strings.TrimSpace(cur + " " + sess.OriginalAmount.String())
		}
		return ""
	}
	if cur != requested.Currency().Code() {
		return cur + " (no amount given)"
	}
	return ""
}
