package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// fakePayments stands in for Clink: it records every request, numbers the
// sessions it creates (aps_1, sess_2, ...), and can be slowed down to keep
// calls in flight, or made to fail.
type fakePayments struct {
	delay time.Duration
	err   error

	mu       sync.Mutex
	agent    []clink.AgentPaymentSessionRequest
	checkout []clink.CheckoutSessionRequest
	gets     int
	noAmount bool // the lookups answer without an amount
	// echo, when set, is the amount and currency a created checkout
	// session's answer gives; else it gives none.
	echo *struct{ amount, currency string }
}

// record notes a request and returns the call's number and the error to
// answer with, after the delay.
func (f *fakePayments) record(add func()) (int, error) {
	f.mu.Lock()
	add()
	n, err := len(f.agent)+len(f.checkout), f.err
	f.mu.Unlock()
	time.Sleep(f.delay)
	return n, err
}

func (f *fakePayments) CreateAgentPaymentSession(_ context.Context, req *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error) {
	n, err := f.record(func() { f.agent = append(f.agent, *req) })
	if err != nil {
		return nil, err
	}
	return &clink.AgentPaymentSession{SessionID: fmt.Sprintf("aps_%d", n), ExpireTime: clink.Time{Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}}, nil
}

func (f *fakePayments) CreateCheckoutSession(_ context.Context, req *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	n, err := f.record(func() { f.checkout = append(f.checkout, *req) })
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("sess_%d", n)
	sess := &clink.CheckoutSession{SessionID: id, URL: "https://checkout.example/pay/" + id,
		ExpireTime: clink.Time{Time: time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)}}
	if f.echo != nil {
		sess.OriginalAmount, _ = clink.ParseAmount(f.echo.amount)
		sess.OriginalCurrency = f.echo.currency
	}
	return sess, nil
}

// GetAgentPaymentSession answers for any ID, and counts the lookup.
func (f *fakePayments) GetAgentPaymentSession(_ context.Context, id string) (*clink.AgentPaymentSessionInfo, error) {
	f.mu.Lock()
	f.gets++
	f.mu.Unlock()
	amount, _ := clink.ParseAmount("12.50")
	if f.noAmount {
		amount = clink.Amount{}
	}
	return &clink.AgentPaymentSessionInfo{SessionID: id, Amount: amount, Currency: "USD", CustomerEmail: "a@example.com",
		ExpireTime: clink.Time{Time: time.Now().Add(time.Hour)}}, nil
}

// GetCheckoutSession answers for any ID, and counts the lookup.
func (f *fakePayments) GetCheckoutSession(_ context.Context, id string) (*clink.CheckoutSessionInfo, error) {
	f.mu.Lock()
	f.gets++
	f.mu.Unlock()
	amount, _ := clink.ParseAmount("12.50")
	if f.noAmount {
		amount = clink.Amount{}
	}
	return &clink.CheckoutSessionInfo{SessionID: id, Status: "open", PaymentStatus: "unpaid", OriginalAmount: amount, OriginalCurrency: "USD"}, nil
}

// lookups is how many status lookups reached the fake.
func (f *fakePayments) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets
}

// calls is how many creates reached the fake.
func (f *fakePayments) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.agent) + len(f.checkout)
}

func testPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testSecret is the state secret in tests.
var testSecret = []byte("test state secret, at least 32 bytes long")

// fullPolicy is a policy as tests hand it over: the core's view and the
// tools' view of it.
type fullPolicy interface {
	gate.Policy
	Policy
}

// testDeps wires the tools to pay and p with an in-memory state.
func testDeps(t testing.TB, pay Payments, p fullPolicy) Deps {
	t.Helper()
	st := state.NewMemory()
	t.Cleanup(func() { st.Close() })
	return wire(t, pay, p, st, nil, nil)
}

// wire builds the tools' Deps around a gate on st.
func wire(t testing.TB, pay Payments, p fullPolicy, st state.Store, clock func() time.Time, logger *slog.Logger) Deps {
	t.Helper()
	g := gate.New(gate.Config{Policy: p, Store: st, Secret: testSecret, Account: "test", Clock: clock, Logger: logger})
	t.Cleanup(func() { g.Close(context.Background()) })
	return Deps{Payments: pay, Policy: p, Gate: g, Logger: logger}
}

