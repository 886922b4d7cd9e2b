package policy

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/text/currency"
)

// ErrUnknownCurrency is matched (with errors.Is) by errors for currency codes
// that are malformed, not upper case, or not ISO 4217 codes.
var ErrUnknownCurrency = errors.New("unknown currency")

// ErrNotTender is matched (with errors.Is) by errors for ISO 4217 codes that
// are not legal tender anywhere today: precious metals (XAU, XAG, XPT, XPD),
// special drawing rights and bond units (XDR, XBA..XBD, XSU, XUA), testing
// and "no currency" codes (XTS, XXX), fund codes (USN, CLF, BOV, ...) and
// withdrawn currencies (DEM, FRF, ...).
var ErrNotTender = errors.New("currency is not legal tender")

// Currency is an ISO 4217 currency that can be used for payments. The zero
// value is not a valid currency; values come from [ParseCurrency].
// Currencies are comparable with ==.
type Currency struct {
	code   string
	digits uint8
}

// tender holds every currency that CLDR (through golang.org/x/text/currency)
// lists as legal tender in at least one region today, keyed by its
// upper-case code. Being tender today is the test for "usable for payments":
// it leaves out metals, SDRs, fund codes, testing codes and withdrawn
// currencies without a hand-typed deny list.
var tender = func() map[string]Currency {
	m := make(map[string]Currency, 160)
	for it := currency.Query(); it.Next(); {
		u := it.Unit()
		// Standard (not Cash) rounding: card and wallet payments settle to
		// the currency's accounting precision, not to its smallest coin.
		scale, _ := currency.Standard.Rounding(u)
		m[u.String()] = Currency{code: u.String(), digits: uint8(scale)}
	}
	return m
}()

// TenderCodes returns the codes [ParseCurrency] accepts, sorted.
func TenderCodes() []string {
	codes := make([]string, 0, len(tender))
	for c := range tender {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	return codes
}

// ParseCurrency returns the currency with the given ISO 4217 code. The code
// must be three upper-case ASCII letters (lower case is refused rather than
// folded, so that what the operator or agent wrote is what is checked), a
// code ISO 4217 knows ([ErrUnknownCurrency]) and legal tender today
// ([ErrNotTender]).
func ParseCurrency(code string) (Currency, error) {
	if c, ok := tender[code]; ok {
		return c, nil
	}
	if len(code) != 3 {
		return Currency{}, &codedError{kind: ErrUnknownCurrency,
			msg: fmt.Sprintf("currency %s is not an ISO 4217 code (three upper-case letters, like USD)", quoteInput(code))}
	}
	upper := true
	for i := 0; i < 3; i++ {
		switch b := code[i]; {
		case 'A' <= b && b <= 'Z':
		case 'a' <= b && b <= 'z':
			upper = false
		default:
			return Currency{}, &codedError{kind: ErrUnknownCurrency,
				msg: fmt.Sprintf("currency %s is not an ISO 4217 code (three upper-case letters, like USD)", quoteInput(code))}
		}
	}
	if _, err := currency.ParseISO(code); err != nil {
		return Currency{}, &codedError{kind: ErrUnknownCurrency,
			msg: fmt.Sprintf("currency %s is not an ISO 4217 currency code", quoteInput(code))}
	}
	if !upper {
		return Currency{}, &codedError{kind: ErrUnknownCurrency,
			msg: fmt.Sprintf("currency %s must be written in upper case", quoteInput(code))}
	}
	return Currency{}, &codedError{kind: ErrNotTender,
		msg: fmt.Sprintf("currency %s is not legal tender for payments (metals, special drawing rights, fund, testing and withdrawn codes are refused)", code)}
}

// Code returns the upper-case ISO 4217 code, or "" for the zero Currency.
func (c Currency) Code() string { return c.code }

// Digits returns the number of decimals of the currency's minor unit: 0 for
// JPY, 2 for USD, 3 for KWD. The figures are CLDR's standard (accounting)
// digits as shipped by golang.org/x/text/currency.
func (c Currency) Digits() int { return int(c.digits) }

// String returns the code.
func (c Currency) String() string { return c.code }

// codedError carries a message for people and a sentinel for errors.Is.
type codedError struct {
	kind error
	msg  string
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.kind }

// quoteInput quotes untrusted text for a message, cut short so that a
// hostile megabyte of input does not become a megabyte of error.
func quoteInput(s string) string {
	const max = 40
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
