package clink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrOutcomeUnknown matches (with errors.Is) the error of a create call that failed after its
// request may have reached Clink: a timeout after sending, a reset or closed connection, a 5xx,
// a 2xx whose body could not be read or understood, a 2xx whose envelope code is not one Clink
// documents as a refusal (a 5xx-class code such as {"code":500,"msg":"SYSTEM_ERROR"}, or a code
// the client does not know; see Code.Refusal), or a context that ended mid-request. The session
// may exist. Clink has no idempotency key, so such calls are never retried: check before
// creating again. Such an error is still an *Error when a response arrived.
var ErrOutcomeUnknown = errors.New("clink: outcome unknown: the session may have been created")

// ErrTimestampRejected matches (with errors.Is) an *Error whose code says Clink rejected the
// X-Timestamp header (80102203, 80102212, 80102213). Such requests were not processed.
var ErrTimestampRejected = errors.New("clink: request timestamp rejected")

// ErrUnauthorized matches (with errors.Is) an *Error saying the API key was refused
// (HTTP 401, or codes 401 and 80102221 to 80102223).
var ErrUnauthorized = errors.New("clink: API key refused")

// ErrInvalidRequest matches (with errors.Is) a call refused by the client before anything was
// sent: a nil request, an unset amount, a session ID that is empty, longer than 128 bytes or
// has a character other than A-Z, a-z, 0-9, '_' and '-'.
var ErrInvalidRequest = errors.New("clink: invalid request")

// Limits and markers of the text errors carry.
const (
	redacted               = "[REDACTED]"
	excerptLen             = 100
	messageLen             = 200
	detailLen              = 300
	minKeyFragmentToRedact = 4
)

type errKind int

const (
	kindAPI       errKind = iota + 1 // 2xx with a non-200 envelope code
	kindHTTP                         // non-2xx status
	kindMalformed                    // 2xx that could not be understood
	kindTooLarge                     // body over maxBodySize
	kindNetwork                      // no response, or its body failed
	kindTimeout                      // the attempt's timeout expired
	kindCanceled                     // the caller's context ended
	kindRequest                      // the request could not be built
)

// Error is a failure Clink reported (a non-2xx status or a non-200 envelope code) or a
// response that could not be understood or read. Match it with errors.As; match classes with
// errors.Is against ErrOutcomeUnknown, ErrTimestampRejected and ErrUnauthorized. An *Error of
// a create that does not match ErrOutcomeUnknown is a definite refusal: nothing was created.
//
// A call that got no HTTP response at all (a network failure, a timeout, a context that
// ended) fails with an error that is not an *Error: it wraps the network or context error
// (errors.Is works for context.Canceled and context.DeadlineExceeded) and, when a create may
// have reached Clink, ErrOutcomeUnknown. When no connection could be made at all, its text
// says why and names the base URL ("connection refused: Clink at https://... is
// unreachable"). If such a failure ended a wait to retry after a refusal, errors.As still
// finds that refusal's *Error.
//
// Its strings hold at most a short, sanitized excerpt of what Clink sent, and never the API
// key: emails in it are masked (a***@example.com), token- and key-shaped strings are replaced
// by [REDACTED], and control characters are dropped.
type Error struct {
	Op         string // the call, e.g. "create checkout session"
	HTTPStatus int    // HTTP status of the response; 0 if none arrived
	Code       int    // Clink envelope code; 0 if the body had none
	Message    string // Clink's msg, sanitized and short, e.g. "CUSTOMER_NOT_FOUND"
	Excerpt    string // start of a body that was not a usable envelope, sanitized and short
	Attempts   int    // requests tried, retries included

	kind           errKind
	body           string        // what the body looked like, e.g. "an HTML page"
	detail         string        // sanitized text of the cause
	timeout        time.Duration // for kindTimeout
	outcomeUnknown bool
	// refusal: an HTTP 2xx answer whose envelope code and msg are a documented refusal
	// (definiteRefusal), judged when it was decoded.
	refusal bool
	prev    *Error // the failure that led to a retry, for kindCanceled
	causes  []error
	// unreachable, for a kindNetwork failure to connect at all: why ("connection refused",
	// "host not found") and where (the base URL), so that an operator's log names it plainly.
	unreachable, base string
}

// noResponseError is the error of a call that got no HTTP response. It is an *Error inside,
// for one way of building messages, but does not match errors.As(*Error): callers treat an
// *Error as Clink's answer.
type noResponseError struct{ e *Error }

func (n *noResponseError) Error() string   { return n.e.Error() }
func (n *noResponseError) Unwrap() []error { return n.e.Unwrap() }
func (n *noResponseError) Is(target error) bool {
	return n.e.Is(target)
}

// public returns e as the error a call returns: e itself when a response arrived, else a
// noResponseError.
func (e *Error) public() error {
	if e.HTTPStatus != 0 {
		return e
	}
	return &noResponseError{e}
}

