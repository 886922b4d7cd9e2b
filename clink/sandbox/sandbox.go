// Package sandbox is an in-process fake of the Clink API, good enough to develop, demo and
// test against without a Clink account. A *Server is an http.Handler serving, at its root
// (mount it with http.StripPrefix under a prefix such as "/api/"):
//
//	POST /order/payment-session          create an agent payment session
//	GET  /order/payment-session/{id}     fetch it
//	POST /checkout/session               create a checkout session
//	GET  /checkout/session/{id}          fetch it
//
// It speaks Clink's envelope, {"code": int, "msg": string, "data": ...}, and enforces Clink's
// documented rules. What Clink leaves undocumented is chosen here and listed below; the
// numeric codes Clink's own clients use are kept.
//
// How it answers, checked in this order:
//
//	HTTP  code      msg                               when
//	401   -         plain text "Unauthorized"         X-API-KEY missing or wrong (Clink's 401 is plain text)
//	200   80102212  TIMESTAMP_MISSING                 no X-Timestamp
//	200   80102213  TIMESTAMP_INVALID                 X-Timestamp is not milliseconds since the epoch
//	                                                  in decimal digits alone (no sign)
//	200   80102203  TIMESTAMP_EXPIRED                 X-Timestamp further than the skew window from now
//	404   404       NOT_FOUND                         unknown path
//	405   405       METHOD_NOT_ALLOWED                wrong method for the path
//	415   415       UNSUPPORTED_MEDIA_TYPE            a POST whose Content-Type is not application/json
//	413   413       REQUEST_TOO_LARGE                 a body over 1 MiB
//	200   400       INVALID_PARAMETER: <detail>       body not one JSON object, an unknown field (the
//	                                                  sandbox is stricter than Clink here, to catch
//	                                                  misspelt wire names), an amount sent as a JSON
//	                                                  string ("10.00": Clink documents amounts as
//	                                                  numbers), a key given twice in one object
//	                                                  (stricter than Clink may be: last wins in
//	                                                  many decoders), a missing or invalid field
//	200   90101206  AMOUNT_OR_CURRENCY_INCORRECT: ... amount < 0.5 (agent), originalAmount or
//	                                                  unitAmount <= 0, currency not three letters
//	200   400       RETURN_URL_REQUIRED               uiMode "elements" without returnUrl
//	200   400       CUSTOMER_NOT_FOUND                no customer identifier, or an unknown customerId
//	200   400       CUSTOMER_IDENTIFIER_NOT_MATCHED   identifiers naming different customers
//	200   404       SESSION_NOT_FOUND                 GET of an unknown (or forgotten) session ID
//	200   200       success                           otherwise
//
// Business errors are HTTP 200 with a non-200 code: Clink does not document the HTTP status
// of its business errors, and its envelope makes the code the authority. What Clink answers
// for an unknown session ID is not documented either; code 404 with SESSION_NOT_FOUND is the
// sandbox's guess, and the client treats it as any other non-200 code (an *clink.Error).
//
// Customers: those added with AddCustomer, plus those created on the fly. An email or
// reference ID that matches no customer creates one ("cus_..."); an identifier that matches
// no customer but is given alongside one that does is bound to that customer, unless that
// customer already has a different one (CUSTOMER_IDENTIFIER_NOT_MATCHED). Emails match
// case-insensitively.
//
// Sessions keep the exact digits of their amounts, expire after the session TTL (a checkout
// session then reports status "expired"), and are never paid: status stays "open" and
// paymentStatus "unpaid", and orderId is null. A checkout session's url is the checkout base
// URL plus its ID, and {ELEMENTS_SESSION_ID} in its returnUrl is replaced by its ID; its
// amount and currency are its originalAmount and originalCurrency (the sandbox converts
// nothing). Its GET answer carries tokenValue, as Clink's may, so that clients are tested
// against it. priceId and productId are accepted as given (the sandbox has no dashboard).
// The sandbox remembers the last WithMaxSessions sessions of both kinds together; older ones
// are forgotten (SESSION_NOT_FOUND), so that a long-running demo does not grow without bound.
//
// Faults (SetFault) let tests play a failing Clink. The Server is safe for concurrent use.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAPIKey is the API key a Server accepts unless WithAPIKey says otherwise.
const DefaultAPIKey = "sk_test_sandbox_0000000000000000"

