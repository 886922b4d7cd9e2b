package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// approvalsPolicyFile writes a policy asking approval above 100 USD, with
// a store file, and returns its path.
func approvalsPolicyFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	data := "version: 1\ncurrencies:\n  USD: { max_amount: 500, approve_above: 100 }\n" +
		"budgets:\n  - { currency: USD, max_amount: 1000, window: 24h }\napprovals: { timeout: 15m }\n" +
		"store: { path: " + filepath.Join(dir, "state.db") + " }\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// approvalsServer runs the binary's stdio server under policyFile against sb,
// and connects a client of protocol version (with u as its user when not
// nil).
func approvalsServer(t *testing.T, policyFile string, sb *sandbox.Server, version string, u client.ElicitationHandler) (*client.Client, *bytes.Buffer) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, "serve", "--log-format", "json")
	cmd.Env = append(os.Environ(), "CLINK_API_KEY="+sandbox.DefaultAPIKey, "CLINK_ENV=sandbox",
		"CLINK_BASE_URL="+srv.URL+"/", "CLINK_POLICY="+policyFile)
	stdin, stdout, stderr := startPiped(t, cmd)
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	opts := []client.ClientOption{client.WithProtocolVersion(version)}
	if u != nil {
		opts = append(opts, client.WithElicitationHandler(u))
	}
	cli := client.NewClient(transport.NewIO(stdout, stdin, io.NopCloser(strings.NewReader(""))), opts...)
	if err := cli.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "approvals-test", Version: "1"}
	if _, err := cli.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v\nstderr:\n%s", err, stderr)
	}
	return cli, stderr
}

// toolCall makes one call and returns its text and whether it is an error.
func toolCall(t *testing.T, cli *client.Client, tool, args string) (string, bool) {
	t.Helper()
	res, err := cli.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)}})
	if err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), res.IsError
}

// runBinary runs the binary with args and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

var approvalID = regexp.MustCompile(`apr_[0-9a-f]+`)

func TestAnOperatorApprovesAndDeniesWithTheBinary(t *testing.T) {
	pol := approvalsPolicyFile(t)
	sb := sandbox.New()
	cli, stderr := approvalsServer(t, pol, sb, mcp.ProtocolVersion20260728, nil)
	const big = `{"customerEmail":"bob@example.com","amount":250,"currency":"USD"}`

	text, isErr := toolCall(t, cli, policy.ToolAgentPaymentSession, big)
	id := approvalID.FindString(text)
	if !isErr || !strings.Contains(text, "approval_required") || id == "" {
		t.Fatalf("a call above the threshold = %s", text)
	}
	code, out, errOut := runBinary(t, "approvals", "list", "--policy", pol)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "pending") || !strings.Contains(out, "b***@example.com") || strings.Contains(out, "bob@example.com") {
		t.Fatalf("approvals list = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runBinary(t, "approvals", "approve", id, "--policy", pol); code == 0 || !strings.Contains(errOut, "--by") {
		t.Errorf("approve without --by = %d %s, want refused asking who decides", code, errOut)
	}
	// A setting's value before the ID (--policy FILE ID) is not taken for the ID.
	if code, out, errOut := runBinary(t, "approvals", "approve", "--policy", pol, id, "--by", "alice"); code != 0 || !strings.Contains(out, "approved "+id) {
		t.Fatalf("approvals approve = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runBinary(t, "approvals", "deny", id, "--by", "bob", "--policy", pol); code == 0 || !strings.Contains(errOut, "not pending") {
		t.Errorf("a second decision = %d %s, want refused", code, errOut)
	}
	if text, isErr := toolCall(t, cli, policy.ToolAgentPaymentSession, big); isErr || !strings.Contains(text, "Created") {
		t.Fatalf("the identical call once approved = %s\nstderr:\n%s", text, stderr)
	}
	if text, isErr := toolCall(t, cli, policy.ToolAgentPaymentSession, big); isErr || !strings.Contains(text, "Replay") {
		t.Fatalf("the call once more = %s", text)
	}
	if n := sb.Requests(); n != 1 {
		t.Fatalf("Clink got %d requests, want exactly 1", n)
	}

	// Denied: refused, and its reservation released.
	const other = `{"customerEmail":"carol@example.com","amount":300,"currency":"USD"}`
	text, _ = toolCall(t, cli, policy.ToolAgentPaymentSession, other)
	id2 := approvalID.FindString(text)
	if code, out, errOut := runBinary(t, "approvals", "deny", id2, "--by", "alice", "--policy", pol); code != 0 || !strings.Contains(out, "denied "+id2) {
		t.Fatalf("approvals deny = %d\n%s%s", code, out, errOut)
	}
	if text, isErr := toolCall(t, cli, policy.ToolAgentPaymentSession, other); !isErr || !strings.Contains(text, "approval_denied") {
		t.Fatalf("the identical call once denied = %s", text)
	}
	if n := sb.Requests(); n != 1 {
		t.Fatalf("Clink got %d requests, want still 1", n)
	}
	code, out, _ = runBinary(t, "approvals", "list", "--all", "--policy", pol)
	if code != 0 || !strings.Contains(out, "operator:alice") || !strings.Contains(out, "denied") || !strings.Contains(out, "used") {
		t.Errorf("approvals list --all = %d\n%s", code, out)
	}
	code, out, errOut = runBinary(t, "audit", "export", "--policy", pol)
	if code != 0 || !strings.Contains(out, `"decision":"approval_granted"`) || !strings.Contains(out, `"caller":"operator:alice"`) {
		t.Errorf("audit export = %d, missing the decision records\n%s%s", code, out, errOut)
	}
}

// yes approves every question and counts them.
type yes struct{ asked atomic.Int64 }

func (y *yes) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	y.asked.Add(1)
	res := &mcp.ElicitationResult{}
	res.Action, res.Content = mcp.ElicitationResponseActionAccept, map[string]any{"approve": true}
	return res, nil
}

