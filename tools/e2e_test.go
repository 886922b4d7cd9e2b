package tools_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// e2e is a real MCP client talking in-process to the server, which talks
// over loopback to the sandbox.
type e2e struct {
	sb  *sandbox.Server
	cli *client.Client
}

func newE2E(t testing.TB, opts ...sandbox.Option) *e2e {
	t.Helper()
	sb := sandbox.New(opts...)
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	c, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithEnvironment(clink.Sandbox), clink.WithBaseURL(srv.URL+"/"), clink.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := state.NewMemory()
	t.Cleanup(func() { st.Close() })
	g := gate.New(gate.Config{Policy: p, Store: st, Secret: []byte("e2e state secret, at least 32 bytes long")})
	t.Cleanup(func() { g.Close(context.Background()) })
	cli, err := client.NewInProcessClient(tools.NewServer(tools.Deps{Payments: c, Policy: p, Gate: g}, "test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	if err := cli.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1"}
	res, err := cli.Initialize(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Instructions, "limits") {
		t.Fatalf("server instructions do not mention limits: %q", res.Instructions)
	}
	return &e2e{sb: sb, cli: cli}
}

func (e *e2e) call(t testing.TB, tool, args string) *mcp.CallToolResult {
	t.Helper()
	res, err := e.cli.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)}})
	if err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	return res
}

func TestEndToEndListsEveryToolWithSchemas(t *testing.T) {
	e := newE2E(t)
	list, err := e.cli.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
		if len(tl.InputSchema.Properties) == 0 || tl.OutputSchema.Type != "object" {
			t.Errorf("%s: input or output schema missing in tools/list", tl.Name)
		}
		if tl.InputSchema.AdditionalProperties != false {
			t.Errorf("%s: additionalProperties = %v, want false", tl.Name, tl.InputSchema.AdditionalProperties)
		}
	}
	want := []string{tools.ToolCheckPaymentPolicy, policy.ToolAgentPaymentSession, policy.ToolCheckoutSession,
		tools.ToolGetAgentPaymentSession, tools.ToolGetCheckoutSession}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("tools = %v", names)
	}
}

func TestEndToEndCreatesSessionsOnTheSandbox(t *testing.T) {
	e := newE2E(t)
	res := e.call(t, policy.ToolAgentPaymentSession, `{"customerEmail":"alice@example.com","amount":12.5,"currency":"USD"}`)
	if res.IsError {
		t.Fatalf("agent session: %s", tools.ResultText(res))
	}
	var agent struct {
		SessionID, ExpireTime, Currency, CustomerEmail string
		Amount                                         json.Number
	}
	decodeStructured(t, res, &agent)
	if agent.SessionID == "" || agent.ExpireTime == "" || !sameNumber(agent.Amount, 12.5) || agent.Currency != "USD" || agent.CustomerEmail != "alice@example.com" {
		t.Errorf("agent session result = %+v", agent)
	}

	res = e.call(t, policy.ToolCheckoutSession, `{"amount":30,"currency":"EUR","customerEmail":"bob@example.org","priceDataList":[{"name":"A","unitAmount":15,"quantity":2}]}`)
	if res.IsError {
		t.Fatalf("checkout session: %s", tools.ResultText(res))
	}
	var co struct {
		SessionID, URL, ExpireTime, Currency string
		Amount                               json.Number
	}
	decodeStructured(t, res, &co)
	if !strings.HasSuffix(co.URL, co.SessionID) || !sameNumber(co.Amount, 30) || co.Currency != "EUR" {
		t.Errorf("checkout result = %+v", co)
	}
	if got := e.sb.Requests(); got != 2 {
		t.Errorf("sandbox saw %d requests, want 2", got)
	}
}

// sameNumber compares an amount as the client decoded it; the in-process
// transport hands structured content over as Go values, so the digits
// ("12.50" on the wire) may come back as 12.5.
func sameNumber(n json.Number, want float64) bool {
	f, err := n.Float64()
	return err == nil && f == want
}

func decodeStructured(t testing.TB, res *mcp.CallToolResult, v any) {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
}

func TestEndToEndRefusalsMakeZeroUpstreamRequests(t *testing.T) {
	e := newE2E(t)
	refusals := []struct{ name, tool, args, want string }{
		{"validation", policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","uiMode":"elements"}`, `"returnUrl" is required`},
		{"strict decoding", policy.ToolAgentPaymentSession, `{"customerEmail":"alice@example.com","amount":10,"Amount":10,"currency":"USD"}`, `did you mean "amount"`},
		{"currency policy", policy.ToolCheckoutSession, `{"amount":10,"currency":"GBP","customerEmail":"alice@example.com"}`, "currency_not_allowed"},
		{"cap policy", policy.ToolCheckoutSession, `{"amount":900,"currency":"USD","customerEmail":"alice@example.com"}`, "amount_over_cap"},
		{"minimum policy", policy.ToolCheckoutSession, `{"amount":0.99,"currency":"USD","customerEmail":"alice@example.com"}`, "amount_under_min"},
		{"email policy", policy.ToolAgentPaymentSession, `{"customerEmail":"eve@example.com.evil.com","amount":10,"currency":"USD"}`, "email_not_allowed"},
		{"email required policy", policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","referenceCustomerId":"r1"}`, "email_required"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			res := e.call(t, r.tool, r.args)
			if !res.IsError || !strings.Contains(tools.ResultText(res), r.want) {
				t.Fatalf("result %q, want a refusal containing %q", tools.ResultText(res), r.want)
			}
		})
	}
	if got := e.sb.Requests(); got != 0 {
		t.Errorf("refused calls made %d upstream requests, want 0", got)
	}
}

