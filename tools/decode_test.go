package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeStrictRefusesByName(t *testing.T) {
	tests := []struct {
		name string
		args string
		want []string // each must appear in the error
	}{
		{"an unknown argument is named with the valid ones listed", `{"customerEmail":"a@example.com","amout":1,"currency":"USD"}`,
			[]string{`unknown argument "amout"`, "valid arguments are: amount, currency, customerEmail"}},
		{"a case variant of a known argument is refused with the right name", `{"customerEmail":"a@example.com","amount":1,"Amount":9,"currency":"USD"}`,
			[]string{`unknown argument "Amount"`, `did you mean "amount"?`}},
		{"a duplicate key is refused", `{"customerEmail":"a@example.com","amount":1,"amount":900,"currency":"USD"}`,
			[]string{`argument "amount" is given more than once`}},
		{"a string where a number belongs is refused", `{"customerEmail":"a@example.com","amount":"10","currency":"USD"}`,
			[]string{`argument "amount" must be a number, not the string "10"`}},
		{"a number where a string belongs is refused", `{"customerEmail":42,"amount":10,"currency":"USD"}`,
			[]string{`argument "customerEmail" must be a string, not the number 42`}},
		{"a boolean where a number belongs is refused", `{"customerEmail":"a@example.com","amount":true,"currency":"USD"}`,
			[]string{`argument "amount" must be a number, not true`}},
		{"an object where a string belongs is refused", `{"customerEmail":{"x":1},"amount":1,"currency":"USD"}`,
			[]string{`argument "customerEmail" must be a string, not an object`}},
		{"arguments that are not an object are refused", `[1,2]`, []string{"must be a JSON object"}},
		{"invalid JSON is refused", `{"amount":`, []string{"not valid JSON"}},
		{"trailing data after the object is refused", `{"amount":1} {"amount":2}`, []string{"single JSON object"}},
		{"arguments nested deeper than the decoder reads are refused as such, not as invalid JSON",
			`{"foo":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, []string{"the arguments are nested too deeply"}},
		{"every problem is reported at once", `{"customerEmail":1,"amount":"x","currency":"USD","foo":1}`,
			[]string{`"customerEmail" must be a string`, `"amount" must be a number`, `unknown argument "foo"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args agentPaymentSessionArgs
			err := decodeStrict([]byte(tt.args), agentPaymentSessionShape, &args)
			var probs decodeProblems
			if !errors.As(err, &probs) {
				t.Fatalf("decodeStrict = %v, want decodeProblems", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDecodeStrictChecksNestedArguments(t *testing.T) {
	tests := []struct {
		name string
		args string
		want string
	}{
		{"an unknown field of a line item is named with its path", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"price":3}]}`,
			`unknown argument "priceDataList[0].price"; valid fields of "priceDataList[0]" are: currency, imageUrl, name, quantity, unitAmount`},
		{"a fractional quantity is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":1.5}]}`,
			`argument "priceDataList[0].quantity" must be a whole number (such as 2), not 1.5`},
		{"a quantity whose fraction is hidden by its exponent is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":25e-1}]}`,
			`argument "priceDataList[0].quantity" must be a whole number (such as 2), not 25e-1`},
		{"a quantity too large for any integer is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":99999999999999999999}]}`,
			`argument "priceDataList[0].quantity" is out of range: 99999999999999999999`},
		{"a quantity too large, written with an exponent, is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":1e999999999999}]}`,
			`argument "priceDataList[0].quantity" is out of range: 1e999999999999`},
		// Exponents at the ends of an int64, with a fraction: the sums
		// that decide must not wrap (found by a review: a panic).
		{"a fraction with the smallest exponent is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":1.5e-9223372036854775808}]}`,
			`argument "priceDataList[0].quantity" must be a whole number (such as 2), not 1.5e-9223372036854775808`},
		{"a fraction with the largest exponent is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":1.5e9223372036854775807}]}`,
			`argument "priceDataList[0].quantity" is out of range: 1.5e9223372036854775807`},
		{"an exponent past an int64 is refused", `{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":15e-99999999999999999999}]}`,
			`argument "priceDataList[0].quantity" must be a whole number (such as 2), not 15e-99999999999999999999`},
		{"a null metadata value is refused, not sent as an empty string", `{"amount":1,"currency":"USD","metadata":{"orderRef":null}}`,
			`argument "metadata.orderRef" must be a string, not null`},
		{"a null item of a list is refused", `{"amount":1,"currency":"USD","paymentMethodTypeBlackList":["CARD",null]}`,
			`argument "paymentMethodTypeBlackList[1]" must be a string, not null`},
		{"a string where a list belongs is refused", `{"amount":1,"currency":"USD","paymentMethodTypeBlackList":"CARD"}`,
			`argument "paymentMethodTypeBlackList" must be an array, not the string "CARD"`},
		{"a number inside a string list is refused", `{"amount":1,"currency":"USD","paymentMethodTypeBlackList":["CARD",3]}`,
			`argument "paymentMethodTypeBlackList[1]" must be a string`},
		{"a metadata value that is not a string is refused", `{"amount":1,"currency":"USD","metadata":{"order":42}}`,
			`argument "metadata.order" must be a string, not the number 42`},
		{"a duplicate metadata key is refused", `{"amount":1,"currency":"USD","metadata":{"a":"1","a":"2"}}`,
			`argument "metadata.a" is given more than once`},
		{"a boolean given as a string is refused", `{"amount":1,"currency":"USD","allowPromotionCodes":"true"}`,
			`argument "allowPromotionCodes" must be true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args checkoutSessionArgs
			err := decodeStrict([]byte(tt.args), checkoutSessionShape, &args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeStrict error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeStrictDecodesValidArguments(t *testing.T) {
	t.Run("keeps the amount's digits exactly and takes null as not given", func(t *testing.T) {
		var args checkoutSessionArgs
		raw := `{"amount":19.990,"currency":"USD","customerEmail":null,"customerId":"cus_1",
			"metadata":{"a":"1","A":"2"},"priceDataList":[{"name":"x","unitAmount":1e1,"quantity":2}],"showPromotionCode":false}`
		if err := decodeStrict([]byte(raw), checkoutSessionShape, &args); err != nil {
			t.Fatal(err)
		}
		two := int64(2)
		no := false
		want := checkoutSessionArgs{
			Amount: "19.990", Currency: "USD", CustomerID: "cus_1",
			Metadata:          map[string]string{"a": "1", "A": "2"},
			PriceDataList:     []priceDataArgs{{Name: "x", UnitAmount: "1e1", Quantity: &two}},
			ShowPromotionCode: &no,
		}
		if diff := cmp.Diff(want, args); diff != "" {
			t.Errorf("decoded (-want +got):\n%s", diff)
		}
	})
	t.Run("reads a whole number however JSON writes it, as JSON Schema's integer does", func(t *testing.T) {
		for raw, want := range map[string]int64{
			"2": 2, "2.0": 2, "2.000": 2, "2e0": 2, "2E+0": 2, "0.2e1": 2, "20e-1": 2, "2.50e1": 25,
			"1e2": 100, "-0.0": 0, "0e-99999999999999": 0, "9223372036854775807": 9223372036854775807,
			"9.223372036854775807e18": 9223372036854775807, "-9223372036854775808.0": -9223372036854775808,
		} {
			var args checkoutSessionArgs
			in := `{"amount":1,"currency":"USD","priceDataList":[{"name":"a","unitAmount":1,"quantity":` + raw + `},` +
				`{"name":"b","unitAmount":1,"quantity":3.0}],"metadata":{"n":"2.0"}}`
			if err := decodeStrict([]byte(in), checkoutSessionShape, &args); err != nil {
				t.Errorf("quantity %s: %v", raw, err)
				continue
			}
			if q := args.PriceDataList[0].Quantity; q == nil || *q != want {
				t.Errorf("quantity %s decoded as %v, want %d", raw, q, want)
			}
			if q := args.PriceDataList[1].Quantity; q == nil || *q != 3 || args.Metadata["n"] != "2.0" || args.Amount != "1" {
				t.Errorf("quantity %s: the rest decoded as %+v", raw, args)
			}
		}
	})
	t.Run("takes absent arguments as an empty object", func(t *testing.T) {
		for _, raw := range []string{"", "null", "  {}  "} {
			var args agentPaymentSessionArgs
			if err := decodeStrict([]byte(raw), agentPaymentSessionShape, &args); err != nil {
				t.Errorf("decodeStrict(%q) = %v", raw, err)
			}
		}
	})
	t.Run("takes the largest checkout its schema allows, in four-byte characters, escaped or not", func(t *testing.T) {
		raw := largestCheckout()
		// As a client that writes ASCII only (Python's json.dumps) sends
		// it: each character a surrogate pair, twelve bytes.
		escaped := strings.ReplaceAll(raw, "\U0001F600", `\ud83d\ude00`)
		for _, raw := range []string{raw, escaped} {
			var args checkoutSessionArgs
			if err := decodeStrict([]byte(raw), checkoutSessionShape, &args); err != nil {
				t.Fatalf("decodeStrict of %d bytes = %v", len(raw), err)
			}
			if len(args.PriceDataList) != 100 || len(args.Metadata) != 20 || args.PriceDataList[99].Name != strings.Repeat("\U0001F600", 200) {
				t.Fatalf("decoded %d line items and %d metadata entries, want 100 and 20 with every character", len(args.PriceDataList), len(args.Metadata))
			}
		}
	})
	t.Run("refuses arguments over the size limit", func(t *testing.T) {
		raw := `{"amount":1,"currency":"USD","merchantReferenceId":"` + strings.Repeat("x", maxArgumentBytes) + `"}`
		var args checkoutSessionArgs
		if err := decodeStrict([]byte(raw), checkoutSessionShape, &args); err == nil || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("decodeStrict = %v, want too large", err)
		}
	})
}

// largestCheckout is a create_checkout_session call with every string at
// the most characters its schema allows, each character four bytes of
// UTF-8 where the schema lets it be (URLs are ASCII): 100 line items, 20
// metadata entries, every URL.
func largestCheckout() string {
	wide := func(n int) string { return strings.Repeat("\U0001F600", n) } // 😀, four bytes
	url := func(n int) string {
		return "https://shop.example.com/" + strings.Repeat("a", n-len("https://shop.example.com/"))
	}
	var b strings.Builder
	b.WriteString(`{"amount":1000,"currency":"USD","customerEmail":"alice@example.com",`)
	fmt.Fprintf(&b, `"customerId":%q,"referenceCustomerId":%q,"merchantReferenceId":%q,`, wide(128), wide(128), wide(128))
	fmt.Fprintf(&b, `"successUrl":%q,"cancelUrl":%q,`, url(2048), url(2048))
	b.WriteString(`"priceDataList":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"name":%q,"unitAmount":10,"quantity":1,"currency":"USD","imageUrl":%q}`, wide(200), url(2048))
	}
	b.WriteString(`],"metadata":{`)
	for i := range 20 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `%q:%q`, fmt.Sprintf("%02d", i)+wide(38), wide(500))
	}
	fmt.Fprintf(&b, `},"idempotencyKey":%q}`, strings.Repeat("k", 128))
	return b.String()
}

// FuzzDecodeStrict feeds hostile arguments to the strict decoder: it must
// never panic, and whatever it accepts must be valid JSON.
func FuzzDecodeStrict(f *testing.F) {
	f.Add(`{"amount":1,"currency":"USD","customerEmail":"a@example.com"}`)
	f.Add(`{"amount":1,"currency":"USD","priceDataList":[{"name":"x","unitAmount":1,"quantity":2}],"metadata":{"k":"v"}}`)
	f.Add(`{"amount":1,"amount":2}`)
	f.Add(`{"a":{"b":[{"c":[1,2,{"d":null}]}]}}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var args checkoutSessionArgs
		if err := decodeStrict([]byte(raw), checkoutSessionShape, &args); err == nil {
			if strings.TrimSpace(raw) != "" && !json.Valid([]byte(raw)) {
				t.Fatalf("accepted invalid JSON %q", raw)
			}
		}
	})
}

