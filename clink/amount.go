package clink

import (
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
)

// maxAmountLen bounds an amount's text. Real amounts have a dozen digits; the bound keeps a
// hostile "amount" from costing memory or time.
const maxAmountLen = 64

// maxExponent bounds the exponent of a JSON number read into an Amount.
const maxExponent = 40

// Amount is an exact, non-negative decimal amount, kept as its canonical digit text so that
// it reaches Clink with exactly the digits given: "19.99" is sent as 19.99, never as
// 19.989999999999998, and "10.50" keeps its trailing zero. The zero value means "unset".
type Amount struct {
	s string
}

// ParseAmount parses a plain non-negative decimal literal: digits, optionally followed by '.'
// and at least one digit. Signs, exponents, spaces and other characters are refused. Leading
// zeros of the integer part are dropped ("007.50" is "7.50"); the digits after the point are
// kept as given.
func ParseAmount(s string) (Amount, error) {
	if s == "" {
		return Amount{}, errors.New("clink: invalid amount: empty")
	}
	if len(s) > maxAmountLen {
		return Amount{}, errors.New("clink: invalid amount: more than 64 characters")
	}
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if !allDigits(intPart) || (hasPoint && !allDigits(frac)) {
		return Amount{}, errors.New("clink: invalid amount: want a plain decimal such as 19.99 (digits, an optional '.' and digits; no sign, exponent or spaces)")
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if hasPoint {
		return Amount{intPart + "." + frac}, nil
	}
	return Amount{intPart}, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the amount's digits, e.g. "19.99"; "" when unset.
func (a Amount) String() string { return a.s }

// IsZero reports whether the amount is unset (the zero value). A parsed "0" is set.
func (a Amount) IsZero() bool { return a.s == "" }

// Rat returns the amount's exact value, or nil when unset.
func (a Amount) Rat() *big.Rat {
	if a.s == "" {
		return nil
	}
	r, _ := new(big.Rat).SetString(a.s)
	return r
}

// MarshalJSON writes the amount as a JSON number with exactly its digits; an unset amount is
// written as null.
func (a Amount) MarshalJSON() ([]byte, error) {
	if a.s == "" {
		return []byte("null"), nil
	}
	return []byte(a.s), nil
}

// UnmarshalJSON reads a JSON number, or a JSON string holding one, keeping its digits
// exactly. An exponent is applied by moving the decimal point ("1.5E+1" becomes "15"), so the
// value stays exact. Negative numbers are refused. null leaves the amount unchanged.
func (a *Amount) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return errors.New("clink: invalid amount: bad JSON string")
		}
	}
	v, err := parseJSONNumber(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// parseJSONNumber reads a non-negative JSON number literal into an Amount.
func parseJSONNumber(s string) (Amount, error) {
	if len(s) > maxAmountLen {
		return Amount{}, errors.New("clink: invalid amount: more than 64 characters")
	}
	if strings.HasPrefix(s, "-") {
		return Amount{}, errors.New("clink: invalid amount: negative")
	}
	mant, expText, hasExp := strings.Cut(strings.ReplaceAll(s, "E", "e"), "e")
	intPart, frac, hasPoint := strings.Cut(mant, ".")
	if !allDigits(intPart) || (hasPoint && !allDigits(frac)) {
		return Amount{}, errors.New("clink: invalid amount: not a decimal number")
	}
	exp := 0
	if hasExp {
		digits := strings.TrimLeft(expText, "+-")
		if !allDigits(digits) || len(expText)-len(digits) > 1 {
			return Amount{}, errors.New("clink: invalid amount: bad exponent")
		}
		e, err := strconv.Atoi(expText)
		if err != nil || e > maxExponent || e < -maxExponent {
			return Amount{}, errors.New("clink: invalid amount: exponent out of range")
		}
		exp = e
	}
	if exp == 0 {
		return ParseAmount(mant)
	}
	// Move the point exp places: digits stay the same, only its position changes.
	digits := intPart + frac
	point := len(intPart) + exp
	switch {
	case point <= 0:
		return ParseAmount("0." + strings.Repeat("0", -point) + digits)
	case point >= len(digits):
		return ParseAmount(digits + strings.Repeat("0", point-len(digits)))
	}
	return ParseAmount(digits[:point] + "." + digits[point:])
}