// newError is the error of kind for cause. Its text may quote what the server sent (net/http
// quotes a malformed status or header line), so it is sanitized as Clink's own text is.
func newError(op operation, kind errKind, cause error, key string) *Error {
	return &Error{Op: op.name, kind: kind, causes: []error{cause}, detail: sanitize(cause.Error(), detailLen, key)}
}

// Error describes the failure in one line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("clink: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.outcomeUnknown {
		b.WriteString("outcome unknown (the session may have been created): ")
	}
	b.WriteString(e.summary())
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// summary is Error without the operation, outcome and attempt count.
func (e *Error) summary() string {
	var s string
	switch e.kind {
	case kindAPI:
		s = "Clink error " + e.codeAndMessage()
	case kindHTTP:
		s = "HTTP " + strconv.Itoa(e.HTTPStatus)
		if e.Code != 0 {
			s += ", Clink error " + e.codeAndMessage()
		} else {
			s += " with " + e.body + e.quotedExcerpt()
		}
	case kindMalformed:
		s = fmt.Sprintf("malformed response (HTTP %d, %s): %s%s", e.HTTPStatus, e.body, e.detail, e.quotedExcerpt())
	case kindTooLarge:
		s = fmt.Sprintf("response body larger than %d bytes (HTTP %d)", maxBodySize, e.HTTPStatus)
	case kindNetwork:
		if e.unreachable != "" {
			s = fmt.Sprintf("%s: Clink at %s is unreachable (%s)", e.unreachable, e.base, e.detail)
		} else if e.HTTPStatus != 0 {
			s = fmt.Sprintf("reading the HTTP %d response failed: %s", e.HTTPStatus, e.detail)
		} else {
			s = "request failed: " + e.detail
		}
	case kindTimeout:
		s = fmt.Sprintf("no response within %v: %s", e.timeout, e.detail)
	case kindCanceled:
		s = "stopped: " + e.detail
		if e.prev != nil {
			s += " (while waiting to retry after: " + e.prev.summary() + ")"
		}
	case kindRequest:
		s = "building the request failed: " + e.detail
	default:
		s = "failed"
	}
	return s
}

func (e *Error) codeAndMessage() string {
	if e.Message == "" {
		return strconv.Itoa(e.Code)
	}
	return strconv.Itoa(e.Code) + ": " + e.Message
}

func (e *Error) quotedExcerpt() string {
	if e.Excerpt == "" {
		return ""
	}
	return "; body: " + strconv.Quote(e.Excerpt)
}

// Unwrap returns the underlying causes (network and context errors, the failure that preceded
// a cancelled retry) and ErrOutcomeUnknown when the outcome is unknown.
func (e *Error) Unwrap() []error {
	errs := append([]error(nil), e.causes...)
	if e.outcomeUnknown {
		errs = append(errs, ErrOutcomeUnknown)
	}
	return errs
}

// Is reports whether e belongs to the class named by ErrTimestampRejected or ErrUnauthorized.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrTimestampRejected:
		return e.timestampRejected()
	case ErrUnauthorized:
		return e.unauthorized()
	}
	return false
}

func (e *Error) timestampRejected() bool {
	switch Code(e.Code) {
	case CodeTimestampExpired, CodeTimestampMissing, CodeTimestampInvalid:
		return e.HTTPStatus < 500
	}
	return false
}

func (e *Error) unauthorized() bool {
	c := Code(e.Code)
	return e.HTTPStatus == 401 || c == CodeUnauthorized || (c >= CodeAuthFirst && c <= CodeAuthLast)
}

// undocumented reports whether e is an HTTP 2xx answer whose envelope code is neither a
// refusal nor a server fault, nor named as a refusal in msg: a code the client does not know.
func (e *Error) undocumented() bool {
	return e.kind == kindAPI && !Code(e.Code).ServerFault() && !e.refusal
}

// codeWithMessage is "code 500" or "code 500, SYSTEM_ERROR", for Explanation.
func (e *Error) codeWithMessage() string {
	s := "code " + strconv.Itoa(e.Code)
	if e.Message != "" {
		s += ", " + e.Message
	}
	return s
}

