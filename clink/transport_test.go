package clink_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// h2Clink serves HTTP/2 by hand, as Clink behind a misbehaving proxy
// might: it counts every request stream it received whole (headers and
// body: a request it could have processed), and resets the first (every
// one, with resetAll) with RST_STREAM PROTOCOL_ERROR, answering the
// others with a created session. It returns a client of it, over the
// transport NewClient uses by default.
func h2Clink(t *testing.T, resetAll bool, hits *atomic.Int64, opts ...clink.Option) *clink.Client {
	t.Helper()
	serve := func(_ *http.Server, c *tls.Conn, _ http.Handler) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		_ = fr.WriteSettings()
		received := func(id uint32) {
			n := hits.Add(1)
			if n == 1 || resetAll {
				_ = fr.WriteRSTStream(id, http2.ErrCodeProtocol)
				return
			}
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/json"})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
			_ = fr.WriteData(id, true, []byte(`{"code":200,"msg":"success","data":{"sessionId":"aps_`+strconv.FormatInt(n, 10)+`","expireTime":"2030-01-01T00:00:00Z"}}`))
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					received(f.StreamID)
				}
			case *http2.DataFrame:
				if f.StreamEnded() {
					received(f.StreamID)
				}
			}
		}
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{NextProtos: []string{"h2"}}
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){"h2": serve}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	t.Cleanup(tr.CloseIdleConnections)
	return newClient(t, srv.URL, append([]clink.Option{clink.WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
}

// Over HTTP/2 (what Go negotiates with an https Clink), net/http sends a
// request again by itself when the server resets its stream with
// PROTOCOL_ERROR, if it can rewind the body: a create must reach Clink
// once per attempt, the reset being an unknown outcome, never a second
// session (nor, with every stream reset, a POST per new connection until
// the timeout: 857 in 2 s before the fix).
func TestACreateIsNotSentAgainByTheHTTP2Transport(t *testing.T) {
	for _, resetAll := range []bool{false, true} {
		t.Run("reset all "+strconv.FormatBool(resetAll), func(t *testing.T) {
			var hits atomic.Int64
			c := h2Clink(t, resetAll, &hits, clink.WithTimeout(2*time.Second))
			s, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
			if n := hits.Load(); n != 1 {
				t.Errorf("one create delivered %d whole requests to Clink, want 1", n)
			}
			if s != nil || !errors.Is(err, clink.ErrOutcomeUnknown) {
				t.Errorf("got %v, %v; want ErrOutcomeUnknown: the stream was reset after Clink had the request", s, err)
			}
		})
	}
}

// A redirect that may answer a processed POST (303, 302) is an unknown
// outcome whatever the size of its body; so is a 4xx whose body is over
// the cap (its unread envelope could say 500), but for a 429.
func TestAnOversizedAnswerIsAnUnknownOutcomeButOfA429(t *testing.T) {
	for _, tc := range []struct {
		status, size int
		unknown      bool
	}{{http.StatusSeeOther, 100, true}, {http.StatusSeeOther, 2 << 20, true}, {http.StatusBadRequest, 2 << 20, true}, {http.StatusTooManyRequests, 2 << 20, false}} {
		srv := httptest.NewServer(replyWith(tc.status, "text/html", strings.Repeat("x", tc.size)))
		c := newClient(t, srv.URL, clink.WithMaxAttempts(1))
		_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
		if got := errors.Is(err, clink.ErrOutcomeUnknown); got != tc.unknown {
			t.Errorf("HTTP %d with a %d-byte body: err = %v; unknown outcome %v, want %v", tc.status, tc.size, err, got, tc.unknown)
		}
		srv.Close()
	}
}

// A 400 whose envelope says 500, its body cut short: the code is unseen,
// so the outcome is unknown, as it is with the whole body.
func TestACut4xxWhoseCodeMayBeAServerFaultIsAnUnknownOutcome(t *testing.T) {
	body := `{"code":500,"msg":"internal error","data":null}`
	for _, cut := range []bool{false, true} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			if cut {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)+100))
			}
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, body)
		}))
		c := newClient(t, srv.URL)
		_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
		if !errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Errorf("cut %v: err = %v, want ErrOutcomeUnknown", cut, err)
		}
		srv.Close()
	}
}

