package policy

import (
	"errors"
	"testing"

	"golang.org/x/text/currency"
)

func TestParseCurrency(t *testing.T) {
	ok := []struct {
		name, code string
		digits     int
	}{
		{"accepts USD with two decimals", "USD", 2},
		{"accepts EUR with two decimals", "EUR", 2},
		{"accepts JPY with no decimals", "JPY", 0},
		{"accepts KWD with three decimals", "KWD", 3},
		{"accepts BHD with three decimals", "BHD", 3},
		{"accepts CLP with no decimals", "CLP", 0},
		{"accepts the CFA franc XOF, a tender X code", "XOF", 0},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCurrency(tc.code)
			if err != nil {
				t.Fatalf("ParseCurrency(%q): %v", tc.code, err)
			}
			if c.Code() != tc.code || c.Digits() != tc.digits {
				t.Errorf("ParseCurrency(%q) = %s with %d digits, want %d digits", tc.code, c.Code(), c.Digits(), tc.digits)
			}
		})
	}

	bad := []struct {
		name, code string
		kind       error
		msg        string
	}{
		{"refuses a lower-case code", "usd", ErrUnknownCurrency, `currency "usd" must be written in upper case`},
		{"refuses a mixed-case code", "Usd", ErrUnknownCurrency, `currency "Usd" must be written in upper case`},
		{"refuses an unknown code", "ZZZ", ErrUnknownCurrency, `currency "ZZZ" is not an ISO 4217 currency code`},
		{"refuses an empty code", "", ErrUnknownCurrency, `currency "" is not an ISO 4217 code (three upper-case letters, like USD)`},
		{"refuses a code of the wrong length", "USDT", ErrUnknownCurrency, `currency "USDT" is not an ISO 4217 code (three upper-case letters, like USD)`},
		{"refuses a code with digits", "US1", ErrUnknownCurrency, `currency "US1" is not an ISO 4217 code (three upper-case letters, like USD)`},
		{"refuses a code padded with spaces", " USD", ErrUnknownCurrency, `currency " USD" is not an ISO 4217 code (three upper-case letters, like USD)`},
		{"refuses gold", "XAU", ErrNotTender, ""},
		{"refuses silver", "XAG", ErrNotTender, ""},
		{"refuses platinum", "XPT", ErrNotTender, ""},
		{"refuses palladium", "XPD", ErrNotTender, ""},
		{"refuses special drawing rights", "XDR", ErrNotTender, ""},
		{"refuses a bond market unit", "XBA", ErrNotTender, ""},
		{"refuses the Sucre", "XSU", ErrNotTender, ""},
		{"refuses the ADB unit of account", "XUA", ErrNotTender, ""},
		{"refuses the testing code", "XTS", ErrNotTender, ""},
		{"refuses the no-currency code", "XXX", ErrNotTender, ""},
		{"refuses a fund code", "USN", ErrNotTender, ""},
		{"refuses the Chilean unit of account", "CLF", ErrNotTender, ""},
		{"refuses a withdrawn currency", "DEM", ErrNotTender, ""},
	}
	for _, code := range []string{"XBB", "XBC", "XBD", "BOV", "COU", "MXV", "UYI", "CHE", "CHW", "FRF"} {
		bad = append(bad, struct {
			name, code string
			kind       error
			msg        string
		}{"refuses the non-tender code " + code, code, ErrNotTender, ""})
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCurrency(tc.code)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("ParseCurrency(%q) = %v, want an error matching %v", tc.code, err, tc.kind)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err, tc.msg)
			}
		})
	}

	t.Run("names the problem for a non-tender code", func(t *testing.T) {
		_, err := ParseCurrency("XAU")
		want := "currency XAU is not legal tender for payments (metals, special drawing rights, fund, testing and withdrawn codes are refused)"
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	})
}

// Money is integer minor units with no rounding increment: if CLDR ever
// gives a tender currency a standard increment other than 1 (like CHF's
// cash rounding to 0.05), this package would need to learn it.
func TestEveryTenderCurrencyHasUnitIncrement(t *testing.T) {
	for _, code := range TenderCodes() {
		u := currency.MustParseISO(code)
		if _, inc := currency.Standard.Rounding(u); inc != 1 {
			t.Errorf("%s has standard rounding increment %d", code, inc)
		}
		if c, err := ParseCurrency(code); err != nil || c.Code() != code {
			t.Errorf("ParseCurrency(%q) = %v, %v", code, c, err)
		}
	}
	if n := len(TenderCodes()); n < 100 {
		t.Errorf("only %d tender currencies; the CLDR data did not load", n)
	}
}

