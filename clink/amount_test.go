package clink_test

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/clink-mcp/clink-mcp/clink"
)

func TestParseAmountKeepsTheDigitsGiven(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"19.99", "19.99"},
		{"10.50", "10.50"},
		{"0.5", "0.5"},
		{"0", "0"},
		{"100", "100"},
		{"007.50", "7.50"},
		{"0.000001", "0.000001"},
		{"00", "0"},
		{"123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.in+" is "+tt.want, func(t *testing.T) {
			a, err := clink.ParseAmount(tt.in)
			if err != nil {
				t.Fatalf("ParseAmount(%q): %v", tt.in, err)
			}
			if a.String() != tt.want || a.IsZero() {
				t.Errorf("ParseAmount(%q) = %q (IsZero %v), want %q", tt.in, a, a.IsZero(), tt.want)
			}
			b, err := json.Marshal(a)
			if err != nil || string(b) != tt.want {
				t.Errorf("json.Marshal = %s, %v; want %s", b, err, tt.want)
			}
		})
	}
}

func TestParseAmountRefusesAnythingButAPlainDecimal(t *testing.T) {
	for _, in := range []string{
		"", "-1", "+1", "1e3", "1E3", " 1", "1 ", "1.", ".5", "1.2.3", "0x10", "1,5", "１", "NaN", "Inf",
		"1_000", "½", strings.Repeat("9", 65),
	} {
		t.Run(in, func(t *testing.T) {
			if a, err := clink.ParseAmount(in); err == nil {
				t.Errorf("ParseAmount(%q) = %q, want an error", in, a)
			}
		})
	}
}

func TestAnAmountDecodesFromJSONExactly(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"a number keeps its digits", `19.99`, "19.99"},
		{"a number keeps its trailing zeros", `1234.50`, "1234.50"},
		{"a string holding a decimal is accepted", `"0.10"`, "0.10"},
		{"a positive exponent moves the point right", `1.5E+1`, "15"},
		{"an exponent beyond the digits adds zeros", `25e3`, "25000"},
		{"a negative exponent moves the point left", `125e-4`, "0.0125"},
		{"a huge number stays exact", `12345678901234567890.01`, "12345678901234567890.01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a clink.Amount
			if err := json.Unmarshal([]byte(tt.in), &a); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if a.String() != tt.want {
				t.Errorf("Unmarshal(%s) = %q, want %q", tt.in, a, tt.want)
			}
		})
	}
	t.Run("null leaves the amount unset", func(t *testing.T) {
		var a clink.Amount
		if err := json.Unmarshal([]byte(`null`), &a); err != nil || !a.IsZero() {
			t.Errorf("Unmarshal(null) = %q, %v; want unset", a, err)
		}
	})
	for _, in := range []string{`-1`, `"-1"`, `"abc"`, `true`, `{}`, `1e999`, `"1e"`, `1e+-5`, `""`} {
		t.Run(in+" is refused", func(t *testing.T) {
			var a clink.Amount
			if err := json.Unmarshal([]byte(in), &a); err == nil {
				t.Errorf("Unmarshal(%s) = %q, want an error", in, a)
			}
		})
	}
}

func TestAnUnsetAmountIsNullAndHasNoValue(t *testing.T) {
	var a clink.Amount
	if b, err := json.Marshal(a); err != nil || string(b) != "null" {
		t.Errorf("Marshal(unset) = %s, %v; want null", b, err)
	}
	if a.Rat() != nil || !a.IsZero() || a.String() != "" {
		t.Errorf("unset amount: Rat %v, IsZero %v, String %q", a.Rat(), a.IsZero(), a.String())
	}
	if r := mustAmount(t, "19.99").Rat(); r.Cmp(big.NewRat(1999, 100)) != 0 {
		t.Errorf("Rat(19.99) = %v", r)
	}
}