// harness is the tools wired to a fake Clink, an in-memory store and a log
// buffer.
type harness struct {
	pay   *fakePayments
	state *state.Memory
	tools map[string]Tool
	logs  *bytes.Buffer
}

func (h *harness) deps(t testing.TB, p fullPolicy, logger *slog.Logger) Deps {
	h.state = state.NewMemory()
	t.Cleanup(func() { h.state.Close() })
	return wire(t, h.pay, p, h.state, nil, logger)
}

func newHarness(t testing.TB, p fullPolicy) *harness {
	t.Helper()
	h := &harness{pay: &fakePayments{}, tools: map[string]Tool{}, logs: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, tool := range All(h.deps(t, p, logger)) {
		h.tools[tool.Tool.Name] = tool
	}
	return h
}

func (h *harness) call(t testing.TB, tool, args string) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, RawArguments: json.RawMessage(args)}}
	res, err := h.tools[tool].Handler(context.Background(), req)
	if err != nil {
		t.Fatalf("handler returned a Go error: %v", err)
	}
	return res
}

const (
	agent    = policy.ToolAgentPaymentSession
	checkout = policy.ToolCheckoutSession
)

func TestRefusalsNeverReachClink(t *testing.T) {
	tests := []struct {
		name string
		tool string
		args string
		want []string
	}{
		// Decoding.
		{"an unknown argument is refused", agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD","note":"x"}`, []string{`unknown argument "note"`}},
		{"a case variant of an argument is refused", agent, `{"customerEmail":"alice@example.com","amount":10,"AMOUNT":10,"currency":"USD"}`, []string{`did you mean "amount"`}},
		{"a duplicate argument is refused", checkout, `{"amount":10,"amount":1000,"currency":"USD","customerEmail":"alice@example.com"}`, []string{"more than once"}},
		{"an amount sent as a string is refused", agent, `{"customerEmail":"alice@example.com","amount":"10","currency":"USD"}`, []string{"must be a number"}},
		// Validation.
		{"missing required arguments are each named", agent, `{}`, []string{`"customerEmail" is required`, `"amount" is required`, `"currency" is required`}},
		{"a malformed email is refused", agent, `{"customerEmail":"alice at example.com","amount":10,"currency":"USD"}`, []string{`"customerEmail" must be an email address`}},
		{"an email with a display name is refused", agent, `{"customerEmail":"Alice <alice@example.com>","amount":10,"currency":"USD"}`, []string{`"customerEmail"`}},
		{"a lower-case currency is refused", agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"usd"}`, []string{`"currency" must be a three-letter ISO 4217`}},
		{"an unknown currency is refused", checkout, `{"amount":10,"currency":"ABC","customerEmail":"alice@example.com"}`, []string{`"currency" must be a three-letter ISO 4217`}},
		{"a currency that is not legal tender is refused", checkout, `{"amount":10,"currency":"XAU","customerEmail":"alice@example.com"}`, []string{`argument "currency": currency XAU is not legal tender`}},
		{"a currency that is not legal tender is the currency's fault", agent, `{"amount":10,"currency":"XAU","customerEmail":"alice@example.com"}`, []string{`argument "currency": currency XAU is not legal tender`}},
		{"a line item's currency that is not legal tender is its own fault", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"x","unitAmount":1,"currency":"XTS"}]}`, []string{`argument "priceDataList[0].currency": currency XTS is not legal tender`}},
		{"more decimals than USD has are refused, never rounded", checkout, `{"amount":10.005,"currency":"USD","customerEmail":"alice@example.com"}`, []string{`argument "amount"`, "10.005"}},
		{"a fractional yen amount is refused", checkout, `{"amount":100.5,"currency":"JPY","customerEmail":"alice@example.com"}`, []string{`argument "amount"`}},
		{"a zero amount is refused", checkout, `{"amount":0,"currency":"USD","customerEmail":"alice@example.com"}`, []string{`argument "amount"`}},
		{"a negative amount is refused", checkout, `{"amount":-5,"currency":"USD","customerEmail":"alice@example.com"}`, []string{`argument "amount"`}},
		{"an agent session under 0.5 is refused", agent, `{"customerEmail":"alice@example.com","amount":0.49,"currency":"USD"}`, []string{`must be at least 0.5`}},
		{"a checkout without any customer identifier is refused", checkout, `{"amount":10,"currency":"USD"}`, []string{"at least one customer identifier"}},
		{"a customerId with a space before it is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":" cus_1"}`, []string{`argument "customerId" must not begin or end with spaces`}},
		{"a customerId with a tab after it is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":"cus_1\t"}`, []string{`argument "customerId" must not begin or end with spaces`}},
		{"a customerId with a zero-width space is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":"cus_1\u200b"}`, []string{`argument "customerId" must not begin or end with spaces or hold invisible characters`}},
		{"a customerId with a byte-order mark is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":"\ufeffcus_1"}`, []string{`argument "customerId" must not begin`}},
		{"a referenceCustomerId with a space after it is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","referenceCustomerId":"user-1042 "}`, []string{`argument "referenceCustomerId" must not begin or end with spaces`}},
		{"a non-ASCII idempotencyKey is refused, saying what to send", agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD","idempotencyKey":"zahlung-ä-0001"}`, []string{`argument "idempotencyKey" must hold printable ASCII characters only`}},
		{"a merchantReferenceId with a NUL and a line break is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","merchantReferenceId":"order-42\u0000\r\nX"}`, []string{`argument "merchantReferenceId" must not hold control characters`}},
		{"a line item name with a bidi override is refused", checkout, `{"amount":20,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Team plan \u202e0.01 USD","unitAmount":20}]}`, []string{`argument "priceDataList[0].name" must not hold control characters`}},
		{"a customerId with a line break is refused", checkout, `{"amount":10,"currency":"USD","customerId":"cus_1\nX"}`, []string{`argument "customerId" must not hold control characters`}},
		{"a referenceCustomerId with a tab is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","referenceCustomerId":"user\t1042"}`, []string{`argument "referenceCustomerId" must not hold control characters`}},
		{"a promotionCode with a NUL is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","allowPromotionCodes":true,"promotionCode":"SPRING\u000010"}`, []string{`argument "promotionCode" must not hold control characters`}},
		{"a priceId with a space after it is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceId":"price_1 "}`, []string{`argument "priceId" must not begin or end with spaces`}},
		{"a non-http URL is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","successUrl":"javascript:alert(1)"}`, []string{`"successUrl" must be an absolute http:// or https:// URL`}},
		{"a relative URL is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","cancelUrl":"/cart"}`, []string{`"cancelUrl" must be an absolute`}},
		{"an unknown uiMode is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","uiMode":"popup"}`, []string{`"uiMode" must be one of: hostedPage, elements`}},
		{"elements without a returnUrl is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","uiMode":"elements"}`, []string{`"returnUrl" is required when "uiMode" is "elements"`}},
		{"a promotion code without allowPromotionCodes is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","promotionCode":"SPRING"}`, []string{`"promotionCode" only works with "allowPromotionCodes": true`}},
		{"a hidden promotion field without a code is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","showPromotionCode":false}`, []string{`"showPromotionCode": false needs a "promotionCode"`}},
		{"a direct QR method unlike the default method is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","paymentMethodType":"CARD","directPaymentQrCodePaymentMethodType":"CASHAPP"}`, []string{`must equal "paymentMethodType"`}},
		{"a method both default and excluded is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","paymentMethodType":"CARD","paymentMethodTypeBlackList":["CARD"]}`, []string{`payment method CARD cannot be both`}},
		{"an unknown payment method is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","paymentMethodTypeBlackList":["BITCOIN"]}`, []string{`"paymentMethodTypeBlackList[0]" must be one of`}},
		{"a repeated excluded method is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","paymentMethodTypeBlackList":["CARD","CARD"]}`, []string{`must not list a value twice`}},
		{"more than 20 metadata keys are refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","metadata":` + metadataJSON(21, 1, 1) + `}`, []string{`"metadata" must have at most 20 entries`}},
		{"a metadata key over 40 characters is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","metadata":` + metadataJSON(1, 41, 1) + `}`, []string{"metadata keys must be 1 to 40 characters"}},
		{"a metadata value over 500 characters is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","metadata":` + metadataJSON(1, 1, 501) + `}`, []string{"metadata values must be at most 500 characters"}},
		{"an email's fault is named", agent, `{"customerEmail":"a..b@example.com","amount":10,"currency":"USD"}`, []string{`"customerEmail" must be an email address such as alice@example.com: the part before the @ has a leading, trailing or doubled dot`}},
		{"an email at an IP address is named so", agent, `{"customerEmail":"alice@[93.184.216.34]","amount":10,"currency":"USD"}`, []string{`literal IP address`}},
		{"an empty line item name is said to be empty", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"","unitAmount":1}]}`, []string{`"priceDataList[0].name" is required, and must not be empty`}},
		{"a line item without a name is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"unitAmount":1}]}`, []string{`"priceDataList[0].name" is required`}},
		{"a line item with quantity 0 is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"x","unitAmount":1,"quantity":0}]}`, []string{`"priceDataList[0].quantity" must be at least 1`}},
		{"a line item too precise for its currency is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"x","unitAmount":1.5,"currency":"JPY"}]}`, []string{`"priceDataList[0].unitAmount"`}},
		// Policy.
		{"a currency not on the allowlist is refused by policy", checkout, `{"amount":10,"currency":"GBP","customerEmail":"alice@example.com"}`, []string{"refused by policy (currency_not_allowed)"}},
		{"an amount over the cap is refused naming the cap", checkout, `{"amount":900,"currency":"USD","customerEmail":"alice@example.com"}`, []string{"refused by policy (amount_over_cap)", "500.00 USD"}},
		{"the agent tool's narrower cap applies to it", agent, `{"customerEmail":"alice@example.com","amount":60,"currency":"USD"}`, []string{"refused by policy (amount_over_cap)", "50.00 USD"}},
		{"line items over the cap are refused whatever the total says", checkout, `{"amount":1,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"x","unitAmount":100,"quantity":6}]}`, []string{"refused by policy (amount_over_cap)"}},
		{"a line item in a currency not on the allowlist is refused", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"x","unitAmount":1,"currency":"GBP"}]}`, []string{"refused by policy"}},
		{"an amount under the minimum is refused", checkout, `{"amount":0.5,"currency":"USD","customerEmail":"alice@example.com"}`, []string{"refused by policy (amount_under_min)"}},
		{"an email off the allowlist is refused", agent, `{"customerEmail":"mallory@evil.example","amount":10,"currency":"USD"}`, []string{"refused by policy (email_not_allowed)"}},
		{"a look-alike domain is refused", agent, `{"customerEmail":"bob@example.org.evil.com","amount":10,"currency":"USD"}`, []string{"refused by policy (email_not_allowed)"}},
		{"a denied email is refused even though its domain is allowed", agent, `{"customerEmail":"ceo@example.org","amount":10,"currency":"USD"}`, []string{"refused by policy (email_not_allowed)"}},
		{"a customer ID beside an allowlisted email is refused, since Clink would charge that customer", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":"cus_victim"}`, []string{"refused by policy (customer_id_not_allowed)"}},
		{"a dashboard price is refused where the policy does not allow one", checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceId":"price_1"}`, []string{"refused by policy (dashboard_price_not_allowed)"}},
		{"a checkout without an email is refused when the policy needs one", checkout, `{"amount":10,"currency":"USD","customerId":"cus_1"}`, []string{"refused by policy (email_required)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			res := h.call(t, tt.tool, tt.args)
			got := ResultText(res)
			if !res.IsError {
				t.Fatalf("call succeeded: %s", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("result %q does not contain %q", got, w)
				}
			}
			if !strings.Contains(got, "Nothing was created") {
				t.Errorf("result %q does not say nothing was created", got)
			}
			if n := h.pay.calls(); n != 0 {
				t.Errorf("Clink was called %d times for a refused call", n)
			}
		})
	}
}

