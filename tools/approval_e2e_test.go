package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// approvalPolicy asks a person's approval above 100 USD.
const approvalPolicy = `version: 1
currencies:
  USD: { max_amount: 500, approve_above: 100 }
budgets:
  - { currency: USD, max_amount: 1000, window: 24h }
customers:
  allow_emails: ["*@example.com"]
approvals: { timeout: 15m }
`

// user answers the server's questions as told, and keeps them.
type user struct {
	mu       sync.Mutex
	action   mcp.ElicitationResponseAction
	approve  bool
	messages []string
}

func (u *user) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.messages = append(u.messages, req.Params.Message)
	res := &mcp.ElicitationResult{}
	res.Action = u.action
	if u.action == mcp.ElicitationResponseActionAccept {
		res.Content = map[string]any{"approve": u.approve}
	}
	return res, nil
}

// approvalSetup is the server under approvalPolicy on the sandbox, with
// its store, and a client of protocol version whose user is u (nil: a
// client that cannot ask).
type approvalSetup struct {
	sb     *sandbox.Server
	store  *state.Memory
	server *server.MCPServer
	cli    *client.Client
}

func newApprovalSetup(t *testing.T, version string, u *user) *approvalSetup {
	t.Helper()
	var h client.ElicitationHandler
	if u != nil {
		h = u
	}
	return newApprovalSetupAt(t, version, h, nil)
}

// newApprovalSetupAt is newApprovalSetup with the user's elicitation
// handler h (nil: a client that cannot ask) and the gate's clock (nil: the
// real one).
func newApprovalSetupAt(t *testing.T, version string, h client.ElicitationHandler, clock func() time.Time) *approvalSetup {
	t.Helper()
	sb := sandbox.New()
	hs := httptest.NewServer(sb)
	t.Cleanup(hs.Close)
	c, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithEnvironment(clink.Sandbox), clink.WithBaseURL(hs.URL+"/"), clink.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("approvals.yaml", []byte(approvalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	st := state.NewMemory()
	t.Cleanup(func() { st.Close() })
	g := gate.New(gate.Config{Policy: p, Store: st, Secret: []byte("approval e2e state secret, 32 bytes or more"), Clock: clock})
	t.Cleanup(func() { g.Close(context.Background()) })
	opts := []client.ClientOption{client.WithProtocolVersion(version)}
	if h != nil {
		opts = append(opts, client.WithElicitationHandler(h))
	}
	srv := tools.NewServer(tools.Deps{Payments: c, Policy: p, Gate: g}, "test")
	cli, err := client.NewInProcessClientWithOptions(srv, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx := context.Background()
	if err := cli.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = version
	init.Params.ClientInfo = mcp.Implementation{Name: "approval-e2e", Version: "1"}
	if _, err := cli.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	return &approvalSetup{sb: sb, store: st, server: srv, cli: cli}
}

func (s *approvalSetup) call(t *testing.T, tool, args string) *mcp.CallToolResult {
	t.Helper()
	res, err := s.cli.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)}})
	if err != nil {
		t.Fatalf("tools/call %s: %v", tool, err)
	}
	return res
}

const bigCheckout = `{"amount":250,"currency":"USD","customerEmail":"bob@example.com"}`