// Defaults of the options.
const (
	DefaultSkew            = 5 * time.Minute
	DefaultSessionTTL      = 30 * time.Minute
	DefaultCheckoutBaseURL = "https://sandbox-checkout.clink-mcp.invalid/pay/"
	DefaultMaxSessions     = 10000
)

// MerchantID and TenantID are what agent payment sessions report as their merchant and tenant.
const (
	MerchantID = "mch_sandbox"
	TenantID   = "tenant_sandbox"
)

// Envelope codes the sandbox answers with (see the package documentation for when).
const (
	CodeSuccess              = 200
	CodeBadRequest           = 400
	CodeNotFound             = 404
	CodeMethodNotAllowed     = 405
	CodeRequestTooLarge      = 413
	CodeUnsupportedMediaType = 415
	CodeTimestampExpired     = 80102203
	CodeTimestampMissing     = 80102212
	CodeTimestampInvalid     = 80102213
	CodeAmountOrCurrency     = 90101206
)

// Envelope messages the sandbox answers with. Messages with a detail are "NAME: detail".
const (
	MsgSuccess                      = "success"
	MsgInvalidParameter             = "INVALID_PARAMETER"
	MsgAmountOrCurrency             = "AMOUNT_OR_CURRENCY_INCORRECT"
	MsgCustomerNotFound             = "CUSTOMER_NOT_FOUND"
	MsgCustomerIdentifierNotMatched = "CUSTOMER_IDENTIFIER_NOT_MATCHED"
	MsgReturnURLRequired            = "RETURN_URL_REQUIRED"
	MsgSessionNotFound              = "SESSION_NOT_FOUND"
	MsgTimestampExpired             = "TIMESTAMP_EXPIRED"
	MsgTimestampMissing             = "TIMESTAMP_MISSING"
	MsgTimestampInvalid             = "TIMESTAMP_INVALID"
	MsgNotFound                     = "NOT_FOUND"
	MsgMethodNotAllowed             = "METHOD_NOT_ALLOWED"
	MsgUnsupportedMediaType         = "UNSUPPORTED_MEDIA_TYPE"
	MsgRequestTooLarge              = "REQUEST_TOO_LARGE"
)

// maxBody caps request bodies.
const maxBody = 1 << 20

// Option configures a Server.
type Option func(*Server)

// WithAPIKey sets the API key the server accepts. Default: DefaultAPIKey.
func WithAPIKey(key string) Option { return func(s *Server) { s.apiKey = key } }

// WithClock sets the server's clock, for timestamps and expiry. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Server) {
		if now != nil {
			s.now = now
		}
	}
}

// WithSkew sets how far X-Timestamp may be from the server's clock, either way.
// Default: DefaultSkew (5 minutes; Clink does not document its window).
func WithSkew(d time.Duration) Option { return func(s *Server) { s.skew = d } }

// WithSessionTTL sets how long sessions stay open. Default: DefaultSessionTTL (30 minutes).
func WithSessionTTL(d time.Duration) Option { return func(s *Server) { s.ttl = d } }

// WithTokenGenerator sets the function making checkout sessions' tokenValue; tests use it to
// plant a known secret. Default: "tok_" and random characters from crypto/rand.
func WithTokenGenerator(f func() string) Option {
	return func(s *Server) {
		if f != nil {
			s.token = f
		}
	}
}

// WithMaxSessions sets how many sessions (agent and checkout together) the server remembers;
// creating one more forgets the oldest. Default: DefaultMaxSessions (10000). n < 1 keeps the
// default.
func WithMaxSessions(n int) Option {
	return func(s *Server) {
		if n >= 1 {
			s.maxSessions = n
		}
	}
}

// WithCheckoutBaseURL sets the base of checkout session URLs (url = base + session ID).
// Default: DefaultCheckoutBaseURL.
func WithCheckoutBaseURL(u string) Option { return func(s *Server) { s.checkoutBase = u } }

