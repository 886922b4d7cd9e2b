package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// answer is a decoded sandbox response.
type answer struct {
	status int
	ctype  string
	raw    string
	Code   int             `json:"code"`
	Msg    string          `json:"msg"`
	Data   json.RawMessage `json:"data"`
}

// call sends one request straight to the handler with valid headers, changed by hdr (an
// empty value deletes the header).
func call(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) answer {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("X-API-KEY", sandbox.DefaultAPIKey)
	r.Header.Set("X-Timestamp", strconv.FormatInt(now.UnixMilli(), 10))
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	a := answer{status: w.Code, ctype: w.Header().Get("Content-Type"), raw: w.Body.String()}
	if strings.HasPrefix(a.ctype, "application/json") {
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatalf("answer is not JSON: %v: %q", err, a.raw)
		}
	}
	return a
}

func newSandbox(opts ...sandbox.Option) *sandbox.Server {
	s := sandbox.New(append([]sandbox.Option{sandbox.WithClock(clock)}, opts...)...)
	s.AddCustomer(sandbox.Customer{ID: "cus_ada", Email: "ada@example.com", ReferenceID: "ref-ada"})
	s.AddCustomer(sandbox.Customer{ID: "cus_bob", Email: "bob@example.com", ReferenceID: "ref-bob"})
	s.AddCustomer(sandbox.Customer{ID: "cus_eve"}) // no email or reference yet
	return s
}

const (
	agentPath    = "/order/payment-session"
	checkoutPath = "/checkout/session"
)

