package clink_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clink-mcp/clink-mcp/clink"
)

// countRequests wraps h, counting the requests it serves.
func countRequests(h http.Handler) (http.Handler, *atomic.Int64) {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}), &n
}

// creates are the calls that create a session: the only ones whose outcome can be unknown.
var creates = []struct {
	name string
	call func(*clink.Client, *testing.T) error
}{
	{"create checkout session", createCheckout},
	{"create agent payment session", func(c *clink.Client, t *testing.T) error {
		_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
		return err
	}},
}

func TestOnlyADocumentedRefusalOnHTTP200ProvesACreateMadeNothing(t *testing.T) {
	tests := []struct {
		name         string
		body         string
		wantCode     int
		wantUnknown  bool
		wantAttempts int64
		wantExplain  string // in Explanation()
	}{
		{
			name:         "a server fault code 500 leaves the outcome unknown",
			body:         `{"code":500,"msg":"SYSTEM_ERROR","data":null}`,
			wantCode:     500,
			wantUnknown:  true,
			wantAttempts: 1,
			wantExplain:  "Clink had a server error (code 500, SYSTEM_ERROR).",
		},
		{
			name:         "any 5xx-class code leaves the outcome unknown",
			body:         `{"code":503,"msg":"SERVICE_UNAVAILABLE"}`,
			wantCode:     503,
			wantUnknown:  true,
			wantAttempts: 1,
			wantExplain:  "server error (code 503, SERVICE_UNAVAILABLE)",
		},
		{
			name:         "a code the client does not know leaves the outcome unknown",
			body:         `{"code":123456,"msg":"WHATEVER","data":null}`,
			wantCode:     123456,
			wantUnknown:  true,
			wantAttempts: 1,
			wantExplain:  "a code the client does not know as a refusal (code 123456, WHATEVER)",
		},
		{
			name:         "a server fault code wins over a customer error's name",
			body:         `{"code":500,"msg":"CUSTOMER_NOT_FOUND"}`,
			wantCode:     500,
			wantUnknown:  true,
			wantAttempts: 1,
			wantExplain:  "server error (code 500, CUSTOMER_NOT_FOUND)",
		},
		{
			name:         "CUSTOMER_NOT_FOUND with code 400 is a definite refusal",
			body:         `{"code":400,"msg":"CUSTOMER_NOT_FOUND","data":null}`,
			wantCode:     400,
			wantAttempts: 1,
			wantExplain:  "Clink found no such customer",
		},
		{
			name:         "a customer error's name with an undocumented code is a definite refusal",
			body:         `{"code":10001,"msg":"CUSTOMER_IDENTIFIER_NOT_MATCHED"}`,
			wantCode:     10001,
			wantAttempts: 1,
			wantExplain:  "belong to different Clink customers",
		},
		{
			name:         "a customer error's name with a detail is a definite refusal",
			body:         `{"code":10001,"msg":"CUSTOMER_NOT_FOUND: no identifier"}`,
			wantCode:     10001,
			wantAttempts: 1,
			wantExplain:  "Clink found no such customer",
		},
		{
			name:         "a name that only starts like a customer error is not one",
			body:         `{"code":10001,"msg":"CUSTOMER_NOT_FOUNDATION"}`,
			wantCode:     10001,
			wantUnknown:  true,
			wantAttempts: 1,
			wantExplain:  "does not know as a refusal",
		},
		{
			name:         "the amount or currency code 90101206 is a definite refusal",
			body:         `{"code":90101206,"msg":"amount or currency incorrect"}`,
			wantCode:     90101206,
			wantAttempts: 1,
			wantExplain:  "rejected the amount or the currency",
		},
		{
			name:         "the merchant not found code 90101216 is a definite refusal",
			body:         `{"code":90101216,"msg":"merchant not found"}`,
			wantCode:     90101216,
			wantAttempts: 1,
			wantExplain:  "found no merchant",
		},
		{
			name:         "an authentication code is a definite refusal",
			body:         `{"code":80102222,"msg":"invalid key"}`,
			wantCode:     80102222,
			wantAttempts: 1,
			wantExplain:  "rejected the API key",
		},
		{
			name:         "any 4xx-class code is a definite refusal",
			body:         `{"code":404,"msg":"NOT_FOUND"}`,
			wantCode:     404,
			wantAttempts: 1,
			wantExplain:  "Clink refused the request with code 404 (NOT_FOUND).",
		},
		{
			name:         "a timestamp rejection is a definite refusal, after its retries",
			body:         `{"code":80102203,"msg":"TIMESTAMP_EXPIRED"}`,
			wantCode:     80102203,
			wantAttempts: 3,
			wantExplain:  "rejected the request's timestamp",
		},
	}
	for _, create := range creates {
		for _, tt := range tests {
			t.Run(create.name+"/"+tt.name, func(t *testing.T) {
				h, n := countRequests(replyWith(http.StatusOK, "application/json", tt.body))
				srv := httptest.NewServer(h)
				defer srv.Close()
				c := newClient(t, srv.URL, clink.WithMaxAttempts(3), noKeepAlive())

				err := create.call(c, t)
				if got := n.Load(); got != tt.wantAttempts {
					t.Errorf("made %d requests, want %d", got, tt.wantAttempts)
				}
				var ce *clink.Error
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v (%T), want a *clink.Error", err, err)
				}
				if ce.HTTPStatus != http.StatusOK || ce.Code != tt.wantCode {
					t.Errorf("HTTPStatus %d, Code %d; want 200, %d", ce.HTTPStatus, ce.Code, tt.wantCode)
				}
				if got := errors.Is(err, clink.ErrOutcomeUnknown); got != tt.wantUnknown {
					t.Errorf("errors.Is(err, ErrOutcomeUnknown) = %v, want %v (err: %v)", got, tt.wantUnknown, err)
				}
				explain := ce.Explanation()
				if !strings.Contains(explain, tt.wantExplain) {
					t.Errorf("Explanation() = %q, want it to contain %q", explain, tt.wantExplain)
				}
				// An unknown outcome must say so, in both strings, and never claim a refusal.
				mayExist := "may or may not have been created"
				if got := strings.Contains(explain, mayExist); got != tt.wantUnknown {
					t.Errorf("Explanation() = %q; says the session may exist: %v, want %v", explain, got, tt.wantUnknown)
				}
				if tt.wantUnknown && strings.Contains(explain, "refused") {
					t.Errorf("Explanation() = %q calls an unknown outcome a refusal", explain)
				}
				if got := strings.Contains(err.Error(), "outcome unknown"); got != tt.wantUnknown {
					t.Errorf("Error() = %q; says outcome unknown: %v, want %v", err.Error(), got, tt.wantUnknown)
				}
				assertSafeText(t, "Error()", err.Error())
			})
		}
	}
}