// Customer is a Clink customer: an ID and the identifiers that resolve to it.
type Customer struct {
	ID          string // "cus_..." when created by the sandbox
	Email       string
	ReferenceID string // the merchant's own ID for the customer (referenceCustomerId)
}

// Fault makes the server misbehave, for tests. Latency applies first; then the first set of
// CloseConn, Status, Garbage, Code, Truncate decides the answer. Only Truncate processes the
// request (the session is created, its answer cut short: an unknown outcome for the client);
// the others answer without processing it.
type Fault struct {
	Latency   time.Duration // wait this long before answering (less if the request's context ends)
	Status    int           // answer with this HTTP status and a plain-text (401) or HTML body
	Garbage   bool          // answer HTTP 200 with a body that is not JSON
	Truncate  bool          // process the request, answer HTTP 200 with its JSON cut in half
	CloseConn bool          // read the request, then close the connection without answering
	Code      int           // answer HTTP 200 with this envelope code and Msg
	Msg       string
	Count     int // apply to the next Count requests only; <= 0: until ClearFault
}

// Server is a fake Clink. Create it with New.
type Server struct {
	apiKey       string
	now          func() time.Time
	skew         time.Duration
	ttl          time.Duration
	token        func() string
	checkoutBase string
	maxSessions  int

	requests atomic.Int64

	mu        sync.Mutex
	fault     Fault
	faultOn   bool
	faultLeft int
	customers map[string]*Customer // by ID
	byEmail   map[string]string    // lower-cased email → customer ID
	byRef     map[string]string    // reference ID → customer ID
	agent     map[string]*agentSession
	checkout  map[string]*checkoutSession
	order     []string // IDs of the remembered sessions, oldest first
}

// New returns a Server with no customers, no sessions and no fault.
func New(opts ...Option) *Server {
	s := &Server{
		apiKey:       DefaultAPIKey,
		now:          time.Now,
		skew:         DefaultSkew,
		ttl:          DefaultSessionTTL,
		token:        func() string { return "tok_" + rand.Text() + rand.Text() },
		checkoutBase: DefaultCheckoutBaseURL,
		maxSessions:  DefaultMaxSessions,
		customers:    make(map[string]*Customer),
		byEmail:      make(map[string]string),
		byRef:        make(map[string]string),
		agent:        make(map[string]*agentSession),
		checkout:     make(map[string]*checkoutSession),
	}
	for _, opt := range opts {
		if opt != nil {
			opt(s)
		}
	}
	return s
}

// Requests returns how many requests the server has received: any path, any outcome, faults
// included. Tests use it to prove a call never reached Clink.
func (s *Server) Requests() int64 { return s.requests.Load() }

// SessionCount returns how many sessions (agent and checkout) the server holds: every one
// created, up to WithMaxSessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agent) + len(s.checkout)
}

// SetFault makes f apply to subsequent requests: the next f.Count of them, or all until
// ClearFault when f.Count <= 0. It replaces any previous fault.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.faultOn, s.faultLeft = f, true, f.Count
}

// ClearFault removes the fault: requests are served normally again.
func (s *Server) ClearFault() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.faultOn, s.faultLeft = Fault{}, false, 0
}

// takeFault returns the fault for this request, if any, counting it down.
func (s *Server) takeFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.faultOn {
		return Fault{}, false
	}
	f := s.fault
	if s.faultLeft > 0 {
		s.faultLeft--
		if s.faultLeft == 0 {
			s.fault, s.faultOn = Fault{}, false
		}
	}
	return f, true
}

// response is an answer before it is written, so a fault can cut it short.
type response struct {
	status int
	ctype  string
	body   []byte
}

// ServeHTTP answers one request: faults first, then authentication, timestamp, routing and
// the endpoint's rules.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	// Read the body first: until it is read, the server cannot notice that the client has
	// gone, and injected latency would outlast the client.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return // the client hung up mid-request
	}
	f, faulty := s.takeFault()
	if !faulty {
		write(w, s.handle(r, body))
		return
	}
	if f.Latency > 0 && !wait(r.Context(), f.Latency) {
		return
	}
	switch {
	case f.CloseConn:
		closeConn(w)
	case f.Status != 0:
		write(w, errorPage(f.Status))
	case f.Garbage:
		write(w, response{http.StatusOK, "application/json", []byte("\x00\x1b[2J garbage \xff\xfe <not json>")})
	case f.Code != 0:
		write(w, envelope(http.StatusOK, f.Code, f.Msg, nil))
	case f.Truncate:
		resp := s.handle(r, body)
		resp.body = resp.body[:len(resp.body)/2]
		write(w, resp)
	default:
		write(w, s.handle(r, body))
	}
}

