package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// approvalsPolicy asks approval above 100 USD.
const approvalsPolicy = `version: 1
currencies:
  USD: { max_amount: 500, approve_above: 100 }
budgets:
  - { currency: USD, max_amount: 1000, window: 24h }
approvals: { timeout: 15m }
`

const bigCall = `{"customerEmail":"bob@example.com","amount":250,"currency":"USD"}`

// scriptedUser answers every question with accept (approve) or decline.
type scriptedUser struct {
	approve atomic.Bool
	asked   atomic.Int64
}

func (u *scriptedUser) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.asked.Add(1)
	res := &mcp.ElicitationResult{}
	res.Action = mcp.ElicitationResponseActionDecline
	if u.approve.Load() {
		res.Action, res.Content = mcp.ElicitationResponseActionAccept, map[string]any{"approve": true}
	}
	return res, nil
}

// approvalsFixture is a service under approvalsPolicy with a principal
// "agent" and an admin "ops".
func approvalsFixture(t *testing.T) *fixture {
	t.Helper()
	token, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, setup{policy: approvalsPolicy, principals: map[string]string{"agent": ""},
		principalsYAML: fmt.Sprintf("  - name: ops\n    token_sha256: %s\n    admin: true\n", auth.HashToken(token))})
	f.tokens["ops"] = token
	return f
}

// asker connects an MCP client of protocol version as principal, whose
// user is u.
func (f *fixture) asker(principal, version string, u *scriptedUser) *client.Client {
	f.t.Helper()
	tr, err := transport.NewStreamableHTTP(f.srv.URL+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + f.tokens[principal]}))
	if err != nil {
		f.t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion(version), client.WithElicitationHandler(u))
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		f.t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "approvals-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		f.t.Fatalf("initialize: %v", err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestOverHTTPAModernClientsUserApproves(t *testing.T) {
	f := approvalsFixture(t)
	u := &scriptedUser{}
	u.approve.Store(true)
	c := f.asker("agent", mcp.ProtocolVersion20260728, u)
	if text, isErr := call(t, c, policy.ToolAgentPaymentSession, bigCall); isErr || !strings.Contains(text, "Created") {
		t.Fatalf("an approved call over HTTP = %s", text)
	}
	u.approve.Store(false)
	if text, isErr := call(t, c, policy.ToolAgentPaymentSession, `{"customerEmail":"bob@example.com","amount":260,"currency":"USD"}`); !isErr || !strings.Contains(text, "approval_declined") {
		t.Fatalf("a declined call over HTTP = %s", text)
	}
	if n := u.asked.Load(); n != 2 {
		t.Errorf("the user was asked %d times, want 2", n)
	}
	if n := f.sandbox.Requests(); n != 1 {
		t.Errorf("Clink got %d requests, want 1", n)
	}
}

// TestOverHTTPAnOlderClientGetsTheOperatorPath: the HTTP service is
// stateless, so it cannot send a 2025-11-25 client the elicitation/create
// request that version needs; the call waits for an operator instead.
func TestOverHTTPAnOlderClientGetsTheOperatorPath(t *testing.T) {
	f := approvalsFixture(t)
	u := &scriptedUser{}
	c := f.asker("agent", mcp.ProtocolVersion20251125, u)
	text, isErr := call(t, c, policy.ToolAgentPaymentSession, bigCall)
	if !isErr || !strings.Contains(text, "approval_required") || !strings.Contains(text, "apr_") {
		t.Fatalf("a 2025-11-25 call over HTTP = %s, want a pending approval", text)
	}
	if u.asked.Load() != 0 {
		t.Error("the user was asked over a transport that cannot carry the question")
	}
}