func TestShapeOfFollowsJSONTags(t *testing.T) {
	got := checkoutSessionShape.fields["priceDataList"]
	if got.kind != kindArray || got.elem.kind != kindObject || got.elem.fields["quantity"].kind != kindInteger {
		t.Fatalf("priceDataList shape = %+v", got)
	}
	if checkoutSessionShape.fields["allowPromotionCodes"].kind != kindBoolean {
		t.Error("a *bool argument should be a boolean")
	}
	if checkoutSessionShape.fields["metadata"].kind != kindStringMap {
		t.Error("metadata should be a map of strings")
	}
	defer func() {
		if recover() == nil {
			t.Error("shapeOf should panic on a type it cannot describe")
		}
	}()
	shapeOf(reflect.TypeFor[struct {
		F float64 `json:"f"`
	}]())
}

// FuzzIntegerText holds integerText to math/big's exact reading of any
// JSON number of a sane exponent: whole exactly when the value is, in range
// exactly when an int64 holds it, and then the value's digits.
func FuzzIntegerText(f *testing.F) {
	for _, n := range []string{"2", "2.0", "-0", "-0.0", "1e2", "25e-1", "0.2e1", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "1.5", "100e-2", "1E+18", "1e19", "0.000e5", "123456789012345678",
		"1.5e-9223372036854775808", "1.5e9223372036854775807", "1e-9223372036854775809", "0.0e99999999999999999999"} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n string) {
		if !json.Valid([]byte(n)) || strings.TrimSpace(n) != n || (n[0] != '-' && (n[0] < '0' || n[0] > '9')) {
			return
		}
		text, whole, inRange := integerText([]byte(n)) // on any number: it must not panic
		if _, exp, ok := strings.Cut(strings.ToLower(n), "e"); ok {
			if e, err := strconv.Atoi(exp); err != nil || e > 400 || e < -400 {
				return // math/big would build the power exactly
			}
		}
		r, ok := new(big.Rat).SetString(n)
		if !ok {
			t.Fatalf("math/big cannot read %q", n)
		}
		wantRange := r.IsInt() && r.Num().IsInt64()
		if whole != r.IsInt() || inRange != wantRange {
			t.Fatalf("integerText(%q) = %q, whole %v, in range %v; math/big: whole %v, in range %v", n, text, whole, inRange, r.IsInt(), wantRange)
		}
		if inRange && text != r.Num().String() {
			t.Fatalf("integerText(%q) = %q, want %s", n, text, r.Num())
		}
	})
}