// Explanation says in plain English what went wrong and what to do, for a model or an
// operator. It never contains upstream bodies or the API key.
func (e *Error) Explanation() string {
	var s string
	switch {
	case e.unauthorized():
		s = "Clink rejected the API key (authentication failed): check that the key is valid and belongs to the configured environment (sk_test_ keys for sandbox, sk_prod_ keys for production)."
	case e.timestampRejected():
		s = fmt.Sprintf("Clink rejected the request's timestamp (code %d), which usually means this machine's clock is wrong; the request was not processed. Check the system clock, then try again.", e.Code)
	case Code(e.Code) == CodeAmountOrCurrency:
		s = "Clink rejected the amount or the currency (code 90101206): check that the amount is valid for the currency and that the merchant accepts the currency."
	case Code(e.Code) == CodeMerchantNotFound:
		s = "Clink found no merchant for this API key (code 90101216): check the key and the environment."
	case e.HTTPStatus >= 500:
		s = fmt.Sprintf("Clink had a server error (HTTP %d).", e.HTTPStatus)
	case e.kind == kindAPI && Code(e.Code).ServerFault():
		// Before the named errors: a server fault wins over its msg (see definiteRefusal).
		s = fmt.Sprintf("Clink had a server error (%s).", e.codeWithMessage())
	case namedRefusal(e.Message) == MsgCustomerNotFound:
		s = "Clink found no such customer (CUSTOMER_NOT_FOUND): give at least one of customer ID, customer email or reference customer ID, and only a customer ID that exists."
	case namedRefusal(e.Message) == MsgCustomerIdentifierNotMatched:
		s = "The customer identifiers given (customer ID, email, reference customer ID) belong to different Clink customers (CUSTOMER_IDENTIFIER_NOT_MATCHED): give identifiers of one customer only."
	case e.HTTPStatus == 429:
		s = "Clink is limiting the request rate (HTTP 429): wait before trying again."
	case e.undocumented():
		s = fmt.Sprintf("Clink answered with a code the client does not know as a refusal (%s).", e.codeWithMessage())
	case e.kind == kindHTTP && e.outcomeUnknown:
		// A redirect, or a 4xx whose body does not prove a refusal.
		s = fmt.Sprintf("Clink answered HTTP %d", e.HTTPStatus)
		switch {
		case e.Code != 0:
			s += " with " + e.codeWithMessage()
		case e.body != "":
			s += " with " + e.body
		}
		s += ", which does not show that the request was refused."
	case e.kind == kindMalformed || e.kind == kindTooLarge:
		s = "Clink's response could not be understood."
	case e.kind == kindTimeout:
		s = fmt.Sprintf("Clink did not answer within %v.", e.timeout)
	case e.kind == kindNetwork:
		s = "Clink could not be reached or the connection failed."
	case e.kind == kindCanceled:
		s = "The call was cancelled or ran out of time before it completed."
	case e.kind == kindRequest:
		s = "The request to Clink could not be built."
	case e.Code != 0:
		s = fmt.Sprintf("Clink refused the request with code %d", e.Code)
		if e.Message != "" {
			s += " (" + e.Message + ")"
		}
		s += "."
	default:
		s = fmt.Sprintf("Clink refused the request (HTTP %d).", e.HTTPStatus)
	}
	if e.outcomeUnknown {
		s += " The session may or may not have been created: check before creating another, so the customer is not charged twice."
	}
	return s
}

// invalidRequest is the error for a call refused before sending.
func invalidRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
}

// describeBody names what a body looked like, for messages.
func describeBody(contentType string, body []byte, perr error) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	t := bytes.TrimSpace(body)
	switch {
	case len(t) == 0:
		return "an empty body"
	case strings.Contains(mt, "html") || t[0] == '<':
		return "an HTML page"
	case errors.Is(perr, io.ErrUnexpectedEOF):
		return "a truncated JSON body"
	case perr == nil:
		return "a JSON envelope"
	case t[0] == '{':
		return "invalid JSON"
	case mt == "text/plain":
		return "a plain-text body"
	}
	return "a body that is not a JSON envelope"
}

// scrub removes the API key from s.
func scrub(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, redacted)
}

// clean makes s a single line of printable text of at most n runes, without the API key.
// Whitespace and control characters collapse to one space; invalid UTF-8 becomes '?'.
func clean(s string, n int, key string) string {
	s = scrub(s, key)
	var b strings.Builder
	runes, truncated, space := 0, false, false
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		if r == utf8.RuneError && size <= 1 {
			r = '?'
		}
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = runes > 0
			continue
		}
		if runes >= n {
			truncated = true
			break
		}
		if space {
			b.WriteByte(' ')
			runes++
			space = false
			if runes >= n {
				truncated = true
				break
			}
		}
		b.WriteRune(r)
		runes++
	}
	out := b.String()
	if truncated {
		out = strings.TrimRight(dropKeyFragment(out, key), " ") + "…"
	}
	return out
}

// dropKeyFragment cuts a tail of s that is the beginning of the key: what is left of the key
// when truncation splits it.
func dropKeyFragment(s, key string) string {
	for m := min(len(key)-1, len(s)); m >= minKeyFragmentToRedact; m-- {
		if strings.HasSuffix(s, key[:m]) {
			return s[:len(s)-m] + redacted
		}
	}
	return s
}

// quoteShort quotes a configuration value (never a secret) for an error message.
func quoteShort(s string) string {
	return strconv.Quote(clean(s, 40, ""))
}