func TestTheAdminEndpointDecidesApprovalsForAdminsOnly(t *testing.T) {
	f := approvalsFixture(t)
	agent := f.client("agent", "")
	text, _ := call(t, agent, policy.ToolAgentPaymentSession, bigCall)
	if !strings.Contains(text, "approval_required") {
		t.Fatalf("the call = %s, want pending", text)
	}
	bearer := func(who string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + f.tokens[who]}
	}
	if code, hdr, _ := f.get("GET", "/admin/approvals", nil, nil); code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("GET /admin/approvals without a token = %d %v, want 401 with a challenge", code, hdr)
	}
	if code, _, _ := f.get("GET", "/admin/approvals", nil, bearer("agent")); code != http.StatusForbidden {
		t.Errorf("GET /admin/approvals as a non-admin = %d, want 403", code)
	}
	code, _, body := f.get("GET", "/admin/approvals", nil, bearer("ops"))
	var list struct {
		Approvals []struct{ ID, State, Caller, Customer, Amount, Currency string }
	}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Approvals) != 1 {
		t.Fatalf("GET /admin/approvals as an admin = %d %s (%v)", code, body, err)
	}
	a := list.Approvals[0]
	if a.State != "pending" || a.Caller != "agent" || a.Amount != "250.00" || a.Currency != "USD" || strings.Contains(body, "bob@example.com") {
		t.Errorf("the listed approval = %+v (%s), want pending, for agent, 250.00 USD, the email masked", a, body)
	}
	if code, _, _ := f.get("POST", "/admin/approvals/"+a.ID+"/approve", nil, bearer("agent")); code != http.StatusForbidden {
		t.Errorf("a non-admin's approval = %d, want 403", code)
	}
	if code, _, body := f.get("POST", "/admin/approvals/apr_unknown/approve", nil, bearer("ops")); code != http.StatusNotFound {
		t.Errorf("approving an unknown approval = %d %s, want 404", code, body)
	}
	code, _, body = f.get("POST", "/admin/approvals/"+a.ID+"/approve", nil, bearer("ops"))
	if code != http.StatusOK || !strings.Contains(body, `"decidedBy":"operator:ops"`) || !strings.Contains(body, `"state":"approved"`) {
		t.Fatalf("an admin's approval = %d %s", code, body)
	}
	if code, _, _ := f.get("POST", "/admin/approvals/"+a.ID+"/deny", nil, bearer("ops")); code != http.StatusConflict {
		t.Errorf("a second decision = %d, want 409", code)
	}
	if text, isErr := call(t, agent, policy.ToolAgentPaymentSession, bigCall); isErr {
		t.Fatalf("the identical call once approved = %s", text)
	}
	if n := f.sandbox.Requests(); n != 1 {
		t.Errorf("Clink got %d requests, want 1", n)
	}
	// Decisions are counted.
	_, _, metrics := f.get("GET", "/metrics", nil, nil)
	for _, want := range []string{`clink_mcp_approvals_total{event="requested"} 1`, `clink_mcp_approvals_total{event="approved"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestOverHTTPAnOlderRequestClaimingElicitationInItsMetaIsNotAsked: a
// 2025-11-25 request's _meta is not the client's word for its
// capabilities, and the stateless service cannot carry elicitation/create:
// the call answers at once with the operator path, never hangs on a
// question nobody can answer.
func TestOverHTTPAnOlderRequestClaimingElicitationInItsMetaIsNotAsked(t *testing.T) {
	f := approvalsFixture(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":` + bigCall +
		`,"_meta":{"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", f.srv.URL+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.tokens["agent"])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", mcp.ProtocolVersion20251125)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the call did not answer: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the answer did not end: %v", err)
	}
	if !strings.Contains(string(out), "approval_required") || strings.Contains(string(out), "elicitation/create") {
		t.Fatalf("a 2025-11-25 call claiming elicitation in _meta = %d %s, want a pending approval", resp.StatusCode, out)
	}
}

func TestAnAdminCannotDecideItsOwnApproval(t *testing.T) {
	f := approvalsFixture(t)
	ops := f.client("ops", "")
	if text, _ := call(t, ops, policy.ToolAgentPaymentSession, bigCall); !strings.Contains(text, "approval_required") {
		t.Fatalf("the admin's own call = %s, want pending", text)
	}
	id := regexp.MustCompile(`apr_[0-9a-f]+`).FindString(func() string { text, _ := call(t, ops, policy.ToolAgentPaymentSession, bigCall); return text }())
	code, _, body := f.get("POST", "/admin/approvals/"+id+"/approve", nil, map[string]string{"Authorization": "Bearer " + f.tokens["ops"]})
	if code != http.StatusForbidden {
		t.Fatalf("an admin approving its own payment = %d %s, want 403", code, body)
	}
	if text, _ := call(t, ops, policy.ToolAgentPaymentSession, bigCall); !strings.Contains(text, "approval_required") {
		t.Fatalf("after the refused decision = %s, want still pending", text)
	}
}

// failingApprovalRead is a store whose next Approval read fails once
// armed, as a database blip would.
type failingApprovalRead struct {
	state.Store
	armed atomic.Bool
}

func (s *failingApprovalRead) Approval(ctx context.Context, id string) (*state.Approval, error) {
	if s.armed.CompareAndSwap(true, false) {
		return nil, errors.New("store: connection reset")
	}
	return s.Store.Approval(ctx, id)
}

// An admin's own approval stays undecided when the store fails the read
// that tells who asked: the four-eyes rule fails closed.
func TestAnAdminsOwnApprovalStaysUndecidedWhenTheStoreBlinks(t *testing.T) {
	token, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	st := &failingApprovalRead{Store: state.NewMemory()}
	f := newFixture(t, setup{policy: approvalsPolicy, principals: map[string]string{"agent": ""}, store: st,
		principalsYAML: fmt.Sprintf("  - name: ops\n    token_sha256: %s\n    admin: true\n", auth.HashToken(token))})
	f.tokens["ops"] = token
	ops := f.client("ops", "")
	text, _ := call(t, ops, policy.ToolAgentPaymentSession, bigCall)
	id := regexp.MustCompile(`apr_[0-9a-f]+`).FindString(text)
	if id == "" {
		t.Fatalf("the admin's own call = %s, want pending", text)
	}
	st.armed.Store(true)
	code, _, body := f.get("POST", "/admin/approvals/"+id+"/approve", nil, map[string]string{"Authorization": "Bearer " + token})
	if code != http.StatusServiceUnavailable {
		t.Errorf("approving one's own approval while the store fails the read = %d %s, want 503", code, body)
	}
	if text, _ := call(t, ops, policy.ToolAgentPaymentSession, bigCall); !strings.Contains(text, "approval_required") {
		t.Errorf("the admin's own call after the refused decision = %.200s, want still pending", text)
	}
	if code, _, body := f.get("POST", "/admin/approvals/apr_00000000/approve", nil, map[string]string{"Authorization": "Bearer " + token}); code != http.StatusNotFound {
		t.Errorf("approving an unknown approval = %d %s, want 404", code, body)
	}
}

// An agent awaiting an operator is told how one can decide on this server:
// with the command where the store outlives the process, through the
// admin endpoint where approvals are in memory and an admin principal
// exists, and that none can otherwise.
func TestThePendingAnswerNamesTheWayAnOperatorDecides(t *testing.T) {
	sqlite, err := state.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlite.Close() })
	for _, tc := range []struct {
		name string
		f    func() *fixture
		want string
	}{
		{"memory store and an admin principal", func() *fixture { return approvalsFixture(t) }, "POST /admin/approvals/apr_"},
		{"memory store and no admin", func() *fixture {
			return newFixture(t, setup{policy: approvalsPolicy, principals: map[string]string{"agent": ""}})
		}, "No operator can approve it on this server"},
		{"a wrapped memory store that says what it wraps", func() *fixture {
			return newFixture(t, setup{policy: approvalsPolicy, principals: map[string]string{"agent": ""}, store: unwrappable{state.NewMemory()}})
		}, "No operator can approve it on this server"},
		{"a SQLite store", func() *fixture {
			return newFixture(t, setup{policy: approvalsPolicy, principals: map[string]string{"agent": ""}, store: sqlite})
		}, "clink-mcp approvals approve apr_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f()
			text, isErr := call(t, f.client("agent", mcp.ProtocolVersion20251125), policy.ToolAgentPaymentSession, bigCall)
			if !isErr || !strings.Contains(text, "approval_required") || !strings.Contains(text, tc.want) {
				t.Errorf("got %s\nwant approval_required saying %q", text, tc.want)
			}
		})
	}
}

// unwrappable wraps a store and says what it wraps.
type unwrappable struct{ state.Store }

func (u unwrappable) Unwrap() state.Store { return u.Store }

// GET /admin/approvals lists the newest ?limit=N (100 by default) and says
// whether older ones were left out; a limit out of range is a 400.
func TestTheAdminListSaysWhenItLeavesSomeOut(t *testing.T) {
	f := approvalsFixture(t)
	agent := f.client("agent", "")
	for i := range 3 {
		text, _ := call(t, agent, policy.ToolAgentPaymentSession, fmt.Sprintf(`{"customerEmail":"c%d@example.com","amount":250,"currency":"USD"}`, i))
		if !strings.Contains(text, "approval_required") {
			t.Fatalf("call %d = %s, want pending", i, text)
		}
	}
	ops := map[string]string{"Authorization": "Bearer " + f.tokens["ops"]}
	for _, tc := range []struct {
		query string
		n     int
		more  bool
	}{{"", 3, false}, {"?limit=2", 2, true}, {"?limit=3", 3, false}} {
		code, _, body := f.get("GET", "/admin/approvals"+tc.query, nil, ops)
		var list struct {
			Approvals []struct{ ID string }
			More      bool
		}
		if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Approvals) != tc.n || list.More != tc.more {
			t.Errorf("GET /admin/approvals%s = %d %s (%v); want %d approvals, more %v", tc.query, code, body, err, tc.n, tc.more)
		}
	}
	for _, bad := range []string{"?limit=0", "?limit=x", "?limit=10001"} {
		if code, _, body := f.get("GET", "/admin/approvals"+bad, nil, ops); code != http.StatusBadRequest {
			t.Errorf("GET /admin/approvals%s = %d %s, want 400", bad, code, body)
		}
	}
}

// modernCall posts a 2026-07-28 tools/call of create_agent_payment_session
// as principal, from a client that declares the capabilities caps (JSON);
// extra is added to params (an answer).
func (f *fixture) modernCall(principal, id, caps, args, extra string) string {
	f.t.Helper()
	headers := map[string]string{
		"Authorization":        "Bearer " + f.tokens[principal],
		"Content-Type":         "application/json",
		"Accept":               "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2026-07-28",
		"Mcp-Method":           "tools/call",
		"Mcp-Name":             "create_agent_payment_session",
	}
	msg := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":` + args + extra +
		`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":` + caps + `}}}`
	_, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(msg), headers)
	return body
}