func TestOverStdioTheUserIsAskedInEitherProtocol(t *testing.T) {
	for _, version := range []string{mcp.ProtocolVersion20260728, mcp.ProtocolVersion20251125} {
		t.Run(version, func(t *testing.T) {
			u := &yes{}
			sb := sandbox.New()
			cli, stderr := approvalsServer(t, approvalsPolicyFile(t), sb, version, u)
			text, isErr := toolCall(t, cli, policy.ToolAgentPaymentSession, `{"customerEmail":"bob@example.com","amount":250,"currency":"USD"}`)
			if isErr || !strings.Contains(text, "Created") {
				t.Fatalf("an approved call over stdio = %s\nstderr:\n%s", text, stderr)
			}
			if u.asked.Load() != 1 || sb.Requests() != 1 {
				t.Errorf("asked %d times, %d requests to Clink; want 1 and 1", u.asked.Load(), sb.Requests())
			}
		})
	}
}

// TestStdioARefusedAnswerToTheQuestionEndsTheCall answers the approval
// question of a 2025-11-25 client (elicitation/create) with a response the
// checks refuse ("Action" beside "action"): the call must end at once,
// created nothing, rather than wait for an answer mcp-go never receives.
func TestStdioARefusedAnswerToTheQuestionEndsTheCall(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--sandbox", "--policy", approvalsPolicyFile(t), "--log-level", "error")
	stdin, stdout, stderr := startPiped(t, cmd)
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	await := func(what, contains string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stdout ended waiting for %s\nstderr:\n%s", what, stderr.String())
				}
				t.Logf("<- %s", l)
				if strings.Contains(l, contains) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %s within 20 s\nstderr:\n%s", what, stderr.String())
			}
		}
	}
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(stdin, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}`)
	await("initialize answer", `"id":1,`)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":150,"currency":"USD","customerEmail":"ann@example.com"}}}`)
	question := await("approval question", `"method":"elicitation/create"`)
	var q struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(question), &q); err != nil || len(q.ID) == 0 {
		t.Fatalf("question %s: %v", question, err)
	}
	send(`{"jsonrpc":"2.0","id":` + string(q.ID) + `,"result":{"action":"decline","Action":"accept","content":{"approve":true}}}`)
	answer := await("answer to the call", `"id":2,`)
	if strings.Contains(answer, "sessionId") || !(strings.Contains(answer, `"error"`) || strings.Contains(answer, `"isError":true`)) {
		t.Errorf("answer to the call: %s, want an error and no session", answer)
	}
	if !strings.Contains(answer, `duplicate key`) {
		t.Errorf("answer to the call: %s, want it to say the answer repeated a key", answer)
	}
}

