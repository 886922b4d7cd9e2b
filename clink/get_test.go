package clink_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
)

// gets are the two read calls, for tests that hold for both.
var gets = []struct {
	name string
	path string // below the base URL, before the ID
	call func(*clink.Client, *testing.T, string) (any, error)
}{
	{"get checkout session", "/checkout/session/", func(c *clink.Client, t *testing.T, id string) (any, error) {
		return c.GetCheckoutSession(t.Context(), id)
	}},
	{"get agent payment session", "/order/payment-session/", func(c *clink.Client, t *testing.T, id string) (any, error) {
		return c.GetAgentPaymentSession(t.Context(), id)
	}},
}

// getServer answers every request with the replies in turn (the last one repeats), recording
// each request and counting them.
func getServer(t *testing.T, replies ...func(http.ResponseWriter)) (*httptest.Server, *atomic.Int64, func() []recorded) {
	t.Helper()
	var n atomic.Int64
	var mu sync.Mutex
	var seen []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, recorded{r.Method, r.URL.EscapedPath(), r.Header.Clone(), r.ContentLength, string(body)})
		mu.Unlock()
		i := int(n.Add(1)) - 1
		replies[min(i, len(replies)-1)](w)
	}))
	t.Cleanup(srv.Close)
	return srv, &n, func() []recorded { mu.Lock(); defer mu.Unlock(); return append([]recorded(nil), seen...) }
}

