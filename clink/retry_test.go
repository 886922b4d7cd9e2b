package clink_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

func agentRequest(t *testing.T) *clink.AgentPaymentSessionRequest {
	return &clink.AgentPaymentSessionRequest{CustomerEmail: "ada@example.com", Amount: mustAmount(t, "12.50"), Currency: "USD"}
}

func TestRetriesDependOnTheFailureAndWhetherTheCallCreates(t *testing.T) {
	const attempts = 3
	tests := []struct {
		name        string
		fault       sandbox.Fault
		timeout     time.Duration // per attempt, if set
		creates     int64         // requests a create makes
		gets        int64         // requests a get makes
		wantUnknown bool          // for the create
		wantIs      error
		wantStatus  int
	}{
		{name: "a 500 is retried by a get but ends a create with an unknown outcome",
			fault: sandbox.Fault{Status: 500}, creates: 1, gets: attempts, wantUnknown: true, wantStatus: 500},
		{name: "a 503 is retried by a get but ends a create with an unknown outcome",
			fault: sandbox.Fault{Status: 503}, creates: 1, gets: attempts, wantUnknown: true, wantStatus: 503},
		{name: "a 429 is retried by a get and ends a create as a refusal",
			fault: sandbox.Fault{Status: 429}, creates: 1, gets: attempts, wantStatus: 429},
		{name: "a 401 is never retried",
			fault: sandbox.Fault{Status: 401}, creates: 1, gets: 1, wantIs: clink.ErrUnauthorized, wantStatus: 401},
		{name: "a business error is never retried",
			fault: sandbox.Fault{Code: 400, Msg: "CUSTOMER_NOT_FOUND"}, creates: 1, gets: 1, wantStatus: 200},
		{name: "a server fault code on HTTP 200 is retried by a get but ends a create with an unknown outcome",
			fault: sandbox.Fault{Code: 500, Msg: "SYSTEM_ERROR"}, creates: 1, gets: attempts, wantUnknown: true, wantStatus: 200},
		{name: "an undocumented code on HTTP 200 is never retried and leaves a create unknown",
			fault: sandbox.Fault{Code: 123456, Msg: "WHATEVER"}, creates: 1, gets: 1, wantUnknown: true, wantStatus: 200},
		{name: "an expired timestamp is retried by both",
			fault: sandbox.Fault{Code: 80102203, Msg: "TIMESTAMP_EXPIRED"}, creates: attempts, gets: attempts, wantIs: clink.ErrTimestampRejected, wantStatus: 200},
		{name: "a missing timestamp is retried by both",
			fault: sandbox.Fault{Code: 80102212}, creates: attempts, gets: attempts, wantIs: clink.ErrTimestampRejected, wantStatus: 200},
		{name: "an invalid timestamp is retried by both",
			fault: sandbox.Fault{Code: 80102213}, creates: attempts, gets: attempts, wantIs: clink.ErrTimestampRejected, wantStatus: 200},
		{name: "a garbage 200 body is not retried and leaves a create unknown",
			fault: sandbox.Fault{Garbage: true}, creates: 1, gets: 1, wantUnknown: true, wantStatus: 200},
		{name: "a truncated 200 body is not retried and leaves a create unknown",
			fault: sandbox.Fault{Truncate: true}, creates: 1, gets: 1, wantUnknown: true, wantStatus: 200},
		{name: "a connection closed after the request is retried by a get but leaves a create unknown",
			fault: sandbox.Fault{CloseConn: true}, creates: 1, gets: attempts, wantUnknown: true},
		{name: "a timeout after sending is retried by a get but leaves a create unknown",
			fault: sandbox.Fault{Latency: time.Minute}, timeout: 50 * time.Millisecond, creates: 1, gets: attempts,
			wantUnknown: true, wantIs: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := sandbox.New()
			opts := []clink.Option{noKeepAlive(), clink.WithMaxAttempts(attempts)}
			if tt.timeout > 0 {
				opts = append(opts, clink.WithTimeout(tt.timeout))
			}
			c := newClient(t, startSandbox(t, sb), opts...)
			sb.SetFault(tt.fault)

			_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
			if got := sb.Requests(); got != tt.creates {
				t.Errorf("create made %d requests, want %d", got, tt.creates)
			}
			checkRetryError(t, "create", err, tt.wantStatus, tt.wantIs, tt.wantUnknown)

			before := sb.Requests()
			_, err = c.GetCheckoutSession(t.Context(), "sess_1")
			if got := sb.Requests() - before; got != tt.gets {
				t.Errorf("get made %d requests, want %d", got, tt.gets)
			}
			checkRetryError(t, "get", err, tt.wantStatus, tt.wantIs, false)
		})
	}
}

