package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/apd/v3"
)

// referenceParseMinor is parseMinor as it was when amounts were read with
// github.com/cockroachdb/apd (which costs milliseconds of tables at process
// start). It is kept, in a test file only, as the reference that
// FuzzParseMoneyMatchesReference holds the hand-written parser to: same
// amounts, same errors, same messages.
func referenceParseMinor(s string, c Currency) (int64, error) {
	bad := func(kind error, format string, args ...any) (int64, error) {
		return 0, &codedError{kind: kind, msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return bad(ErrInvalidAmount, "amount is empty")
	}
	if len(s) > maxAmountText {
		return bad(ErrInvalidAmount, "amount %s is too long (at most %d characters)", quoteInput(s), maxAmountText)
	}
	d, _, err := apd.NewFromString(s)
	if err == nil {
		switch {
		case d.Form == apd.NaN || d.Form == apd.NaNSignaling:
			return bad(ErrInvalidAmount, "amount %q is not a number", s)
		case d.Form == apd.Infinite:
			return bad(ErrInvalidAmount, "amount %q is infinite", s)
		case d.IsZero():
			return bad(ErrInvalidAmount, "amount %q must be greater than zero", s)
		case d.Negative:
			return bad(ErrInvalidAmount, "amount %q is negative; it must be greater than zero", s)
		}
	}
	// apd is lenient ("+5", ".5", "5.", "0500"); a YAML reader may take
	// "0500" for octal. Only one spelling per number is accepted, so that the
	// operator, the agent and this package never disagree on a value.
	unsigned, negative := strings.CutPrefix(s, "-")
	if !referenceIsPlainDecimal(unsigned) {
		return bad(ErrInvalidAmount, "amount %s is not a plain decimal number (write it like 19.99 or 1e3)", quoteInput(s))
	}
	if err != nil {
		// A well-formed number apd cannot hold: its exponent is beyond
		// ±100000, so it is zero, far too precise, or far too large.
		mantissa, exp, _ := strings.Cut(strings.ToLower(unsigned), "e")
		switch {
		case strings.Trim(mantissa, "0.") == "":
			return bad(ErrInvalidAmount, "amount %q must be greater than zero", s)
		case negative:
			return bad(ErrInvalidAmount, "amount %q is negative; it must be greater than zero", s)
		case strings.HasPrefix(exp, "-"):
			return bad(ErrTooPrecise, "amount %q has more decimals than %s allows (%d)", s, c.code, c.digits)
		}
		return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
	}
	// Strip trailing zeros: 10.500 becomes 105 x 10^-1.
	d.Reduce(d)
	shift := int64(d.Exponent) + int64(c.digits) // minor = coeff x 10^shift
	if shift < 0 {
		return bad(ErrTooPrecise, "amount %q has more decimals than %s allows (%d)", s, c.code, c.digits)
	}
	if !d.Coeff.IsInt64() || shift > 18 {
		return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
	}
	minor := d.Coeff.Int64()
	for ; shift > 0; shift-- {
		if minor > MaxMinor/10 {
			return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
		}
		minor *= 10
	}
	if minor > MaxMinor {
		return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
	}
	return minor, nil
}

// referenceIsPlainDecimal reports whether s is an unsigned JSON number:
// (0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func referenceIsPlainDecimal(s string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch n := digits(); {
	case n == 0:
		return false
	case n > 1 && s[0] == '0':
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// TestParseMinorMatchesReferenceOnShortText compares the parser with the
// reference on every text of up to four characters (three with -short) over the alphabet that
// matters to either (digits, point, exponent, signs, the letters of NaN and
// Inf), in a currency of each precision.
func TestParseMinorMatchesReferenceOnShortText(t *testing.T) {
	const alphabet = "019.eE+-nNaifs"
	maxLen := 4
	if testing.Short() {
		maxLen = 3
	}
	var currencies []Currency
	for _, code := range []string{"JPY", "USD", "KWD"} {
		c, err := ParseCurrency(code)
		if err != nil {
			t.Fatal(err)
		}
		currencies = append(currencies, c)
	}
	buf := make([]byte, 0, maxLen)
	var walk func()
	walk = func() {
		s := string(buf)
		for _, c := range currencies {
			got, gotErr := parseMinor(s, c)
			want, wantErr := referenceParseMinor(s, c)
			if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !errors.Is(gotErr, errors.Unwrap(wantErr)) {
				t.Fatalf("parseMinor(%q, %s) = %d, %v; the reference gives %d, %v", s, c.code, got, gotErr, want, wantErr)
			}
		}
		if len(buf) == maxLen {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			buf = append(buf, alphabet[i])
			walk()
			buf = buf[:len(buf)-1]
		}
	}
	walk()
}