var requestStateRE = regexp.MustCompile(`"requestState":"([^"]+)"`)

// approveByAnswer asks the agent's user about bigCall and answers yes: the
// session is created.
func approveByAnswer(t *testing.T, f *fixture) (answer string) {
	t.Helper()
	body := f.modernCall("agent", "1", `{"elicitation":{"form":{}}}`, bigCall, "")
	m := requestStateRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no question asked: %s", body)
	}
	answer = `,"inputResponses":{"approve_payment":{"action":"accept","content":{"approve":true}}},"requestState":"` + m[1] + `"`
	if body := f.modernCall("agent", "2", `{"elicitation":{"form":{}}}`, bigCall, answer); !strings.Contains(body, "Created agent payment session") {
		t.Fatalf("the answer did not create the session: %s", body)
	}
	return answer
}

// The replay of an approved call is an answer of the store's
// (RequestApproval's ErrClaimHeld), not a failure: store_errors_total,
// which operators alert on, does not count it.
func TestAReplayOfAnApprovedCallIsNoStoreError(t *testing.T) {
	f := approvalsFixture(t)
	approveByAnswer(t, f)
	if body := f.modernCall("agent", "3", `{"elicitation":{"form":{}}}`, bigCall, ""); !strings.Contains(body, "Replay") {
		t.Fatalf("the repeated call = %s, want a replay", body)
	}
	_, _, metrics := f.get(http.MethodGet, "/metrics", nil, nil)
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "clink_mcp_store_errors_total") {
			t.Errorf("no store failed, yet: %s", line)
		}
	}
}