func checkRetryError(t *testing.T, call string, err error, wantStatus int, wantIs error, wantUnknown bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error", call)
	}
	var ce *clink.Error
	switch {
	case wantStatus == 0 && errors.As(err, &ce):
		t.Errorf("%s: err = %v is a *clink.Error, but no response arrived", call, err)
	case wantStatus != 0 && !errors.As(err, &ce):
		t.Errorf("%s: err = %v, want a *clink.Error", call, err)
	case wantStatus != 0 && ce.HTTPStatus != wantStatus:
		t.Errorf("%s: HTTPStatus = %d, want %d (err: %v)", call, ce.HTTPStatus, wantStatus, err)
	}
	if got := errors.Is(err, clink.ErrOutcomeUnknown); got != wantUnknown {
		t.Errorf("%s: errors.Is(err, ErrOutcomeUnknown) = %v, want %v (err: %v)", call, got, wantUnknown, err)
	}
	if wantIs != nil && !errors.Is(err, wantIs) {
		t.Errorf("%s: errors.Is(err, %v) = false, want true (err: %v)", call, wantIs, err)
	}
	assertSafeText(t, call+" Error()", err.Error())
}

// countingDialer dials through fail (if set) or the network, counting attempts.
type countingDialer struct {
	dials atomic.Int64
	fail  error
}

func (d *countingDialer) client() clink.Option {
	return clink.WithHTTPClient(&http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d.dials.Add(1)
			if d.fail != nil {
				return nil, d.fail
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}})
}

// closedPort returns the address of a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestACreateIsRetriedWhenTheRequestProvablyNeverLeft(t *testing.T) {
	tests := []struct {
		name string
		fail error  // nil: dial a closed port for real
		says string // what the error says, before " at <base URL> is unreachable"
	}{
		{name: "a refused connection is retried", says: "connection refused: Clink"},
		{name: "a DNS failure is retried", fail: &net.DNSError{Err: "no such host", Name: "uat-api.clinkbill.invalid", IsNotFound: true},
			says: "host not found: Clink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &countingDialer{fail: tt.fail}
			base := "http://" + closedPort(t) + "/"
			c := newClient(t, base, d.client(), clink.WithMaxAttempts(4))
			_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
			// The operator's log says plainly that Clink is unreachable, and where.
			if want := tt.says + " at " + base + " is unreachable"; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to say %q", err, want)
			}
			if got := d.dials.Load(); got != 4 {
				t.Errorf("dialled %d times, want 4", got)
			}
			if err == nil || !strings.HasSuffix(err.Error(), "(after 4 attempts)") {
				t.Fatalf("err = %v, want a failure after 4 attempts", err)
			}
			var ce *clink.Error
			if errors.As(err, &ce) {
				t.Errorf("err = %v is a *clink.Error, but no response arrived", err)
			}
			if errors.Is(err, clink.ErrOutcomeUnknown) {
				t.Errorf("err = %v matches ErrOutcomeUnknown, but the request never left", err)
			}
			if tt.fail != nil && !errors.Is(err, tt.fail) {
				t.Errorf("err = %v does not wrap the dial error", err)
			}
		})
	}
}

func TestATimestampRejectionIsRetriedWithAFreshTimestamp(t *testing.T) {
	sb := sandbox.New(sandbox.WithClock(func() time.Time { return fixedNow }))
	var mu sync.Mutex
	var stamps []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stamps = append(stamps, r.Header.Get("X-Timestamp"))
		mu.Unlock()
		sb.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, clink.WithClock(tickingClock()))
	sb.SetFault(sandbox.Fault{Code: sandbox.CodeTimestampExpired, Msg: sandbox.MsgTimestampExpired, Count: 1})

	s, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
	if err != nil {
		t.Fatalf("create after one timestamp rejection failed: %v", err)
	}
	if s.SessionID == "" {
		t.Error("no session ID")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stamps) != 2 || stamps[0] == stamps[1] {
		t.Errorf("X-Timestamp of each attempt = %q, want two different values", stamps)
	}
}