// TestStdioALateAnswerToTheQuestionIsDropped answers the approval question
// of a 2025-11-25 client after cancelling the call that asked it: mcp-go no
// longer waits for the answer and would take it for a request, and answer
// it ("method not found", a response to a response). The answer must get
// no reply, and the call create nothing.
func TestStdioALateAnswerToTheQuestionIsDropped(t *testing.T) {
	clink := newGatedClink(t)
	clink.release()
	p := startServerWith(t, clink, approvalsPolicyFile(t), `{"elicitation":{}}`, "CLINK_LOG_LEVEL=debug")
	p.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":150,"currency":"USD","customerEmail":"ann@example.com"}}}`)
	question := p.awaitLine(`"method":"elicitation/create"`, 20*time.Second)
	var q struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(question), &q); err != nil || len(q.ID) == 0 {
		t.Fatalf("question %s: %v", question, err)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"changed my mind"}}`)
	p.awaitLog(`"msg":"stdio: dropped the response to a cancelled request","id":"7"`, 20*time.Second)
	p.send(`{"jsonrpc":"2.0","id":` + string(q.ID) + `,"result":{"action":"accept","content":{"approve":true}}}`)
	p.awaitLog(`"msg":"stdio: dropped a response to nothing the server waits for","id":"`+string(q.ID)+`"`, 20*time.Second)
	p.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	p.reply(2, 20*time.Second)
	for line := range strings.Lines(p.out.String()) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && string(m.ID) == string(q.ID) && m.Method == "" {
			t.Errorf("the late answer was answered: %s", line)
		}
		if strings.Contains(line, `"id":7,"result"`) {
			t.Errorf("the cancelled call was answered: %s", line)
		}
	}
	if n := clink.POSTs(); n != 0 {
		t.Errorf("%d creates reached Clink, want none", n)
	}
}

// approvalsStore writes a policy (approval above 100 USD, 15m) with a
// SQLite store, makes n calls needing approval on a gate whose clock is at
// at, stops, and returns the policy's path.
func approvalsStore(t *testing.T, n int, at time.Time) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	data := "version: 1\ncurrencies:\n  USD: { max_amount: 500, approve_above: 100 }\napprovals: { timeout: 15m }\n" +
		"store: { path: " + filepath.Join(dir, "state.db") + " }\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(gate.Config{Policy: p, Store: st, Secret: bytes.Repeat([]byte{7}, gate.MinSecretLen), Account: "acct",
		Clock: func() time.Time { return at }})
	for i := range n {
		m, err := policy.ParseMoney("250", "USD")
		if err != nil {
			t.Fatal(err)
		}
		email := fmt.Sprintf("c%d@example.com", i)
		res := g.Create(context.Background(), "", &gate.Order{
			Request:     policy.Request{Tool: policy.ToolAgentPaymentSession, Amount: m, CustomerEmail: email},
			Fingerprint: []byte(email),
			Commit:      func(context.Context) (*gate.Created, error) { return nil, errors.New("reached Clink") },
		})
		if res.Code != policy.CodeApprovalRequired {
			t.Fatalf("call %d = %s %q", i, res.Code, res.Text)
		}
	}
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// With no server running to sweep them, an approval past its time is
// expired when listed, not shown pending (and its reservation released,
// as the sweep would).
func TestApprovalsListExpiresWhatIsPastItsTime(t *testing.T) {
	path := approvalsStore(t, 1, time.Now().Add(-time.Hour))
	code, out, errOut := runCmd(t, nil, "approvals", "list", "--policy", path)
	if code != 0 || strings.Contains(out, "pending") || !strings.Contains(out, "no approvals waiting") {
		t.Errorf("approvals list an hour after the approval expired: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, "approvals", "list", "--all", "--policy", path)
	if code != 0 || !strings.Contains(out, " expired ") {
		t.Errorf("approvals list --all: exit %d, want the approval expired\n%s%s", code, out, errOut)
	}
}

// More approvals than the listing shows: the newest are listed, and a last
// line says older ones were left out; --limit shows more.
func TestApprovalsListSaysWhenItLeavesSomeOut(t *testing.T) {
	path := approvalsStore(t, 4, time.Now())
	code, out, errOut := runCmd(t, nil, "approvals", "list", "--limit", "3", "--policy", path)
	if code != 0 || strings.Count(out, " pending ") != 3 || !strings.Contains(out, "only the 3 newest are shown") {
		t.Errorf("approvals list --limit 3 of 4: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, "approvals", "list", "--limit=4", "--policy", path)
	if code != 0 || strings.Count(out, " pending ") != 4 || strings.Contains(out, "only the") {
		t.Errorf("approvals list --limit=4 of 4: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "approvals", "list", "--limit", "0", "--policy", path); code != 1 || !strings.Contains(errOut, "--limit \"0\" is not a number from 1 to 10000") {
		t.Errorf("approvals list --limit 0: exit %d, %s", code, errOut)
	}
}

// question starts a call (id) of a 2025-11-25 client over stdio that needs
// approval, and returns the id of the question (elicitation/create) it
// asks.
func question(t *testing.T, p *mcpProcess, id int) string {
	t.Helper()
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":150,"currency":"USD","customerEmail":"ann@example.com"}}}`, id))
	line := p.awaitLine(`"method":"elicitation/create"`, 20*time.Second)
	var q struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(line), &q); err != nil || len(q.ID) == 0 {
		t.Fatalf("question %s: %v", line, err)
	}
	return string(q.ID)
}

