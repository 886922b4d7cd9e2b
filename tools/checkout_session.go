package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/mark3labs/mcp-go/mcp"

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
	CustomerID                           string            `json:"customerId" validate:"omitempty,max=128"`
	CustomerEmail                        string            `json:"customerEmail" validate:"omitempty,max=254,email"`
	ReferenceCustomerID                  string            `json:"referenceCustomerId" validate:"omitempty,max=128"`
	MerchantReferenceID                  string            `json:"merchantReferenceId" validate:"omitempty,max=128"`
	PriceID                              string            `json:"priceId" validate:"omitempty,max=128"`
	ProductID                            string            `json:"productId" validate:"omitempty,max=128"`
	UIMode                               string            `json:"uiMode" validate:"omitempty,oneof=hostedPage elements"`
	ReturnURL                            string            `json:"returnUrl" validate:"omitempty,max=2048,http_url"`
	SuccessURL                           string            `json:"successUrl" validate:"omitempty,max=2048,http_url"`
	CancelURL                            string            `json:"cancelUrl" validate:"omitempty,max=2048,http_url"`
	PaymentMethodType                    string            `json:"paymentMethodType" validate:"omitempty,oneof=CARD CASHAPP WECHAT KAKAO PIX ALIPAY UPI PAYPAL GOOGLEPAY APPLEPAY QRIS GCASH"`
	PaymentMethodTypeBlackList           []string          `json:"paymentMethodTypeBlackList" validate:"omitempty,max=12,unique,dive,oneof=CARD CASHAPP WECHAT KAKAO PIX ALIPAY UPI PAYPAL GOOGLEPAY APPLEPAY QRIS GCASH"`
	DirectPaymentQrCodePaymentMethodType string            `json:"directPaymentQrCodePaymentMethodType" validate:"omitempty,oneof=CASHAPP QRIS"`
	PriceDataList                        []priceDataArgs   `json:"priceDataList" validate:"omitempty,max=100,dive"`
	AllowPromotionCodes                  *bool             `json:"allowPromotionCodes"`
	PromotionCode                        string            `json:"promotionCode" validate:"omitempty,max=64"`
	ShowPromotionCode                    *bool             `json:"showPromotionCode"`
	Metadata                             map[string]string `json:"metadata" validate:"omitempty,max=20,dive,keys,metadata_key,endkeys,metadata_value"`
	IdempotencyKey                       string            `json:"idempotencyKey" validate:"omitempty,min=8,max=128,printascii"`
}

// priceDataArgs is one line item of priceDataList.
type priceDataArgs struct {
	Name       string      `json:"name" validate:"required,max=200"`
	UnitAmount json.Number `json:"unitAmount" validate:"required"`
	Quantity   *int64      `json:"quantity" validate:"omitempty,min=1,max=10000"`
	Currency   string      `json:"currency" validate:"omitempty,iso4217"`
	ImageURL   string      `json:"imageUrl" validate:"omitempty,max=2048,http_url"`
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
	URL        string      `json:"url"`
	ExpireTime string      `json:"expireTime"`
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
			"where a customer pays an amount in a currency. Identify the customer by customerEmail, customerId or referenceCustomerId (at least one). " +
			"Returns the checkout url to give the customer, the sessionId and when it expires. " +
			"Each call creates a new session (not idempotent). " +
			"Limits set by this server's operator: " + ts.policy.Summary(policy.ToolCheckoutSession),
		RawInputSchema:  json.RawMessage(checkoutSessionInputSchema),
		RawOutputSchema: json.RawMessage(checkoutSessionOutputSchema),
		Annotations:     annotations("Create checkout session"),
	}
	return Tool{Tool: tool, Handler: ts.handleCheckoutSession}
}

