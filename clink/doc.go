// Package clink is a client for the Clink payments HTTP API (clinkbill.com): agent payment
// sessions and checkout sessions.
//
// Every call goes through one request path (Client.do): the body is encoded once, each attempt
// gets fresh authentication headers from Client.sign, the response is read through a size cap
// and decoded from Clink's {"code","msg","data"} envelope, and a failed answer becomes an
// *Error (a call that got no answer at all wraps the network or context error instead).
//
// A call succeeds only when the HTTP status is 2xx and the envelope code is 200.
//
// Clink has no idempotency key, so retries are deliberately narrow. Each attempt of a create
// is sent once: net/http is not given the means to send it again by itself (as its HTTP/2
// transport would after a stream reset, even one that followed the whole request). The cost is
// that a create net/http could have sent again safely (on a keep-alive connection the server had
// just closed, or on a stream it refused or a connection it shut before reading the request)
// is an unknown outcome rather than a silent retry: rare, and on the safe side. A create call is retried only when the request
// provably never reached Clink (a dial or DNS failure) or Clink rejected the request
// timestamp; one whose server certificate is refused was not sent either (it fails, not
// retried). A create that failed after the request may have reached Clink
// (a timeout after sending, a reset connection, a 5xx, a 302, 303 or other 3xx but 301, 307
// and 308, whatever its body, any answer but a 429 whose body cannot be read, an envelope code of the 5xx class whatever the HTTP status,
// an answer but a 429 whose envelope code is one Clink does not document as a refusal, its
// success code on a 4xx included) is reported as an
// error matching ErrOutcomeUnknown, because the session may exist. A create Clink confirmed
// (2xx, code 200, a sessionId) succeeds even when other fields of its answer do not read:
// they are left zero and named in the result's Unread. Only the codes Clink
// documents (see Code.Refusal) and its named customer errors prove that nothing was created,
// and so does a 4xx that carries no envelope of Clink's (an empty or plain-text body, as a
// 401's, a proxy's HTML page, JSON without a code); a 4xx whose body begins as a JSON object
// but does not read may be Clink's envelope with any code, and is an unknown outcome. A
// 429 is taken as a refusal, whatever its envelope says: a create is neither retried nor
// reported as unknown. Reads (Get*)
// are also retried on 5xx, 5xx-class envelope codes, 429 and network failures.
//
// Secrets stay inside: the API key never appears in an error, a String or a log value, and a
// checkout session's tokenValue is held in a Secret, which prints as [REDACTED]. Text Clink
// sends is sanitized before an error carries it: emails are masked, token- and key-shaped
// strings redacted, control characters dropped and the length bounded; so is the text of a
// network error, which may quote what the server sent.
package clink