func TestEndToEndMapsClinkFailures(t *testing.T) {
	e := newE2E(t)
	t.Run("a business error carries Clink's code and an explanation", func(t *testing.T) {
		e.sb.SetFault(sandbox.Fault{Code: 90101206, Msg: "amount or currency incorrect", Count: 1})
		res := e.call(t, policy.ToolAgentPaymentSession, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`)
		if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "code 90101206") || !strings.Contains(got, "Nothing was created") {
			t.Fatalf("result = %q", got)
		}
	})
	t.Run("a server error on a create is an unknown outcome", func(t *testing.T) {
		e.sb.SetFault(sandbox.Fault{Status: 502, Count: 1})
		res := e.call(t, policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com"}`)
		if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "outcome unknown") || !strings.Contains(got, "do not retry blindly") {
			t.Fatalf("result = %q", got)
		}
	})
	t.Run("a connection closed after the request is an unknown outcome", func(t *testing.T) {
		e.sb.SetFault(sandbox.Fault{CloseConn: true, Count: 1})
		res := e.call(t, policy.ToolAgentPaymentSession, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`)
		if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "outcome unknown") {
			t.Fatalf("result = %q", got)
		}
	})
	t.Run("the sandbox's own customer rule comes back as a refusal", func(t *testing.T) {
		e.sb.AddCustomer(sandbox.Customer{ID: "cus_a", Email: "alice@example.com"})
		e.sb.AddCustomer(sandbox.Customer{ID: "cus_b", Email: "bob@example.org", ReferenceID: "ref-b"})
		res := e.call(t, policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","referenceCustomerId":"ref-b"}`)
		if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "CUSTOMER_IDENTIFIER_NOT_MATCHED") {
			t.Fatalf("result = %q", got)
		}
	})
}

// TestEndToEndAServerFaultCodeOnHTTP200IsAnUnknownOutcome: HTTP 200 with
// envelope code 500 may have created the session: it is kept as unknown
// and an identical call replays it, sending nothing.
func TestEndToEndAServerFaultCodeOnHTTP200IsAnUnknownOutcome(t *testing.T) {
	e := newE2E(t)
	const args = `{"amount":10,"currency":"USD","customerEmail":"alice@example.com"}`
	e.sb.SetFault(sandbox.Fault{Code: 500, Msg: "SYSTEM_ERROR", Count: 1})
	res := e.call(t, policy.ToolCheckoutSession, args)
	got := tools.ResultText(res)
	if !res.IsError || !strings.Contains(got, "outcome unknown") || strings.Contains(got, "Nothing was created") {
		t.Fatalf("result = %q, want an unknown outcome, not a refusal", got)
	}
	before := e.sb.Requests()
	res = e.call(t, policy.ToolCheckoutSession, args)
	if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "Replay") || !strings.Contains(got, "outcome unknown") {
		t.Fatalf("repeated call = %q, want a replay of the unknown outcome", got)
	}
	if n := e.sb.Requests() - before; n != 0 {
		t.Errorf("the repeated call made %d upstream requests, want 0", n)
	}
}

// TestEndToEndADocumentedRefusalOnHTTP200IsReleased: a documented business
// refusal created nothing: the claim is dropped and a retry may create.
func TestEndToEndADocumentedRefusalOnHTTP200IsReleased(t *testing.T) {
	e := newE2E(t)
	const args = `{"amount":10,"currency":"USD","customerEmail":"alice@example.com"}`
	e.sb.SetFault(sandbox.Fault{Code: 400, Msg: "CUSTOMER_NOT_FOUND", Count: 1})
	res := e.call(t, policy.ToolCheckoutSession, args)
	if got := tools.ResultText(res); !res.IsError || !strings.Contains(got, "code 400 CUSTOMER_NOT_FOUND") || !strings.Contains(got, "Nothing was created") {
		t.Fatalf("result = %q, want a definite refusal", got)
	}
	before := e.sb.Requests()
	if res := e.call(t, policy.ToolCheckoutSession, args); res.IsError {
		t.Fatalf("repeated call = %q, want a created session", tools.ResultText(res))
	}
	if n := e.sb.Requests() - before; n != 1 {
		t.Errorf("the repeated call made %d upstream requests, want 1", n)
	}
}

// TestEndToEndClinkTextReachesTheAgentMasked: an email or a token echoed
// in Clink's message is masked before the agent reads it.
func TestEndToEndClinkTextReachesTheAgentMasked(t *testing.T) {
	e := newE2E(t)
	e.sb.SetFault(sandbox.Fault{Code: 400, Msg: "customer alice@example.com has session tok_PLANTED_41b2", Count: 1})
	res := e.call(t, policy.ToolCheckoutSession, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com"}`)
	if got := tools.ResultText(res); !res.IsError || strings.Contains(got, "alice@") || strings.Contains(got, "PLANTED") {
		t.Fatalf("result = %q, want Clink's text masked", got)
	}
}