func (ts *toolset) handleCheckoutSession(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	const tool = policy.ToolCheckoutSession
	caller := ts.caller(ctx)

	// 1. Strict decoding.
	var args checkoutSessionArgs
	if err := decodeStrict(rawArguments(req), checkoutSessionShape, &args); err != nil {
		return render(ts.gate.Invalid(ctx, caller, tool, "", err.(decodeProblems))), nil
	}
	args.CustomerEmail = strings.TrimSpace(args.CustomerEmail)

	// 2. Validation.
	problems := validate(ts.validate, &args)
	var (
		amount policy.Money
		email  string
		items  []policy.LineItem
	)
	if len(problems) == 0 {
		var err error
		if amount, err = parseAmount("amount", args.Amount, args.Currency); err != nil {
			problems = append(problems, err.Error())
		}
		if args.CustomerEmail != "" {
			if email, err = policy.NormalizeEmail(args.CustomerEmail); err != nil {
				problems = append(problems, fmt.Sprintf(`argument "customerEmail": %v`, err))
			}
		}
		for i, item := range args.PriceDataList {
			currency := item.Currency
			if currency == "" {
				currency = args.Currency
			}
			unit, err := parseAmount(fmt.Sprintf("priceDataList[%d].unitAmount", i), item.UnitAmount, currency)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			items = append(items, policy.LineItem{UnitAmount: unit, Quantity: quantity(item.Quantity)})
		}
	}
	if len(problems) > 0 {
		return render(ts.gate.Invalid(ctx, caller, tool, args.CustomerEmail, problems)), nil
	}

	// 3. The order, with exactly the money the policy will see.
	request, err := checkoutRequest(&args, amount, email, items)
	if err != nil {
		return ts.internal(ctx, caller, tool, err), nil
	}
	fingerprint, err := json.Marshal(request)
	if err != nil {
		return ts.internal(ctx, caller, tool, err), nil
	}
	return render(ts.gate.Create(ctx, caller, &gate.Order{
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
			out := checkoutSessionResult{
				SessionID:  sess.SessionID,
				URL:        sess.URL,
				ExpireTime: formatTime(sess.ExpireTime.Time),
				Amount:     json.Number(amount.Amount()),
				Currency:   amount.Currency().Code(),
			}
			return created(out.SessionID, out, fmt.Sprintf("Created checkout session %s for %s; the customer pays at %s (expires %s).",
				out.SessionID, amount, out.URL, out.ExpireTime))
		},
	})), nil
}

// quantity is a line item's quantity, 1 when not given.
func quantity(q *int64) int64 {
	if q == nil {
		return 1
	}
	return *q
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
      "description": "Customer's email address; Clink finds the customer by it or creates one. At least one of customerEmail, customerId, referenceCustomerId is required. Example: \"alice@example.com\"."
    },
    "customerId": {
      "type": "string",
      "maxLength": 128,
      "description": "Clink's ID of an existing customer; when given, customerEmail and referenceCustomerId must belong to the same customer. Example: \"cus_8f2a1c\"."
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
      "format": "uri",
      "maxLength": 2048,
      "description": "Absolute http(s) URL to return to after embedded checkout; required when uiMode is \"elements\". {ELEMENTS_SESSION_ID} in it is replaced by the session ID. Example: \"https://shop.example.com/complete?session_id={ELEMENTS_SESSION_ID}\"."
    },
    "successUrl": {
      "type": "string",
      "format": "uri",
      "maxLength": 2048,
      "description": "Absolute http(s) URL the customer is sent to after paying. Example: \"https://shop.example.com/thanks\"."
    },
    "cancelUrl": {
      "type": "string",
      "format": "uri",
      "maxLength": 2048,
      "description": "Absolute http(s) URL the customer is sent to on cancelling. Example: \"https://shop.example.com/cart\"."
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
      "description": "One-time line items, for a purchase without dashboard products. The per-session cap applies to the larger of amount and the sum of unitAmount x quantity.",
      "items": {
        "type": "object",
        "properties": {
          "name": {"type": "string", "maxLength": 200, "description": "Item name shown to the customer. Example: \"Team plan, 1 month\"."},
          "unitAmount": {"type": "number", "exclusiveMinimum": 0, "description": "Price of one unit in major units of the item's currency, no more decimals than the currency has. Example: 9.5."},
          "quantity": {"type": "integer", "minimum": 1, "maximum": 10000, "description": "Number of units. Default 1. Example: 2."},
          "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of unitAmount. Default: the session's currency. Example: \"USD\"."},
          "imageUrl": {"type": "string", "format": "uri", "maxLength": 2048, "description": "Absolute http(s) URL of an item image. Example: \"https://shop.example.com/img/team.png\"."}
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
      "description": "Up to 20 string key-value pairs stored with the session (keys up to 40 characters, values up to 500). Example: {\"orderId\": \"42\"}."
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
    "url": {"type": "string", "format": "uri", "description": "The checkout page to give the customer."},
    "expireTime": {"type": "string", "format": "date-time", "description": "When the session expires (RFC 3339, UTC)."},
    "amount": {"type": "number", "description": "Total amount of the session, in major units of the currency."},
    "currency": {"type": "string", "description": "ISO 4217 currency code of the session."},
    "replayed": ` + replayedSchema + `
  },
  "required": ["sessionId", "url", "expireTime", "amount", "currency"],
  "additionalProperties": false
}`