func jsonReply(status int, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// sessionReply is a success answer holding both kinds of session, so either get accepts it.
const sessionReply = `{"code":200,"msg":"success","data":{"sessionId":"sess_1","status":"open","paymentStatus":"unpaid",` +
	`"originalAmount":19.99,"originalCurrency":"USD","amount":19.99,"currency":"USD","customerEmail":"ada@example.com"}}`

func TestAGetSendsTheAuthHeadersAndNoBody(t *testing.T) {
	for _, g := range gets {
		t.Run(g.name, func(t *testing.T) {
			srv, n, seen := getServer(t, jsonReply(200, sessionReply))
			c := newClient(t, srv.URL+"/api/", clink.WithClock(func() time.Time { return fixedNow }))
			if _, err := g.call(c, t, "sess_1"); err != nil {
				t.Fatal(err)
			}
			if n.Load() != 1 {
				t.Fatalf("server saw %d requests, want 1", n.Load())
			}
			r := seen()[0]
			if r.method != http.MethodGet || r.path != "/api"+g.path+"sess_1" {
				t.Errorf("request line = %s %s, want GET /api%ssess_1", r.method, r.path, g.path)
			}
			if got := r.header.Get("X-API-KEY"); got != testKey {
				t.Errorf("X-API-KEY = %q, want the client's key", got)
			}
			if got, want := r.header.Get("X-Timestamp"), strconv.FormatInt(fixedNow.UnixMilli(), 10); got != want {
				t.Errorf("X-Timestamp = %q, want %q (milliseconds)", got, want)
			}
			if ct, ok := r.header["Content-Type"]; ok {
				t.Errorf("a GET has Content-Type %q, want none", ct)
			}
			if r.body != "" || r.contentLength != 0 {
				t.Errorf("a GET has a body of %d bytes (%q), want none", r.contentLength, r.body)
			}
		})
	}
}

func TestASessionIDThatIsNotOneIsRefusedWithoutARequest(t *testing.T) {
	srv, n, _ := getServer(t, jsonReply(200, sessionReply))
	c := newClient(t, srv.URL)
	bad := map[string]string{
		"an empty ID":                  "",
		"an ID of 129 bytes":           strings.Repeat("a", 129),
		"a dot-dot ID":                 "..",
		"an ID with a slash":           "sess_1/../other",
		"an ID with an escaped slash":  "sess_1%2Fx",
		"an ID with a query":           "sess_1?x=1",
		"an ID with a fragment":        "sess_1#x",
		"an ID with a space":           "sess 1",
		"an ID with a dot":             "sess.1",
		"an ID with a NUL":             "sess_1\x00",
		"an ID with a newline":         "sess_1\nX-Evil: 1",
		"an ID with a non-ASCII rune":  "sess_é",
		"an ID with a fullwidth digit": "sess_１",
	}
	for _, g := range gets {
		for name, id := range bad {
			t.Run(g.name+" refuses "+name, func(t *testing.T) {
				res, err := g.call(c, t, id)
				if !errors.Is(err, clink.ErrInvalidRequest) {
					t.Fatalf("err = %v, want ErrInvalidRequest", err)
				}
				var ce *clink.Error
				if errors.As(err, &ce) || errors.Is(err, clink.ErrOutcomeUnknown) {
					t.Errorf("err = %v is a *clink.Error or an unknown outcome, but nothing was sent", err)
				}
				if id != "" && len(id) < 100 && strings.Contains(err.Error(), id) {
					t.Errorf("err = %q repeats the ID", err)
				}
				if !isNil(res) {
					t.Errorf("result = %v, want nil", res)
				}
				if clink.ValidSessionID(id) {
					t.Errorf("ValidSessionID(%q) = true, want false", id)
				}
			})
		}
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("a refused ID reached the server %d times", got)
	}
	t.Run("an ID of 128 bytes of every allowed character is sent as it is", func(t *testing.T) {
		id := "sess_-" + strings.Repeat("azAZ09_", 17) + "abc"
		if len(id) != clink.MaxSessionIDLen || !clink.ValidSessionID(id) {
			t.Fatalf("test ID is %d bytes, ValidSessionID = %v", len(id), clink.ValidSessionID(id))
		}
		for _, g := range gets {
			if _, err := g.call(c, t, id); err != nil {
				t.Errorf("%s(%d-byte ID): %v", g.name, len(id), err)
			}
		}
		if got := n.Load(); got != 2 {
			t.Errorf("server saw %d requests, want 2", got)
		}
	})
}

// isNil reports whether v is nil or a nil pointer.
func isNil(v any) bool {
	switch p := v.(type) {
	case nil:
		return true
	case *clink.CheckoutSessionInfo:
		return p == nil
	case *clink.AgentPaymentSessionInfo:
		return p == nil
	}
	return false
}

func TestAGetAnsweredWithANon200CodeIsAClinkError(t *testing.T) {
	for _, g := range gets {
		t.Run(g.name, func(t *testing.T) {
			srv, n, _ := getServer(t, jsonReply(200, `{"code":404,"msg":"SESSION_NOT_FOUND","data":null}`))
			c := newClient(t, srv.URL)
			_, err := g.call(c, t, "sess_nope")
			var ce *clink.Error
			if !errors.As(err, &ce) || ce.HTTPStatus != 200 || ce.Code != 404 || ce.Message != "SESSION_NOT_FOUND" {
				t.Fatalf("err = %v, want a *clink.Error with HTTP 200, code 404, SESSION_NOT_FOUND", err)
			}
			if errors.Is(err, clink.ErrOutcomeUnknown) || strings.Contains(err.Error(), "unknown") {
				t.Errorf("a read reports an unknown outcome: %v", err)
			}
			if n.Load() != 1 {
				t.Errorf("server saw %d requests, want 1: a refusal is not retried", n.Load())
			}
		})
	}
}

func TestAGetAnswered401IsUnauthorizedAndNotRetried(t *testing.T) {
	for _, g := range gets {
		t.Run(g.name, func(t *testing.T) {
			srv, n, _ := getServer(t, func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, "Unauthorized")
			})
			c := newClient(t, srv.URL)
			_, err := g.call(c, t, "sess_1")
			var ce *clink.Error
			if !errors.As(err, &ce) || ce.HTTPStatus != 401 || !errors.Is(err, clink.ErrUnauthorized) {
				t.Fatalf("err = %v, want a *clink.Error with HTTP 401 matching ErrUnauthorized", err)
			}
			if errors.Is(err, clink.ErrOutcomeUnknown) {
				t.Errorf("a read reports an unknown outcome: %v", err)
			}
			if n.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", n.Load())
			}
		})
	}
}

func TestAGetIsRetriedAfter5xxAndSucceedsWithFreshHeaders(t *testing.T) {
	for _, g := range gets {
		t.Run(g.name, func(t *testing.T) {
			gateway := func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, "<html>Bad Gateway</html>")
			}
			srv, n, seen := getServer(t, gateway, jsonReply(503, `{"code":503,"msg":"BUSY"}`), jsonReply(200, sessionReply))
			c := newClient(t, srv.URL, clink.WithMaxAttempts(3), clink.WithClock(tickingClock()))
			if _, err := g.call(c, t, "sess_1"); err != nil {
				t.Fatalf("get after a 502 and a 503 failed: %v", err)
			}
			if n.Load() != 3 {
				t.Fatalf("server saw %d requests, want 3", n.Load())
			}
			stamps := map[string]bool{}
			for _, r := range seen() {
				if r.method != http.MethodGet || r.header.Get("X-API-KEY") != testKey || r.body != "" {
					t.Errorf("attempt %s %s with key %q and body %q, want a GET with the key and no body",
						r.method, r.path, r.header.Get("X-API-KEY"), r.body)
				}
				stamps[r.header.Get("X-Timestamp")] = true
			}
			if len(stamps) != 3 {
				t.Errorf("X-Timestamps %v, want a fresh one per attempt", stamps)
			}
		})
	}
}