// approvalsListed runs "approvals list --all" under pol and returns its
// output.
func approvalsListed(t *testing.T, pol string) string {
	t.Helper()
	code, out, errOut := runBinary(t, "approvals", "list", "--all", "--policy", pol)
	if code != 0 {
		t.Fatalf("approvals list = %d\n%s%s", code, out, errOut)
	}
	return out
}

// TestStdioTheEndOfInputEndsAnOpenQuestion: a client that closes stdin
// while its user is asked (2025-11-25: elicitation/create) can never
// answer. The call that asked ends at once, with the pending approval's
// result saying the input ended and nothing created, rather than waiting
// out the shutdown grace for the answer; the approval stays pending for
// an operator.
func TestStdioTheEndOfInputEndsAnOpenQuestion(t *testing.T) {
	clink := newGatedClink(t)
	clink.release()
	pol := approvalsPolicyFile(t)
	p := startServerWith(t, clink, pol, `{"elicitation":{}}`, "CLINK_SHUTDOWN_GRACE=5m")
	question(t, p, 7)
	p.closeStdin()
	if err := p.awaitExit(60 * time.Second); err != nil {
		t.Fatalf("the server exited with %v\n%s", err, p.output())
	}
	r := p.reply(7, time.Second)
	if !strings.Contains(r.raw, `"isError":true`) || !strings.Contains(r.raw, "approval_required") ||
		!strings.Contains(r.raw, "input ended") || strings.Contains(r.raw, "sessionId") {
		t.Errorf("the call whose question was open = %s, want the pending approval, saying the input ended", r.raw)
	}
	if n := clink.POSTs(); n != 0 {
		t.Errorf("%d creates reached Clink, want none", n)
	}
	if out := approvalsListed(t, pol); !strings.Contains(out, "pending") {
		t.Errorf("approvals = %s, want the one pending", out)
	}
}

// TestStdioAQuestionAskedAfterTheEndOfInputEndsTheCall: a client that
// sends its call and closes stdin at once has ended its input before the
// call asks its user (the server reads the end of input long before the
// call has reserved its approval): that question cannot be answered
// either, and the call ends at once rather than after the grace.
func TestStdioAQuestionAskedAfterTheEndOfInputEndsTheCall(t *testing.T) {
	clink := newGatedClink(t)
	clink.release()
	pol := approvalsPolicyFile(t)
	p := startServerWith(t, clink, pol, `{"elicitation":{}}`, "CLINK_SHUTDOWN_GRACE=5m")
	p.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":150,"currency":"USD","customerEmail":"ann@example.com"}}}`)
	p.closeStdin()
	if err := p.awaitExit(60 * time.Second); err != nil {
		t.Fatalf("the server exited with %v\n%s", err, p.output())
	}
	if r := p.reply(7, time.Second); !strings.Contains(r.raw, `"isError":true`) || !strings.Contains(r.raw, "approval_required") || !strings.Contains(r.raw, "input ended") {
		t.Errorf("the call = %s, want the pending approval, saying the input ended", r.raw)
	}
	if n := clink.POSTs(); n != 0 {
		t.Errorf("%d creates reached Clink, want none", n)
	}
}

