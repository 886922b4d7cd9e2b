package clink

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

const sanitizeKey = "sk_test_SANITIZEKEY0123456789"

// randomToken returns n characters drawn from alphabet with r.
func randomToken(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	base62    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	base64URL = base62 + "-_"
	hexDigits = "0123456789abcdef"
	base32    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" // as crypto/rand.Text writes
	base36    = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func TestSanitizeMasksSecretsAndKeepsNames(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var fifteen []string
	for range 15 {
		fifteen = append(fifteen, randomToken(r, base62, 25))
	}
	tests := []struct {
		name, in, want string
	}{
		{"an email is masked to its first letter and domain",
			"no customer alice.smith@example.com here", "no customer a***@example.com here"},
		{"a one-letter mailbox is masked whole", "a@example.com", "***@example.com"},
		{"an email with a plus and a subdomain is masked", "bob+tag@mail.example.co.uk", "b***@mail.example.co.uk"},
		// Every character policy.NormalizeEmail accepts before the @.
		{"an email with braces is masked", "email first{last}@example.org is blocked", "email f***@example.org is blocked"},
		{"an email with a slash is masked", "john/smith@example.com", "j***@example.com"},
		{"an email with an ampersand is masked", "tom&jerry@example.com", "t***@example.com"},
		{"an email with an asterisk is masked", "ab*cd@example.com", "a***@example.com"},
		{"an email of RFC 5322 atext is masked", "a!#$%&'*+/=?^_`{|}~-.z@example.com", "a***@example.com"},
		{"an email percent-encoded in a URL is masked", "successUrl https://shop.example/done?to=alice.smith%40example.com is invalid",
			"successUrl https://shop.example/done?to=a***%40example.com is invalid"},
		{"an encoded email with an encoded plus is masked", "cancelUrl=https://x.example/?u=bob%2Btag%40mail.example.org&y=1",
			"cancelUrl=https://x.example/?u=b***%40mail.example.org&y=1"},
		{"an email with a JSON-escaped @ is masked", `{"customerEmail":"alice.smith\u0040example.com"}`,
			`{"customerEmail":"a***\u0040example.com"}`},
		{"an email in JSON within JSON is masked", `"body":"{\"customerEmail\":\"alice.smith\\u0040example.com\"}"`,
			`"body":"{\"customerEmail\":\"a***\\u0040example.com\"}"`},
		{"an email with a JSON-escaped plus is masked whole", `"alice.smith\u002Btag@example.com"`, `"a***@example.com"`},
		{"an email encoded twice in a URL is masked", "returnUrl=https%3A%2F%2Fshop.example%2Fthanks%3Femail%3Dbob.jones%2540example.com",
			// The mailbox starts, as far as a pattern can tell, after "%": the
			// "3D" of the "=" goes with it.
			"returnUrl=https%3A%2F%2Fshop.example%2Fthanks%3Femail%3***%2540example.com"},
		{"an email with an HTML-escaped @ is masked", "to carol&#64;example.com or dave&#x40;example.org",
			"to c***&#64;example.com or d***&#x40;example.org"},
		{"an email with an HTML-escaped plus is masked whole", "to alice&#43;tag&#64;example.com", "to a***&#64;example.com"},
		{"a planted token keeps only its prefix", "session token tok_PLANTED_41b2 leaked", "session token tok_[REDACTED] leaked"},
		{"a live secret key keeps only its prefix", "key sk_live_51HxYzAbCdEf is revoked", "key sk_live_[REDACTED] is revoked"},
		{"a production key keeps only its prefix", "sk_prod_abcdef123456", "sk_prod_[REDACTED]"},
		{"a publishable key keeps only its prefix", "pk_test_abcdef", "pk_test_[REDACTED]"},
		{"a webhook secret keeps only its prefix", "whsec_abcdefgh", "whsec_[REDACTED]"},
		{"the API key itself is redacted", "bad key " + sanitizeKey, "bad key [REDACTED]"},
		{"a 40-character random string is masked", "id 9fQ2xLm7RkT4vB8nW1cZ5hJ3pD6sG0aY2eU7iO9q", "id [REDACTED]"},
		{"a 64-character hex digest is masked", "sha " + strings.Repeat("deadbeef0123", 5) + "abcd", "sha [REDACTED]"},
		{"a base64 blob is masked", "data aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldA== end", "data [REDACTED] end"},
		{"a JWT is masked", "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk ok", "jwt [REDACTED] ok"},
		{"a random dotted token is masked", "x1Y2z3W4q.a9B8c7D6w.q1w2E3r4t", "[REDACTED]"},
		{"a dotted field path is kept", "priceDataList.unitAmount.required", "priceDataList.unitAmount.required"},
		{"a bearer credential is masked", "bearer abc123.def", "bearer [REDACTED]"},
		{"a value named as a password is masked", "password=hunter2&user=ada", "password=[REDACTED]&user=ada"},
		{"a JSON value named as an API key is masked", `{"apiKey": "abc123"}`, `{"apiKey": "[REDACTED]"}`},
		{"a tokenValue given with a colon is masked", "tokenValue: QWERTY", "tokenValue: [REDACTED]"},
		{"a named error mentioning a token keeps its detail", "TOKEN_EXPIRED: please create a new session", "TOKEN_EXPIRED: please create a new session"},
		{"CUSTOMER_NOT_FOUND is unchanged", "CUSTOMER_NOT_FOUND", "CUSTOMER_NOT_FOUND"},
		{"CUSTOMER_IDENTIFIER_NOT_MATCHED is unchanged", "CUSTOMER_IDENTIFIER_NOT_MATCHED", "CUSTOMER_IDENTIFIER_NOT_MATCHED"},
		{"a named error with a detail is unchanged", "INVALID_PARAMETER: originalCurrency must be ISO 4217", "INVALID_PARAMETER: originalCurrency must be ISO 4217"},
		{"a long field name is unchanged", "directPaymentQrCodePaymentMethodType is not paymentMethodType", "directPaymentQrCodePaymentMethodType is not paymentMethodType"},
		{"a URL keeps its words and loses its random part", "see https://uat-checkout.clinkbill.com/pay/sess_9fQ2xLm7RkT4vB8nW1cZ5hJ3", "see https://uat-checkout.clinkbill.com/pay/[REDACTED]"},
		{"NUL and ESC are removed", "\x00\x1b[31mred\x1b[0m\x07", "[31mred[0m"},
		{"a control byte cannot split a token into innocent pieces", "id 9fQ2xLm7RkT4\x00vB8nW1cZ5hJ3pD6", "id [REDACTED]"},
		{"a zero-width space cannot split a token into innocent pieces", "id 9fQ2xLm7RkT4\u200bvB8nW1cZ5hJ3pD6", "id [REDACTED]"},
		{"a bidi override is removed", "amount \u202e01.99", "amount 01.99"},
		{"whitespace collapses to one space", " a \n\t b\r\n", "a b"},
		{"invalid UTF-8 becomes a question mark", "a\xffb", "a?b"},
		{"non-ASCII text is kept", "montant incorrect: 10 €", "montant incorrect: 10 €"},
		{"a 10 KB message is cut with an ellipsis", strings.Repeat("word ", 2048), strings.TrimSpace(strings.Repeat("word ", 40)) + "…"},
		{"a 10 KB run is masked, not shown in part", strings.Repeat("x", 10240), redacted + "…"},
		{"an email cut by the read window is not shown in part",
			strings.Join(fifteen[:14], " ") + " ada.lovelace.countess.of.lovel@example.com",
			strings.TrimSpace(strings.Repeat(redacted+" ", 15)) + "…"},
		{"a token cut by the read window is not shown in part",
			strings.Join(fifteen, " ") + " Q7wErT9yUiOp2AsDfGhJkLzXcV",
			strings.TrimSpace(strings.Repeat(redacted+" ", 15)) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitize(tt.in, messageLen, sanitizeKey); got != tt.want {
				t.Errorf("sanitize(%q)\n got %q\nwant %q", abbreviate(tt.in), got, tt.want)
			}
		})
	}
}

