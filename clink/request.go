package clink

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxBodySize caps how much of a response body is read. Clink's answers are a few hundred
// bytes; anything near a mebibyte is not an answer.
const maxBodySize = 1 << 20

// operation describes one API endpoint call.
type operation struct {
	name   string // for messages, e.g. "create checkout session"
	method string
	path   string // below the base URL, already escaped, no leading slash
	create bool   // creates something: retried only when provably not processed
}

// validator is implemented by response types that can tell a useless answer ("success" without
// a session ID) from a real one.
type validator interface {
	validate() error
}

// do performs op: it sends in (if not nil) as the JSON body, retries as op allows, and decodes
// the envelope's data into out. Every failure is built as an *Error, one place for messages
// and classes; public decides whether the caller sees it as one.
func (c *Client) do(ctx context.Context, op operation, in, out any) error {
	var body []byte
	if in != nil {
		b, err := encodeJSON(in)
		if err != nil {
			return newError(op, kindRequest, err, c.key).public()
		}
		body = b
	}
	var last *Error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return stopped(op, err, last, attempt-1).public()
		}
		e, retry := c.attempt(ctx, op, body, out)
		if e == nil {
			return nil
		}
		e.Attempts = attempt
		if !retry || attempt >= c.maxAttempts {
			return e.public()
		}
		last = e
		if err := c.pause(ctx, attempt); err != nil {
			return stopped(op, err, last, attempt).public()
		}
	}
}

// stopped is the error for a call whose context ended before or between attempts, when no
// attempt in flight can have reached Clink (a retry only follows a definite failure).
func stopped(op operation, ctxErr error, last *Error, attempts int) *Error {
	e := &Error{Op: op.name, kind: kindCanceled, causes: []error{ctxErr}, detail: ctxErr.Error(), Attempts: attempts}
	if last != nil {
		e.prev = last
		e.causes = append(e.causes, last.public())
	}
	return e
}

// delay is the wait before the retry that follows attempt: base doubled per earlier retry,
// capped at max, jittered to somewhere in [d/2, d] so clients do not retry in step.
func (c *Client) delay(attempt int) time.Duration {
	d := c.backoffBase
	for i := 1; i < attempt && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	return d/2 + rand.N(d/2+1)
}

// pause waits before the retry that follows attempt, or until ctx is done.
func (c *Client) pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(c.delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt sends one request and reads its answer. It reports whether the failure, if any,
// allows another attempt.
func (c *Client) attempt(ctx context.Context, op operation, body []byte, out any) (*Error, bool) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(actx, op, body)
	if err != nil {
		return newError(op, kindRequest, err, c.key), false
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, actx, op, err, 0)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return c.bodyError(ctx, actx, op, err, resp.StatusCode)
	}
	e := c.decode(op, resp.StatusCode, resp.Header.Get("Content-Type"), data, out)
	switch {
	case e == nil:
		return nil, false
	case e.outcomeUnknown:
		return e, false // another attempt could create a second session
	}
	return e, e.timestampRejected() || (!op.create && e.transient())
}

// transient reports whether a read may succeed if tried again: Clink failed (HTTP 5xx, or a
// 5xx-class envelope code on a 2xx) or asked the client to slow down (HTTP 429).
func (e *Error) transient() bool {
	return e.HTTPStatus >= 500 || e.HTTPStatus == http.StatusTooManyRequests || (e.kind == kindAPI && Code(e.Code).ServerFault())
}

// newRequest builds the HTTP request for one attempt. It is the only place requests are made.
func (c *Client) newRequest(ctx context.Context, op operation, body []byte) (*http.Request, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, op.method, c.baseURL+op.path, rd)
	if err != nil {
		return nil, err
	}
	if op.create {
		// With GetBody, net/http's HTTP/2 transport sends a request again on
		// its own when the server resets its stream with PROTOCOL_ERROR, or
		// the connection goes away, even after Clink had all of it: a create
		// is sent once per attempt, and only this client decides to retry.
		req.GetBody = nil
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.sign(req, body)
	return req, nil
}

// sign adds Clink's authentication headers, with a timestamp taken now (so every attempt has
// a fresh one). Clink publishes no signature algorithm today; when it does, the signature
// header is computed here from the request and body.
func (c *Client) sign(req *http.Request, _ []byte) {
	req.Header.Set("X-API-KEY", c.key)
	req.Header.Set("X-Timestamp", strconv.FormatInt(c.now().UnixMilli(), 10))
}