func metadataJSON(n, keyLen, valueLen int) string {
	m := map[string]string{}
	for i := range n {
		key := fmt.Sprintf("%0*d", keyLen, i)
		m[key] = strings.Repeat("v", valueLen)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestDisabledToolIsRefusedByPolicy(t *testing.T) {
	p, err := policy.Parse("off.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 100 }\ntools:\n  create_agent_payment_session: { enabled: false }\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, p)
	res := h.call(t, agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`)
	if !res.IsError || !strings.Contains(ResultText(res), "tool_disabled") {
		t.Fatalf("result = %q, want a tool_disabled refusal", ResultText(res))
	}
	if h.pay.calls() != 0 {
		t.Fatal("a disabled tool reached Clink")
	}
}

func TestAgentPaymentSessionSendsWhatThePolicyAllowed(t *testing.T) {
	h := newHarness(t, testPolicy(t))
	res := h.call(t, agent, `{"customerEmail":"  Bob@Sub.EXAMPLE.net ","amount":19.9,"currency":"USD"}`)
	if res.IsError {
		t.Fatalf("call failed: %s", ResultText(res))
	}
	if len(h.pay.agent) != 1 {
		t.Fatalf("Clink called %d times, want 1", len(h.pay.agent))
	}
	sent := h.pay.agent[0]
	if sent.CustomerEmail != "bob@sub.example.net" || sent.Amount.String() != "19.90" || sent.Currency != "USD" {
		t.Errorf("sent %+v (amount %s), want the normalised email and 19.90 USD", sent, sent.Amount)
	}
	want := map[string]any{
		"sessionId": "aps_1", "expireTime": "2026-11-21T10:00:00Z", "amount": json.Number("19.90"),
		"currency": "USD", "customerEmail": "bob@sub.example.net",
	}
	if diff := cmp.Diff(want, structured(t, res)); diff != "" {
		t.Errorf("structured content (-want +got):\n%s", diff)
	}
	if got := ResultText(res); !strings.Contains(got, "aps_1") || !strings.Contains(got, "19.90 USD") {
		t.Errorf("summary %q lacks the session or the amount", got)
	}
}

func TestCheckoutSessionSendsEveryField(t *testing.T) {
	// Customer IDs beside emails need a policy that accepts calls by
	// identifier.
	p, err := policy.Parse("open.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 500 }\n  JPY: { max_amount: 50000 }\ncustomers:\n  allow_emails: [alice@example.com]\n  allow_without_email: true\ntools:\n  create_checkout_session: { allow_dashboard_prices: true }\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, p)
	res := h.call(t, checkout, `{
		"amount": 120, "currency": "USD",
		"customerEmail": "alice@example.com", "customerId": "cus_1", "referenceCustomerId": "ref-1",
		"merchantReferenceId": "order-42", "priceId": "price_1", "productId": "prod_1",
		"uiMode": "elements", "returnUrl": "https://shop.example.com/done?session_id={ELEMENTS_SESSION_ID}",
		"successUrl": "https://shop.example.com/ok", "cancelUrl": "http://shop.example.com/cancel",
		"paymentMethodType": "CASHAPP", "paymentMethodTypeBlackList": ["WECHAT", "ALIPAY"],
		"directPaymentQrCodePaymentMethodType": "CASHAPP",
		"priceDataList": [{"name": "Plan", "unitAmount": 50, "quantity": 2, "imageUrl": "https://shop.example.com/p.png"},
		                  {"name": "Fee", "unitAmount": 2000, "currency": "JPY"}],
		"allowPromotionCodes": true, "promotionCode": "SPRING", "showPromotionCode": false,
		"metadata": {"order": "42"}
	}`)
	if res.IsError {
		t.Fatalf("call failed: %s", ResultText(res))
	}
	if len(h.pay.checkout) != 1 {
		t.Fatalf("Clink called %d times, want 1", len(h.pay.checkout))
	}
	yes, no := true, false
	got := h.pay.checkout[0]
	body, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := clink.CheckoutSessionRequest{
		OriginalAmount: mustAmount(t, "120.00"), OriginalCurrency: "USD",
		CustomerID: "cus_1", CustomerEmail: "alice@example.com", ReferenceCustomerID: "ref-1",
		MerchantReferenceID: "order-42", PriceID: "price_1", ProductID: "prod_1",
		UIMode: "elements", ReturnURL: "https://shop.example.com/done?session_id={ELEMENTS_SESSION_ID}",
		SuccessURL: "https://shop.example.com/ok", CancelURL: "http://shop.example.com/cancel",
		PaymentMethodType: "CASHAPP", PaymentMethodTypeBlackList: []string{"WECHAT", "ALIPAY"},
		DirectPaymentQrCodePaymentMethodType: "CASHAPP",
		PriceDataList: []clink.PriceData{
			{Name: "Plan", UnitAmount: mustAmount(t, "50.00"), Quantity: 2, Currency: "USD", ImageURL: "https://shop.example.com/p.png"},
			{Name: "Fee", UnitAmount: mustAmount(t, "2000"), Quantity: 1, Currency: "JPY"},
		},
		AllowPromotionCodes: &yes, PromotionCode: "SPRING", ShowPromotionCode: &no,
		Metadata: map[string]string{"order": "42"},
	}
	wantBody, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, wantBody) {
		t.Errorf("request to Clink\n got %s\nwant %s", body, wantBody)
	}
	if s := structured(t, res); s["url"] != "https://checkout.example/pay/sess_1" || s["amount"] != json.Number("120.00") {
		t.Errorf("structured content = %v", s)
	}
}

func mustAmount(t testing.TB, s string) clink.Amount {
	t.Helper()
	a, err := clink.ParseAmount(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// structured returns a result's structured content as the client would see
// it, numbers kept as written.
func structured(t testing.TB, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClinkFailuresBecomeResultsTheModelCanActOn(t *testing.T) {
	const apiKey = "sk_test_SECRET_KEY_123"
	tests := []struct {
		name     string
		err      error
		want     string
		decision policy.Code
	}{
		{"a business error names Clink's code and explains it",
			&clink.Error{HTTPStatus: 200, Code: 400, Message: "CUSTOMER_NOT_FOUND"}, "Clink refused the request (code 400 CUSTOMER_NOT_FOUND)", policy.CodeUpstreamRefused},
		{"an authentication failure is reported for the operator",
			&clink.Error{HTTPStatus: 401}, "Clink refused the request (HTTP 401)", policy.CodeUpstreamAuth},
		{"an unknown outcome warns against a blind retry",
			fmt.Errorf("%w: read tcp: connection reset", clink.ErrOutcomeUnknown), "outcome unknown: the session may have been created; do not retry blindly", policy.CodeOutcomeUnknown},
		{"an unexpected error is an internal error with no detail",
			errors.New("dial with key " + apiKey), "internal error", policy.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			h.pay.err = tt.err
			res := h.call(t, agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`)
			got := ResultText(res)
			if !res.IsError || !strings.Contains(got, tt.want) {
				t.Fatalf("result %q (isError %v), want an error containing %q", got, res.IsError, tt.want)
			}
			if strings.Contains(got, apiKey) {
				t.Errorf("result leaks the API key: %q", got)
			}
			if !strings.Contains(h.logs.String(), `"decision":"`+string(tt.decision)+`"`) {
				t.Errorf("log %s lacks decision %s", h.logs, tt.decision)
			}
		})
	}
}

