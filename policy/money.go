package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxMinor is the largest amount, in minor units, that [ParseMoney] accepts
// (10^15: ten trillion dollars, a quadrillion yen). It keeps sums of line
// items far from int64 overflow, and it is below 2^53, so every accepted
// amount survives a float64 on the far side of the wire exactly.
const MaxMinor int64 = 1_000_000_000_000_000

// maxAmountText bounds the length of an amount's decimal text. Every amount
// up to MaxMinor fits in far fewer characters; the bound keeps hostile input
// from costing more than a few microseconds.
const maxAmountText = 64

var (
	// ErrInvalidAmount is matched (with errors.Is) by errors for amount text
	// that is not a positive decimal number: empty, malformed, NaN,
	// infinite, negative or zero.
	ErrInvalidAmount = errors.New("invalid amount")

	// ErrTooPrecise is matched (with errors.Is) by errors for amounts with
	// more decimals than their currency has (10.005 USD, 100.5 JPY). Such
	// amounts are refused, never rounded.
	ErrTooPrecise = errors.New("amount too precise for its currency")

	// ErrAmountTooLarge is matched (with errors.Is) by errors for amounts
	// above [MaxMinor] minor units.
	ErrAmountTooLarge = errors.New("amount too large")
)

// Money is an exact amount in integer minor units of a currency: 900.00 USD
// is 90000 minor units of USD. Money values are comparable with ==; the zero
// value has no currency and is not a valid amount.
type Money struct {
	minor int64
	cur   Currency
}

// NewMoney returns minor units of c as Money. It does not validate: amounts
// from untrusted text should come from [ParseMoney].
func NewMoney(minor int64, c Currency) Money { return Money{minor: minor, cur: c} }

// ParseMoney parses amount, decimal text such as "19.99", "1e2" or a JSON
// number literal, as an exact amount of the currency with the given code.
//
// The text must be a plain decimal number in JSON number syntax without a
// sign: digits, an optional fraction, an optional exponent. It is refused
// (never rounded) when it is NaN, infinite, negative, zero, has more
// decimals than the currency allows (trailing zeros are fine: "10.500" USD
// is 10.50 USD, and "1.5e1" JPY is 15 JPY), or exceeds [MaxMinor] minor
// units. Errors name the problem and match [ErrInvalidAmount],
// [ErrTooPrecise], [ErrAmountTooLarge], [ErrUnknownCurrency] or
// [ErrNotTender] with errors.Is.
func ParseMoney(amount, currencyCode string) (Money, error) {
	c, err := ParseCurrency(currencyCode)
	if err != nil {
		return Money{}, err
	}
	minor, err := parseMinor(amount, c)
	if err != nil {
		return Money{}, err
	}
	return Money{minor: minor, cur: c}, nil
}

func parseMinor(s string, c Currency) (int64, error) {
	bad := func(kind error, format string, args ...any) (int64, error) {
		return 0, &codedError{kind: kind, msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return bad(ErrInvalidAmount, "amount is empty")
	}
	if len(s) > maxAmountText {
		return bad(ErrInvalidAmount, "amount %s is too long (at most %d characters)", quoteInput(s), maxAmountText)
	}
	unsigned, negative := strings.CutPrefix(s, "-")
	d, ok := scanDecimal(unsigned)
	if !ok {
		// Only one spelling per number is accepted ("+5", ".5", "5." and
		// "0500" are refused; a YAML reader may take "0500" for octal), so
		// that the operator, the agent and this package never disagree on a
		// value. Text that reads as a number to a lenient reader is told
		// what is wrong with that number first.
		switch lenientForm(s) {
		case formNaN:
			return bad(ErrInvalidAmount, "amount %q is not a number", s)
		case formInfinite:
			return bad(ErrInvalidAmount, "amount %q is infinite", s)
		case formZero:
			return bad(ErrInvalidAmount, "amount %q must be greater than zero", s)
		case formNegative:
			return bad(ErrInvalidAmount, "amount %q is negative; it must be greater than zero", s)
		}
		return bad(ErrInvalidAmount, "amount %s is not a plain decimal number (write it like 19.99 or 1e3)", quoteInput(s))
	}
	// The significant digits run from the first non-zero digit to the last;
	// trailing zeros move into the exponent (10.500 is 105 x 10^-1).
	n := len(d.whole) + len(d.frac)
	first := 0
	for first < n && d.digit(first) == '0' {
		first++
	}
	switch {
	case first == n:
		return bad(ErrInvalidAmount, "amount %q must be greater than zero", s)
	case negative:
		return bad(ErrInvalidAmount, "amount %q is negative; it must be greater than zero", s)
	}
	last := n
	for d.digit(last-1) == '0' {
		last--
	}
	// minor = digits[first:last] x 10^shift
	shift := d.exp - int64(len(d.frac)) + int64(n-last) + int64(c.digits)
	if shift < 0 {
		return bad(ErrTooPrecise, "amount %q has more decimals than %s allows (%d)", s, c.code, c.digits)
	}
	// MaxMinor has 16 digits; a longer minor amount is above it. This also
	// keeps the arithmetic below far from int64 overflow.
	if int64(last-first)+shift > 16 {
		return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
	}
	var minor int64
	for i := first; i < last; i++ {
		minor = minor*10 + int64(d.digit(i)-'0')
	}
	for ; shift > 0; shift-- {
		minor *= 10
	}
	if minor > MaxMinor {
		return bad(ErrAmountTooLarge, "amount %q is too large (at most %s %s)", s, formatMinor(MaxMinor, int(c.digits)), c.code)
	}
	return minor, nil
}

// decimal is the exact value of a plain decimal number, kept as slices of
// its text: the digits of whole followed by those of frac, times
// 10^(exp - len(frac)).
type decimal struct {
	whole, frac string
	exp         int64
}

// digit returns the i-th digit of whole followed by frac.
func (d decimal) digit(i int) byte {
	if i < len(d.whole) {
		return d.whole[i]
	}
	return d.frac[i-len(d.whole)]
}

// maxExpMagnitude caps the exponent read from text. Beyond it every amount
// is far too precise or far too large for any currency, whatever its digits
// (at most maxAmountText), so the cap changes no outcome and keeps the
// exponent arithmetic from overflowing.
const maxExpMagnitude = 1_000_000

// scanDecimal reads s as an unsigned JSON number,
// (0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns its exact value
// (the exponent capped at ±maxExpMagnitude). It reports false for any
// other text.
func scanDecimal(s string) (decimal, bool) {
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
		return decimal{}, false
	case n > 1 && s[0] == '0':
		return decimal{}, false
	}
	whole := s[:i]
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		if digits() == 0 {
			return decimal{}, false
		}
		frac = s[start:i]
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		negExp := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			negExp = s[i] == '-'
			i++
		}
		start := i
		if digits() == 0 {
			return decimal{}, false
		}
		for j := start; j < i; j++ {
			exp = min(exp*10+int64(s[j]-'0'), maxExpMagnitude)
		}
		if negExp {
			exp = -exp
		}
	}
	if i != len(s) {
		return decimal{}, false
	}
	return decimal{whole: whole, frac: frac, exp: exp}, true
}