func TestTheSandboxEnforcesClinksRules(t *testing.T) {
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		hdr        map[string]string
		wantStatus int
		wantCode   int
		wantMsg    string // prefix
	}{
		{"a missing key is a plain-text 401", "GET", checkoutPath + "/x", "", map[string]string{"X-API-KEY": ""}, 401, 0, ""},
		{"a wrong key is a plain-text 401", "GET", checkoutPath + "/x", "", map[string]string{"X-API-KEY": "sk_test_other"}, 401, 0, ""},
		{"a missing timestamp is refused", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": ""}, 200, 80102212, "TIMESTAMP_MISSING"},
		{"a timestamp in seconds with a fraction is invalid", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": "1767268800.5"}, 200, 80102213, "TIMESTAMP_INVALID"},
		{"a timestamp with a plus sign is invalid", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": "+" + ms(0)}, 200, 80102213, "TIMESTAMP_INVALID"},
		{"a negative timestamp is invalid", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": "-" + ms(0)}, 200, 80102213, "TIMESTAMP_INVALID"},
		{"a timestamp older than the skew is expired", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": ms(-5*time.Minute - time.Millisecond)}, 200, 80102203, "TIMESTAMP_EXPIRED"},
		{"a timestamp ahead by more than the skew is expired", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": ms(5*time.Minute + time.Millisecond)}, 200, 80102203, "TIMESTAMP_EXPIRED"},
		{"a timestamp at the edge of the skew is accepted", "GET", checkoutPath + "/x", "", map[string]string{"X-Timestamp": ms(-5 * time.Minute)}, 200, 404, "SESSION_NOT_FOUND"},
		{"an unknown path is a 404", "GET", "/order/other", "", nil, 404, 404, "NOT_FOUND"},
		{"a nested session path is a 404", "GET", checkoutPath + "/a/b", "", nil, 404, 404, "NOT_FOUND"},
		{"a GET of the create path is a 405", "GET", agentPath, "", nil, 405, 405, "METHOD_NOT_ALLOWED"},
		{"a POST to a session is a 405", "POST", agentPath + "/x", "{}", nil, 405, 405, "METHOD_NOT_ALLOWED"},
		{"a body that is not declared JSON is a 415", "POST", agentPath, `{}`, map[string]string{"Content-Type": "text/plain"}, 415, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"a body over 1 MiB is a 413", "POST", agentPath, `{"customerEmail":"` + strings.Repeat("a", 1<<20) + `"}`, nil, 413, 413, "REQUEST_TOO_LARGE"},
		{"a misspelt wire name is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","paymentMethodTypeBlacklist":["PIX"]}`, nil, 200, 400, `INVALID_PARAMETER: json: unknown field "paymentMethodTypeBlacklist"`},
		{"a misspelt line item field is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"name":"x","unitamount":1}]}`, nil, 200, 400, `INVALID_PARAMETER: priceDataList: json: unknown field "unitamount"`},
		{"a body with trailing data is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":1,"currency":"USD"} x`, nil, 200, 400, "INVALID_PARAMETER"},
		{"a key given twice is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":1,"currency":"USD","amount":1000}`, nil, 200, 400, `INVALID_PARAMETER: json: duplicate field "amount"`},
		{"a key given twice in a line item is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"name":"x","unitAmount":1},{"name":"y","unitAmount":1,"name":"z"}]}`, nil, 200, 400, `INVALID_PARAMETER: json: duplicate field "priceDataList[1].name"`},
		{"a metadata key given twice is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","metadata":{"k":"v","\u006b":"w"}}`, nil, 200, 400, `INVALID_PARAMETER: json: duplicate field "metadata.k"`},
		{"an agent session needs an email", "POST", agentPath, `{"amount":1,"currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: customerEmail is required"},
		{"an agent session needs a valid email", "POST", agentPath, `{"customerEmail":"ada","amount":1,"currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: customerEmail is not an email address"},
		{"an agent session needs an amount", "POST", agentPath, `{"customerEmail":"a@b.c","currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: amount is required"},
		{"an agent session under 0.5 is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":0.4999,"currency":"USD"}`, nil, 200, 90101206, "AMOUNT_OR_CURRENCY_INCORRECT: amount must be at least 0.5"},
		{"an agent session of exactly 0.5 is accepted", "POST", agentPath, `{"customerEmail":"a@b.c","amount":0.50,"currency":"USD"}`, nil, 200, 200, "success"},
		{"a lower-case currency is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":1,"currency":"usd"}`, nil, 200, 90101206, "AMOUNT_OR_CURRENCY_INCORRECT: currency"},
		{"an agent amount sent as a string is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":"10.00","currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: json: cannot unmarshal string into Go struct field agentRequest.amount"},
		{"an original amount sent as a string is refused", "POST", checkoutPath, `{"originalAmount": "10.00","originalCurrency":"USD","customerId":"cus_ada"}`, nil, 200, 400, "INVALID_PARAMETER: json: cannot unmarshal string into Go struct field checkoutRequest.originalAmount"},
		{"a unit amount sent as a string is refused", "POST", checkoutPath, `{"originalAmount":10,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"name":"x","unitAmount":"10"}]}`, nil, 200, 400, "INVALID_PARAMETER: priceDataList: json: cannot unmarshal string into Go struct field priceData.unitAmount"},
		{"a null amount is a missing one", "POST", agentPath, `{"customerEmail":"a@b.c","amount":null,"currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: amount is required"},
		{"an absurd exponent is refused", "POST", agentPath, `{"customerEmail":"a@b.c","amount":1e999999999,"currency":"USD"}`, nil, 200, 400, "INVALID_PARAMETER: amount is not a number"},
		{"a checkout needs an original amount", "POST", checkoutPath, `{"originalCurrency":"USD","customerId":"cus_ada"}`, nil, 200, 400, "INVALID_PARAMETER: originalAmount is required"},
		{"a zero original amount is refused", "POST", checkoutPath, `{"originalAmount":0,"originalCurrency":"USD","customerId":"cus_ada"}`, nil, 200, 90101206, "AMOUNT_OR_CURRENCY_INCORRECT: originalAmount must be greater than 0"},
		{"a negative original amount is refused", "POST", checkoutPath, `{"originalAmount":-1,"originalCurrency":"USD","customerId":"cus_ada"}`, nil, 200, 90101206, "AMOUNT_OR_CURRENCY_INCORRECT"},
		{"an unknown UI mode is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","uiMode":"popup"}`, nil, 200, 400, "INVALID_PARAMETER: uiMode"},
		{"elements without a return URL is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","uiMode":"elements"}`, nil, 200, 400, "RETURN_URL_REQUIRED"},
		{"an unknown payment method is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","paymentMethodType":"BITCOIN"}`, nil, 200, 400, "INVALID_PARAMETER: paymentMethodType"},
		{"an unknown blacklisted method is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","paymentMethodTypeBlackList":["CARD","CHEQUE"]}`, nil, 200, 400, "INVALID_PARAMETER: paymentMethodTypeBlackList"},
		{"a direct QR method other than CASHAPP or QRIS is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","directPaymentQrCodePaymentMethodType":"PIX"}`, nil, 200, 400, "INVALID_PARAMETER: directPaymentQrCodePaymentMethodType"},
		{"hiding the promotion code needs a code", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","showPromotionCode":false}`, nil, 200, 400, "INVALID_PARAMETER: promotionCode is required"},
		{"metadata with 21 keys is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","metadata":{` + metadataKeys(21) + `}}`, nil, 200, 400, "INVALID_PARAMETER: metadata has more than 20 keys"},
		{"a metadata key over 40 characters is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","metadata":{"` + strings.Repeat("k", 41) + `":"v"}}`, nil, 200, 400, "INVALID_PARAMETER: metadata keys"},
		{"a line item needs a name", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"unitAmount":1}]}`, nil, 200, 400, "INVALID_PARAMETER: priceDataList[0].name"},
		{"a line item needs a positive unit amount", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"name":"x","unitAmount":0}]}`, nil, 200, 90101206, "AMOUNT_OR_CURRENCY_INCORRECT: priceDataList[0].unitAmount"},
		{"a line item quantity of 0 is refused", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","priceDataList":[{"name":"x","unitAmount":1,"quantity":0}]}`, nil, 200, 400, "INVALID_PARAMETER: priceDataList[0].quantity"},
		{"a checkout without any customer identifier is CUSTOMER_NOT_FOUND", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD"}`, nil, 200, 400, "CUSTOMER_NOT_FOUND"},
		{"an unknown customer ID is CUSTOMER_NOT_FOUND", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_zed"}`, nil, 200, 400, "CUSTOMER_NOT_FOUND"},
		{"one customer's email and another's reference ID do not match", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerEmail":"ada@example.com","referenceCustomerId":"ref-bob"}`, nil, 200, 400, "CUSTOMER_IDENTIFIER_NOT_MATCHED"},
		{"a customer ID with another customer's email does not match", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","customerEmail":"bob@example.com"}`, nil, 200, 400, "CUSTOMER_IDENTIFIER_NOT_MATCHED"},
		{"a customer ID with another customer's reference ID does not match", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","referenceCustomerId":"ref-bob"}`, nil, 200, 400, "CUSTOMER_IDENTIFIER_NOT_MATCHED"},
		{"a customer ID with a new email differing from the customer's does not match", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","customerEmail":"ada2@example.com"}`, nil, 200, 400, "CUSTOMER_IDENTIFIER_NOT_MATCHED"},
		{"a customer ID with its own email in other case matches", "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada","customerEmail":"ADA@example.com","referenceCustomerId":"ref-ada"}`, nil, 200, 200, "success"},
		{"an unknown session is SESSION_NOT_FOUND", "GET", agentPath + "/aps_nope", "", nil, 200, 404, "SESSION_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox()
			a := call(t, s, tt.method, tt.path, tt.body, tt.hdr)
			if a.status != tt.wantStatus || a.Code != tt.wantCode || !strings.HasPrefix(a.Msg, tt.wantMsg) {
				t.Errorf("got HTTP %d, code %d, msg %q; want HTTP %d, code %d, msg starting %q (body %.200s)",
					a.status, a.Code, a.Msg, tt.wantStatus, tt.wantCode, tt.wantMsg, a.raw)
			}
			if tt.wantStatus == 401 && (a.ctype != "text/plain; charset=utf-8" || a.raw != "Unauthorized") {
				t.Errorf("401 answer = %q %q, want plain-text Unauthorized", a.ctype, a.raw)
			}
			wantSessions := 0
			if tt.wantCode == 200 {
				wantSessions = 1
			}
			if n := s.SessionCount(); n != wantSessions {
				t.Errorf("sandbox holds %d sessions, want %d", n, wantSessions)
			}
		})
	}
}

func metadataKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	return strings.Join(keys, ",")
}

func TestCustomersResolveBindAndAreCreatedAsClinkDocuments(t *testing.T) {
	s := newSandbox()
	customerOf := func(body string) string {
		t.Helper()
		a := call(t, s, "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD",`+body+`}`, nil)
		if a.Code != 200 {
			t.Fatalf("create with %s: code %d %q", body, a.Code, a.Msg)
		}
		var d struct{ CustomerID string }
		if err := json.Unmarshal(a.Data, &d); err != nil {
			t.Fatal(err)
		}
		return d.CustomerID
	}
	if id := customerOf(`"customerEmail":"Ada@Example.com"`); id != "cus_ada" {
		t.Errorf("a known email in other case resolved to %q, want cus_ada", id)
	}
	if id := customerOf(`"referenceCustomerId":"ref-bob"`); id != "cus_bob" {
		t.Errorf("a known reference ID resolved to %q, want cus_bob", id)
	}
	if id := customerOf(`"customerId":"cus_eve","customerEmail":"eve@example.com"`); id != "cus_eve" {
		t.Errorf("a customer ID with a new email resolved to %q, want cus_eve", id)
	}
	if id := customerOf(`"customerEmail":"eve@example.com"`); id != "cus_eve" {
		t.Errorf("the email bound to cus_eve resolved to %q", id)
	}
	created := customerOf(`"customerEmail":"new@example.com","referenceCustomerId":"ref-new"`)
	if !strings.HasPrefix(created, "cus_") || created == "cus_ada" || created == "cus_bob" || created == "cus_eve" {
		t.Errorf("unknown identifiers resolved to %q, want a new customer", created)
	}
	if id := customerOf(`"referenceCustomerId":"ref-new"`); id != created {
		t.Errorf("the new customer's reference ID resolved to %q, want %q", id, created)
	}
	if n := len(s.Customers()); n != 4 {
		t.Errorf("sandbox knows %d customers, want 4", n)
	}
}

func TestSessionsReturnWhatWasCreatedWithTheExactDigits(t *testing.T) {
	s := newSandbox(sandbox.WithTokenGenerator(func() string { return "tok_known" }), sandbox.WithSessionTTL(time.Hour))
	a := call(t, s, "POST", agentPath, `{"customerEmail":"ada@example.com","amount":12.3400,"currency":"EUR"}`, nil)
	var created struct{ SessionID, ExpireTime string }
	if err := json.Unmarshal(a.Data, &created); err != nil || a.Code != 200 {
		t.Fatalf("create: %v %s", err, a.raw)
	}
	if created.ExpireTime != "2026-01-01T13:00:00.000Z" {
		t.Errorf("expireTime = %q, want an hour after now", created.ExpireTime)
	}
	got := call(t, s, "GET", agentPath+"/"+created.SessionID, "", nil)
	want := `{"sessionId":"` + created.SessionID + `","customerEmail":"ada@example.com","customerId":"cus_ada",` +
		`"amount":12.3400,"currency":"EUR","merchantId":"mch_sandbox","tenantId":"tenant_sandbox",` +
		`"createTime":"2026-01-01T12:00:00.000Z","expireTime":"2026-01-01T13:00:00.000Z"}`
	if string(got.Data) != want {
		t.Errorf("agent session =\n%s\nwant\n%s", got.Data, want)
	}

	a = call(t, s, "POST", checkoutPath, `{"originalAmount":99.90,"originalCurrency":"USD","customerId":"cus_bob",`+
		`"uiMode":"elements","returnUrl":"https://shop.example/r?id={ELEMENTS_SESSION_ID}","merchantReferenceId":"o-1",`+
		`"priceDataList":[{"name":"Tea","unitAmount":33.30,"quantity":3}]}`, nil)
	var cs struct{ SessionID string }
	if err := json.Unmarshal(a.Data, &cs); err != nil || a.Code != 200 {
		t.Fatalf("create checkout: %v %s", err, a.raw)
	}
	id := cs.SessionID
	wantCreated := `{"sessionId":"` + id + `","url":"https://sandbox-checkout.clink-mcp.invalid/pay/` + id + `",` +
		`"expireTime":"2026-01-01T13:00:00.000Z","customerId":"cus_bob","originalAmount":99.90,"originalCurrency":"USD",` +
		`"uiMode":"elements","returnUrl":"https://shop.example/r?id=` + id + `","merchantReferenceId":"o-1","tokenValue":"tok_known"}`
	if string(a.Data) != wantCreated {
		t.Errorf("created checkout session =\n%s\nwant\n%s", a.Data, wantCreated)
	}
	got = call(t, s, "GET", checkoutPath+"/"+id, "", nil)
	wantGot := `{"sessionId":"` + id + `","url":"https://sandbox-checkout.clink-mcp.invalid/pay/` + id + `",` +
		`"status":"open","paymentStatus":"unpaid","orderId":null,"createTime":"2026-01-01T12:00:00.000Z",` +
		`"expireTime":"2026-01-01T13:00:00.000Z","customerId":"cus_bob","originalAmount":99.90,"originalCurrency":"USD",` +
		`"amount":99.90,"currency":"USD","uiMode":"elements",` +
		`"returnUrl":"https://shop.example/r?id=` + id + `","merchantReferenceId":"o-1",` +
		`"priceDataList":[{"name":"Tea","unitAmount":33.30,"quantity":3}],"tokenValue":"tok_known"}`
	if string(got.Data) != wantGot {
		t.Errorf("checkout session =\n%s\nwant\n%s", got.Data, wantGot)
	}
}

func TestACheckoutSessionExpiresAfterItsTTL(t *testing.T) {
	var mu sync.Mutex
	at := now
	s := sandbox.New(sandbox.WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return at }), sandbox.WithSessionTTL(time.Minute))
	a := call(t, s, "POST", checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerEmail":"a@b.c"}`, nil)
	var cs struct{ SessionID string }
	_ = json.Unmarshal(a.Data, &cs)
	status := func() string {
		mu.Lock()
		stamp := strconv.FormatInt(at.UnixMilli(), 10)
		mu.Unlock()
		got := call(t, s, "GET", checkoutPath+"/"+cs.SessionID, "", map[string]string{"X-Timestamp": stamp})
		var d struct{ Status, PaymentStatus string }
		_ = json.Unmarshal(got.Data, &d)
		return d.Status + "/" + d.PaymentStatus
	}
	if got := status(); got != "open/unpaid" {
		t.Errorf("a new session is %s, want open/unpaid", got)
	}
	mu.Lock()
	at = at.Add(time.Minute - time.Millisecond)
	mu.Unlock()
	if got := status(); got != "open/unpaid" {
		t.Errorf("a session just before its expiry is %s, want open/unpaid", got)
	}
	mu.Lock()
	at = at.Add(time.Millisecond)
	mu.Unlock()
	if got := status(); got != "expired/unpaid" {
		t.Errorf("a session at its expiry is %s, want expired/unpaid", got)
	}
}

func TestTheSandboxForgetsItsOldestSessionsBeyondItsLimit(t *testing.T) {
	s := newSandbox(sandbox.WithMaxSessions(2))
	var ids []string
	for _, req := range []struct{ path, body string }{
		{agentPath, `{"customerEmail":"ada@example.com","amount":1,"currency":"USD"}`},
		{checkoutPath, `{"originalAmount":1,"originalCurrency":"USD","customerId":"cus_ada"}`},
		{agentPath, `{"customerEmail":"bob@example.com","amount":2,"currency":"USD"}`},
	} {
		a := call(t, s, "POST", req.path, req.body, nil)
		var created struct{ SessionID string }
		if err := json.Unmarshal(a.Data, &created); err != nil || a.Code != 200 {
			t.Fatalf("create: %v %s", err, a.raw)
		}
		ids = append(ids, req.path+"/"+created.SessionID)
	}
	if n := s.SessionCount(); n != 2 {
		t.Errorf("SessionCount = %d, want 2", n)
	}
	if a := call(t, s, "GET", ids[0], "", nil); a.Code != 404 || a.Msg != "SESSION_NOT_FOUND" {
		t.Errorf("the oldest session answered %d %q, want 404 SESSION_NOT_FOUND", a.Code, a.Msg)
	}
	for _, id := range ids[1:] {
		if a := call(t, s, "GET", id, "", nil); a.Code != 200 {
			t.Errorf("GET %s answered %d %q, want 200", id, a.Code, a.Msg)
		}
	}
}

func TestGetsCheckTheSameAuthenticationAsCreates(t *testing.T) {
	s := newSandbox()
	a := call(t, s, "POST", agentPath, `{"customerEmail":"ada@example.com","amount":1,"currency":"USD"}`, nil)
	var created struct{ SessionID string }
	if err := json.Unmarshal(a.Data, &created); err != nil || a.Code != 200 {
		t.Fatalf("create: %v %s", err, a.raw)
	}
	for _, path := range []string{agentPath + "/" + created.SessionID, checkoutPath + "/sess_x"} {
		if a := call(t, s, "GET", path, "", map[string]string{"X-API-KEY": "sk_test_other"}); a.status != 401 || a.raw != "Unauthorized" {
			t.Errorf("GET %s with a wrong key answered HTTP %d %q, want 401 Unauthorized", path, a.status, a.raw)
		}
		if a := call(t, s, "GET", path, "", map[string]string{"X-Timestamp": ""}); a.Code != 80102212 {
			t.Errorf("GET %s without a timestamp answered code %d, want 80102212", path, a.Code)
		}
	}
	if a := call(t, s, "GET", checkoutPath+"/sess_nope", "", nil); a.status != 200 || a.Code != 404 || a.Msg != "SESSION_NOT_FOUND" || string(a.Data) != "null" {
		t.Errorf("an unknown checkout session answered HTTP %d %s, want HTTP 200 with code 404 SESSION_NOT_FOUND", a.status, a.raw)
	}
}

// post sends a real HTTP request to a served sandbox.
func post(ctx context.Context, base, path, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-API-KEY", sandbox.DefaultAPIKey)
	req.Header.Set("X-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

const agentBody = `{"customerEmail":"ada@example.com","amount":1,"currency":"USD"}`

func TestFaultsMakeTheSandboxMisbehaveOnDemand(t *testing.T) {
	tests := []struct {
		name         string
		fault        sandbox.Fault
		wantStatus   int
		wantType     string
		wantBody     func([]byte) bool
		wantSessions int
	}{
		{"a 503 fault answers with an HTML page and creates nothing", sandbox.Fault{Status: 503}, 503, "text/html; charset=utf-8",
			func(b []byte) bool { return bytes.Contains(b, []byte("<h1>503 Service Unavailable</h1>")) }, 0},
		{"a 401 fault answers in plain text", sandbox.Fault{Status: 401}, 401, "text/plain; charset=utf-8",
			func(b []byte) bool { return string(b) == "Unauthorized" }, 0},
		{"a garbage fault answers 200 with a body that is not JSON", sandbox.Fault{Garbage: true}, 200, "application/json",
			func(b []byte) bool { return len(b) > 0 && !json.Valid(b) }, 0},
		{"a truncate fault creates the session and cuts its answer", sandbox.Fault{Truncate: true}, 200, "application/json",
			func(b []byte) bool { return bytes.HasPrefix(b, []byte(`{"code":200`)) && !json.Valid(b) }, 1},
		{"a code fault answers with that envelope", sandbox.Fault{Code: 80102203, Msg: "TIMESTAMP_EXPIRED"}, 200, "application/json",
			func(b []byte) bool { return string(b) == `{"code":80102203,"msg":"TIMESTAMP_EXPIRED","data":null}` }, 0},
		{"a latency fault delays a normal answer", sandbox.Fault{Latency: time.Millisecond}, 200, "application/json",
			func(b []byte) bool { return bytes.HasPrefix(b, []byte(`{"code":200,"msg":"success"`)) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sandbox.New()
			srv := httptest.NewServer(s)
			defer srv.Close()
			s.SetFault(tt.fault)
			resp, body, err := post(t.Context(), srv.URL, agentPath, agentBody)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Content-Type") != tt.wantType || !tt.wantBody(body) {
				t.Errorf("got HTTP %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if n := s.SessionCount(); n != tt.wantSessions {
				t.Errorf("sandbox holds %d sessions, want %d", n, tt.wantSessions)
			}
		})
	}
	t.Run("a close fault drops the connection after reading the request", func(t *testing.T) {
		s := sandbox.New()
		srv := httptest.NewServer(s)
		defer srv.Close()
		s.SetFault(sandbox.Fault{CloseConn: true})
		if _, _, err := post(t.Context(), srv.URL, agentPath, agentBody); err == nil {
			t.Fatal("request succeeded, want a connection error")
		}
		if s.Requests() != 1 || s.SessionCount() != 0 {
			t.Errorf("Requests, SessionCount = %d, %d; want 1, 0", s.Requests(), s.SessionCount())
		}
	})
	t.Run("a latency fault ends with the request's context", func(t *testing.T) {
		s := sandbox.New()
		srv := httptest.NewServer(s)
		defer srv.Close()
		s.SetFault(sandbox.Fault{Latency: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, _, err := post(ctx, srv.URL, agentPath, agentBody); err == nil {
			t.Fatal("request succeeded, want a deadline error")
		}
		// srv.Close waits for the handler: the test ends only if the handler honoured the context.
	})
}

func TestACountedFaultHitsExactlyThatManyConcurrentRequests(t *testing.T) {
	s := sandbox.New()
	s.SetFault(sandbox.Fault{Status: 500, Count: 5})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 20 {
		wg.Go(func() {
			r := httptest.NewRequest("POST", agentPath, strings.NewReader(agentBody))
			r.Header.Set("X-API-KEY", sandbox.DefaultAPIKey)
			r.Header.Set("X-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			mu.Lock()
			statuses[w.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[500] != 5 || statuses[200] != 15 {
		t.Errorf("statuses = %v, want 5 × 500 and 15 × 200", statuses)
	}
	if s.Requests() != 20 || s.SessionCount() != 15 {
		t.Errorf("Requests, SessionCount = %d, %d; want 20, 15", s.Requests(), s.SessionCount())
	}
}

func TestClearFaultRestoresNormalService(t *testing.T) {
	s := newSandbox()
	s.SetFault(sandbox.Fault{Status: 502})
	if a := call(t, s, "GET", checkoutPath+"/x", "", nil); a.status != 502 {
		t.Fatalf("faulty answer decoded as an envelope: %q", a.raw)
	}
	s.ClearFault()
	if a := call(t, s, "GET", checkoutPath+"/x", "", nil); a.Code != 404 {
		t.Errorf("after ClearFault: code %d, want 404 (%q)", a.Code, a.raw)
	}
}

func TestConcurrentFirstSessionsForOneNewEmailCreateOneCustomer(t *testing.T) {
	s := sandbox.New()
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			body := `{"originalAmount":1,"originalCurrency":"USD","customerEmail":"new@example.com"}`
			r := httptest.NewRequest("POST", checkoutPath, strings.NewReader(body))
			r.Header.Set("X-API-KEY", sandbox.DefaultAPIKey)
			r.Header.Set("X-Timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
			r.Header.Set("Content-Type", "application/json")
			s.ServeHTTP(httptest.NewRecorder(), r)
		})
	}
	wg.Wait()
	if n := len(s.Customers()); n != 1 || s.SessionCount() != 30 {
		t.Errorf("customers, sessions = %d, %d; want 1, 30", n, s.SessionCount())
	}
}

func TestListenServesOnLoopbackUntilShutdown(t *testing.T) {
	s := sandbox.New()
	base, shutdown, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/") {
		t.Errorf("base URL = %q, want http://127.0.0.1:port/", base)
	}
	resp, _, err := post(t.Context(), strings.TrimSuffix(base, "/"), agentPath, agentBody)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request to the listening sandbox: %v", err)
	}
	s.SetFault(sandbox.Fault{Latency: time.Hour})
	inFlight := make(chan error, 1)
	go func() {
		_, _, err := post(context.Background(), strings.TrimSuffix(base, "/"), agentPath, agentBody)
		inFlight <- err
	}()
	for s.Requests() < 2 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown with a request in flight: %v", err)
	}
	<-inFlight
	if _, _, err := post(t.Context(), strings.TrimSuffix(base, "/"), agentPath, agentBody); err == nil {
		t.Error("the sandbox still answers after shutdown")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestWithSkewSetsTheAcceptedTimestampWindow(t *testing.T) {
	s := newSandbox(sandbox.WithSkew(time.Second))
	ts := func(d time.Duration) map[string]string {
		return map[string]string{"X-Timestamp": strconv.FormatInt(now.Add(d).UnixMilli(), 10)}
	}
	if a := call(t, s, "GET", checkoutPath+"/x", "", ts(-time.Second)); a.Code != 404 {
		t.Errorf("a timestamp a second old: code %d %q, want it accepted (404 for the unknown session)", a.Code, a.Msg)
	}
	if a := call(t, s, "GET", checkoutPath+"/x", "", ts(-time.Second-time.Millisecond)); a.Code != 80102203 {
		t.Errorf("a timestamp just over a second old: code %d %q, want 80102203", a.Code, a.Msg)
	}
}

func TestTheInMemoryTransportServesAsTheListenerDoes(t *testing.T) {
	s := sandbox.New()
	c, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithEnvironment(clink.Sandbox), clink.WithBaseURL(sandbox.BaseURL),
		clink.WithHTTPClient(&http.Client{Transport: s.Transport()}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	amount, _ := clink.ParseAmount("12.50")
	sess, err := c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{OriginalAmount: amount, OriginalCurrency: "USD", CustomerEmail: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetCheckoutSession(ctx, sess.SessionID)
	if err != nil || got.SessionID != sess.SessionID || got.Status != "open" {
		t.Fatalf("GetCheckoutSession = %+v, %v", got, err)
	}
	if s.Requests() != 2 {
		t.Errorf("the sandbox served %d requests, want 2", s.Requests())
	}
	// A wrong key is refused as over the network.
	bad, _ := clink.NewClient("sk_test_wrong_key_000000", clink.WithEnvironment(clink.Sandbox), clink.WithBaseURL(sandbox.BaseURL),
		clink.WithHTTPClient(&http.Client{Transport: s.Transport()}))
	if _, err := bad.GetCheckoutSession(ctx, sess.SessionID); !errors.Is(err, clink.ErrUnauthorized) {
		t.Errorf("a wrong key = %v, want unauthorized", err)
	}
	// A request whose context is done is not served.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.GetCheckoutSession(done, sess.SessionID); err == nil {
		t.Error("a cancelled request was answered")
	}
}

// An attempt that outlasts the client's timeout fails the same way through the in-memory
// transport as through a socket: a read is retried, and a create's error is a timeout of
// unknown outcome, not an HTTP answer.
func TestALateAnswerTimesOutInMemoryAsOverASocket(t *testing.T) {
	for _, viaSocket := range []bool{true, false} {
		t.Run(fmt.Sprintf("socket=%v", viaSocket), func(t *testing.T) {
			s := sandbox.New()
			opts := []clink.Option{clink.WithEnvironment(clink.Sandbox), clink.WithTimeout(50 * time.Millisecond),
				clink.WithMaxAttempts(3), clink.WithBackoff(time.Millisecond, 2*time.Millisecond)}
			if viaSocket {
				base, shutdown, err := s.Listen()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = shutdown(context.Background()) })
				opts = append(opts, clink.WithBaseURL(base))
			} else {
				opts = append(opts, clink.WithBaseURL(sandbox.BaseURL), clink.WithHTTPClient(&http.Client{Transport: s.Transport()}))
			}
			c, err := clink.NewClient(sandbox.DefaultAPIKey, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.CloseIdleConnections)
			amount, _ := clink.ParseAmount("1.00")
			sess, err := c.CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{OriginalAmount: amount, OriginalCurrency: "USD", CustomerEmail: "a@example.com"})
			if err != nil {
				t.Fatal(err)
			}

			s.SetFault(sandbox.Fault{Latency: time.Hour, Count: 1})
			if _, err := c.GetCheckoutSession(t.Context(), sess.SessionID); err != nil {
				t.Errorf("a read whose first answer was late: %v; want it retried and answered", err)
			}

			s.SetFault(sandbox.Fault{Latency: time.Hour, Count: 1})
			before := s.Requests()
			_, err = c.CreateAgentPaymentSession(t.Context(), &clink.AgentPaymentSessionRequest{CustomerEmail: "a@example.com", Amount: amount, Currency: "USD"})
			var ce *clink.Error
			switch {
			case errors.As(err, &ce):
				t.Errorf("a create that timed out reads as an HTTP %d answer: %v", ce.HTTPStatus, err)
			case !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, clink.ErrOutcomeUnknown):
				t.Errorf("a create that timed out: %v; want a deadline exceeded of unknown outcome", err)
			}
			if n := s.Requests() - before; n != 1 {
				t.Errorf("the timed-out create was sent %d times, want once", n)
			}
		})
	}
}