func TestEveryCallLogsOneLineWithAMaskedEmail(t *testing.T) {
	h := newHarness(t, testPolicy(t))
	h.call(t, agent, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`)
	h.call(t, agent, `{"customerEmail":"alice@example.com","amount":100,"currency":"USD"}`)
	h.call(t, agent, `{"customerEmail":"alice@example.com"}`)
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "tool call" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("got %d tool call lines, want 3:\n%s", len(lines), h.logs)
	}
	wantDecisions := []policy.Code{policy.CodeCreated, policy.CodeAmountOverCap, policy.CodeInvalidArguments}
	for i, l := range lines {
		if l["decision"] != string(wantDecisions[i]) || l["tool"] != agent || l["duration"] == nil {
			t.Errorf("line %d = %v, want decision %s", i, l, wantDecisions[i])
		}
	}
	if lines[0]["session_id"] != "aps_1" {
		t.Errorf("the created call's line lacks its session: %v", lines[0])
	}
	if strings.Contains(h.logs.String(), "alice@example.com") {
		t.Errorf("logs contain the raw email:\n%s", h.logs)
	}
	if lines[0]["email"] != policy.MaskEmail("alice@example.com") {
		t.Errorf("email = %v, want the masked address", lines[0]["email"])
	}
}

// nopPayments answers every create at once, keeping nothing: for
// benchmarks of the server's own cost.
type nopPayments struct{ noLookups }

// noLookups gives a test's Payments the status lookups, which it does not
// use: each fails.
type noLookups struct{}

func (noLookups) GetAgentPaymentSession(context.Context, string) (*clink.AgentPaymentSessionInfo, error) {
	return nil, errors.New("no lookups here")
}

func (noLookups) GetCheckoutSession(context.Context, string) (*clink.CheckoutSessionInfo, error) {
	return nil, errors.New("no lookups here")
}

func (nopPayments) CreateAgentPaymentSession(context.Context, *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error) {
	return &clink.AgentPaymentSession{SessionID: "aps_1", ExpireTime: clink.Time{Time: time.Unix(1_800_000_000, 0)}}, nil
}

func (nopPayments) CreateCheckoutSession(context.Context, *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	return &clink.CheckoutSession{SessionID: "sess_1", URL: "https://checkout.example/pay/sess_1", ExpireTime: clink.Time{Time: time.Unix(1_800_000_000, 0)}}, nil
}

func TestMetadataIsRefusedBeforeClink(t *testing.T) {
	tests := []struct {
		name     string
		metadata map[string]string
		want     string
	}{
		{"a NUL in a key is refused", map[string]string{"order\x00id": "42"}, `argument "metadata": key "order\x00id" contains a control character (U+0000)`},
		{"an escape sequence in a key is refused", map[string]string{"\x1b[2Jorder": "42"}, `key "\x1b[2Jorder" contains a control character (U+001B)`},
		{"a DEL in a key is refused", map[string]string{"order\x7f": "42"}, `contains a control character (U+007F)`},
		{"a C1 control in a key is refused", map[string]string{"order\u009b": "42"}, `contains a control character (U+009B)`},
		{"a newline in a value is refused", map[string]string{"note": "line one\nline two"}, `argument "metadata": the value of key "note" contains a control character (U+000A)`},
		{"an escape sequence in a value is refused", map[string]string{"note": "\x1b[31mred"}, `the value of key "note" contains a control character (U+001B)`},
		{"a NUL in a value is refused", map[string]string{"note": "a\x00b"}, `contains a control character (U+0000)`},
		{"a right-to-left override in a value is refused", map[string]string{"note": "abc\u202edef"}, `contains a control character (U+202E)`},
		{"a line separator in a value is refused", map[string]string{"note": "a\u2028b"}, `contains a control character (U+2028)`},
		{"a key named like the amount is refused", map[string]string{"amount": "0.01"}, `argument "metadata": key "amount" would shadow the checkout's own field "amount"; choose another key`},
		{"a key differing from a field only in case is refused", map[string]string{"AMOUNT": "0.01"}, `key "AMOUNT" would shadow the checkout's own field "amount"`},
		{"a key naming Clink's wire field is refused", map[string]string{"originalAmount": "0.01"}, `would shadow the checkout's own field "originalAmount"`},
		{"a snake-case spelling of a field is refused", map[string]string{"original_currency": "EUR"}, `would shadow the checkout's own field "originalCurrency"`},
		{"a kebab-case spelling of a field is refused", map[string]string{"Customer-Email": "ceo@example.org"}, `would shadow the checkout's own field "customerEmail"`},
		{"a full-width spelling of a field is refused", map[string]string{"ａｍｏｕｎｔ": "1"}, `would shadow the checkout's own field "amount"`},
		{"a key naming the customer ID is refused", map[string]string{"customerId": "cus_victim"}, `would shadow the checkout's own field "customerId"`},
		{"a key naming the reference customer ID is refused", map[string]string{"referenceCustomerId": "x"}, `"referenceCustomerId"`},
		{"a key naming the merchant reference is refused", map[string]string{"merchantReferenceId": "x"}, `"merchantReferenceId"`},
		{"a key naming a dashboard price is refused", map[string]string{"priceId": "price_1"}, `"priceId"`},
		{"a key naming a product is refused", map[string]string{"productId": "prod_1"}, `"productId"`},
		{"a key naming a redirect URL is refused", map[string]string{"successUrl": "https://evil.example/"}, `"successUrl"`},
		{"a key naming the currency is refused", map[string]string{"currency": "EUR"}, `"currency"`},
		{"a key naming the line items is refused", map[string]string{"priceDataList": "[]"}, `"priceDataList"`},
		{"a key naming the session's token is refused", map[string]string{"tokenValue": "tok"}, `"tokenValue"`},
		{"a key naming the session ID is refused", map[string]string{"session_id": "sess_1"}, `"sessionId"`},
		{"a key over 40 characters with a control character is quoted safely and cut short", map[string]string{strings.Repeat("k", 45) + "\x1b": "v"}, `key "` + strings.Repeat("k", 40) + `"… is too long; metadata keys must be 1 to 40 characters long`},
		{"an empty key is refused", map[string]string{"": "v"}, `argument "metadata": an empty key; metadata keys must be 1 to 40 characters long`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			metadata, err := json.Marshal(tt.metadata)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, testPolicy(t))
			res := h.call(t, checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","metadata":`+string(metadata)+`}`)
			got := ResultText(res)
			if !res.IsError {
				t.Fatalf("call succeeded: %s", got)
			}
			for _, w := range []string{"invalid arguments: ", tt.want, "Nothing was created"} {
				if !strings.Contains(got, w) {
					t.Errorf("result %q does not contain %q", got, w)
				}
			}
			if hasHiddenCharacters(got) {
				t.Errorf("result %q echoes a control or invisible character", got)
			}
			if n := h.pay.calls(); n != 0 {
				t.Errorf("Clink was called %d times for a refused call", n)
			}
		})
	}
}

