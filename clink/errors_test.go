package clink_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/clink-mcp/clink-mcp/clink"
)

// replyWith answers with a fixed status, content type and body.
func replyWith(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// endless answers 200 with a JSON body that never ends, until the client hangs up.
func endless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"code":200,"msg":"`)
	chunk := []byte(strings.Repeat("a", 32<<10))
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		if r.Context().Err() != nil {
			return
		}
	}
}

func createCheckout(c *clink.Client, t *testing.T) error {
	_, err := c.CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
		OriginalAmount: mustAmount(t, "10.00"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
	})
	return err
}

func TestEachKindOfFailedResponseGivesAPreciseError(t *testing.T) {
	htmlPage := "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>" +
		strings.Repeat("<p>upstream unavailable</p>\n", 400) + "</body></html>"
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantStatus  int
		wantCode    int
		wantMessage string
		wantText    []string // in Error()
		wantAbsent  string   // not in Error()
		wantExplain string   // in Explanation()
		wantUnknown bool
		wantIs      error
	}{
		{
			name:        "a 401 with Clink's plain-text body is an authentication error",
			handler:     replyWith(401, "text/plain", "Unauthorized"),
			wantStatus:  401,
			wantText:    []string{`HTTP 401 with a plain-text body; body: "Unauthorized"`},
			wantExplain: "rejected the API key",
			wantIs:      clink.ErrUnauthorized,
		},
		{
			name:        "a 502 HTML error page is a server error with a short excerpt",
			handler:     replyWith(502, "text/html; charset=utf-8", htmlPage),
			wantStatus:  502,
			wantText:    []string{"HTTP 502 with an HTML page", `body: "<!DOCTYPE html> <html><head><title>502 Bad Gateway`},
			wantExplain: "server error (HTTP 502)",
			wantUnknown: true,
		},
		{
			name:        "a 429 is a refusal, not an unknown outcome",
			handler:     replyWith(429, "text/plain", "slow down"),
			wantStatus:  429,
			wantText:    []string{"HTTP 429"},
			wantExplain: "limiting the request rate",
		},
		{
			name:        "a 500 with an envelope keeps Clink's code and message",
			handler:     replyWith(500, "application/json", `{"code":500,"msg":"internal error","data":null}`),
			wantStatus:  500,
			wantCode:    500,
			wantMessage: "internal error",
			wantText:    []string{"HTTP 500, Clink error 500: internal error"},
			wantUnknown: true,
		},
		{
			name:        "an empty 200 body is malformed",
			handler:     replyWith(200, "application/json", ""),
			wantStatus:  200,
			wantText:    []string{"malformed response (HTTP 200, an empty body)"},
			wantExplain: "could not be understood",
			wantUnknown: true,
		},
		{
			name:        "a truncated 200 body is malformed and says so",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"sessionId":"se`),
			wantStatus:  200,
			wantText:    []string{"a truncated JSON body", `body: "{\"code\":200,\"msg\":\"success\",\"data\":{\"sessionId\":\"se"`},
			wantUnknown: true,
		},
		{
			name:        "a truncated body keeps its tokenValue out of the excerpt",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"tokenValue":"tok_LEAK","sessionId":"se`),
			wantStatus:  200,
			wantText:    []string{`\"tokenValue\":\"[REDACTED]\",\"sessionId\"`},
			wantAbsent:  "tok_LEAK",
			wantUnknown: true,
		},
		{
			name:        "a token cut short in a truncated body is kept out of the excerpt",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"tokenValue":"tok_LEA`),
			wantStatus:  200,
			wantText:    []string{`\"tokenValue\":\"[REDACTED]\"`},
			wantAbsent:  "tok_LEA",
			wantUnknown: true,
		},
		{
			name:        "a valid envelope with undecodable data is described without an excerpt",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"sessionId":"","tokenValue":"tok_LEAK","expireTime":"soon"}}`),
			wantStatus:  200,
			wantText:    []string{"malformed response (HTTP 200, a JSON envelope): data: unrecognised date-time"},
			wantAbsent:  "tok_LEAK",
			wantUnknown: true,
		},
		{
			name:        "a 200 HTML page is malformed",
			handler:     replyWith(200, "text/html", "<html>maintenance</html>"),
			wantStatus:  200,
			wantText:    []string{"malformed response (HTTP 200, an HTML page)"},
			wantUnknown: true,
		},
		{
			name:        "a body over the size cap is refused without reading it all",
			handler:     endless,
			wantStatus:  200,
			wantText:    []string{"response body larger than 1048576 bytes (HTTP 200)"},
			wantUnknown: true,
		},
		{
			name:        "a business error on HTTP 200 is a definite refusal with Clink's code",
			handler:     replyWith(200, "application/json", `{"code":90101206,"msg":"amount or currency incorrect","data":null}`),
			wantStatus:  200,
			wantCode:    90101206,
			wantMessage: "amount or currency incorrect",
			wantText:    []string{"Clink error 90101206: amount or currency incorrect"},
			wantExplain: "amount or the currency",
		},
		{
			name:        "a named customer error is explained",
			handler:     replyWith(200, "application/json", `{"code":400,"msg":"CUSTOMER_IDENTIFIER_NOT_MATCHED","data":null}`),
			wantStatus:  200,
			wantCode:    400,
			wantMessage: "CUSTOMER_IDENTIFIER_NOT_MATCHED",
			wantExplain: "belong to different Clink customers",
		},
		{
			name:        "an authentication code on HTTP 200 is an authentication error",
			handler:     replyWith(200, "application/json", `{"code":80102221,"msg":"invalid key","data":null}`),
			wantStatus:  200,
			wantCode:    80102221,
			wantMessage: "invalid key",
			wantIs:      clink.ErrUnauthorized,
		},
		{
			name:        "success without data is malformed",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":null}`),
			wantStatus:  200,
			wantText:    []string{"envelope has code 200 but no data"},
			wantUnknown: true,
		},
		{
			name:        "success without a session ID is malformed",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"url":"x"}}`),
			wantStatus:  200,
			wantText:    []string{"data has no sessionId"},
			wantUnknown: true,
		},
		{
			name:        "success with a session ID holding a NUL is malformed",
			handler:     replyWith(200, "application/json", `{"code":200,"msg":"success","data":{"sessionId":"a\u0000b","url":"x"}}`),
			wantStatus:  200,
			wantText:    []string{"data has a sessionId with control characters"},
			wantUnknown: true,
		},
		{
			name:        "an envelope without a code is malformed",
			handler:     replyWith(200, "application/json", `{"msg":"success","data":{"sessionId":"s"}}`),
			wantStatus:  200,
			wantText:    []string{"envelope has no code"},
			wantUnknown: true,
		},
		{
			name:       "a redirect is not followed; a moved resource did not act on the create",
			handler:    replyWith(307, "", ""),
			wantStatus: 307,
			wantText:   []string{"HTTP 307 with an empty body"},
		},
		{
			name:        "a 303 See Other may answer a create that was processed",
			handler:     replyWith(303, "", ""),
			wantStatus:  303,
			wantText:    []string{"HTTP 303 with an empty body"},
			wantUnknown: true,
		},
		{
			name:        "a 302 may answer a create that was processed",
			handler:     replyWith(302, "", ""),
			wantStatus:  302,
			wantText:    []string{"HTTP 302 with an empty body"},
			wantUnknown: true,
		},
		{
			name:        "a 429 stays a refusal whatever its envelope says",
			handler:     replyWith(429, "application/json", `{"code":500,"msg":"SYSTEM_ERROR","data":null}`),
			wantStatus:  429,
			wantCode:    500,
			wantMessage: "SYSTEM_ERROR",
			wantText:    []string{"HTTP 429"},
		},
		{
			name:        "a server fault's envelope on HTTP 400 leaves the outcome unknown",
			handler:     replyWith(400, "application/json", `{"code":500,"msg":"SYSTEM_ERROR","data":null}`),
			wantStatus:  400,
			wantCode:    500,
			wantMessage: "SYSTEM_ERROR",
			wantText:    []string{"HTTP 400, Clink error 500: SYSTEM_ERROR"},
			wantUnknown: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newClient(t, srv.URL)
			err := createCheckout(c, t)
			var ce *clink.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *clink.Error", err, err)
			}
			if ce.HTTPStatus != tt.wantStatus || ce.Code != tt.wantCode || ce.Message != tt.wantMessage {
				t.Errorf("got HTTPStatus %d, Code %d, Message %q; want %d, %d, %q",
					ce.HTTPStatus, ce.Code, ce.Message, tt.wantStatus, tt.wantCode, tt.wantMessage)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
				}
			}
			if tt.wantAbsent != "" && strings.Contains(err.Error(), tt.wantAbsent) {
				t.Errorf("Error() = %q, want it without %q", err.Error(), tt.wantAbsent)
			}
			if !strings.Contains(ce.Explanation(), tt.wantExplain) {
				t.Errorf("Explanation() = %q, want it to contain %q", ce.Explanation(), tt.wantExplain)
			}
			if got := errors.Is(err, clink.ErrOutcomeUnknown); got != tt.wantUnknown {
				t.Errorf("errors.Is(err, ErrOutcomeUnknown) = %v, want %v (err: %v)", got, tt.wantUnknown, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false, want true", tt.wantIs)
			}
			assertSafeText(t, "Error()", err.Error())
			assertSafeText(t, "Explanation()", ce.Explanation())
			if n := utf8.RuneCountInString(ce.Excerpt); n > 101 {
				t.Errorf("Excerpt has %d runes, want at most 101", n)
			}
		})
	}
}

// assertSafeText fails if s holds the API key or non-printable characters, or is long.
func assertSafeText(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, testKey) || strings.Contains(s, strings.TrimPrefix(testKey, "sk_test_")) {
		t.Errorf("%s contains the API key: %q", what, s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			t.Errorf("%s contains the non-printable %U: %q", what, r, s)
			break
		}
	}
	if len(s) > 1000 {
		t.Errorf("%s is %d bytes long, want a short message", what, len(s))
	}
}

func TestUpstreamBodiesNeverBringTheAPIKeyOrControlCharactersIntoErrors(t *testing.T) {
	bodies := map[string]string{
		"a body echoing the key":            "bad key " + testKey + " for merchant",
		"a body with terminal escapes":      "\x1b[31mred\x1b[0m\x00\x07 and \xff\xfe invalid UTF-8",
		"a key cut by the excerpt's length": strings.Repeat("x", 95) + testKey,
		"a key split by a control byte":     "key: sk_test_sandbox\x00_0000000000000000",
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			for _, status := range []int{200, 400} {
				srv := httptest.NewServer(replyWith(status, "text/plain", body))
				c := newClient(t, srv.URL)
				err := createCheckout(c, t)
				srv.Close()
				var ce *clink.Error
				if !errors.As(err, &ce) {
					t.Fatalf("HTTP %d: err = %v, want a *clink.Error", status, err)
				}
				assertSafeText(t, fmt.Sprintf("HTTP %d Error()", status), err.Error())
				assertSafeText(t, fmt.Sprintf("HTTP %d Excerpt", status), ce.Excerpt)
			}
		})
	}
	t.Run("a message echoing the key", func(t *testing.T) {
		srv := httptest.NewServer(replyWith(200, "application/json", `{"code":401,"msg":"key `+testKey+` is revoked"}`))
		defer srv.Close()
		err := createCheckout(newClient(t, srv.URL), t)
		var ce *clink.Error
		if !errors.As(err, &ce) || ce.Code != 401 {
			t.Fatalf("err = %v, want a *clink.Error with code 401", err)
		}
		assertSafeText(t, "Error()", err.Error())
		assertSafeText(t, "Message", ce.Message)
	})
}

func TestARedirectIsNeverFollowedSoTheKeyStaysWithClink(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect target received %s %s with X-API-KEY %q", r.Method, r.URL, r.Header.Get("X-API-KEY"))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.RedirectHandler(other.URL+"/elsewhere", http.StatusTemporaryRedirect))
	defer srv.Close()
	c := newClient(t, srv.URL)
	_, err := c.GetCheckoutSession(t.Context(), "sess_1")
	var ce *clink.Error
	if !errors.As(err, &ce) || ce.HTTPStatus != http.StatusTemporaryRedirect {
		t.Fatalf("err = %v, want a *clink.Error with HTTP 307", err)
	}
}