func TestARefusalStaysVisibleWhenTheContextEndsTheWaitToRetry(t *testing.T) {
	sb := sandbox.New()
	c := newClient(t, startSandbox(t, sb), clink.WithBackoff(time.Minute, time.Minute))
	sb.SetFault(sandbox.Fault{Code: sandbox.CodeTimestampExpired, Msg: sandbox.MsgTimestampExpired})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.CreateAgentPaymentSession(ctx, agentRequest(t))
	var ce *clink.Error
	if !errors.As(err, &ce) || ce.Code != sandbox.CodeTimestampExpired {
		t.Fatalf("err = %v, want it to carry the timestamp refusal", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, clink.ErrTimestampRejected) || errors.Is(err, clink.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want DeadlineExceeded and ErrTimestampRejected, not ErrOutcomeUnknown", err)
	}
}

func TestWithMaxAttemptsOneDisablesRetries(t *testing.T) {
	sb := sandbox.New()
	c := newClient(t, startSandbox(t, sb), clink.WithMaxAttempts(1), noKeepAlive())
	sb.SetFault(sandbox.Fault{Status: 503})
	if _, err := c.GetAgentPaymentSession(t.Context(), "aps_1"); err == nil {
		t.Fatal("get succeeded against a failing server")
	}
	if got := sb.Requests(); got != 1 {
		t.Errorf("made %d requests, want 1", got)
	}
}

func TestARetriedGetSucceedsOnceClinkRecovers(t *testing.T) {
	sb := sandbox.New()
	c := newClient(t, startSandbox(t, sb), noKeepAlive())
	created, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	sb.SetFault(sandbox.Fault{Status: 502, Count: 2})
	got, err := c.GetAgentPaymentSession(t.Context(), created.SessionID)
	if err != nil {
		t.Fatalf("get after two 502s failed: %v", err)
	}
	if got.SessionID != created.SessionID || got.Amount.String() != "12.50" {
		t.Errorf("got session %q amount %s, want %q amount 12.50", got.SessionID, got.Amount, created.SessionID)
	}
	if n := sb.Requests(); n != 4 {
		t.Errorf("server saw %d requests, want 4 (1 create, 2 failed gets, 1 get)", n)
	}
}

// within asserts that a call ending because of ctx's deadline returned
// soon after it: within 5 s, where what it would otherwise wait for (Clink's
// answer, a backoff) takes a minute. The bound leaves room for a loaded
// machine's scheduling.
func within(t *testing.T, deadline time.Time, what string) {
	t.Helper()
	if late := time.Since(deadline); late > 5*time.Second {
		t.Errorf("%s returned %v after its context's deadline, want within 5s (not the minute it waits for)", what, late)
	}
}

func TestAContextDeadlineEndsTheCallPromptly(t *testing.T) {
	t.Run("while Clink is slow to answer a create", func(t *testing.T) {
		sb := sandbox.New()
		c := newClient(t, startSandbox(t, sb))
		sb.SetFault(sandbox.Fault{Latency: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		deadline, _ := ctx.Deadline()
		_, err := c.CreateAgentPaymentSession(ctx, agentRequest(t))
		within(t, deadline, "a create")
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Errorf("err = %v, want DeadlineExceeded and ErrOutcomeUnknown", err)
		}
	})
	t.Run("while Clink is slow to answer a get", func(t *testing.T) {
		sb := sandbox.New()
		c := newClient(t, startSandbox(t, sb))
		sb.SetFault(sandbox.Fault{Latency: time.Minute})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		deadline, _ := ctx.Deadline()
		_, err := c.GetCheckoutSession(ctx, "sess_1")
		within(t, deadline, "a get")
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Errorf("err = %v, want DeadlineExceeded and not ErrOutcomeUnknown", err)
		}
	})
	t.Run("while waiting to retry a create that never left", func(t *testing.T) {
		d := &countingDialer{}
		c := newClient(t, "http://"+closedPort(t), d.client(), clink.WithBackoff(time.Minute, time.Minute))
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		deadline, _ := ctx.Deadline()
		_, err := c.CreateAgentPaymentSession(ctx, agentRequest(t))
		within(t, deadline, "a create waiting to retry")
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, clink.ErrOutcomeUnknown) {
			t.Errorf("err = %v, want DeadlineExceeded and not ErrOutcomeUnknown", err)
		}
		var ce *clink.Error
		if errors.As(err, &ce) {
			t.Errorf("err = %v is a *clink.Error, but no response arrived", err)
		}
		if d.dials.Load() != 1 {
			t.Errorf("dialled %d times, want 1", d.dials.Load())
		}
	})
}

func TestACallWithAnEndedContextSendsNothing(t *testing.T) {
	sb := sandbox.New()
	c := newClient(t, startSandbox(t, sb))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.CreateCheckoutSession(ctx, &clink.CheckoutSessionRequest{
		OriginalAmount: mustAmount(t, "1"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, clink.ErrOutcomeUnknown) {
		t.Errorf("err = %v, want Canceled and not ErrOutcomeUnknown", err)
	}
	if n := sb.Requests(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}
