package clink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestBackoffDoublesUpToItsCapWithJitter(t *testing.T) {
	c := &Client{backoffBase: 100 * time.Millisecond, backoffMax: time.Second}
	caps := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, limit := range caps {
		attempt := i + 1
		seen := map[time.Duration]bool{}
		for range 200 {
			d := c.delay(attempt)
			if d < limit/2 || d > limit {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", attempt, d, limit/2, limit)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("delay(%d) took a single value in 200 draws: no jitter", attempt)
		}
	}
}

func TestOnlyFailuresBeforeConnectingProveTheRequestNeverLeft(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Post", URL: "https://x/", Err: err} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"a refused dial", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), true},
		{"a DNS failure", wrap(&net.DNSError{Err: "no such host", Name: "x"}), true},
		{"a DNS failure inside a dial error", wrap(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host"}}), true},
		{"a failed proxy connect", wrap(&net.OpError{Op: "proxyconnect", Err: errors.New("refused")}), true},
		{"a reset while reading", wrap(&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}), false},
		{"a failed write", wrap(&net.OpError{Op: "write", Err: errors.New("broken pipe")}), false},
		{"an EOF", wrap(io.EOF), false},
		{"a timeout", wrap(fmt.Errorf("awaiting headers: %w", errTimeout{})), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := neverSent(tt.err); got != tt.want {
				t.Errorf("neverSent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

type errTimeout struct{}

func (errTimeout) Error() string { return "timeout" }
func (errTimeout) Timeout() bool { return true }

func TestCleanMakesShortPrintableKeyFreeText(t *testing.T) {
	const key = "sk_test_SECRETSECRET"
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"whitespace collapses", "a \n\t b\r\n", 100, "a b"},
		{"control characters become spaces", "a\x00\x1b[1mb", 100, "a [1mb"},
		{"invalid UTF-8 becomes a question mark", "a\xffb", 100, "a?b"},
		{"long text is cut with an ellipsis", "abcdefghij", 4, "abcd…"},
		{"the key is redacted", "key " + key + " bad", 100, "key [REDACTED] bad"},
		{"a key cut by the limit is redacted", "xx sk_test_SECRET", 12, "xx [REDACTED]…"},
		{"text resembling a short piece of the key survives", "use sk_", 100, "use sk_"},
		{"non-ASCII printable text survives", "prix: 10 €", 100, "prix: 10 €"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clean(tt.in, tt.n, key); got != tt.want {
				t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestDateTimesDecodeInEveryShapeClinkMaySend(t *testing.T) {
	want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct{ name, in string }{
		{"RFC 3339 in UTC", `"2026-01-02T03:04:05Z"`},
		{"RFC 3339 with an offset", `"2026-01-02T11:04:05+08:00"`},
		{"RFC 3339 with milliseconds", `"2026-01-02T03:04:05.000Z"`},
		{"Java's offset without a colon", `"2026-01-02T03:04:05.000+0000"`},
		{"a space instead of T, no zone", `"2026-01-02 03:04:05"`},
		{"a T without a zone", `"2026-01-02T03:04:05"`},
		{"epoch milliseconds as a number", `1767323045000`},
		{"epoch milliseconds as a string", `"1767323045000"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Time
			if err := json.Unmarshal([]byte(tt.in), &w); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if got := w.Time; !got.Equal(want) {
				t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, got, want)
			}
		})
	}
	for _, in := range []string{`null`, `""`} {
		var w Time
		if err := json.Unmarshal([]byte(in), &w); err != nil || !w.Time.IsZero() {
			t.Errorf("Unmarshal(%s) = %v, %v; want the zero time", in, w.Time, err)
		}
	}
	// Epoch seconds (1767323045, 2026) would read as a date in January
	// 1970 if taken for milliseconds; 0 may mean "none": neither is read.
	for _, in := range []string{`"tomorrow"`, `"2026-13-01T00:00:00Z"`, `true`, `-5`, `"99999999999999999999999"`,
		`1767323045`, `"1767323045"`, `0`, `99999999999`} {
		var w Time
		err := json.Unmarshal([]byte(in), &w)
		if err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, w.Time)
		} else if strings.Contains(err.Error(), strings.Trim(in, `"`)) {
			t.Errorf("error %q repeats the input", err)
		}
	}
}