// bodyError classifies a failure to read the body of a response with this status, as decode
// classifies a body too large to read: see unreadMayHaveProcessed.
func (c *Client) bodyError(ctx, actx context.Context, op operation, err error, status int) (*Error, bool) {
	e, retry := c.transportError(ctx, actx, op, err, status)
	e.outcomeUnknown = op.create && unreadMayHaveProcessed(status)
	return e, retry
}

// transportError classifies a failure to get or read a response. status is the HTTP status if
// a response had arrived (its body then failed), else 0.
func (c *Client) transportError(ctx, actx context.Context, op operation, err error, status int) (*Error, bool) {
	e := newError(op, kindNetwork, err, c.key)
	e.HTTPStatus = status
	notSent := status == 0 && neverSent(err)
	switch {
	case ctx.Err() != nil:
		e.kind = kindCanceled
		e.causes = append(e.causes, ctx.Err())
	case actx.Err() != nil:
		e.kind = kindTimeout
		e.timeout = c.timeout
		e.causes = append(e.causes, actx.Err())
	}
	if op.create && !notSent {
		e.outcomeUnknown = true
	}
	if notSent && e.kind == kindNetwork {
		if why, detail := unreachable(err); why != "" {
			e.unreachable, e.base, e.detail = why, c.baseURL, clean(detail, detailLen, c.key)
		}
	}
	if certificateRefused(err) {
		return e, false // the same certificate would be refused again
	}
	return e, ctx.Err() == nil && (notSent || !op.create)
}

// unreachable names why a connection could not be made ("connection refused", "host not
// found"), with the text of the network error alone (without the request's URL), or "" when
// err is not such a failure.
func unreachable(err error) (why, detail string) {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return "host not found", dnsErr.Error()
		}
		return "host name lookup failed", dnsErr.Error()
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		return "", ""
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case opErr.Op == "proxyconnect":
		why = "cannot connect through the proxy"
	case opErr.Timeout():
		why = "connecting timed out"
	default:
		why = "cannot connect"
	}
	return why, opErr.Error()
}

// neverSent reports whether err proves the request never left this machine: the connection
// could not be made at all (DNS lookup, TCP dial, proxy connect), or the server's certificate
// was refused, which ends the TLS handshake before a byte of the request is written. Anything
// else (handshake timeouts, resets, EOF, timeouts after writing) may have delivered it.
func neverSent(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	if certificateRefused(err) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && (opErr.Op == "dial" || opErr.Op == "proxyconnect")
}

// certificateRefused reports whether err is the server's certificate refused
// by this client, in the TLS handshake.
func certificateRefused(err error) bool {
	var certErr *tls.CertificateVerificationError
	return errors.As(err, &certErr)
}

// envelope is Clink's response wrapper. Code is raw so a string code ("200") or a missing one
// can be told apart from a number.
type envelope struct {
	Code json.RawMessage `json:"code"`
	Msg  json.RawMessage `json:"msg"`
	Data json.RawMessage `json:"data"`
}

// parsedEnvelope is an envelope whose code was understood.
type parsedEnvelope struct {
	code    int
	hasCode bool
	msg     string
	data    json.RawMessage
}

// parseEnvelope decodes body as exactly one JSON object in Clink's envelope. A truncated body
// yields io.ErrUnexpectedEOF. Data after the object yields errTrailingData with the object's
// envelope, whose code may still tell a server fault.
func parseEnvelope(body []byte) (parsedEnvelope, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return parsedEnvelope{}, err
	}
	var trailing error
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		trailing = errTrailingData
	}
	p := parsedEnvelope{data: env.Data}
	if len(env.Code) > 0 && string(env.Code) != "null" {
		raw := env.Code
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return parsedEnvelope{}, errBadCode
			}
			raw = []byte(s)
		}
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return parsedEnvelope{}, errBadCode
		}
		p.code, p.hasCode = n, true
	}
	if len(env.Msg) > 0 && env.Msg[0] == '"' {
		_ = json.Unmarshal(env.Msg, &p.msg) // a string that decoded as part of valid JSON
	}
	return p, trailing
}

var (
	errTrailingData = errors.New("data after the JSON object")
	errBadCode      = errors.New("envelope code is not an integer")
	errNoData       = errors.New("envelope has code 200 but no data")
	errNoCode       = errors.New("envelope has no code")
)