// A client that declares elicitation in URL mode alone cannot show the
// approval question, a form: it is not asked, and the approval waits for
// the operator. Form mode, or elicitation with no mode, is asked.
func TestAClientOfURLElicitationAloneIsNotAskedAForm(t *testing.T) {
	for _, tc := range []struct {
		caps  string
		asked bool
	}{
		{`{"elicitation":{"url":{}}}`, false},
		{`{"elicitation":{"form":{},"url":{}}}`, true},
		{`{"elicitation":{}}`, true},
		{`{}`, false},
	} {
		f := approvalsFixture(t)
		body := f.modernCall("agent", "1", tc.caps, bigCall, "")
		if asked := strings.Contains(body, `"inputRequests"`); asked != tc.asked || !asked && !strings.Contains(body, "approval_required") {
			t.Errorf("capabilities %s: %s; want asked %t, else the approval pending", tc.caps, body, tc.asked)
		}
	}
}

// A client whose answer's response was lost repeats the request exactly
// (the same answer and requestState): it gets the created session's
// replay, not "approval_invalid ... Nothing was created", which was untrue.
func TestARepeatedAnswerGetsTheCreatedSession(t *testing.T) {
	f := approvalsFixture(t)
	answer := approveByAnswer(t, f)
	again := f.modernCall("agent", "3", `{"elicitation":{"form":{}}}`, bigCall, answer)
	if !strings.Contains(again, "Replay") || !strings.Contains(again, "Created agent payment session") || strings.Contains(again, "Nothing was created") {
		t.Errorf("the same answer again = %s; want the created session's replay", again)
	}
	if n := f.sandbox.SessionCount(); n != 1 {
		t.Errorf("Clink has %d sessions, want 1", n)
	}
}