func TestOrdinaryMetadataReachesClinkUnchanged(t *testing.T) {
	h := newHarness(t, testPolicy(t))
	want := map[string]string{"orderId": "42", "name": "Alice", "order_amount_note": "café ☕, two lines joined", "日本語": "ok"}
	metadata, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	res := h.call(t, checkout, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","metadata":`+string(metadata)+`}`)
	if res.IsError {
		t.Fatalf("call failed: %s", ResultText(res))
	}
	if len(h.pay.checkout) != 1 {
		t.Fatalf("Clink called %d times, want 1", len(h.pay.checkout))
	}
	if diff := cmp.Diff(want, h.pay.checkout[0].Metadata); diff != "" {
		t.Errorf("metadata sent (-want +got):\n%s", diff)
	}
}

func TestCheckoutSummaryCarriesLineItemTotals(t *testing.T) {
	tests := []struct {
		name, args, want string
	}{
		{"line items in another currency are shown beside the amount",
			`{"amount":1,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Plan","unitAmount":200,"quantity":2,"currency":"EUR"}]}`,
			"Created checkout session sess_1 for 1.00 USD (line items: 400.00 EUR); the customer pays at"},
		{"line items are totalled per currency, in code order",
			`{"amount":120,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Plan","unitAmount":50,"quantity":2},{"name":"Fee","unitAmount":2000,"currency":"JPY"},{"name":"Extra","unitAmount":0.5,"quantity":3}]}`,
			"for 120.00 USD (line items: 2000 JPY, 101.50 USD);"},
		{"a session without line items shows its amount alone",
			`{"amount":12.5,"currency":"USD","customerEmail":"alice@example.com"}`,
			"Created checkout session sess_1 for 12.50 USD; the customer pays at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			res := h.call(t, checkout, tt.args)
			if got := ResultText(res); res.IsError || !strings.Contains(got, tt.want) {
				t.Fatalf("summary %q (isError %v), want it to contain %q", got, res.IsError, tt.want)
			}
			again := h.call(t, checkout, tt.args)
			if got := ResultText(again); !strings.Contains(got, tt.want) {
				t.Errorf("the replay's summary %q lacks %q", got, tt.want)
			}
		})
	}
}