func write(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", resp.ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// wait sleeps for d or until ctx ends, reporting whether the full time passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closeConn drops the connection without an answer, the request having been read. Where
// the connection cannot be hijacked (HTTP/2), it aborts the handler, which resets the stream.
func closeConn(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// errorPage is what a gateway in front of Clink sends for status.
func errorPage(status int) response {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	if status == http.StatusUnauthorized {
		return response{status, "text/plain; charset=utf-8", []byte("Unauthorized")}
	}
	page := "<!DOCTYPE html>\n<html><head><title>" + text + "</title></head>\n<body><h1>" + text +
		"</h1><p>clink-mcp sandbox fault</p></body></html>\n"
	return response{status, "text/html; charset=utf-8", []byte(page)}
}

// authorized compares the API key in constant time.
func (s *Server) authorized(r *http.Request) bool {
	got := r.Header.Get("X-API-KEY")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.apiKey)) == 1
}

// Listen serves the sandbox on a new loopback listener (127.0.0.1, a free port) with an
// *http.Server. It returns the base URL ("http://127.0.0.1:port/") and a shutdown function
// that stops the server, ends in-flight requests' contexts (so injected latency stops
// promptly), closes every connection and waits for the server goroutine to finish. It does
// not wait for idle clients: http.Server.Shutdown would wait up to 5 s for a connection a
// client dialled and never used, which a busy client's pool often has.
func (s *Server) Listen() (baseURL string, shutdown func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	shutdown = func(context.Context) error {
		cancel()
		err := srv.Close()
		<-done
		return err
	}
	return "http://" + ln.Addr().String() + "/", shutdown, nil
}

// BaseURL is the base URL to give a Clink client that reaches the sandbox
// through [Server.Transport]: a name that resolves nowhere, so that a
// client wired to the network by mistake fails rather than reaching
// anything.
const BaseURL = "http://sandbox.clink-mcp.invalid/"

// Transport returns an http.RoundTripper that serves every request with s
// in memory, with no listener, socket or goroutine: what `clink-mcp serve
// --sandbox` and the demo give their Clink client (with [BaseURL]). The
// request's context is honoured as net/http's transport honours it: the
// handler sees it, a request whose context is done is not served, and a
// request whose context ends before its answer is complete (an injected
// Latency outlasting a timeout) fails with the context's error, not with
// the empty answer the handler leaves.
func (s *Server) Transport() http.RoundTripper { return memTransport{s} }

// memTransport is [Server.Transport].
type memTransport struct{ s *Server }

// errConnClosed is what memTransport returns for a connection closed
// without an answer (a CloseConn fault): as over TCP, the request had been
// read.
var errConnClosed = fmt.Errorf("sandbox: the connection was closed without an answer: %w", io.ErrUnexpectedEOF)

// RoundTrip implements http.RoundTripper.
func (t memTransport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close() // a RoundTripper closes the body, whatever happens
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx) // what net/http's transport returns
	}
	r := req.Clone(ctx)
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "sandbox:0"
	w := &memResponse{header: http.Header{}}
	defer func() {
		// closeConn cannot hijack an in-memory connection: it aborts the
		// handler, which a server would recover from, and so does this.
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, errConnClosed
		}
	}()
	t.s.ServeHTTP(w, r)
	if ctx.Err() != nil {
		// Over a socket the client would have stopped waiting and seen
		// the context's error; the handler, cut short, wrote nothing.
		return nil, context.Cause(ctx)
	}
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)),
		StatusCode: w.code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()), Request: req,
	}, nil
}

// memResponse is the http.ResponseWriter of memTransport.
type memResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *memResponse) Header() http.Header { return w.header }

func (w *memResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *memResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