// abbreviate shortens long test inputs for failure messages.
func abbreviate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func TestRandomTokensAreMaskedWhileNamesAreKept(t *testing.T) {
	// The token test is a heuristic, so its claim is a rate, checked with a fixed seed:
	// random strings of 40 characters are all but always masked, of 24 nearly always.
	r := rand.New(rand.NewPCG(3, 4))
	const samples = 500
	for _, a := range []struct{ name, alphabet string }{
		{"base62", base62}, {"base64url", base64URL}, {"hex", hexDigits}, {"base32", base32}, {"base36", base36},
	} {
		for _, n := range []struct {
			length  int
			maxKept int // of samples
		}{{24, 5}, {40, 1}} {
			kept := 0
			for range samples {
				tok := randomToken(r, a.alphabet, n.length)
				if strings.Contains(sanitize("x "+tok, messageLen, ""), tok) {
					kept++
				}
			}
			if kept > n.maxKept {
				t.Errorf("%d of %d random %s strings of %d characters were kept, want at most %d", kept, samples, a.name, n.length, n.maxKept)
			}
		}
	}
	for _, name := range []string{
		"CUSTOMER_IDENTIFIER_NOT_MATCHED", "AMOUNT_OR_CURRENCY_INCORRECT", "UNSUPPORTED_MEDIA_TYPE",
		"paymentMethodTypeBlackList", "directPaymentQrCodePaymentMethodType", "merchantReferenceIdentifier",
		"PAYMENT_METHOD_TYPE_NOT_SUPPORTED_FOR_CURRENCY", "ISO4217_CURRENCY_CODE_INVALID",
		"HTTPServerErrorHappenedHere", "X-API-KEY-header-missing-or-invalid", "priceDataList_0_unitAmount_invalid",
		"com.clinkbill.order.PaymentSessionService", "internationalization_settings",
	} {
		if got := sanitize(name, messageLen, ""); got != name {
			t.Errorf("sanitize(%q) = %q, want it unchanged", name, got)
		}
	}
}

func TestAnExcerptIsSanitizedLikeAMessage(t *testing.T) {
	body := []byte("<html>customer ada@example.com token tok_PLANTED_41b2 key " + sanitizeKey + "\x00</html>")
	got := excerpt(body, sanitizeKey)
	want := "<html>customer a***@example.com token tok_[REDACTED] key [REDACTED]</html>"
	if got != want {
		t.Errorf("excerpt = %q, want %q", got, want)
	}
	long := []byte(strings.Repeat("a ", 2000) + "tok_PLANTED_41b2")
	if got := excerpt(long, sanitizeKey); utf8.RuneCountInString(got) > excerptLen+1 || !strings.HasSuffix(got, "…") {
		t.Errorf("excerpt of a long body = %q, want at most %d runes ending in an ellipsis", got, excerptLen+1)
	}
}