// A created checkout whose answer gives another amount or currency than the
// one requested (and counted against the limits) says so to the agent and
// warns the operator; the same amount in other digits is no difference.
func TestACheckoutCreatedForAnotherAmountSaysSo(t *testing.T) {
	tests := []struct {
		name, amount, currency string
		differs                bool
	}{
		{"the same amount", "12.50", "USD", false},
		{"the same amount in other digits", "12.5", "USD", false},
		{"no currency, the same amount", "12.50", "", false},
		{"another amount", "125.00", "USD", true},
		{"another currency", "12.50", "EUR", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testPolicy(t))
			h.pay.echo = &struct{ amount, currency string }{tt.amount, tt.currency}
			res := h.call(t, checkout, `{"amount":12.5,"currency":"USD","customerEmail":"alice@example.com"}`)
			got := ResultText(res)
			if res.IsError || !strings.Contains(got, "Created checkout session sess_1") {
				t.Fatalf("result %q, want created", got)
			}
			said := strings.Contains(got, "not the 12.50 USD requested")
			warned := strings.Contains(h.logs.String(), "another amount than the one requested")
			if said != tt.differs || warned != tt.differs {
				t.Errorf("Clink's answer %s %s: said %v, warned %v, want %v (result %q)", tt.currency, tt.amount, said, warned, tt.differs, got)
			}
		})
	}
}