// unswept hides a store's sweep of expired approvals, standing in for a
// server whose sweep has not come round yet.
type unswept struct{ state.Store }

func (unswept) ExpireApprovals(context.Context, time.Time) (int, error) { return 0, nil }

// An admin deciding an approval whose deadline passed before any sweep
// expires it: the 409 says so, not merely that it is no longer pending.
func TestTheAdminEndpointSaysADecisionPastTheDeadlineExpiredIt(t *testing.T) {
	for _, verb := range []string{"approve", "deny"} {
		t.Run(verb, func(t *testing.T) {
			st, err := state.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			pol, err := policy.Parse("policy.yaml", []byte(approvalsPolicy))
			if err != nil {
				t.Fatal(err)
			}
			past := time.Now().Add(-16 * time.Minute) // timeout 15m: a minute past it
			g := gate.New(gate.Config{Policy: pol, Store: st, Secret: bytes.Repeat([]byte{7}, gate.MinSecretLen), Account: "acct",
				Clock: func() time.Time { return past }})
			m, err := policy.ParseMoney("250", "USD")
			if err != nil {
				t.Fatal(err)
			}
			res := g.Create(context.Background(), "", &gate.Order{
				Request:     policy.Request{Tool: policy.ToolAgentPaymentSession, Amount: m, CustomerEmail: "bob@example.com"},
				Fingerprint: []byte("bob"),
				Commit:      func(context.Context) (*gate.Created, error) { return nil, errors.New("reached Clink") },
			})
			if res.Code != policy.CodeApprovalRequired {
				t.Fatalf("the call = %s %q, want approval_required", res.Code, res.Text)
			}
			if err := g.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			list, err := st.ListApprovals(context.Background(), nil, 10)
			if err != nil || len(list) != 1 || list[0].State != state.ApprovalPending {
				t.Fatalf("ListApprovals = %+v, %v; want one pending", list, err)
			}
			a := list[0]

			token, err := auth.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, setup{policy: approvalsPolicy, store: unswept{st}, principals: map[string]string{"agent": ""},
				principalsYAML: fmt.Sprintf("  - name: ops\n    token_sha256: %s\n    admin: true\n", auth.HashToken(token))})
			ops := map[string]string{"Authorization": "Bearer " + token}
			code, _, body := f.get("POST", "/admin/approvals/"+a.ID+"/"+verb, nil, ops)
			done := map[string]string{"approve": "approved", "deny": "denied"}[verb]
			want := fmt.Sprintf("the approval had expired at %s, so it was not %s: it is now recorded as expired (in the audit trail), and its budgets are given back (its rate limits keep counting the call)",
				a.ExpiresAt.UTC().Format(time.RFC3339), done)
			if code != http.StatusConflict || !strings.Contains(body, want) || !strings.Contains(body, `"state":"expired"`) {
				t.Errorf("deciding it = %d %s; want 409 saying %q", code, body, want)
			}
			code, _, body = f.get("POST", "/admin/approvals/"+a.ID+"/"+verb, nil, ops)
			if code != http.StatusConflict || !strings.Contains(body, "the approval is no longer pending") || strings.Contains(body, "had expired") {
				t.Errorf("deciding it again = %d %s; want 409, no longer pending", code, body)
			}
		})
	}
}
