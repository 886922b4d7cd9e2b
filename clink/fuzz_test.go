package clink

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

const fuzzKey = "sk_test_FUZZKEY0123456789"

// FuzzDecodeResponse feeds hostile responses to the decoder: it must never panic, and its
// errors must stay short, printable, key-free and classified.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"code":200,"msg":"success","data":{"sessionId":"sess_1","originalAmount":19.99,"expireTime":"2026-01-01 00:00:00","tokenValue":"tok_x"}}`))
	f.Add(401, "text/plain", []byte("Unauthorized"))
	f.Add(200, "application/json", []byte(`{"code":200,"msg":"success","data":{"sessionId":"se`))
	f.Add(502, "text/html", []byte("<html><body>Bad Gateway "+fuzzKey+"</body></html>"))
	f.Add(200, "application/json", []byte(`{"code":"80102203","msg":"`+fuzzKey+`"}`))
	c := &Client{key: fuzzKey}
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 100 || status > 999 {
			return // net/http only delivers three-digit statuses
		}
		for _, op := range []operation{
			{name: "create checkout session", method: http.MethodPost, create: true},
			{name: "get agent payment session", method: http.MethodGet},
			{name: "get checkout session", method: http.MethodGet},
		} {
			var created CheckoutSession
			var agent AgentPaymentSessionInfo
			var checkout CheckoutSessionInfo
			out := map[string]any{
				"create checkout session":   &created,
				"get agent payment session": &agent,
				"get checkout session":      &checkout,
			}[op.name]
			e := c.decode(op, status, contentType, body, out)
			if e == nil {
				if status < 200 || status > 299 {
					t.Fatalf("HTTP %d decoded as success", status)
				}
				for _, a := range []Amount{created.OriginalAmount, agent.Amount, checkout.OriginalAmount, checkout.Amount} {
					if _, err := ParseAmount(a.String()); !a.IsZero() && err != nil {
						t.Fatalf("decoded amount %q does not parse: %v", a, err)
					}
				}
				continue
			}
			msg := e.Error()
			if strings.Contains(msg, fuzzKey) || strings.Contains(e.Excerpt, fuzzKey) || strings.Contains(e.Message, fuzzKey) {
				t.Fatalf("error carries the key: %q", msg)
			}
			if len(msg) > 2000 || utf8.RuneCountInString(e.Excerpt) > excerptLen+1 || utf8.RuneCountInString(e.Message) > messageLen+1 {
				t.Fatalf("error too long: %d bytes: %q", len(msg), msg)
			}
			for _, r := range msg {
				if !unicode.IsPrint(r) {
					t.Fatalf("error has non-printable %U: %q", r, msg)
				}
			}
			if e.Explanation() == "" {
				t.Fatal("empty Explanation")
			}
			unknown := errors.Is(e, ErrOutcomeUnknown)
			if unknown && !op.create {
				t.Fatalf("a get reported an unknown outcome: %q", msg)
			}
			if op.create && status >= 500 && !unknown {
				t.Fatalf("a create with HTTP %d is not ErrOutcomeUnknown: %q", status, msg)
			}
			if op.create && e.kind == kindAPI && unknown == definiteRefusal(Code(e.Code), e.Message) {
				t.Fatalf("a create answered with code %d: ErrOutcomeUnknown is %v, and so is definiteRefusal: %q",
					e.Code, unknown, msg)
			}
			if op.create && e.kind == kindAPI && Code(e.Code).ServerFault() && !unknown {
				t.Fatalf("a create answered with the server fault code %d is not ErrOutcomeUnknown: %q", e.Code, msg)
			}
		}
	})
}

// FuzzSanitize feeds arbitrary text to the sanitizer: whatever it gets, what it returns must
// be short, printable and key-free, and hold no unmasked email, prefixed token or JWT, and no
// long run that does not read as words.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		"CUSTOMER_NOT_FOUND",
		"customer ada@example.com, token tok_PLANTED_41b2",
		"key " + fuzzKey + " is revoked",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
		"\x00\x1b[2J\u200b\u202e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range []int{excerptLen, messageLen} {
			got := sanitize(s, n, fuzzKey)
			if strings.Contains(got, fuzzKey) {
				t.Fatalf("sanitize(%q) = %q carries the key", s, got)
			}
			if utf8.RuneCountInString(got) > n+1 {
				t.Fatalf("sanitize(%q) = %q is longer than %d runes", s, got, n+1)
			}
			for _, r := range got {
				if !unicode.IsPrint(r) {
					t.Fatalf("sanitize(%q) = %q has non-printable %U", s, got, r)
				}
			}
			if m := shapes().jwt.FindString(got); m != "" {
				t.Fatalf("sanitize(%q) = %q still holds %q", s, got, m)
			}
			for _, m := range shapes().email.FindAllString(got, -1) {
				if maskEmail(m) != m {
					t.Fatalf("sanitize(%q) = %q still holds the address %q", s, got, m)
				}
			}
			for _, m := range shapes().prefixed.FindAllString(got, -1) {
				if maskPrefixed(m) != m {
					t.Fatalf("sanitize(%q) = %q still holds the token %q", s, got, m)
				}
			}
			for _, m := range shapes().run.FindAllString(got, -1) {
				if !wordLike(m) {
					t.Fatalf("sanitize(%q) = %q still holds the run %q", s, got, m)
				}
			}
		}
	})
}

// FuzzAmount checks that any amount ParseAmount or UnmarshalJSON accepts survives a round
// trip through JSON with the same digits.
func FuzzAmount(f *testing.F) {
	for _, s := range []string{"19.99", "0.5", "007.50", "1e3", "1.5E+1", "-1", `"12.30"`, "null", "1e-40", "9.99e40"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ParseAmount(s); err == nil {
			roundTrip(t, a)
		}
		var a Amount
		if err := json.Unmarshal([]byte(s), &a); err == nil && !a.IsZero() {
			roundTrip(t, a)
		}
	})
}

func roundTrip(t *testing.T, a Amount) {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil || !json.Valid(b) {
		t.Fatalf("Marshal(%q) = %s, %v: not valid JSON", a, b, err)
	}
	var back Amount
	if err := json.Unmarshal(b, &back); err != nil || back != a {
		t.Fatalf("round trip of %q gave %q, %v", a, back, err)
	}
	if a.Rat() == nil || a.Rat().Sign() < 0 {
		t.Fatalf("Rat(%q) = %v", a, a.Rat())
	}
}