// decode turns a response into nil (success, data decoded into out) or an *Error.
func (c *Client) decode(op operation, status int, contentType string, body []byte, out any) *Error {
	e := &Error{Op: op.name, HTTPStatus: status}
	if len(body) > maxBodySize {
		e.kind = kindTooLarge
		e.outcomeUnknown = op.create && unreadMayHaveProcessed(status)
		return e
	}
	env, perr := parseEnvelope(body)
	ok2xx := status >= 200 && status < 300
	if !ok2xx {
		e.kind = kindHTTP
		fault := status >= 500
		read := perr == nil || errors.Is(perr, errTrailingData)
		if env.hasCode && read {
			e.Code, e.Message = env.code, sanitizeMessage(env.msg, c.key)
			// Clink's own word outweighs the status, but for a 429: a refusal
			// before the request was taken on (see the package doc). Only a
			// code Clink documents as a refusal, or a named customer error,
			// proves nothing was created; its success code, a 5xx-class code
			// or one it does not document may follow a session created.
			fault = fault || status != http.StatusTooManyRequests && !definiteRefusal(Code(env.code), env.msg)
		}
		if !read && status != http.StatusTooManyRequests && envelopeShaped(body) {
			// A JSON object that does not read (cut short, invalid, a code
			// that is not an integer) may be Clink's envelope with any code.
			fault = true
		}
		if perr != nil {
			e.body = describeBody(contentType, body, perr)
			e.Excerpt = excerpt(body, c.key)
		}
		e.outcomeUnknown = op.create && (fault || processedRedirect(status))
		return e
	}
	malformed := func(err error) *Error {
		e.kind = kindMalformed
		e.body = describeBody(contentType, body, perr)
		if perr != nil { // a valid envelope is described by err alone
			e.Excerpt = excerpt(body, c.key)
		}
		e.causes = []error{err}
		e.detail = clean(strings.ReplaceAll(err.Error(), "clink: ", ""), detailLen, c.key)
		e.outcomeUnknown = op.create
		return e
	}
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return malformed(errEmptyBody)
	case perr != nil:
		return malformed(perr)
	case !env.hasCode:
		return malformed(errNoCode)
	case Code(env.code) != CodeSuccess:
		e.kind = kindAPI
		e.Code, e.Message = env.code, sanitizeMessage(env.msg, c.key)
		// Only a documented refusal proves nothing was created; a server fault or an
		// unknown code may follow a session Clink created. Judged on Clink's own msg, not
		// on the sanitized one, whose masking must not decide a second charge.
		e.refusal = definiteRefusal(Code(e.Code), env.msg)
		e.outcomeUnknown = op.create && !e.refusal
		return e
	}
	if out == nil {
		return nil
	}
	if len(env.data) == 0 || string(env.data) == "null" {
		return malformed(errNoData)
	}
	if err := json.Unmarshal(env.data, out); err != nil {
		// A create Clink confirmed is created, whatever else its answer
		// holds: only the session ID is essential (validate); a field that
		// does not read is left zero and named, never turned into an
		// unknown outcome that would leave the agent without its session.
		u, ok := out.(unreadFields)
		if !op.create || !ok {
			return malformed(fmt.Errorf("data: %w", err))
		}
		unread, ferr := decodeFields(env.data, out)
		if v, ok := out.(validator); ferr != nil || ok && v.validate() != nil {
			return malformed(fmt.Errorf("data: %w", err)) // what made the answer unreadable
		}
		u.setUnread(unread)
	}
	if v, ok := out.(validator); ok {
		if err := v.validate(); err != nil {
			return malformed(err)
		}
	}
	return nil
}

var errEmptyBody = errors.New("empty body")

// envelopeShaped reports whether body begins as a JSON object does, as
// Clink's envelope would: an answer that does not (an empty body, the
// plain text of a 401, a proxy's HTML page) carries no code of Clink's.
func envelopeShaped(body []byte) bool {
	t := bytes.TrimSpace(body)
	return len(t) > 0 && t[0] == '{'
}

// unreadMayHaveProcessed reports whether an answer with this HTTP status whose body could not be
// read (cut short, or over the size cap) may follow a request Clink processed: any status but
// 429. Clink's envelope code outweighs the status (a 4xx whose code is of the 5xx class may
// follow a session created; see decode), and an unread body shows no code; only a 429 is a
// refusal whatever its envelope says.
func unreadMayHaveProcessed(status int) bool {
	return status != http.StatusTooManyRequests
}

// processedRedirect reports whether status, a redirect the client does not
// follow, may answer a POST the server processed: 303 See Other says so,
// and 302 is what many servers send after processing a POST; any other 3xx
// but 301, 307 and 308 (the resource moved, the request was not acted on)
// is not known to mean otherwise.
func processedRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return false
	}
	return status >= 300 && status < 400
}

