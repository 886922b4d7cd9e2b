package clink_test

import (
	"context"
	"errors"
	"fmt"
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

// listen serves sb on loopback with sandbox.Listen and stops it when the test ends.
func listen(t testing.TB, sb *sandbox.Server) string {
	t.Helper()
	base, shutdown, err := sb.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return base
}

func TestConcurrentRoundTripsAgainstTheSandboxKeepEveryDigit(t *testing.T) {
	sb := sandbox.New(sandbox.WithCheckoutBaseURL("https://pay.example/"))
	c := newClient(t, listen(t, sb))
	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := roundTrip(t.Context(), c, w, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := sb.SessionCount(), 2*workers*rounds; got != want {
		t.Errorf("sandbox holds %d sessions, want %d", got, want)
	}
}

// roundTrip creates and reads back one session of each kind, comparing what matters.
func roundTrip(ctx context.Context, c *clink.Client, w, i int) error {
	amount, err := clink.ParseAmount(fmt.Sprintf("%d.%02d0", w+1, i))
	if err != nil {
		return err
	}
	email := fmt.Sprintf("worker%d@example.com", w)
	agent, err := c.CreateAgentPaymentSession(ctx, &clink.AgentPaymentSessionRequest{CustomerEmail: email, Amount: amount, Currency: "EUR"})
	if err != nil {
		return fmt.Errorf("create agent session: %w", err)
	}
	ad, err := c.GetAgentPaymentSession(ctx, agent.SessionID)
	if err != nil {
		return fmt.Errorf("get agent session: %w", err)
	}
	if ad.SessionID != agent.SessionID || ad.Amount != amount || ad.Currency != "EUR" || ad.CustomerEmail != email ||
		!strings.HasPrefix(ad.CustomerID, "cus_") || !ad.ExpireTime.Equal(agent.ExpireTime.Time) || !ad.CreateTime.Before(ad.ExpireTime.Time) {
		return fmt.Errorf("agent session read back as %+v, created as %+v with amount %s", ad, agent, amount)
	}
	ref := fmt.Sprintf("ref-%d", w)
	req := &clink.CheckoutSessionRequest{
		OriginalAmount: amount, OriginalCurrency: "USD", CustomerEmail: email, ReferenceCustomerID: ref,
		MerchantReferenceID: fmt.Sprintf("order-%d-%d", w, i), UIMode: clink.UIModeElements,
		ReturnURL:     "https://shop.example/r?s={ELEMENTS_SESSION_ID}",
		SuccessURL:    "https://shop.example/ok",
		PriceDataList: []clink.PriceData{{Name: "Tea", UnitAmount: amount, Quantity: 1}},
	}
	cs, err := c.CreateCheckoutSession(ctx, req)
	if err != nil {
		return fmt.Errorf("create checkout session: %w", err)
	}
	cd, err := c.GetCheckoutSession(ctx, cs.SessionID)
	if err != nil {
		return fmt.Errorf("get checkout session: %w", err)
	}
	switch {
	case cs.URL != "https://pay.example/"+cs.SessionID,
		cs.ReturnURL != "https://shop.example/r?s="+cs.SessionID,
		cs.TokenValue.IsZero(),
		cs.CustomerID != ad.CustomerID, // the same email is the same customer
		cd.SessionID != cs.SessionID, cd.OriginalAmount != amount, cd.OriginalCurrency != "USD",
		cd.Status != clink.StatusOpen, cd.PaymentStatus != clink.PaymentStatusUnpaid,
		cd.URL != cs.URL, cd.MerchantReferenceID != req.MerchantReferenceID, cd.SuccessURL != req.SuccessURL,
		len(cd.PriceDataList) != 1 || cd.PriceDataList[0].UnitAmount != amount,
		cd.CreateTime.IsZero() || !cd.CreateTime.Before(cd.ExpireTime.Time),
		cd.Amount != amount, cd.Currency != "USD":
		return fmt.Errorf("checkout session read back as %+v, created as %+v with amount %s", cd, cs, amount)
	}
	return nil
}

func TestASessionReadsAsExpiredOnceItsTTLHasPassed(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sb := sandbox.New(sandbox.WithClock(clock), sandbox.WithSessionTTL(10*time.Minute))
	c := newClient(t, listen(t, sb), clink.WithClock(clock))
	cs, err := c.CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
		OriginalAmount: mustAmount(t, "3"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(10 * time.Minute).Truncate(time.Millisecond); !cs.ExpireTime.Equal(want) {
		t.Errorf("ExpireTime = %v, want %v", cs.ExpireTime, want)
	}
	mu.Lock()
	now = now.Add(10 * time.Minute)
	mu.Unlock()
	cd, err := c.GetCheckoutSession(t.Context(), cs.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if cd.Status != clink.StatusExpired || cd.PaymentStatus != clink.PaymentStatusUnpaid {
		t.Errorf("status, paymentStatus = %q, %q; want expired, unpaid", cd.Status, cd.PaymentStatus)
	}
}

func TestTheSandboxsRefusalsReachTheCallerAsTypedErrors(t *testing.T) {
	sb := sandbox.New()
	sb.AddCustomer(sandbox.Customer{ID: "cus_ada", Email: "ada@example.com", ReferenceID: "ref-ada"})
	sb.AddCustomer(sandbox.Customer{ID: "cus_bob", Email: "bob@example.com", ReferenceID: "ref-bob"})
	base := listen(t, sb)
	c := newClient(t, base)
	checkout := func(mod func(*clink.CheckoutSessionRequest)) error {
		req := &clink.CheckoutSessionRequest{OriginalAmount: mustAmount(t, "10"), OriginalCurrency: "USD"}
		mod(req)
		_, err := c.CreateCheckoutSession(t.Context(), req)
		return err
	}
	tests := []struct {
		name     string
		call     func() error
		wantCode int
		wantMsg  string
		wantIs   error
	}{
		{"an agent session under 0.5 is an amount error", func() error {
			_, err := c.CreateAgentPaymentSession(t.Context(), &clink.AgentPaymentSessionRequest{
				CustomerEmail: "ada@example.com", Amount: mustAmount(t, "0.49"), Currency: "USD"})
			return err
		}, sandbox.CodeAmountOrCurrency, "AMOUNT_OR_CURRENCY_INCORRECT: amount must be at least 0.5", nil},
		{"a checkout without a customer is CUSTOMER_NOT_FOUND", func() error {
			return checkout(func(*clink.CheckoutSessionRequest) {})
		}, 400, "CUSTOMER_NOT_FOUND", nil},
		{"an unknown customer ID is CUSTOMER_NOT_FOUND", func() error {
			return checkout(func(r *clink.CheckoutSessionRequest) { r.CustomerID = "cus_nobody" })
		}, 400, "CUSTOMER_NOT_FOUND", nil},
		{"one customer's email with another's reference ID is CUSTOMER_IDENTIFIER_NOT_MATCHED", func() error {
			return checkout(func(r *clink.CheckoutSessionRequest) {
				r.CustomerEmail, r.ReferenceCustomerID = "ada@example.com", "ref-bob"
			})
		}, 400, "CUSTOMER_IDENTIFIER_NOT_MATCHED", nil},
		{"elements without a return URL is refused", func() error {
			return checkout(func(r *clink.CheckoutSessionRequest) { r.CustomerID, r.UIMode = "cus_ada", clink.UIModeElements })
		}, 400, "RETURN_URL_REQUIRED", nil},
		{"a zero original amount is an amount error", func() error {
			return checkout(func(r *clink.CheckoutSessionRequest) {
				r.CustomerID, r.OriginalAmount = "cus_ada", mustAmount(t, "0.00")
			})
		}, sandbox.CodeAmountOrCurrency, "AMOUNT_OR_CURRENCY_INCORRECT: originalAmount must be greater than 0", nil},
		{"an unknown session is SESSION_NOT_FOUND", func() error {
			_, err := c.GetCheckoutSession(t.Context(), "sess_nope")
			return err
		}, 404, "SESSION_NOT_FOUND", nil},
		{"an unknown agent payment session is SESSION_NOT_FOUND", func() error {
			_, err := c.GetAgentPaymentSession(t.Context(), "aps_nope")
			return err
		}, 404, "SESSION_NOT_FOUND", nil},
		{"a wrong key is an authentication error", func() error {
			other, err := clink.NewClient("sk_test_wrong", clink.WithBaseURL(base))
			if err != nil {
				return err
			}
			defer other.CloseIdleConnections()
			_, err = other.GetCheckoutSession(t.Context(), "sess_1")
			return err
		}, 0, "", clink.ErrUnauthorized},
		{"a clock an hour off is a timestamp rejection after every attempt", func() error {
			skewed := newClient(t, base, clink.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
			_, err := skewed.GetCheckoutSession(t.Context(), "sess_1")
			return err
		}, sandbox.CodeTimestampExpired, sandbox.MsgTimestampExpired, clink.ErrTimestampRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *clink.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *clink.Error", err)
			}
			if ce.Code != tt.wantCode || ce.Message != tt.wantMsg {
				t.Errorf("Code, Message = %d, %q; want %d, %q", ce.Code, ce.Message, tt.wantCode, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false (err: %v)", tt.wantIs, err)
			}
			if errors.Is(err, clink.ErrOutcomeUnknown) {
				t.Errorf("a refusal matches ErrOutcomeUnknown: %v", err)
			}
		})
	}
}

func TestATruncatedAnswerLeavesACreatedSessionBehindAnUnknownOutcome(t *testing.T) {
	sb := sandbox.New()
	c := newClient(t, listen(t, sb))
	sb.SetFault(sandbox.Fault{Truncate: true, Count: 1})
	_, err := c.CreateAgentPaymentSession(t.Context(), agentRequest(t))
	if !errors.Is(err, clink.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	if n := sb.SessionCount(); n != 1 {
		t.Errorf("sandbox holds %d sessions, want 1: the outcome was unknown because the session exists", n)
	}
}

// BenchmarkCreateAgentPaymentSession measures a create call against the sandbox over
// loopback: request building, HTTP, the sandbox's rules and response decoding.
func BenchmarkCreateAgentPaymentSession(b *testing.B) {
	sb := sandbox.New()
	c := newClient(b, listen(b, sb))
	req := &clink.AgentPaymentSessionRequest{CustomerEmail: "ada@example.com", Amount: mustAmount(b, "19.99"), Currency: "USD"}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CreateAgentPaymentSession(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestABusyClientKeepsItsConnections: the default transport keeps as many
// idle connections to Clink as a busy server has calls in flight, so the
// second wave of concurrent calls dials nothing (with net/http's default
// of 2 idle connections per host it would dial for nearly every call).
func TestABusyClientKeepsItsConnections(t *testing.T) {
	sb := sandbox.New()
	sb.SetFault(sandbox.Fault{Latency: 30 * time.Millisecond})
	var dials atomic.Int32
	srv := httptest.NewUnstartedServer(sb)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	wave := func() {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if _, err := c.CreateAgentPaymentSession(t.Context(), &clink.AgentPaymentSessionRequest{
					CustomerEmail: "ada@example.com", Amount: mustAmount(t, "5"), Currency: "USD"}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	wave()
	first := dials.Load()
	wave()
	if more := dials.Load() - first; more != 0 {
		t.Errorf("the second wave of 16 calls dialled %d new connections (the first dialled %d), want 0", more, first)
	}
}