// form is what a lenient decimal reader makes of amount text.
type form int

const (
	formMalformed form = iota
	formNaN
	formInfinite
	formZero
	formNegative
	formPositive
)

// lenientForm classifies s the way a general decimal reader (the
// github.com/cockroachdb/apd library this package once used) does: an
// optional sign ("-" or "+"), then, in any case, "inf", "infinity",
// "nan"/"snan" with an optional numeric payload, or digits with at most
// one '.' anywhere and an optional exponent, within ±100000 (the adjusted
// exponent too). It only chooses the message for text that [scanDecimal]
// refuses: "-.5" is negative and "+0" is zero, but neither is accepted.
func lenientForm(s string) form {
	rest, negative := strings.CutPrefix(s, "-")
	if !negative {
		rest = strings.TrimPrefix(rest, "+")
	}
	rest = strings.ToLower(rest)
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		return formMalformed
	}
	switch rest {
	case "inf", "infinity":
		return formInfinite
	}
	payload, nan := strings.CutPrefix(rest, "nan")
	payload, snan := strings.CutPrefix(payload, "snan")
	if nan || snan {
		if payload != "" {
			if _, err := strconv.ParseUint(payload, 10, 64); err != nil {
				return formMalformed
			}
		}
		return formNaN
	}
	const limit = 100_000
	mantissa, expText, hasExp := strings.Cut(rest, "e")
	var exp int64
	if hasExp {
		e, err := strconv.ParseInt(expText, 10, 32)
		if err != nil || e < -limit || e > limit {
			return formMalformed
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mantissa, ".")
	digits := intPart + frac
	if digits == "" {
		return formMalformed
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return formMalformed
		}
	}
	significant := strings.TrimLeft(digits, "0")
	exp -= int64(len(frac))
	adjusted := exp + int64(max(len(significant), 1)) - 1
	if exp < -limit || adjusted < -limit || adjusted > limit {
		return formMalformed
	}
	switch {
	case significant == "":
		return formZero
	case negative:
		return formNegative
	}
	return formPositive
}

// Minor returns the amount in minor units of its currency (cents for USD).
func (m Money) Minor() int64 { return m.minor }

// Currency returns the amount's currency.
func (m Money) Currency() Currency { return m.cur }

// IsZero reports whether m is the zero Money (no currency, no amount).
func (m Money) IsZero() bool { return m == Money{} }

// Amount returns the exact decimal text of the amount at its currency's
// precision, without the code: "900.00" for USD, "15" for JPY, "1.250" for
// KWD. It is what goes on the wire, and ParseMoney(m.Amount(), code) == m.
func (m Money) Amount() string { return formatMinor(m.minor, int(m.cur.digits)) }

// String returns the amount and its code: "900.00 USD".
func (m Money) String() string {
	if m.cur.code == "" {
		return m.Amount()
	}
	return m.Amount() + " " + m.cur.code
}

func formatMinor(minor int64, digits int) string {
	var u uint64
	neg := minor < 0
	if neg {
		u = uint64(-(minor + 1)) + 1 // safe for math.MinInt64
	} else {
		u = uint64(minor)
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		if len(s) <= digits {
			s = strings.Repeat("0", digits-len(s)+1) + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// mulCapped returns a*b for positive a and b, or MaxMinor+1 when the product
// exceeds MaxMinor. Sums and products of amounts saturate instead of
// overflowing: anything above MaxMinor is above every cap anyway.
func mulCapped(a, b int64) int64 {
	if a > 0 && b > 0 && a > (MaxMinor+1)/b {
		return MaxMinor + 1
	}
	return min(a*b, MaxMinor+1)
}

// addCapped returns a+b for non-negative a and b, saturating at MaxMinor+1.
func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return MaxMinor + 1
	}
	return min(a+b, MaxMinor+1)
}