// A certificate the client refuses ends the TLS handshake before a byte of
// the request is written: the create was not sent (not an unknown
// outcome), and it is not tried again.
func TestARefusedCertificateIsNotAnUnknownOutcome(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	ln := &countingListener{Listener: srv.Listener}
	srv.Listener = ln
	srv.StartTLS()
	defer srv.Close()
	c := newClient(t, srv.URL, clink.WithMaxAttempts(3)) // the test certificate is not trusted
	_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
	if err == nil || errors.Is(err, clink.ErrOutcomeUnknown) || hits.Load() != 0 || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("err = %v after %d requests; want a failure naming the certificate, not ErrOutcomeUnknown, and no request", err, hits.Load())
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the same certificate would be refused again", n)
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// Text the server sent that net/http quotes in its error (a malformed
// status or header line) is sanitized as Clink's own text is.
func TestServerTextInATransportErrorIsSanitized(t *testing.T) {
	const token = "tok_Zq8XwK3mN7pL2vR9tY4bH6jD"
	for _, reply := range []string{
		"tokenValue=" + token + " ada.lovelace@example.com\r\n\r\n",                            // not a status line
		"HTTP/1.1 200 OK\r\nX: y\r\ntokenValue " + token + " ada.lovelace@example.com\r\n\r\n", // a header line without ':'
	} {
		addr := rawHTTPServer(t, reply)
		c := newClient(t, "http://"+addr+"/", clink.WithMaxAttempts(1))
		_, err := c.CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
			OriginalAmount: mustAmount(t, "10.00"), OriginalCurrency: "USD", CustomerEmail: "ada.lovelace@example.com",
		})
		if err == nil {
			t.Fatalf("reply %q: no error", reply)
		}
		if s := err.Error(); strings.Contains(s, token) || strings.Contains(s, "ada.lovelace@") || !strings.Contains(s, "a***@example.com") {
			t.Errorf("Error() = %s; want the token out and the email masked", s)
		}
	}
}

// rawHTTPServer answers every connection with reply after reading the
// request head, and returns its address.
func rawHTTPServer(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(conn)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			_, _ = io.WriteString(conn, reply)
			_ = conn.Close()
		}
	})
	return ln.Addr().String()
}

// A body cut short hides the envelope code, which outweighs the status (a
// 400 whose code is 500 may follow a session created): only a 429, a
// refusal whatever its envelope says, is one with its body unread.
func TestAnUnreadableBodyLeavesTheOutcomeUnknownButOfA429(t *testing.T) {
	for _, tc := range []struct {
		status  int
		unknown bool
	}{{http.StatusTooManyRequests, false}, {http.StatusUnauthorized, true}, {http.StatusBadRequest, true}, {http.StatusOK, true}, {http.StatusFound, true},
		{http.StatusMovedPermanently, true}, {http.StatusBadGateway, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, "Unauthorized") // 12 of 100 bytes, then the server closes
		}))
		c := newClient(t, srv.URL)
		_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
		if got := errors.Is(err, clink.ErrOutcomeUnknown); got != tc.unknown {
			t.Errorf("HTTP %d with a cut body: err = %v; unknown outcome %v, want %v", tc.status, err, got, tc.unknown)
		}
		if tc.status == http.StatusUnauthorized && !errors.Is(err, clink.ErrUnauthorized) {
			t.Errorf("HTTP 401 with a cut body: err = %v, want ErrUnauthorized", err)
		}
		srv.Close()
	}
}

// The in-memory transport (serve --sandbox, the demo) cannot hijack a
// connection: a CloseConn fault is a connection closed after the request,
// an unknown outcome, not a panic in the caller's goroutine.
func TestTheSandboxTransportClosesTheConnectionOnAFault(t *testing.T) {
	sb := sandbox.New()
	c, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(sandbox.BaseURL),
		clink.WithHTTPClient(&http.Client{Transport: sb.Transport()}))
	if err != nil {
		t.Fatal(err)
	}
	sb.SetFault(sandbox.Fault{CloseConn: true, Count: 1})
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("CreateAgentPaymentSession panicked: %v", p)
		}
	}()
	_, err = c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
	if !errors.Is(err, clink.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
	if n := sb.Requests(); n != 1 {
		t.Errorf("the sandbox received %d requests, want 1", n)
	}
}

// A 4xx whose envelope says 500 is an unknown outcome even with data after
// the envelope: the code is read from the object that is there.
func TestA4xxWithAServerFaultCodeAndTrailingDataIsAnUnknownOutcome(t *testing.T) {
	for _, body := range []string{`{"code":500,"msg":"internal error","data":null}`, `{"code":500,"msg":"internal error","data":null}{}`} {
		srv := httptest.NewServer(replyWith(http.StatusBadRequest, "application/json", body))
		c := newClient(t, srv.URL, clink.WithMaxAttempts(1))
		_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
		if !errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Errorf("HTTP 400 with %s: err = %v, want ErrOutcomeUnknown", body, err)
		}
		srv.Close()
	}
}