// encodeJSON encodes v without HTML escaping (URLs in the body keep their '&') and without the
// trailing newline json.Encoder adds.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MaxSessionIDLen is the longest session ID, in bytes, that the Get calls send. Clink's IDs
// are a prefix such as "sess_" and a few dozen random characters; the bound leaves room for
// longer ones and refuses text that is no ID.
const MaxSessionIDLen = 128

// ValidSessionID reports whether the Get calls accept id: 1 to MaxSessionIDLen bytes, each
// one of A-Z, a-z, 0-9, '_' and '-'. Callers that take an ID from an agent can check it
// with the client's own rule before doing anything else.
func ValidSessionID(id string) bool { return checkSessionID(id) == nil }

// checkSessionID is ValidSessionID with the reason. Its errors never repeat the id, which
// comes from an agent and may be anything.
func checkSessionID(id string) error {
	switch {
	case id == "":
		return invalidRequest("session ID is empty")
	case len(id) > MaxSessionIDLen:
		return invalidRequest("session ID is longer than %d bytes", MaxSessionIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '_' && c != '-' {
			return invalidRequest("session ID may only have the characters A-Z, a-z, 0-9, '_' and '-' (byte %d is not one)", i)
		}
	}
	return nil
}

// sessionIDPath returns prefix + the escaped id, refusing an id checkSessionID refuses: a
// path built from it then names exactly one session.
func sessionIDPath(prefix, id string) (string, error) {
	if err := checkSessionID(id); err != nil {
		return "", err
	}
	// A no-op for the characters allowed, kept so the path stays safe should the rule widen.
	return prefix + url.PathEscape(id), nil
}

var errNotObject = errors.New("not a JSON object")

// decodeObject decodes the JSON object b into w, a struct embedding the result type under the
// Go name embedded; null leaves w unchanged. Its errors name the JSON field and kinds, never
// the input's values or the decoding types.
func decodeObject(b []byte, w any, embedded string) error {
	switch t := bytes.TrimSpace(b); {
	case string(t) == "null":
		return nil
	case len(t) == 0 || t[0] != '{':
		return errNotObject
	}
	err := json.Unmarshal(b, w)
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		got, _, _ := strings.Cut(ute.Value, " ") // "number 1.5": keep the kind, drop the value
		return fmt.Errorf("%s is a JSON %s, want %s", strings.TrimPrefix(ute.Field, embedded+"."), got, jsonKind(ute.Type))
	}
	return err
}

// jsonKind names the JSON kind a Go type decodes from, for messages.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another kind"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another kind"
}

// unreadFields is a create's result that can name the fields of Clink's
// answer it could not read.
type unreadFields interface{ setUnread([]string) }

// decodeFields decodes the JSON object data into out, a pointer to a struct
// of JSON-tagged fields, one field at a time: a field whose value does not
// decode is left zero and its JSON name returned. A string field also takes
// a JSON number's digits (an identifier Clink's backend keeps as a number).
// Only data that is not a JSON object is an error.
func decodeFields(data []byte, out any) (unread []string, err error) {
	members, err := objectMembers(data)
	if err != nil {
		return nil, err
	}
	v := reflect.ValueOf(out).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		// As encoding/json: a key in any case matches, and the last one
		// in the document wins.
		var raw json.RawMessage
		for _, m := range members {
			if strings.EqualFold(m.key, name) {
				raw = m.value
			}
		}
		if raw == nil {
			continue
		}
		f := v.Field(i)
		var ferr error
		if f.Kind() == reflect.String {
			var id idText
			if ferr = id.UnmarshalJSON(raw); ferr == nil {
				f.SetString(string(id))
			}
		} else {
			z := reflect.New(f.Type())
			if ferr = json.Unmarshal(raw, z.Interface()); ferr == nil {
				f.Set(z.Elem())
			}
		}
		if ferr != nil {
			unread = append(unread, name)
		}
	}
	return unread, nil
}

// member is one key and value of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the JSON object data's members in document order.
func objectMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var m member
		m.key, _ = tok.(string)
		if err := dec.Decode(&m.value); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// idText is an identifier Clink sends as a JSON string or, from a backend that keeps it as a
// number, as a JSON number, whose digits it keeps as they are (never through float64). null
// leaves it unchanged.
type idText string

var errBadID = errors.New("clink: identifier is neither a JSON string nor a JSON number")

// UnmarshalJSON implements json.Unmarshaler. Its errors never repeat the input.
func (t *idText) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return errBadID
		}
		*t = idText(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errBadID
	}
	*t = idText(n)
	return nil
}
