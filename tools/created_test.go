package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
)

// unreadPayments is Clink confirming creates (code 200, a sessionId) whose
// other fields did not read: the clink client then succeeds with them zero
// and names them in Unread.
type unreadPayments struct{ fakePayments }

func (*unreadPayments) CreateCheckoutSession(context.Context, *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	return &clink.CheckoutSession{SessionID: "sess_1", Unread: []string{"url", "expireTime"}}, nil
}

func (*unreadPayments) CreateAgentPaymentSession(context.Context, *clink.AgentPaymentSessionRequest) (*clink.AgentPaymentSession, error) {
	return &clink.AgentPaymentSession{SessionID: "aps_1", Unread: []string{"expireTime"}}, nil
}

// A session Clink created is a success whatever else its answer lacks: the
// result fits the tool's output schema (a client that validates results
// would otherwise report an error, and the agent create it again), and the
// summary says the session exists and how to follow it.
func TestACreatedSessionWithUnreadFieldsIsASuccessThatFitsItsSchema(t *testing.T) {
	st := state.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	tools := map[string]Tool{}
	for _, tl := range All(wire(t, &unreadPayments{}, testPolicy(t), st, nil, nil)) {
		tools[tl.Tool.Name] = tl
	}
	for _, tc := range []struct {
		tool, args, schema, follow string
		absent                     []string
	}{
		{"create_checkout_session", `{"customerEmail":"bob@example.org","amount":20,"currency":"USD"}`,
			checkoutSessionOutputSchema, ToolGetCheckoutSession, []string{"url", "expireTime"}},
		{"create_agent_payment_session", `{"customerEmail":"alice@example.com","amount":20,"currency":"USD"}`,
			agentPaymentSessionOutputSchema, ToolGetAgentPaymentSession, []string{"expireTime"}},
	} {
		res, err := tools[tc.tool].Handler(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{
			Name: tc.tool, RawArguments: json.RawMessage(tc.args)}})
		if err != nil || res.IsError {
			t.Fatalf("%s: %v, %s", tc.tool, err, ResultText(res))
		}
		out, err := json.Marshal(res.StructuredContent)
		if err != nil {
			t.Fatal(err)
		}
		if err := compileSchema(t, decodeJSON(t, json.RawMessage(tc.schema))).Validate(decodeJSON(t, out)); err != nil {
			t.Errorf("%s: the result %s does not fit the output schema: %v", tc.tool, out, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatal(err)
		}
		for _, f := range tc.absent {
			if _, ok := fields[f]; ok {
				t.Errorf("%s: %s is in the result %s, want it left out", tc.tool, f, out)
			}
		}
		text := ResultText(res)
		if !strings.Contains(text, "The session was created") || !strings.Contains(text, "do not create it again") ||
			!strings.Contains(text, tc.follow) || strings.Contains(text, "pays at  ") || strings.Contains(text, "expires )") {
			t.Errorf("%s: summary %q; want it to say the session exists and to follow it with %s", tc.tool, text, tc.follow)
		}
	}
}

// oddURLPayments is Clink confirming a checkout whose page URL is no
// absolute http(s) URI.
type oddURLPayments struct {
	fakePayments
	url string
}

func (p *oddURLPayments) CreateCheckoutSession(context.Context, *clink.CheckoutSessionRequest) (*clink.CheckoutSession, error) {
	return &clink.CheckoutSession{SessionID: "sess_1", URL: p.url,
		ExpireTime: clink.Time{Time: time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)}}, nil
}

// A checkout URL that is not what the output schema promises (an absolute
// http(s) URI) is left out as unread, so that the result still fits the
// schema; one that is passes through.
func TestACheckoutURLThatIsNoURIIsLeftOutAsUnread(t *testing.T) {
	for _, tc := range []struct {
		url  string
		kept bool
	}{
		{"https://checkout.clinkbill.com/pay/sess_1?lang=en#top", true},
		{"HTTPS://checkout.clinkbill.com/pay/sess_1%20x", true},
		{"https://checkout.clinkbill.com/pay/sess_1?lang={en}|x", false},
		{"/pay/sess_1", false},
		{"javascript:alert(1)", false},
		{"https:///pay/sess_1", false},
		{"https://checkout.clinkbill.com/pay/sess 1", false},
		{"https://checkout.clinkbill.com/pay/%zz", false},
	} {
		st := state.NewMemory()
		t.Cleanup(func() { _ = st.Close() })
		var create Tool
		for _, tl := range All(wire(t, &oddURLPayments{url: tc.url}, testPolicy(t), st, nil, nil)) {
			if tl.Tool.Name == "create_checkout_session" {
				create = tl
			}
		}
		res, err := create.Handler(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{
			Name: "create_checkout_session", RawArguments: json.RawMessage(`{"customerEmail":"bob@example.org","amount":20,"currency":"USD"}`)}})
		if err != nil || res.IsError {
			t.Fatalf("%s: %v, %s", tc.url, err, ResultText(res))
		}
		out, _ := json.Marshal(res.StructuredContent)
		if err := compileSchema(t, decodeJSON(t, json.RawMessage(checkoutSessionOutputSchema))).Validate(decodeJSON(t, out)); err != nil {
			t.Errorf("%s: the result %s does not fit the output schema: %v", tc.url, out, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatal(err)
		}
		text := ResultText(res)
		if got := fields["url"]; tc.kept && got != tc.url || !tc.kept && (got != nil || !strings.Contains(text, "did not give its checkout URL")) {
			t.Errorf("%s: url %v, summary %q; want it kept: %t", tc.url, got, text, tc.kept)
		}
	}
}