func TestOnlyDocumentedCodesAreRefusals(t *testing.T) {
	tests := []struct {
		name        string
		code        clink.Code
		refusal     bool
		serverFault bool
	}{
		{"success is not a refusal", clink.CodeSuccess, false, false},
		{"the first 4xx-class code is a refusal", 400, true, false},
		{"the last 4xx-class code is a refusal", 499, true, false},
		{"401 is a refusal", clink.CodeUnauthorized, true, false},
		{"the first 5xx-class code is a server fault", 500, false, true},
		{"the last 5xx-class code is a server fault", 599, false, true},
		{"600 is neither", 600, false, false},
		{"399 is neither", 399, false, false},
		{"0 is neither", 0, false, false},
		{"a negative code is neither", -400, false, false},
		{"an expired timestamp is a refusal", clink.CodeTimestampExpired, true, false},
		{"a missing timestamp is a refusal", clink.CodeTimestampMissing, true, false},
		{"an invalid timestamp is a refusal", clink.CodeTimestampInvalid, true, false},
		{"the first authentication code is a refusal", clink.CodeAuthFirst, true, false},
		{"the middle authentication code is a refusal", 80102222, true, false},
		{"the last authentication code is a refusal", clink.CodeAuthLast, true, false},
		{"the code after the authentication codes is unknown", clink.CodeAuthLast + 1, false, false},
		{"an incorrect amount or currency is a refusal", clink.CodeAmountOrCurrency, true, false},
		{"an unknown merchant is a refusal", clink.CodeMerchantNotFound, true, false},
		{"a neighbour of a documented code is unknown", clink.CodeAmountOrCurrency + 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.code.Refusal(); got != tt.refusal {
				t.Errorf("Code(%d).Refusal() = %v, want %v", tt.code, got, tt.refusal)
			}
			if got := tt.code.ServerFault(); got != tt.serverFault {
				t.Errorf("Code(%d).ServerFault() = %v, want %v", tt.code, got, tt.serverFault)
			}
		})
	}
}