// TestStdioAnAnswerDuringTheShutdownCounts: the user answers a question
// asked before SIGTERM while the server drains. The answer is kept: a yes
// approves the approval (the call is not made, and says how to make it
// once the server is back), a no refuses it.
func TestStdioAnAnswerDuringTheShutdownCounts(t *testing.T) {
	for _, approve := range []bool{true, false} {
		t.Run(fmt.Sprint("approve=", approve), func(t *testing.T) {
			clink := newGatedClink(t)
			clink.release()
			pol := approvalsPolicyFile(t)
			p := startServerWith(t, clink, pol, `{"elicitation":{}}`, "CLINK_SHUTDOWN_GRACE=5m")
			q := question(t, p, 7)
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			p.awaitLog("shutting down", 20*time.Second)
			p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept","content":{"approve":%v}}}`, q, approve))
			r := p.reply(7, 20*time.Second)
			if err := p.awaitExit(60 * time.Second); err != nil {
				t.Fatalf("the server exited with %v\n%s", err, p.output())
			}
			out := approvalsListed(t, pol)
			if approve {
				if !strings.Contains(r.raw, "shutting down") || !strings.Contains(r.raw, "is recorded") || !strings.Contains(out, "approved") {
					t.Errorf("a yes while shutting down = %s; approvals:\n%s\nwant it to say the server is shutting down and the approval is recorded", r.raw, out)
				}
			} else if !strings.Contains(r.raw, "approval_declined") || !strings.Contains(out, "denied") {
				t.Errorf("a no while shutting down = %s; approvals:\n%s\nwant approval_declined, the approval denied", r.raw, out)
			}
			if n := clink.POSTs(); n != 0 {
				t.Errorf("%d creates reached Clink, want none", n)
			}
		})
	}
}

// Deciding an approval whose deadline passed with no server running to
// sweep it expires it: the expiry is recorded and its reservation
// released. The command says so, not that nothing changed; deciding it
// again changes nothing, and says that.
func TestDecidingAnApprovalPastItsDeadlineSaysItExpiredIt(t *testing.T) {
	for _, sub := range []string{"approve", "deny"} {
		t.Run(sub, func(t *testing.T) {
			pol := approvalsStore(t, 1, time.Now().Add(-16*time.Minute)) // timeout 15m: a minute past it
			dir := filepath.Dir(pol)
			look := func() (a state.Approval, decisions []string) {
				t.Helper()
				st, err := state.OpenSQLite(filepath.Join(dir, "state.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				list, err := st.ListApprovals(context.Background(), nil, 10)
				if err != nil || len(list) != 1 {
					t.Fatalf("ListApprovals = %v, %v", list, err)
				}
				err = st.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
					decisions = append(decisions, r.Decision)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return list[0], decisions
			}
			a, before := look()
			code, out, errOut := runCmd(t, nil, "approvals", sub, a.ID, "--by", "dana", "--policy", pol)
			now, after := look()
			if now.State != state.ApprovalExpired || len(after) != len(before)+1 || after[len(after)-1] != "approval_expired" {
				t.Fatalf("after the decision: approval %s, audit %v (was %v); want it expired, with its record", now.State, after, before)
			}
			verb := map[string]string{"approve": "approved", "deny": "denied"}[sub]
			want := fmt.Sprintf("approval %s had expired at %s, so it was not %s: it is now recorded as expired (in the audit trail), and its budgets are given back (its rate limits keep counting the call)",
				a.ID, a.ExpiresAt.UTC().Format(time.RFC3339), verb)
			if code != 1 || out != "" || !strings.Contains(errOut, want) || strings.Contains(errOut, "nothing changed") {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 saying %q", code, out, errOut, want)
			}
			code, out, errOut = runCmd(t, nil, "approvals", sub, a.ID, "--by", "dana", "--policy", pol)
			if _, again := look(); len(again) != len(after) {
				t.Fatalf("deciding it again appended %v", again[len(after):])
			}
			if code != 1 || out != "" || !strings.Contains(errOut, "approval "+a.ID+" is expired, not pending: nothing changed") {
				t.Errorf("deciding it again: exit %d, stdout %q, stderr %q; want nothing changed", code, out, errOut)
			}
		})
	}
}
