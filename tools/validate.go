package tools

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"

	"github.com/clink-mcp/clink-mcp/internal/textcheck"
	"github.com/clink-mcp/clink-mcp/policy"
)

// newValidator returns the validator every tool shares: JSON names in
// messages, and the cross-field rules of the checkout session registered as
// struct-level validations. URLs and metadata are checked by checkURL and
// checkMetadata, whose messages say which rule failed without echoing
// what the model sent.
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	v.RegisterStructValidation(checkoutRules, checkoutSessionArgs{})
	if err := v.RegisterValidation(ruleVisibleID, func(fl validator.FieldLevel) bool {
		return visibleID(fl.Field().String())
	}); err != nil {
		panic("tools: validator: " + err.Error())
	}
	if err := v.RegisterValidation(rulePlainText, func(fl validator.FieldLevel) bool {
		_, bad := controlRune(fl.Field().String())
		return !bad
	}); err != nil {
		panic("tools: validator: " + err.Error())
	}
	return v
}

// rulePlainText refuses text with a control character (see controlRune):
// text Clink keeps or shows the customer (a line item's name, a reference,
// a promotion code) must read as it is.
const rulePlainText = "plain_text"

// ruleVisibleID refuses an ID that visibleID refuses.
const ruleVisibleID = "visible_id"

// visibleID says whether s has no white space around it and no invisible
// formatting characters (zero-width, bidi, byte-order mark, line and
// paragraph separators) anywhere: an ID that reads the same as another
// but differs from it would be another customer to the per-customer
// limits, whatever Clink makes of it.
func visibleID(s string) bool {
	if s != strings.TrimSpace(s) {
		return false
	}
	for _, r := range s {
		if textcheck.Invisible(r) {
			return false
		}
	}
	return true
}

// validate runs v over args and returns every problem in plain English,
// naming the argument, or nil.
func validate(v *validator.Validate, args any) []string {
	err := v.Struct(args)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		// Only a programming error (a bad tag) gets here.
		panic("tools: validator: " + err.Error())
	}
	problems := make([]string, 0, len(verrs))
	for _, fe := range verrs {
		problems = append(problems, describeFieldError(fe))
	}
	return problems
}

// argPath turns a validator namespace ("checkoutSessionArgs.priceDataList[0].name")
// into the argument path the model sent ("priceDataList[0].name").
func argPath(fe validator.FieldError) string {
	ns := fe.Namespace()
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return ns
}

// describeFieldError is the plain-English message for one validation failure.
func describeFieldError(fe validator.FieldError) string {
	path := argPath(fe)
	param := fe.Param()
	switch fe.Tag() {
	case "required":
		return fmt.Sprintf("argument %q is required, and must not be empty", path)
	case "email":
		// The policy's reading of addresses says what is wrong with one
		// when it can (a doubled dot, an IP address, a display name).
		if s, ok := fe.Value().(string); ok {
			if _, err := policy.NormalizeEmail(s); err != nil {
				return fmt.Sprintf("argument %q must be an email address such as alice@example.com: %v", path, err)
			}
		}
		return fmt.Sprintf("argument %q must be an email address such as alice@example.com", path)
	case "iso4217":
		return fmt.Sprintf("argument %q must be a three-letter ISO 4217 currency code in capitals, such as USD", path)
	case "oneof":
		return fmt.Sprintf("argument %q must be one of: %s", path, strings.ReplaceAll(param, " ", ", "))
	case "unique":
		return fmt.Sprintf("argument %q must not list a value twice", path)
	case "printascii":
		return fmt.Sprintf("argument %q must hold printable ASCII characters only (letters, digits, punctuation, spaces), such as a UUID", path)
	case "min", "max":
		return describeBound(fe, path)
	case ruleVisibleID:
		return fmt.Sprintf("argument %q must not begin or end with spaces or hold invisible characters", path)
	case rulePlainText:
		return fmt.Sprintf("argument %q must not hold control characters (such as a newline or NUL) or bidirectional overrides", path)
	case ruleCustomerIdentifier:
		return "give at least one customer identifier: customerEmail, customerId or referenceCustomerId"
	case ruleReturnURLForElements:
		return `argument "returnUrl" is required when "uiMode" is "elements"`
	case rulePromotionNeedsAllow:
		return `argument "promotionCode" only works with "allowPromotionCodes": true; set it or drop the code`
	case ruleHiddenPromotionNeedsCode:
		return `argument "showPromotionCode": false needs a "promotionCode" to apply`
	case ruleDirectQRMatchesDefault:
		return `argument "directPaymentQrCodePaymentMethodType" must equal "paymentMethodType" (set both to the same method, e.g. CASHAPP)`
	case ruleDefaultNotExcluded:
		return fmt.Sprintf(`payment method %s cannot be both "paymentMethodType" and listed in "paymentMethodTypeBlackList"`, param)
	}
	return fmt.Sprintf("argument %q is not valid (%s)", path, fe.Tag())
}

// describeBound words a min or max failure for strings, lists and maps.
func describeBound(fe validator.FieldError, path string) string {
	limit := "at most"
	if fe.Tag() == "min" {
		limit = "at least"
	}
	switch fe.Kind() {
	case reflect.String:
		return fmt.Sprintf("argument %q must be %s %s characters long", path, limit, fe.Param())
	case reflect.Slice:
		return fmt.Sprintf("argument %q must have %s %s items", path, limit, fe.Param())
	case reflect.Map:
		return fmt.Sprintf("argument %q must have %s %s entries", path, limit, fe.Param())
	default:
		return fmt.Sprintf("argument %q must be %s %s", path, limit, fe.Param())
	}
}