// A create Clink confirmed (code 200 with a sessionId) is created whatever
// else its answer holds: an identifier sent as a number is read from its
// digits, and a field that does not read is left zero and named in Unread,
// never made an unknown outcome that would lose the session.
func TestACreatedSessionIsReadWhateverElseItsAnswerHolds(t *testing.T) {
	t.Run("checkout", func(t *testing.T) {
		srv := httptest.NewServer(replyWith(200, "application/json",
			`{"code":200,"msg":"success","data":{"sessionId":"sess_1","url":"https://uat-checkout.clinkbill.com/pay/sess_1",`+
				`"expireTime":"next tuesday","customerId":4200001,"merchantReferenceId":77,"originalAmount":{"v":10},`+
				`"originalCurrency":"USD","TokenValue":"tok_secret"}}`))
		defer srv.Close()
		s, err := newClient(t, srv.URL).CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
			OriginalAmount: mustAmount(t, "10.00"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
		})
		if err != nil {
			t.Fatalf("Clink created sess_1, but the client reports: %v", err)
		}
		if s.SessionID != "sess_1" || s.URL == "" || s.CustomerID != "4200001" || s.MerchantReferenceID != "77" ||
			s.OriginalCurrency != "USD" || s.TokenValue.Reveal() != "tok_secret" {
			t.Errorf("read %+v", s)
		}
		if got := strings.Join(s.Unread, ","); got != "expireTime,originalAmount" {
			t.Errorf("Unread = %q, want expireTime,originalAmount", got)
		}
	})
	t.Run("agent payment session", func(t *testing.T) {
		srv := httptest.NewServer(replyWith(200, "application/json",
			`{"code":200,"msg":"success","data":{"sessionId":"aps_1","expireTime":[2026]}}`))
		defer srv.Close()
		s, err := newClient(t, srv.URL).CreateAgentPaymentSession(t.Context(), agentRequest(t))
		if err != nil || s.SessionID != "aps_1" || strings.Join(s.Unread, ",") != "expireTime" {
			t.Fatalf("got %+v, %v; want aps_1 with expireTime unread", s, err)
		}
	})
	t.Run("a time past the year 9999 is not read", func(t *testing.T) {
		for _, expire := range []string{`253402300800000`, `"253402300800000"`} { // 10000-01-01 in ms
			srv := httptest.NewServer(replyWith(200, "application/json",
				`{"code":200,"msg":"success","data":{"sessionId":"aps_1","expireTime":`+expire+`}}`))
			s, err := newClient(t, srv.URL).CreateAgentPaymentSession(t.Context(), agentRequest(t))
			srv.Close()
			if err != nil || s.SessionID != "aps_1" || strings.Join(s.Unread, ",") != "expireTime" || !s.ExpireTime.IsZero() {
				t.Fatalf("expireTime %s: got %+v, %v; want aps_1 with expireTime unread", expire, s, err)
			}
		}
	})
	t.Run("a key in another case is read, the last one in the document winning", func(t *testing.T) {
		srv := httptest.NewServer(replyWith(200, "application/json",
			`{"code":200,"msg":"success","data":{"sessionId":"sess_1","expireTime":"soon","CustomerId":"A","CUSTOMERID":"B"}}`))
		defer srv.Close()
		for range 20 { // a map's order would pick either
			s, err := newClient(t, srv.URL).CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
				OriginalAmount: mustAmount(t, "10.00"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
			})
			if err != nil || s.CustomerID != "B" {
				t.Fatalf("got %+v, %v; want customerId B, as encoding/json reads it", s, err)
			}
		}
	})
	t.Run("without a readable sessionId the outcome stays unknown", func(t *testing.T) {
		srv := httptest.NewServer(replyWith(200, "application/json",
			`{"code":200,"msg":"success","data":{"sessionId":{"id":"sess_1"},"url":"https://uat-checkout.clinkbill.com/pay/sess_1"}}`))
		defer srv.Close()
		err := createCheckout(newClient(t, srv.URL), t)
		if !errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Fatalf("err = %v, want the outcome unknown", err)
		}
	})
}

