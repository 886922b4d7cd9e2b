package clink_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/clink"
)

// recorded is what the server saw of one request.
type recorded struct {
	method, path  string // path as sent, escaped
	header        http.Header
	contentLength int64
	body          string
}

// recordingServer answers every request with reply and records it.
func recordingServer(t *testing.T, reply string) (*httptest.Server, chan recorded) {
	t.Helper()
	got := make(chan recorded, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- recorded{r.Method, r.URL.EscapedPath(), r.Header.Clone(), r.ContentLength, string(body)}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func ptr[T any](v T) *T { return &v }

func TestEachMethodSendsExactlyTheDocumentedRequest(t *testing.T) {
	stamp := strconv.FormatInt(fixedNow.UnixMilli(), 10)
	tests := []struct {
		name     string
		call     func(context.Context, *clink.Client) (any, error)
		reply    string
		method   string
		path     string
		body     string
		want     any
		wantBody bool
	}{
		{
			name: "create agent payment session posts email, exact amount and currency",
			call: func(ctx context.Context, c *clink.Client) (any, error) {
				return c.CreateAgentPaymentSession(ctx, &clink.AgentPaymentSessionRequest{
					CustomerEmail: "ada@example.com", Amount: mustAmount(t, "19.99"), Currency: "USD",
				})
			},
			reply:  `{"code":200,"msg":"success","data":{"sessionId":"aps_1","expireTime":"2026-01-01 00:30:00"}}`,
			method: http.MethodPost,
			path:   "/api/order/payment-session",
			body:   `{"customerEmail":"ada@example.com","amount":19.99,"currency":"USD"}`,
			want: &clink.AgentPaymentSession{
				SessionID: "aps_1", ExpireTime: clink.Time{Time: time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)},
			},
		},
		{
			name: "get agent payment session puts the ID in the path and sends no body",
			call: func(ctx context.Context, c *clink.Client) (any, error) {
				return c.GetAgentPaymentSession(ctx, "aps_AZaz09-_")
			},
			reply: `{"code":200,"msg":"success","data":{"sessionId":"aps_1","customerEmail":"ada@example.com",` +
				`"customerId":"cus_1","amount":19.990,"currency":"USD","merchantId":"m1","tenantId":"t1",` +
				`"createTime":1767225600123,"expireTime":"2026-01-01T00:30:00+0000"}}`,
			method: http.MethodGet,
			path:   "/api/order/payment-session/aps_AZaz09-_",
			want: &clink.AgentPaymentSessionInfo{
				SessionID: "aps_1", CustomerEmail: "ada@example.com", CustomerID: "cus_1",
				Amount: mustAmount(t, "19.990"), Currency: "USD", MerchantID: "m1", TenantID: "t1",
				CreateTime: clink.Time{Time: fixedNow.UTC()}, ExpireTime: clink.Time{Time: time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)},
			},
		},
		{
			name: "create checkout session posts every field under Clink's wire names",
			call: func(ctx context.Context, c *clink.Client) (any, error) {
				return c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{
					OriginalAmount:                       mustAmount(t, "1234.50"),
					OriginalCurrency:                     "EUR",
					CustomerID:                           "cus_1",
					CustomerEmail:                        "ada@example.com",
					ReferenceCustomerID:                  "ref-1",
					MerchantReferenceID:                  "order-7",
					PriceID:                              "price_1",
					ProductID:                            "prod_1",
					UIMode:                               clink.UIModeElements,
					ReturnURL:                            "https://shop.example/done?s={ELEMENTS_SESSION_ID}&a=1",
					SuccessURL:                           "https://shop.example/ok",
					CancelURL:                            "https://shop.example/cancel",
					PaymentMethodType:                    "CASHAPP",
					PaymentMethodTypeBlackList:           []string{"PIX", "UPI"},
					DirectPaymentQrCodePaymentMethodType: "CASHAPP",
					PriceDataList: []clink.PriceData{
						{Name: "Tea", UnitAmount: mustAmount(t, "0.10"), Quantity: 3, Currency: "EUR", ImageURL: "https://shop.example/tea.png"},
						{Name: "Cup", UnitAmount: mustAmount(t, "1234.2")},
					},
					AllowPromotionCodes: ptr(true),
					PromotionCode:       "SPRING",
					ShowPromotionCode:   ptr(false),
					Metadata:            map[string]string{"b": "2", "a": "<1>"},
				})
			},
			reply: `{"code":200,"msg":"success","data":{"sessionId":"sess_1","url":"https://pay.example/sess_1",` +
				`"expireTime":"2026-01-01T00:30:00Z","customerId":"cus_1","originalAmount":1234.50,` +
				`"originalCurrency":"EUR","uiMode":"elements","returnUrl":"https://shop.example/done?s=sess_1&a=1",` +
				`"merchantReferenceId":"order-7","tokenValue":"tok_secret"}}`,
			method: http.MethodPost,
			path:   "/api/checkout/session",
			body: `{"originalAmount":1234.50,"originalCurrency":"EUR","customerId":"cus_1",` +
				`"customerEmail":"ada@example.com","referenceCustomerId":"ref-1","merchantReferenceId":"order-7",` +
				`"priceId":"price_1","productId":"prod_1","uiMode":"elements",` +
				`"returnUrl":"https://shop.example/done?s={ELEMENTS_SESSION_ID}&a=1",` +
				`"successUrl":"https://shop.example/ok","cancelUrl":"https://shop.example/cancel",` +
				`"paymentMethodType":"CASHAPP","paymentMethodTypeBlackList":["PIX","UPI"],` +
				`"directPaymentQrCodePaymentMethodType":"CASHAPP","priceDataList":[` +
				`{"name":"Tea","unitAmount":0.10,"quantity":3,"currency":"EUR","imageUrl":"https://shop.example/tea.png"},` +
				`{"name":"Cup","unitAmount":1234.2}],"allowPromotionCodes":true,"promotionCode":"SPRING",` +
				`"showPromotionCode":false,"metadata":{"a":"<1>","b":"2"}}`,
			want: &clink.CheckoutSession{
				SessionID: "sess_1", URL: "https://pay.example/sess_1",
				ExpireTime: clink.Time{Time: time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)}, CustomerID: "cus_1",
				OriginalAmount: mustAmount(t, "1234.50"), OriginalCurrency: "EUR", UIMode: "elements",
				ReturnURL: "https://shop.example/done?s=sess_1&a=1", MerchantReferenceID: "order-7",
				TokenValue: clink.NewSecret("tok_secret"),
			},
		},
		{
			name: "create checkout session omits every optional field left empty",
			call: func(ctx context.Context, c *clink.Client) (any, error) {
				return c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{
					OriginalAmount: mustAmount(t, "5"), OriginalCurrency: "JPY", CustomerEmail: "ada@example.com",
				})
			},
			reply:  `{"code":200,"msg":"success","data":{"sessionId":"sess_2"}}`,
			method: http.MethodPost,
			path:   "/api/checkout/session",
			body:   `{"originalAmount":5,"originalCurrency":"JPY","customerEmail":"ada@example.com"}`,
			want:   &clink.CheckoutSession{SessionID: "sess_2"},
		},
		{
			name: "get checkout session reads status, payment status, amounts and line items but not the token",
			call: func(ctx context.Context, c *clink.Client) (any, error) {
				return c.GetCheckoutSession(ctx, "sess_1")
			},
			reply: `{"code":200,"msg":"success","data":{"sessionId":"sess_1","url":"https://pay.example/sess_1",` +
				`"status":"open","paymentStatus":"unpaid","orderId":null,"expireTime":"1767227400000",` +
				`"createTime":"2026-01-01 00:00:00","customerId":"cus_1","originalAmount":"7.5","originalCurrency":"USD",` +
				`"amount":19.99,"currency":"EUR","uiMode":"hostedPage","returnUrl":"https://shop.example/back",` +
				`"successUrl":"https://shop.example/ok","cancelUrl":"https://shop.example/cancel","merchantReferenceId":"order-7",` +
				`"priceDataList":[{"name":"Tea","unitAmount":2.50,"quantity":3,"currency":"USD","extra":{"a":[1]}}],` +
				`"tokenValue":"tok_x","unknownField":1,"unknownObject":{"tokenValue":"tok_y"}}}`,
			method: http.MethodGet,
			path:   "/api/checkout/session/sess_1",
			want: &clink.CheckoutSessionInfo{
				SessionID: "sess_1", URL: "https://pay.example/sess_1", Status: clink.StatusOpen,
				PaymentStatus: clink.PaymentStatusUnpaid, ExpireTime: clink.Time{Time: time.UnixMilli(1767227400000).UTC()},
				CreateTime: clink.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
				CustomerID: "cus_1", OriginalAmount: mustAmount(t, "7.5"), OriginalCurrency: "USD",
				Amount: mustAmount(t, "19.99"), Currency: "EUR",
				UIMode: clink.UIModeHostedPage, ReturnURL: "https://shop.example/back", SuccessURL: "https://shop.example/ok",
				CancelURL: "https://shop.example/cancel", MerchantReferenceID: "order-7",
				PriceDataList: []clink.PriceData{{Name: "Tea", UnitAmount: mustAmount(t, "2.50"), Quantity: 3, Currency: "USD"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := recordingServer(t, tt.reply)
			c := newClient(t, srv.URL+"/api", clink.WithClock(func() time.Time { return fixedNow }))
			res, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			if diff := cmp.Diff(tt.want, res, cmp.Comparer(func(a, b clink.Secret) bool { return a.Reveal() == b.Reveal() }),
				cmp.Comparer(func(a, b clink.Amount) bool { return a.String() == b.String() })); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			r := <-got
			if r.method != tt.method || r.path != tt.path {
				t.Errorf("request line = %s %s, want %s %s", r.method, r.path, tt.method, tt.path)
			}
			if r.body != tt.body {
				t.Errorf("body =\n%s\nwant\n%s", r.body, tt.body)
			}
			if r.contentLength != int64(len(tt.body)) {
				t.Errorf("Content-Length = %d, want %d", r.contentLength, len(tt.body))
			}
			wantHeader := http.Header{
				"X-Api-Key":   {testKey},
				"X-Timestamp": {stamp},
				"Accept":      {"application/json"},
				"User-Agent":  {clink.DefaultUserAgent},
			}
			if tt.body != "" {
				wantHeader["Content-Type"] = []string{"application/json"}
			}
			r.header.Del("Accept-Encoding") // added by Go's transport
			r.header.Del("Content-Length")
			if diff := cmp.Diff(wantHeader, r.header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTheUserAgentOptionReplacesTheDefault(t *testing.T) {
	srv, got := recordingServer(t, `{"code":200,"msg":"success","data":{"sessionId":"sess_1"}}`)
	c := newClient(t, srv.URL, clink.WithUserAgent("acme-agent/2.0"))
	if _, err := c.GetCheckoutSession(t.Context(), "sess_1"); err != nil {
		t.Fatal(err)
	}
	if ua := (<-got).header.Get("User-Agent"); ua != "acme-agent/2.0" {
		t.Errorf("User-Agent = %q, want acme-agent/2.0", ua)
	}
}

func TestRequestsTheClientCannotSendAreRefusedBeforeAnyNetworkCall(t *testing.T) {
	srv, got := recordingServer(t, `{}`)
	c := newClient(t, srv.URL)
	ctx := t.Context()
	calls := map[string]func() error{
		"a nil agent payment session request": func() error { _, err := c.CreateAgentPaymentSession(ctx, nil); return err },
		"an agent payment session without an amount": func() error {
			_, err := c.CreateAgentPaymentSession(ctx, &clink.AgentPaymentSessionRequest{CustomerEmail: "a@b.c", Currency: "USD"})
			return err
		},
		"a nil checkout session request": func() error { _, err := c.CreateCheckoutSession(ctx, nil); return err },
		"a checkout session without an original amount": func() error {
			_, err := c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{OriginalCurrency: "USD", CustomerID: "c"})
			return err
		},
		"a line item without a unit amount": func() error {
			_, err := c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{
				OriginalAmount: mustAmount(t, "1"), OriginalCurrency: "USD", CustomerID: "c",
				PriceDataList: []clink.PriceData{{Name: "x"}},
			})
			return err
		},
		"an empty checkout session ID":      func() error { _, err := c.GetCheckoutSession(ctx, ""); return err },
		"an empty agent payment session ID": func() error { _, err := c.GetAgentPaymentSession(ctx, ""); return err },
		"a dot-dot session ID":              func() error { _, err := c.GetCheckoutSession(ctx, ".."); return err },
		"a session ID with a slash":         func() error { _, err := c.GetAgentPaymentSession(ctx, "aps/../x"); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, clink.ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	select {
	case r := <-got:
		t.Errorf("a refused call reached the server: %s %s", r.method, r.path)
	default:
	}
}