func TestAGetThatFailsEveryAttemptIsAPlainError(t *testing.T) {
	srv, n, _ := getServer(t, jsonReply(500, `{"code":500,"msg":"SYSTEM_ERROR"}`))
	c := newClient(t, srv.URL, clink.WithMaxAttempts(2))
	_, err := c.GetCheckoutSession(t.Context(), "sess_1")
	var ce *clink.Error
	if !errors.As(err, &ce) || ce.HTTPStatus != 500 || ce.Attempts != 2 {
		t.Fatalf("err = %v, want a *clink.Error with HTTP 500 after 2 attempts", err)
	}
	if errors.Is(err, clink.ErrOutcomeUnknown) || strings.Contains(ce.Explanation(), "may or may not") {
		t.Errorf("a read reports an unknown outcome: %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("server saw %d requests, want 2", n.Load())
	}
}

const leakedToken = "tok_LEAKED_abcdefghijklmnop"

func TestATokenValueInAGetAnswerNeverLeaves(t *testing.T) {
	t.Run("through the result", func(t *testing.T) {
		reply := `{"code":200,"msg":"success","data":{"sessionId":"sess_1","status":"open","originalAmount":1,` +
			`"tokenValue":"` + leakedToken + `","TokenValue":"` + leakedToken + `","tokenvalue":"` + leakedToken + `",` +
			`"priceDataList":[{"name":"Tea","unitAmount":1,"tokenValue":"` + leakedToken + `"}]}}`
		srv, _, _ := getServer(t, jsonReply(200, reply))
		c := newClient(t, srv.URL)
		info, err := c.GetCheckoutSession(t.Context(), "sess_1")
		if err != nil {
			t.Fatal(err)
		}
		assertNoToken(t, info)
		assertNoToken(t, *info)
	})
	failures := map[string]func(http.ResponseWriter){
		"a success without a sessionId": jsonReply(200, `{"code":200,"msg":"success","data":{"tokenValue":"`+leakedToken+`"}}`),
		"a success with a bad amount": jsonReply(200, `{"code":200,"msg":"success","data":{"sessionId":"sess_1",`+
			`"originalAmount":-1,"tokenValue":"`+leakedToken+`"}}`),
		"a success that is not an object":      jsonReply(200, `{"code":200,"msg":"success","data":"tokenValue=`+leakedToken+`"}`),
		"a refusal whose msg echoes it":        jsonReply(200, `{"code":400,"msg":"bad tokenValue=`+leakedToken+`"}`),
		"an HTTP 400 body that is no envelope": jsonReply(400, `{"error":{"tokenValue":"`+leakedToken+`"}}`),
		"a truncated body": jsonReply(200, `{"code":200,"msg":"success","data":{"sessionId":"s","tokenValue":"`+
			leakedToken[:20]),
	}
	for name, reply := range failures {
		t.Run("through the error of "+name, func(t *testing.T) {
			srv, _, _ := getServer(t, reply)
			c := newClient(t, srv.URL, clink.WithMaxAttempts(1))
			_, err := c.GetCheckoutSession(t.Context(), "sess_1")
			if err == nil {
				t.Fatal("get succeeded, want an error")
			}
			var ce *clink.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *clink.Error", err)
			}
			if errors.Is(err, clink.ErrOutcomeUnknown) {
				t.Errorf("a read reports an unknown outcome: %v", err)
			}
			for what, s := range map[string]string{
				"Error()": err.Error(), "%+v": fmt.Sprintf("%+v", err), "%#v": fmt.Sprintf("%#v", ce),
				"Message": ce.Message, "Excerpt": ce.Excerpt, "Explanation": ce.Explanation(),
			} {
				if strings.Contains(s, "LEAKED") || strings.Contains(s, leakedToken[:12]) {
					t.Errorf("%s carries the token: %s", what, s)
				}
			}
		})
	}
}

// assertNoToken fails if any printed form of v holds the token.
func assertNoToken(t *testing.T, v any) {
	t.Helper()
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("session", "s", v)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("session", "s", v)
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"json": string(j), "slog": logs.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outputs[verb] = fmt.Sprintf(verb, v)
	}
	if s, ok := v.(fmt.Stringer); ok {
		outputs["String"] = s.String()
	}
	for what, out := range outputs {
		if strings.Contains(out, "LEAKED") || strings.Contains(strings.ToLower(out), "tokenvalue") {
			t.Errorf("%s carries the token: %s", what, out)
		}
	}
}