// A 4xx proves nothing was created only when it carries no envelope of
// Clink's (an empty or plain-text body, a proxy's HTML page, JSON without a
// code) or an envelope whose code Clink documents as a refusal. An envelope
// that does not read, or that says success, a 5xx-class code or a code
// Clink does not document, may follow a session created: the outcome is
// unknown, as the same envelope on HTTP 200 is. A 429 refuses whatever its
// body.
func TestOnlyADocumentedRefusalOnA4xxProvesACreateMadeNothing(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantUnknown bool
	}{
		{"JSON cut short", 400, "application/json", `{"code":500,"msg":"SYSTEM_ER`, true},
		{"invalid JSON", 400, "application/json", `{"code":500,"msg":"SYSTEM_ERROR",}`, true},
		{"a code that is not an integer", 400, "application/json", `{"code":500.0,"msg":"SYSTEM_ERROR"}`, true},
		{"Clink's success envelope", 400, "application/json", `{"code":200,"msg":"success","data":{"sessionId":"aps_1"}}`, true},
		{"a code Clink does not document", 400, "application/json", `{"code":90109999,"msg":"SYSTEM_BUSY"}`, true},
		{"a cut envelope sent as text", 404, "text/plain", `  {"code":`, true},
		{"a documented 4xx-class code", 400, "application/json", `{"code":400,"msg":"bad request"}`, false},
		{"a documented refusal code", 400, "application/json", `{"code":` + strconv.Itoa(int(clink.CodeAmountOrCurrency)) + `,"msg":"incorrect amount"}`, false},
		{"a named customer error", 400, "application/json", `{"code":90000001,"msg":"CUSTOMER_NOT_FOUND"}`, false},
		{"401 with a plain-text body", 401, "text/plain", `Unauthorized`, false},
		{"a proxy's HTML page", 403, "text/html", `<html><body>Forbidden</body></html>`, false},
		{"an empty body", 404, "", ``, false},
		{"JSON that is not an envelope", 400, "application/json", `{"timestamp":"2026-12-05T00:00:00Z","status":400,"error":"Bad Request"}`, false},
		{"429 with a cut envelope", 429, "application/json", `{"code":500,"msg":"SYS`, false},
		{"429 with an undocumented code", 429, "application/json", `{"code":90109999,"msg":"SYSTEM_BUSY"}`, false},
	}
	for _, tt := range tests {
		for _, cr := range creates {
			t.Run(tt.name+"/"+cr.name, func(t *testing.T) {
				h, n := countRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tt.contentType != "" {
						w.Header().Set("Content-Type", tt.contentType)
					}
					w.WriteHeader(tt.status)
					_, _ = w.Write([]byte(tt.body))
				}))
				srv := httptest.NewServer(h)
				defer srv.Close()
				err := cr.call(newClient(t, srv.URL, clink.WithMaxAttempts(3)), t)
				var ce *clink.Error
				if !errors.As(err, &ce) || ce.HTTPStatus != tt.status {
					t.Fatalf("err = %v, want a *clink.Error with HTTP status %d", err, tt.status)
				}
				if got := errors.Is(err, clink.ErrOutcomeUnknown); got != tt.wantUnknown {
					t.Errorf("HTTP %d %s: unknown outcome = %v, want %v (err %v)", tt.status, tt.body, got, tt.wantUnknown, err)
				}
				if x := ce.Explanation(); tt.wantUnknown && strings.Contains(x, "refused") && !strings.Contains(x, "does not show that the request was refused") {
					t.Errorf("Explanation() = %q: an unknown outcome is not a refusal", x)
				}
				if n.Load() != 1 {
					t.Errorf("%d requests, want 1: a create answered by Clink is not sent again", n.Load())
				}
			})
		}
	}
}