func TestTheClientsUserApprovesOrDeclinesInEitherProtocol(t *testing.T) {
	for _, version := range []string{mcp.ProtocolVersion20260728, mcp.ProtocolVersion20251125} {
		t.Run(version, func(t *testing.T) {
			u := &user{action: mcp.ElicitationResponseActionAccept, approve: true}
			s := newApprovalSetup(t, version, u)
			res := s.call(t, policy.ToolCheckoutSession, bigCheckout)
			if res.IsError {
				t.Fatalf("an approved call = %s", tools.ResultText(res))
			}
			if len(u.messages) != 1 {
				t.Fatalf("the user was asked %d times, want once", len(u.messages))
			}
			for _, want := range []string{"USD 250.00", "bob@example.com", policy.ToolCheckoutSession} {
				if !strings.Contains(u.messages[0], want) {
					t.Errorf("the question %q does not say %q", u.messages[0], want)
				}
			}
			if n := s.sb.Requests(); n != 1 {
				t.Fatalf("Clink got %d requests, want 1", n)
			}

			// Declined, and approve left unticked: refused, nothing sent.
			for _, answer := range []struct {
				action  mcp.ElicitationResponseAction
				approve bool
			}{{mcp.ElicitationResponseActionDecline, false}, {mcp.ElicitationResponseActionAccept, false}} {
				u.mu.Lock()
				u.action, u.approve = answer.action, answer.approve
				u.mu.Unlock()
				res := s.call(t, policy.ToolCheckoutSession, `{"amount":260,"currency":"USD","customerEmail":"bob@example.com"}`)
				if !res.IsError || !strings.Contains(tools.ResultText(res), "approval_declined") {
					t.Errorf("answer %+v = %s, want approval_declined", answer, tools.ResultText(res))
				}
			}
			if n := s.sb.Requests(); n != 1 {
				t.Fatalf("Clink got %d requests, want 1: declined payments are never sent", n)
			}
		})
	}
}

// raw sends one JSON-RPC tools/call of protocol 2026-07-28 to srv, as a
// client that declares elicitation, with the given requestState and
// approve answer when state is not "", and returns its result.
func raw(t *testing.T, srv *server.MCPServer, state string, approve bool) map[string]any {
	t.Helper()
	var responses map[string]any
	if state != "" {
		responses = map[string]any{"approve_payment": map[string]any{
			"action": "accept", "content": map[string]any{"approve": approve}}}
	}
	return rawCall(t, srv, state, responses)
}

