package clink

import "strings"

// Code is an envelope code: the "code" of Clink's {"code","msg","data"} answer. Error.Code
// holds one as a plain int.
type Code int

// The envelope codes Clink documents, in its API reference or in its own clients. Clink
// publishes no full catalogue, so this is the whole list the client knows: every code here but
// CodeSuccess says Clink refused the request without processing it. A create answered with any
// other code (a 5xx-class one, or one not listed) may have been processed, so its outcome is
// unknown (see ErrOutcomeUnknown); 4xx-class codes (400 to 499) count as refusals too, because
// they mirror HTTP's client errors.
const (
	// CodeSuccess is the only success code (with msg "success").
	CodeSuccess Code = 200
	// CodeUnauthorized says the API key was refused.
	CodeUnauthorized Code = 401
	// CodeTimestampExpired says X-Timestamp was too far from Clink's clock.
	CodeTimestampExpired Code = 80102203
	// CodeTimestampMissing says X-Timestamp was missing.
	CodeTimestampMissing Code = 80102212
	// CodeTimestampInvalid says X-Timestamp was not a valid timestamp.
	CodeTimestampInvalid Code = 80102213
	// CodeAuthFirst is the first of the codes (80102221 to 80102223) Clink's clients treat
	// as an authentication failure; which of the three means what is not documented.
	CodeAuthFirst Code = 80102221
	// CodeAuthLast is the last of the authentication failure codes.
	CodeAuthLast Code = 80102223
	// CodeAmountOrCurrency says the amount or the currency is incorrect.
	CodeAmountOrCurrency Code = 90101206
	// CodeMerchantNotFound says no merchant belongs to the API key.
	CodeMerchantNotFound Code = 90101216
)

// The named errors Clink documents in msg. The code they come with is not documented, so
// they are recognised by name.
const (
	// MsgCustomerNotFound says no customer identifier was given, or none that exists.
	MsgCustomerNotFound = "CUSTOMER_NOT_FOUND"
	// MsgCustomerIdentifierNotMatched says the identifiers given name different customers.
	MsgCustomerIdentifierNotMatched = "CUSTOMER_IDENTIFIER_NOT_MATCHED"
)

// Refusal reports whether Clink documents c as a refusal, an answer to a request it did not
// process: a 4xx-class code (400 to 499) or one of the numbered codes above. A 5xx-class code
// says Clink failed while handling the request, and an unknown code says nothing the client
// can rely on; neither proves that nothing was created.
func (c Code) Refusal() bool {
	switch {
	case c >= 400 && c <= 499, c >= CodeAuthFirst && c <= CodeAuthLast:
		return true
	}
	switch c {
	case CodeTimestampExpired, CodeTimestampMissing, CodeTimestampInvalid, CodeAmountOrCurrency, CodeMerchantNotFound:
		return true
	}
	return false
}

// ServerFault reports whether c is a 5xx-class code (500 to 599): Clink failed while handling
// the request, as with an HTTP 5xx.
func (c Code) ServerFault() bool { return c >= 500 && c <= 599 }

// namedRefusal returns the documented named error msg starts with ("CUSTOMER_NOT_FOUND" or
// "CUSTOMER_NOT_FOUND: detail"), or "".
func namedRefusal(msg string) string {
	for _, name := range []string{MsgCustomerNotFound, MsgCustomerIdentifierNotMatched} {
		rest, ok := strings.CutPrefix(msg, name)
		if ok && (rest == "" || !isIdentRune(rune(rest[0]))) {
			return name
		}
	}
	return ""
}

func isIdentRune(r rune) bool {
	return r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
}

// definiteRefusal reports whether an HTTP 2xx answer with this envelope code and msg (as Clink
// sent it) proves Clink processed nothing: a code Clink documents as a refusal, or a documented
// named error with any code but a 5xx-class one (a server fault wins, since a wrong "nothing
// was created" can charge a customer twice, and a wrong "unknown" only holds budget).
func definiteRefusal(code Code, msg string) bool {
	return code.Refusal() || (!code.ServerFault() && namedRefusal(msg) != "")
}