func TestAmountsOfAGetKeepEveryDigit(t *testing.T) {
	reply := `{"code":200,"msg":"success","data":{"sessionId":"sess_1","originalAmount":19.99,"amount":"10.50",` +
		`"priceDataList":[{"name":"Tea","unitAmount":0.10,"quantity":3},{"name":"Cup","unitAmount":1.5E+1}]}}`
	srv, _, _ := getServer(t, jsonReply(200, reply))
	c := newClient(t, srv.URL)
	info, err := c.GetCheckoutSession(t.Context(), "sess_1")
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string]clink.Amount{
		"19.99": info.OriginalAmount, "10.50": info.Amount,
		"0.10": info.PriceDataList[0].UnitAmount, "15": info.PriceDataList[1].UnitAmount,
	} {
		if got.String() != what {
			t.Errorf("amount = %q, want %q", got, what)
		}
	}

	srv, _, _ = getServer(t, jsonReply(200, `{"code":200,"msg":"success","data":{"sessionId":"aps_1","amount":19.99,"currency":"USD"}}`))
	c = newClient(t, srv.URL)
	agent, err := c.GetAgentPaymentSession(t.Context(), "aps_1")
	if err != nil {
		t.Fatal(err)
	}
	if agent.Amount.String() != "19.99" {
		t.Errorf("agent amount = %q, want 19.99", agent.Amount)
	}
	if j, _ := json.Marshal(agent); !strings.Contains(string(j), `"amount":19.99,`) {
		t.Errorf("the agent session encodes as %s, want amount 19.99 exactly", j)
	}
}

func TestIdentifiersSentAsNumbersKeepTheirDigits(t *testing.T) {
	srv, _, _ := getServer(t, jsonReply(200, `{"code":200,"msg":"success","data":{"sessionId":"aps_1",`+
		`"customerId":98765432109876543210,"merchantId":1001,"tenantId":"t-7","amount":1,"currency":"USD"}}`))
	c := newClient(t, srv.URL)
	agent, err := c.GetAgentPaymentSession(t.Context(), "aps_1")
	if err != nil {
		t.Fatal(err)
	}
	if agent.CustomerID != "98765432109876543210" || agent.MerchantID != "1001" || agent.TenantID != "t-7" {
		t.Errorf("customerId, merchantId, tenantId = %q, %q, %q; want 98765432109876543210, 1001, t-7",
			agent.CustomerID, agent.MerchantID, agent.TenantID)
	}

	srv, _, _ = getServer(t, jsonReply(200, `{"code":200,"msg":"success","data":{"sessionId":"sess_1",`+
		`"orderId":123456789012345678,"customerId":null,"merchantReferenceId":"order-7"}}`))
	c = newClient(t, srv.URL)
	info, err := c.GetCheckoutSession(t.Context(), "sess_1")
	if err != nil {
		t.Fatal(err)
	}
	if info.OrderID != "123456789012345678" || info.CustomerID != "" || info.MerchantReferenceID != "order-7" {
		t.Errorf("orderId, customerId, merchantReferenceId = %q, %q, %q; want 123456789012345678, empty, order-7",
			info.OrderID, info.CustomerID, info.MerchantReferenceID)
	}
}

func TestAGetAnswerThatIsNoSessionIsAnError(t *testing.T) {
	bodies := map[string]string{
		"data without a sessionId":        `{"code":200,"msg":"success","data":{"status":"open"}}`,
		"data that is null":               `{"code":200,"msg":"success","data":null}`,
		"an identifier that is an object": `{"code":200,"msg":"success","data":{"sessionId":"s","customerId":{"id":1}}}`,
		"a status that is a number":       `{"code":200,"msg":"success","data":{"sessionId":"s","status":1}}`,
	}
	for name, body := range bodies {
		for _, g := range gets {
			if g.name == "get agent payment session" && strings.Contains(name, "status") {
				continue // an agent payment session has no status to refuse
			}
			t.Run(g.name+" refuses "+name, func(t *testing.T) {
				srv, n, _ := getServer(t, jsonReply(200, body))
				c := newClient(t, srv.URL)
				res, err := g.call(c, t, "s")
				var ce *clink.Error
				if !errors.As(err, &ce) || ce.HTTPStatus != 200 {
					t.Fatalf("err = %v, want a *clink.Error for HTTP 200", err)
				}
				if !isNil(res) {
					t.Errorf("result = %+v, want nil", res)
				}
				if errors.Is(err, clink.ErrOutcomeUnknown) {
					t.Errorf("a read reports an unknown outcome: %v", err)
				}
				if n.Load() != 1 {
					t.Errorf("server saw %d requests, want 1", n.Load())
				}
				assertSafeText(t, "Error()", err.Error())
			})
		}
	}
}