// rawCall is raw with the inputResponses given (none when nil).
func rawCall(t *testing.T, srv *server.MCPServer, state string, responses map[string]any) map[string]any {
	t.Helper()
	params := map[string]any{
		"name": policy.ToolCheckoutSession, "arguments": json.RawMessage(bigCheckout),
		"_meta": map[string]any{
			mcp.MetaKeyProtocolVersion:    mcp.ProtocolVersion20260728,
			mcp.MetaKeyClientInfo:         map[string]any{"name": "raw", "version": "1"},
			mcp.MetaKeyClientCapabilities: map[string]any{"elicitation": map[string]any{}},
		},
	}
	if state != "" {
		params["requestState"] = state
	}
	if responses != nil {
		params["inputResponses"] = responses
	}
	msg, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(srv.HandleMessage(context.Background(), msg))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Result map[string]any `json:"result"`
		Error  any            `json:"error"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || resp.Result == nil {
		t.Fatalf("tools/call answered %s", out)
	}
	return resp.Result
}

// text is a raw result's text content.
func text(res map[string]any) string {
	var b strings.Builder
	for _, c := range res["content"].([]any) {
		if s, ok := c.(map[string]any)["text"].(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func TestARequestStateCountsOnceAndOnlyAsIssued(t *testing.T) {
	s := newApprovalSetup(t, mcp.ProtocolVersion20260728, nil)
	srv := s.server

	first := raw(t, srv, "", false)
	state, _ := first["requestState"].(string)
	if first["resultType"] != "input_required" || state == "" {
		t.Fatalf("the first round = %v, want input_required with a requestState", first)
	}
	for _, forged := range []string{"forged", state[:len(state)-4] + "AAAA", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"} {
		if res := raw(t, srv, forged, true); !strings.Contains(text(res), "approval_invalid") {
			t.Errorf("a forged state %q = %v, want approval_invalid", forged, res)
		}
	}
	if n := s.sb.Requests(); n != 0 {
		t.Fatalf("Clink got %d requests before the answer, want none", n)
	}
	if res := raw(t, srv, state, true); res["isError"] == true {
		t.Fatalf("the answer = %s, want created", text(res))
	}
	// The answer brought again (its response was lost, say) gets the
	// created session's replay: it counts once, and creates nothing more.
	if res := raw(t, srv, state, true); res["isError"] == true || !strings.Contains(text(res), "Replay") {
		t.Errorf("the answer brought again = %s, want the created session's replay", text(res))
	}
	if n := s.sb.Requests(); n != 1 {
		t.Fatalf("Clink got %d requests, want exactly 1", n)
	}
}

// TestARequestStateWithoutTheAnswerAsksAgain: a retry that brings the
// requestState but no answer to approve_payment (none, or only to
// another input) is not the user's word: it is asked again, and the
// approval stays pending, its reservation held once.
func TestARequestStateWithoutTheAnswerAsksAgain(t *testing.T) {
	s := newApprovalSetup(t, mcp.ProtocolVersion20260728, nil)
	srv := s.server
	first := raw(t, srv, "", false)
	rs, _ := first["requestState"].(string)
	if first["resultType"] != "input_required" || rs == "" {
		t.Fatalf("the first round = %v, want input_required with a requestState", first)
	}
	for _, responses := range []map[string]any{nil, {"something_else": map[string]any{"action": "accept", "content": map[string]any{}}}} {
		again := rawCall(t, srv, rs, responses)
		if again["resultType"] != "input_required" || again["requestState"] == "" {
			t.Fatalf("a retry without the answer (%v) = %v, want the question again", responses, again)
		}
	}
	list, err := s.store.ListApprovals(context.Background(), nil, 0)
	if err != nil || len(list) != 1 || list[0].State != state.ApprovalPending {
		t.Fatalf("approvals = %+v, %v; want the one still pending", list, err)
	}
	if res := raw(t, srv, rs, true); res["isError"] == true {
		t.Fatalf("the answer = %s, want created", text(res))
	}
	if n := s.sb.Requests(); n != 1 {
		t.Fatalf("Clink got %d requests, want exactly 1", n)
	}
}

func TestAClientThatCannotAskGetsAPendingApproval(t *testing.T) {
	for _, version := range []string{mcp.ProtocolVersion20260728, mcp.ProtocolVersion20251125} {
		t.Run(version, func(t *testing.T) {
			s := newApprovalSetup(t, version, nil)
			res := s.call(t, policy.ToolCheckoutSession, bigCheckout)
			text := tools.ResultText(res)
			if !res.IsError || !strings.Contains(text, "approval_required") || !strings.Contains(text, "apr_") {
				t.Fatalf("a call above the threshold = %s, want a pending approval", text)
			}
			list, err := s.store.ListApprovals(context.Background(), nil, 0)
			if err != nil || len(list) != 1 || list[0].State != state.ApprovalPending {
				t.Fatalf("approvals = %+v, %v", list, err)
			}
			if _, err := gate.DecideApproval(context.Background(), s.store, list[0].ID, true, "ops"); err != nil {
				t.Fatal(err)
			}
			if res := s.call(t, policy.ToolCheckoutSession, bigCheckout); res.IsError {
				t.Fatalf("the identical call once approved = %s", tools.ResultText(res))
			}
			if res := s.call(t, policy.ToolCheckoutSession, bigCheckout); res.IsError || !strings.Contains(tools.ResultText(res), "Replay") {
				t.Fatalf("the call once more = %s, want a replay", tools.ResultText(res))
			}
			if n := s.sb.Requests(); n != 1 {
				t.Fatalf("Clink got %d requests, want exactly 1", n)
			}
		})
	}
}

func TestThePolicyResourceAndTheStatusToolsOnTheSandbox(t *testing.T) {
	s := newApprovalSetup(t, mcp.ProtocolVersion20260728, nil)
	ctx := context.Background()
	res := s.call(t, policy.ToolCheckoutSession, `{"amount":40,"currency":"USD","customerEmail":"bob@example.com"}`)
	if res.IsError {
		t.Fatal(tools.ResultText(res))
	}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &created); err != nil || created.SessionID == "" {
		t.Fatalf("created %s: %v", b, err)
	}

	list, err := s.cli.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || len(list.Resources) != 1 || list.Resources[0].URI != tools.PolicyURI {
		t.Fatalf("resources/list = %+v, %v", list, err)
	}
	read, err := s.cli.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: tools.PolicyURI}})
	if err != nil || len(read.Contents) != 1 {
		t.Fatalf("resources/read = %+v, %v", read, err)
	}
	md := read.Contents[0].(mcp.TextResourceContents).Text
	for _, want := range []string{"960.00 USD", "100.00", "15m"} {
		if !strings.Contains(md, want) {
			t.Errorf("the policy resource does not say %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "@") {
		t.Errorf("the policy resource names an email or pattern:\n%s", md)
	}

	got := s.call(t, tools.ToolGetCheckoutSession, `{"sessionId":"`+created.SessionID+`"}`)
	var status struct {
		SessionID, Status, PaymentStatus, Currency string
		Amount                                     json.Number
	}
	b, _ = json.Marshal(got.StructuredContent)
	if err := json.Unmarshal(b, &status); err != nil || got.IsError || status.Status != "open" || status.PaymentStatus != "unpaid" ||
		status.Amount != "40" || status.Currency != "USD" || strings.Contains(string(b), "tokenValue") {
		t.Fatalf("get_checkout_session = %s (%s): %v", b, tools.ResultText(got), err)
	}
	before := s.sb.Requests()
	if res := s.call(t, tools.ToolGetCheckoutSession, `{"sessionId":"sess_made_elsewhere"}`); !res.IsError {
		t.Fatalf("a session this server did not create = %s, want refused", tools.ResultText(res))
	}
	// A checkout session looked up as an agent payment session: Clink's
	// other endpoint would say it does not exist, so it is refused here,
	// naming the right tool.
	if res := s.call(t, tools.ToolGetAgentPaymentSession, `{"sessionId":"`+created.SessionID+`"}`); !res.IsError ||
		!strings.Contains(tools.ResultText(res), "wrong_tool") || !strings.Contains(tools.ResultText(res), tools.ToolGetCheckoutSession) {
		t.Errorf("an agent lookup of a checkout session = %s, want refused naming %s", tools.ResultText(res), tools.ToolGetCheckoutSession)
	}
	if n := s.sb.Requests() - before; n != 0 {
		t.Errorf("%d requests reached Clink, want none (both refused lookups send none)", n)
	}
}

// silentUser is asked and never answers: its question stays open until
// the server withdraws it.
type silentUser struct {
	asked     chan struct{}
	withdrawn chan struct{}
}

func (u *silentUser) Elicit(ctx context.Context, _ mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.asked <- struct{}{}
	<-ctx.Done()
	close(u.withdrawn)
	return nil, ctx.Err()
}

// A client before 2026-07-28 is asked with elicitation/create and the call
// waits for its answer; a question nobody answers no longer keeps the call
// open past its approval: once the approval expires by the gate's clock,
// the question is withdrawn and the call says the approval expired. A
// client of 2026-07-28 is never waited for (its question is an input
// request).
func TestAnUnansweredQuestionEndsWhenItsApprovalExpires(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	u := &silentUser{asked: make(chan struct{}, 1), withdrawn: make(chan struct{})}
	s := newApprovalSetupAt(t, mcp.ProtocolVersion20251125, u, clock)
	results := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := s.cli.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: policy.ToolCheckoutSession, Arguments: json.RawMessage(bigCheckout)}})
		if err != nil {
			res = mcp.NewToolResultError("transport error: " + err.Error())
		}
		results <- res
	}()
	select {
	case <-u.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the user was never asked")
	}
	select {
	case res := <-results:
		t.Fatalf("the call ended before its approval expired: %s", tools.ResultText(res))
	case <-time.After(1500 * time.Millisecond):
	}
	offset.Store(int64(16 * time.Minute)) // approvals: { timeout: 15m }
	var res *mcp.CallToolResult
	select {
	case res = <-results:
	case <-time.After(10 * time.Second):
		t.Fatal("the call still waits for an answer to a question whose approval has expired")
	}
	if text := tools.ResultText(res); !res.IsError || !strings.Contains(text, "approval_expired") {
		t.Errorf("the call = %s, want approval_expired", text)
	}
	select {
	case <-u.withdrawn:
	case <-time.After(5 * time.Second):
		t.Error("the question was not withdrawn")
	}
	select {
	case <-u.asked:
		t.Error("the user was asked again")
	default:
	}
	if n := s.sb.Requests(); n != 0 {
		t.Errorf("Clink got %d requests, want none", n)
	}
}

// failingUser is a client whose elicitation fails: it declared the
// capability, but cannot put the question to anyone now.
type failingUser struct{ asked atomic.Int32 }

func (u *failingUser) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.asked.Add(1)
	return nil, errors.New("the assistant's window is closed")
}

// A client before 2026-07-28 whose answer to the approval question is an
// error (it declared elicitation but could not ask) is treated as a client
// that cannot ask: the call gets the pending approval's ordinary result,
// which says how an operator decides it, and why the question failed,
// rather than failing with the client's error; the approval stays pending
// for the operator.
func TestAClientThatFailsToAskGetsAPendingApproval(t *testing.T) {
	u := &failingUser{}
	s := newApprovalSetupAt(t, mcp.ProtocolVersion20251125, u, time.Now)
	res := s.call(t, policy.ToolCheckoutSession, bigCheckout)
	text := tools.ResultText(res)
	if u.asked.Load() != 1 {
		t.Fatalf("the client was asked %d times, want once", u.asked.Load())
	}
	if !strings.Contains(text, "approval_required") || !strings.Contains(text, "clink-mcp approvals approve") {
		t.Errorf("the call = %s; want the pending approval's result, saying how an operator decides", text)
	}
	if !res.IsError || !strings.Contains(text, "through your MCP client (the assistant's window is closed).") {
		t.Errorf("the call = %s (isError %v); want an error result saying why the question failed", text, res.IsError)
	}
	as, err := s.store.ListApprovals(context.Background(), nil, 0)
	if err != nil || len(as) != 1 || as[0].State != state.ApprovalPending {
		t.Fatalf("approvals = %+v, %v; want one, pending", as, err)
	}
	if n := s.sb.Requests(); n != 0 {
		t.Errorf("Clink got %d requests, want none", n)
	}
}

// A call its client cancels while its question is open ends there: it is
// not run again as one whose client cannot ask (which would leave a
// second outcome record, cancelled, and a misleading warning).
func TestACancelledCallIsNotRunAgain(t *testing.T) {
	u := &silentUser{asked: make(chan struct{}, 1), withdrawn: make(chan struct{})}
	s := newApprovalSetupAt(t, mcp.ProtocolVersion20251125, u, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.cli.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: policy.ToolCheckoutSession, Arguments: json.RawMessage(bigCheckout)}})
		done <- err
	}()
	<-u.asked
	cancel()
	<-done
	select {
	case <-u.withdrawn: // the server's side of the call has seen the cancellation
	case <-time.After(5 * time.Second):
		t.Fatal("the question was not withdrawn")
	}
	deadline := time.Now().Add(time.Second)
	var outcomes []string
	for {
		outcomes = outcomes[:0]
		err := s.store.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
			if r.Kind == state.KindOutcome {
				outcomes = append(outcomes, r.Decision)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The question's round leaves its record; a second, if any, comes
		// once the middleware has run the call again.
		if len(outcomes) > 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(outcomes) != 1 || outcomes[0] != string(policy.CodeApprovalRequired) {
		t.Errorf("outcome records %v, want one: the question's round (approval_required)", outcomes)
	}
}
