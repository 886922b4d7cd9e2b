package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"
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
	if !isPlainDecimal(unsigned) {
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

// isPlainDecimal reports whether s is an unsigned JSON number:
// (0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isPlainDecimal(s string) bool {
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