func TestParseMoney(t *testing.T) {
	ok := []struct {
		name, amount, code string
		minor              int64
		format             string
	}{
		{"reads dollars and cents", "19.99", "USD", 1999, "19.99"},
		{"reads a whole number", "500", "USD", 50000, "500.00"},
		{"reads one cent", "0.01", "USD", 1, "0.01"},
		{"accepts trailing zeros within the currency's digits", "10.50", "USD", 1050, "10.50"},
		{"accepts trailing zeros beyond the currency's digits because the value is exact", "10.500", "USD", 1050, "10.50"},
		{"resolves an exponent that gives a whole number of yen", "1.5e1", "JPY", 15, "15"},
		{"resolves an upper-case exponent with a sign", "1E+2", "USD", 10000, "100.00"},
		{"resolves a negative exponent that stays within cents", "125e-2", "USD", 125, "1.25"},
		{"reads yen", "50000", "JPY", 50000, "50000"},
		{"reads three-decimal dinars", "1.234", "KWD", 1234, "1.234"},
		{"reads the largest amount", "10000000000000", "USD", MaxMinor, "10000000000000.00"},
		{"reads the largest amount of yen", "1e15", "JPY", MaxMinor, "1000000000000000"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMoney(tc.amount, tc.code)
			if err != nil {
				t.Fatalf("ParseMoney(%q, %q): %v", tc.amount, tc.code, err)
			}
			if m.Minor() != tc.minor || m.Currency().Code() != tc.code {
				t.Errorf("ParseMoney(%q, %q) = %d %s, want %d %s", tc.amount, tc.code, m.Minor(), m.Currency(), tc.minor, tc.code)
			}
			if m.Amount() != tc.format {
				t.Errorf("Amount() = %q, want %q", m.Amount(), tc.format)
			}
			if m.String() != tc.format+" "+tc.code {
				t.Errorf("String() = %q, want %q", m.String(), tc.format+" "+tc.code)
			}
		})
	}

	bad := []struct {
		name, amount, code string
		kind               error
		msg                string
	}{
		{"refuses NaN", "NaN", "USD", ErrInvalidAmount, `amount "NaN" is not a number`},
		{"refuses a signalling NaN", "sNaN", "USD", ErrInvalidAmount, `amount "sNaN" is not a number`},
		{"refuses infinity", "Infinity", "USD", ErrInvalidAmount, `amount "Infinity" is infinite`},
		{"refuses a short infinity", "inf", "USD", ErrInvalidAmount, `amount "inf" is infinite`},
		{"refuses negative infinity", "-Infinity", "USD", ErrInvalidAmount, `amount "-Infinity" is infinite`},
		{"refuses a negative amount", "-5", "USD", ErrInvalidAmount, `amount "-5" is negative; it must be greater than zero`},
		{"refuses zero", "0", "USD", ErrInvalidAmount, `amount "0" must be greater than zero`},
		{"refuses zero with decimals", "0.00", "USD", ErrInvalidAmount, `amount "0.00" must be greater than zero`},
		{"refuses negative zero", "-0", "USD", ErrInvalidAmount, `amount "-0" must be greater than zero`},
		{"refuses an empty amount", "", "USD", ErrInvalidAmount, `amount is empty`},
		{"refuses a leading plus", "+5", "USD", ErrInvalidAmount, `amount "+5" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a leading zero that YAML may read as octal", "0500", "USD", ErrInvalidAmount, `amount "0500" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a bare fraction", ".5", "USD", ErrInvalidAmount, `amount ".5" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a trailing dot", "5.", "USD", ErrInvalidAmount, `amount "5." is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses surrounding spaces", " 5", "USD", ErrInvalidAmount, `amount " 5" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses hexadecimal", "0x10", "USD", ErrInvalidAmount, `amount "0x10" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses digit separators", "1_000", "USD", ErrInvalidAmount, `amount "1_000" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a thousands comma", "1,000", "USD", ErrInvalidAmount, `amount "1,000" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses an exponent without digits", "1e", "USD", ErrInvalidAmount, `amount "1e" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses an amount with its currency inside", "5 USD", "USD", ErrInvalidAmount, `amount "5 USD" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses text longer than any real amount", "1" + string(make([]byte, 80)), "USD", ErrInvalidAmount, ""},
		{"refuses tenths of a cent", "10.005", "USD", ErrTooPrecise, `amount "10.005" has more decimals than USD allows (2)`},
		{"refuses half a yen", "100.5", "JPY", ErrTooPrecise, `amount "100.5" has more decimals than JPY allows (0)`},
		{"refuses four decimals of dinars", "1.2345", "KWD", ErrTooPrecise, `amount "1.2345" has more decimals than KWD allows (3)`},
		{"refuses an exponent that does not resolve to whole cents", "1e-3", "USD", ErrTooPrecise, `amount "1e-3" has more decimals than USD allows (2)`},
		{"refuses a tiny exponent", "1e-999999999", "USD", ErrTooPrecise, ""},
		{"refuses an amount just above the maximum", "10000000000000.01", "USD", ErrAmountTooLarge, `amount "10000000000000.01" is too large (at most 10000000000000.00 USD)`},
		{"refuses an amount that overflows int64 minor units", "92233720368547758.08", "USD", ErrAmountTooLarge, ""},
		{"refuses a huge exponent", "1e999999999", "USD", ErrAmountTooLarge, ""},
		{"refuses an exponent beyond int32", "1e99999999999", "USD", ErrAmountTooLarge, ""},
		{"refuses a negative amount with a huge exponent", "-1e999999999", "USD", ErrInvalidAmount, `amount "-1e999999999" is negative; it must be greater than zero`},
		{"refuses zero with a huge exponent", "0e999999999", "USD", ErrInvalidAmount, `amount "0e999999999" must be greater than zero`},
		{"refuses a lower-case currency", "10", "usd", ErrUnknownCurrency, `currency "usd" must be written in upper case`},
		{"refuses an unknown currency", "10", "ABC", ErrUnknownCurrency, ""},
		{"refuses a non-tender currency", "10", "XTS", ErrNotTender, ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMoney(tc.amount, tc.code)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("ParseMoney(%q, %q) = %v, %v; want an error matching %v", tc.amount, tc.code, m, err, tc.kind)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestMoneyFormatting(t *testing.T) {
	usd, _ := ParseCurrency("USD")
	jpy, _ := ParseCurrency("JPY")
	kwd, _ := ParseCurrency("KWD")
	cases := []struct {
		name string
		m    Money
		want string
	}{
		{"pads cents below a dollar", NewMoney(5, usd), "0.05 USD"},
		{"keeps trailing zeros at the currency's precision", NewMoney(90000, usd), "900.00 USD"},
		{"writes yen without a decimal point", NewMoney(15, jpy), "15 JPY"},
		{"writes three decimals for dinars", NewMoney(1250, kwd), "1.250 KWD"},
		{"writes negative amounts built by hand", NewMoney(-150, usd), "-1.50 USD"},
		{"survives the most negative int64", NewMoney(-9223372036854775808, usd), "-92233720368547758.08 USD"},
		{"writes the zero Money as 0", Money{}, "0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("reports the zero Money as zero and a real amount as not", func(t *testing.T) {
		if !(Money{}).IsZero() || NewMoney(1, usd).IsZero() {
			t.Error("IsZero is wrong")
		}
	})
}

func TestCappedArithmetic(t *testing.T) {
	cases := []struct {
		name      string
		got, want int64
	}{
		{"multiplies small amounts exactly", mulCapped(250, 4), 1000},
		{"saturates a product above the maximum", mulCapped(MaxMinor, 2), MaxMinor + 1},
		{"saturates a product that would overflow int64", mulCapped(1<<40, 1<<40), MaxMinor + 1},
		{"keeps a product exactly at the maximum", mulCapped(MaxMinor/10, 10), MaxMinor},
		{"adds small amounts exactly", addCapped(1, 2), 3},
		{"saturates a sum above the maximum", addCapped(MaxMinor, 1), MaxMinor + 1},
		{"saturates a sum that would overflow int64", addCapped(9223372036854775807, 9223372036854775807), MaxMinor + 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %d, want %d", tc.got, tc.want)
			}
		})
	}
}
