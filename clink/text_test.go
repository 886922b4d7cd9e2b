package clink_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clink-mcp/clink-mcp/clink"
)

func TestClinkTextIsSanitizedBeforeAnErrorCarriesIt(t *testing.T) {
	const random40 = "9fQ2xLm7RkT4vB8nW1cZ5hJ3pD6sG0aY2eU7iO9q"
	tests := []struct {
		name    string
		code    int    // envelope code on HTTP 200
		msg     string // Clink's msg
		want    string // in Message, Error() and Explanation()
		absent  []string
		maxRune int // Message's length bound, if checked
	}{
		{name: "an email echoed by Clink is masked",
			code: 400, msg: "customer ada.lovelace@example.com is blocked",
			want: "a***@example.com", absent: []string{"ada.lovelace"}},
		{name: "a planted tokenValue is masked",
			code: 400, msg: "session tok_PLANTED_41b2 already paid",
			want: "tok_[REDACTED]", absent: []string{"PLANTED"}},
		{name: "a live-like secret key is masked",
			code: 400, msg: "key sk_live_51HxYzAbCdEfGh revoked",
			want: "sk_live_[REDACTED]", absent: []string{"51HxYz"}},
		{name: "a 40-character random string is masked",
			code: 400, msg: "reference " + random40 + " rejected",
			want: "reference [REDACTED] rejected", absent: []string{random40[:12]}},
		{name: "a 10 KB message is bounded",
			code: 400, msg: strings.Repeat("very long message ", 600),
			want: "very long message", maxRune: 201},
		{name: "NUL and ESC are removed",
			code: 400, msg: "bad\x00 \x1b[2Jrequest",
			want: "bad [2Jrequest", absent: []string{"\x00", "\x1b"}},
		{name: "an email behind an unknown code is masked too",
			code: 123456, msg: "retry for bob@example.org",
			want: "b***@example.org", absent: []string{"bob@"}},
		{name: "CUSTOMER_NOT_FOUND is unchanged",
			code: 10001, msg: "CUSTOMER_NOT_FOUND",
			want: "CUSTOMER_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"code": tt.code, "msg": tt.msg, "data": nil})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(replyWith(http.StatusOK, "application/json", string(body)))
			defer srv.Close()
			err = createCheckout(newClient(t, srv.URL), t)
			var ce *clink.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *clink.Error", err)
			}
			for what, s := range map[string]string{"Message": ce.Message, "Error()": err.Error(), "Explanation()": ce.Explanation()} {
				if !strings.Contains(s, tt.want) {
					t.Errorf("%s = %q, want it to contain %q", what, s, tt.want)
				}
				for _, a := range tt.absent {
					if strings.Contains(s, a) {
						t.Errorf("%s = %q, want it without %q", what, s, a)
					}
				}
				assertSafeText(t, what, s)
			}
			if n := utf8.RuneCountInString(ce.Message); tt.maxRune > 0 && n > tt.maxRune {
				t.Errorf("Message has %d runes, want at most %d", n, tt.maxRune)
			}
		})
	}
}

func TestABodyExcerptIsSanitized(t *testing.T) {
	srv := httptest.NewServer(replyWith(http.StatusBadGateway, "text/plain", "upstream failed for ada@example.com with tok_PLANTED_41b2"))
	defer srv.Close()
	err := createCheckout(newClient(t, srv.URL), t)
	var ce *clink.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *clink.Error", err)
	}
	const want = "upstream failed for a***@example.com with tok_[REDACTED]"
	if ce.Excerpt != want {
		t.Errorf("Excerpt = %q, want %q", ce.Excerpt, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
	}
}
