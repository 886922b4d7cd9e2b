package main

// Fault tests: the built server, run as a child process and spoken to in raw
// MCP over its pipes, against a fake Clink the test can hold a request at.
// Each test breaks something at the worst moment of a call (the process is
// killed, stdin closes, the client cancels, another process locks the
// store, a SIGTERM arrives) while the request is at Clink, and checks that
// the client and the audit trail both end up with the truth.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// gatedClink is the fake Clink (clink/sandbox) behind a gate: it counts the
// POSTs (the creates) it receives and holds each one, its body read, until
// the test calls release. A held request whose client goes away is dropped
// without reaching the sandbox. Everything else passes straight through.
type gatedClink struct {
	sb       *sandbox.Server
	url      string // the base URL for CLINK_BASE_URL, ending in "/"
	posts    atomic.Int64
	released chan struct{}
	release  func() // opens the gate for good; safe to call more than once
}

// newGatedClink starts a gated fake Clink, its gate closed. It is shut down
// when the test ends, the gate opened first so that no request hangs.
func newGatedClink(t *testing.T) *gatedClink {
	t.Helper()
	released := make(chan struct{})
	var once sync.Once
	g := &gatedClink{
		sb:       sandbox.New(),
		released: released,
		release:  func() { once.Do(func() { close(released) }) },
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.release) // runs before srv.Close, which waits for handlers
	g.url = srv.URL + "/"
	return g
}

// ServeHTTP counts and holds a POST, then forwards the request. The body is
// read first: until it is, net/http does not notice a client that has gone.
func (g *gatedClink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		g.posts.Add(1)
		select {
		case <-g.released:
		case <-r.Context().Done():
			return // the server was killed with the request at Clink
		}
	}
	g.sb.ServeHTTP(w, r)
}

// POSTs is how many creates have arrived so far, held or not.
func (g *gatedClink) POSTs() int64 { return g.posts.Load() }

// awaitPOSTs waits until at least n creates have arrived.
func (g *gatedClink) awaitPOSTs(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for g.POSTs() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d POSTs reached the fake Clink within %v, want %d", g.POSTs(), within, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// toolReply is a JSON-RPC response line, as far as these tests read it.
type toolReply struct {
	raw    string
	ID     json.RawMessage `json:"id"`
	Result *struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		StructuredContent *struct {
			SessionID string `json:"sessionId"`
			Replayed  bool   `json:"replayed"`
		} `json:"structuredContent"`
		IsError bool `json:"isError"`
	} `json:"result"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// text is the tool result's text content.
func (r *toolReply) text() string {
	if r.Result == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range r.Result.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

// sessionID is the structured content's sessionId, or "".
func (r *toolReply) sessionID() string {
	if r.Result == nil || r.Result.StructuredContent == nil {
		return ""
	}
	return r.Result.StructuredContent.SessionID
}

// mustBeCreated fails the test unless r is a newly created session, and
// returns its session ID.
func (r *toolReply) mustBeCreated(t *testing.T) string {
	t.Helper()
	if r.Error != nil || r.Result == nil || r.Result.IsError || r.Result.StructuredContent == nil ||
		r.Result.StructuredContent.Replayed || r.sessionID() == "" || !strings.HasPrefix(r.text(), "Created") {
		t.Fatalf("want a created session, got %s", r.raw)
	}
	return r.sessionID()
}

// replyLog collects a server's stdout, indexing the responses by id.
type replyLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	byID    map[string]*toolReply
	changed chan struct{} // closed and replaced at every new line
}

func newReplyLog() *replyLog {
	return &replyLog{byID: make(map[string]*toolReply), changed: make(chan struct{})}
}

// Write takes the server's stdout.
func (l *replyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		r := &toolReply{raw: line}
		if json.Unmarshal([]byte(line), r) == nil && len(r.ID) > 0 {
			l.byID[string(r.ID)] = r
		}
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// find returns the first line that contains s, if one has come, and a
// channel closed at the next line.
func (l *replyLog) find(s string) (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return line, l.changed
		}
	}
	return "", l.changed
}

// get returns the response to id, if it has come, and a channel closed at
// the next line.
func (l *replyLog) get(id int) (*toolReply, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byID[strconv.Itoa(id)], l.changed
}

func (l *replyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mcpProcess is the clink-mcp binary serving MCP over stdio, the test its
// client.
type mcpProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *replyLog
	stderr *syncBuffer
	exited chan struct{} // closed when the process has ended and its output is read
	err    error         // cmd.Wait's, once exited is closed
}

// startServer starts "clink-mcp serve" against clink under policyFile and
// completes the MCP handshake (initialize is id 0) as a 2025-11-25 client
// that cannot be asked questions. The process is killed, if still running,
// when the test ends.
func startServer(t *testing.T, clink *gatedClink, policyFile string) *mcpProcess {
	t.Helper()
	return startServerWith(t, clink, policyFile, `{}`)
}

// serveCommandFor is `bin serve` logging JSON, against the Clink at
// clinkURL under policyFile, with the test's environment less its CLINK_
// variables, and env (KEY=value) added.
func serveCommandFor(bin, clinkURL, policyFile string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin, "serve", "--log-format", "json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLINK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"CLINK_API_KEY="+sandbox.DefaultAPIKey,
		"CLINK_ENV=sandbox",
		"CLINK_BASE_URL="+clinkURL,
		"CLINK_POLICY="+policyFile,
	)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// startServerWith is startServer for a client with capabilities (a JSON
// object), with env (KEY=value) added to the server's environment.
func startServerWith(t *testing.T, clink *gatedClink, policyFile, capabilities string, env ...string) *mcpProcess {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := serveCommandFor(bin, clink.url, policyFile, env...)
	p := &mcpProcess{t: t, cmd: cmd, out: newReplyLog(), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("server process %d still running after kill", cmd.Process.Pid)
		}
	})
	p.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":` + capabilities + `,"clientInfo":{"name":"fault-test","version":"1"}}}`)
	if r := p.reply(0, 20*time.Second); r.Error != nil {
		t.Fatalf("initialize: %s", r.raw)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return p
}

// send writes msg to the server's stdin as one line.
func (p *mcpProcess) send(msg string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, msg+"\n"); err != nil {
		p.t.Fatalf("writing to the server's stdin: %v", err)
	}
}

// call sends create_agent_payment_session for alice@example.com with id and
// amount (a JSON number, USD). Calls with the same amount are identical.
func (p *mcpProcess) call(id int, amount string) {
	p.t.Helper()
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_agent_payment_session",`+
		`"arguments":{"customerEmail":"alice@example.com","amount":%s,"currency":"USD"}}}`, id, amount))
}

// reply waits for the response to id.
func (p *mcpProcess) reply(id int, within time.Duration) *toolReply {
	p.t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		r, changed := p.out.get(id)
		if r != nil {
			return r
		}
		select {
		case <-changed:
		case <-p.exited:
			if r, _ := p.out.get(id); r != nil {
				return r
			}
			p.t.Fatalf("the server exited (%v) without answering request %d\n%s", p.err, id, p.output())
		case <-timer.C:
			p.t.Fatalf("no response to request %d within %v\n%s", id, within, p.output())
		}
	}
}

// noReply fails the test if a response to id arrives within d.
func (p *mcpProcess) noReply(id int, d time.Duration) {
	p.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		r, changed := p.out.get(id)
		if r != nil {
			p.t.Fatalf("request %d got a response, want none: %s", id, r.raw)
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		}
	}
}

// closeStdin ends the server's input.
func (p *mcpProcess) closeStdin() {
	p.t.Helper()
	if err := p.stdin.Close(); err != nil {
		p.t.Fatalf("closing the server's stdin: %v", err)
	}
}

// awaitExit waits for the process to end and returns cmd.Wait's error.
func (p *mcpProcess) awaitExit(within time.Duration) error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(within):
		p.t.Fatalf("the server did not exit within %v\n%s", within, p.output())
		return nil
	}
}

// awaitLine waits for a line of the server's stdout that contains s, and
// returns the first.
func (p *mcpProcess) awaitLine(s string, within time.Duration) string {
	p.t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		line, changed := p.out.find(s)
		if line != "" {
			return line
		}
		select {
		case <-changed:
		case <-p.exited:
			if line, _ := p.out.find(s); line != "" {
				return line
			}
			p.t.Fatalf("the server exited (%v) without writing a line with %s\n%s", p.err, s, p.output())
		case <-timer.C:
			p.t.Fatalf("no line with %s within %v\n%s", s, within, p.output())
		}
	}
}

// awaitLog waits until the server's stderr contains s.
func (p *mcpProcess) awaitLog(s string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("the server did not log %q within %v\n%s", s, within, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// output is the server's stdout and stderr so far, for failure messages.
func (p *mcpProcess) output() string {
	return "stdout:\n" + p.out.String() + "\nstderr:\n" + p.stderr.String()
}

// auditLine is one record of "clink-mcp audit export".
type auditLine struct {
	Kind      string `json:"kind"`
	Call      string `json:"call"`
	Decision  string `json:"decision"`
	SessionID string `json:"session_id"`
	Open      bool   `json:"open"`
}

// auditVerify runs "clink-mcp audit verify" on the store of policyFile.
func auditVerify(t *testing.T, policyFile string) (code int, stdout, stderr string) {
	t.Helper()
	return runCmd(t, nil, "audit", "verify", "--policy", policyFile)
}

// auditExport runs "clink-mcp audit export" on the store of policyFile.
func auditExport(t *testing.T, policyFile string) []auditLine {
	t.Helper()
	code, out, errOut := runCmd(t, nil, "audit", "export", "--policy", policyFile)
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	var lines []auditLine
	for line := range strings.Lines(out) {
		var l auditLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("audit export line %q: %v", line, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// only returns the records of kind with decision ("" for any).
func only(lines []auditLine, kind, decision string) []auditLine {
	var out []auditLine
	for _, l := range lines {
		if l.Kind == kind && (decision == "" || l.Decision == decision) {
			out = append(out, l)
		}
	}
	return out
}

// TestFaultKill9MidCallThenRestart kills the server with SIGKILL while its
// request is at Clink. Nothing can record Clink's answer then; the next
// server must resolve the call as outcome_unknown when it starts, so that
// an identical retry is answered at once with that, never sent again.
func TestFaultKill9MidCallThenRestart(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)

	a := startServer(t, clink, policyFile)
	a.call(1, "12.5")
	clink.awaitPOSTs(t, 1, 15*time.Second)

	// While A lives, its intent is in flight, not orphaned.
	code, _, errOut := auditVerify(t, policyFile)
	if code != 1 || !strings.Contains(errOut, "1 still in flight, 0 left by a server that stopped mid-call") {
		t.Fatalf("audit verify with the call in flight: exit %d, stderr %q", code, errOut)
	}

	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := a.awaitExit(10 * time.Second); err == nil {
		t.Fatal("server A exited cleanly after kill -9")
	}
	code, _, errOut = auditVerify(t, policyFile)
	if code != 1 || !strings.Contains(errOut, "0 still in flight, 1 left by a server that stopped mid-call") {
		t.Fatalf("audit verify after kill -9: exit %d, stderr %q", code, errOut)
	}

	// Server B resolves the orphaned call as it starts, before any call
	// comes to wait for it.
	b := startServer(t, clink, policyFile)
	if code, out, errOut := auditVerify(t, policyFile); code != 0 {
		t.Fatalf("audit verify once server B has started: exit %d\n%s%s", code, out, errOut)
	}
	b.call(2, "12.5")
	r := b.reply(2, 5*time.Second)
	if r.Result == nil || !r.Result.IsError || !strings.HasPrefix(r.text(), "Replay:") || !strings.Contains(r.text(), "outcome unknown") {
		t.Fatalf("the retry on server B: want a replayed unknown outcome, got %s", r.raw)
	}
	if n := clink.POSTs(); n != 1 {
		t.Errorf("the fake Clink saw %d POSTs, want 1", n)
	}

	if code, out, errOut := auditVerify(t, policyFile); code != 0 {
		t.Fatalf("audit verify after the restart: exit %d\n%s%s", code, out, errOut)
	}
	lines := auditExport(t, policyFile)
	intents, unknown := only(lines, "intent", ""), only(lines, "outcome", "outcome_unknown")
	if len(intents) != 1 || len(unknown) != 1 || intents[0].Call == "" || unknown[0].Call != intents[0].Call || intents[0].Open {
		t.Fatalf("audit export: want one closed intent and its outcome_unknown outcome, got %+v", lines)
	}
}

// TestFaultStdinClosedWithEightCallsInFlight closes stdin while eight
// distinct calls are in flight (five at Clink, three queued behind mcp-go's
// five workers). The server must answer every one before it exits, and
// record each.
func TestFaultStdinClosedWithEightCallsInFlight(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)
	s := startServer(t, clink, policyFile)

	const calls = 8
	for i := 1; i <= calls; i++ {
		s.call(i, fmt.Sprintf("10.%02d", i))
	}
	clink.awaitPOSTs(t, 5, 15*time.Second)
	s.closeStdin()
	time.Sleep(200 * time.Millisecond)
	clink.release()

	sessions := map[string]bool{}
	for i := 1; i <= calls; i++ {
		sessions[s.reply(i, 30*time.Second).mustBeCreated(t)] = true
	}
	if len(sessions) != calls {
		t.Errorf("%d distinct session IDs for %d calls", len(sessions), calls)
	}
	if err := s.awaitExit(30 * time.Second); err != nil {
		t.Fatalf("server exit: %v\n%s", err, s.output())
	}
	if n := clink.POSTs(); n != calls {
		t.Errorf("the fake Clink saw %d POSTs, want %d", n, calls)
	}

	code, out, errOut := auditVerify(t, policyFile)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d records, hash chain intact", 2*calls)) {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
	created := only(auditExport(t, policyFile), "outcome", "created")
	if len(created) != calls {
		t.Fatalf("audit export: %d created outcomes, want %d: %+v", len(created), calls, created)
	}
	for _, c := range created {
		if !sessions[c.SessionID] {
			t.Errorf("audit export: created session %q was not answered to the client", c.SessionID)
		}
	}
}

// TestFaultClientCancelsAfterTheRequestLeft cancels a call whose request is
// already at Clink. The client must get no response to it, as MCP says, but
// the session Clink created is recorded, and an identical retry is answered
// with it rather than creating a second one.
func TestFaultClientCancelsAfterTheRequestLeft(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)
	s := startServer(t, clink, policyFile)

	s.call(7, "12.5")
	clink.awaitPOSTs(t, 1, 15*time.Second)
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`)
	// Let the server read the cancellation before Clink answers.
	time.Sleep(200 * time.Millisecond)
	clink.release()
	s.noReply(7, time.Second)

	s.call(8, "12.5")
	r := s.reply(8, 10*time.Second)
	if r.Error != nil || r.Result == nil || r.Result.IsError || r.Result.StructuredContent == nil ||
		!r.Result.StructuredContent.Replayed || !strings.HasPrefix(r.text(), "Replay:") || r.sessionID() == "" {
		t.Fatalf("the retry: want a replayed session, got %s", r.raw)
	}
	if n := clink.POSTs(); n != 1 {
		t.Errorf("the fake Clink saw %d POSTs, want 1", n)
	}
	created := only(auditExport(t, policyFile), "outcome", "created")
	if len(created) != 1 || created[0].SessionID != r.sessionID() {
		t.Fatalf("audit export: want one created outcome with session %q, got %+v", r.sessionID(), created)
	}
}

// TestFaultStoreLockedLongerThanTheBusyTimeout has another process hold the
// store's write lock for longer than the server's busy timeout while Clink
// answers a call. The client must still get its session, and the call's
// outcome must land in the store once the lock is gone, nothing lost.
func TestFaultStoreLockedLongerThanTheBusyTimeout(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)
	s := startServer(t, clink, policyFile)

	s.call(1, "12.5")
	clink.awaitPOSTs(t, 1, 15*time.Second)

	// The test process takes the write lock, as a second server or an
	// operator's sqlite3 shell might.
	path, err := filepath.Abs(storePathOf(t, policyFile))
	if err != nil {
		t.Fatal(err)
	}
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: "_busy_timeout=5000"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	lockedAt := time.Now()
	var unlockOnce sync.Once
	unlock := func() {
		unlockOnce.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("releasing the store lock: %v", err)
			}
			conn.Close()
		})
	}
	t.Cleanup(unlock)
	clink.release()

	// The settle write waits out the busy timeout, fails, and is kept to
	// retry: the answer comes all the same.
	sessionID := s.reply(1, 30*time.Second).mustBeCreated(t)
	s.awaitLog("journal write failed; keeping it to retry", 3*time.Second)
	time.Sleep(time.Until(lockedAt.Add(14 * time.Second)))
	unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out, errOut := auditVerify(t, policyFile)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit verify 15 s after the lock was released: exit %d\n%s%s\n%s", code, out, errOut, s.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	lines := auditExport(t, policyFile)
	intents, created := only(lines, "intent", ""), only(lines, "outcome", "created")
	if len(intents) != 1 || len(created) != 1 || created[0].Call != intents[0].Call || created[0].SessionID != sessionID {
		t.Fatalf("audit export: want the call's intent and its created outcome with session %q, got %+v", sessionID, lines)
	}
	// The journal logged its retry landing, after its failure; it may log
	// it just after the write is visible.
	s.awaitLog("journal write landed after retrying", 5*time.Second)
	log := s.stderr.String()
	if strings.Index(log, "journal write landed after retrying") < strings.Index(log, "journal write failed; keeping it to retry") {
		t.Errorf("the journal logged its retry landing before its failure\n%s", log)
	}
}

// TestFaultSIGTERMFinishesTheCallInFlight sends SIGTERM while a call is at
// Clink. The server must finish the call, answer it and record it before it
// exits, with code 0.
func TestFaultSIGTERMFinishesTheCallInFlight(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)
	s := startServer(t, clink, policyFile)

	s.call(1, "12.5")
	clink.awaitPOSTs(t, 1, 15*time.Second)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// While it drains, the server still reads its input and refuses a new
	// call rather than leaving it unanswered.
	s.awaitLog("shutting down: finishing the calls in flight", 10*time.Second)
	s.call(2, "13.5")
	if r := s.reply(2, 10*time.Second); r.Result == nil || !r.Result.IsError || !strings.Contains(r.text(), "shutting down") {
		t.Fatalf("a call sent after SIGTERM: want it refused as shutting down, got %s", r.raw)
	}
	time.Sleep(200 * time.Millisecond)
	clink.release()

	sessionID := s.reply(1, 30*time.Second).mustBeCreated(t)
	if err := s.awaitExit(30 * time.Second); err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.output())
	}
	// The call's intent and outcome, and the refusal's outcome.
	if code, out, errOut := auditVerify(t, policyFile); code != 0 || !strings.Contains(out, "3 records, hash chain intact") {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
	created := only(auditExport(t, policyFile), "outcome", "created")
	if len(created) != 1 || created[0].SessionID != sessionID {
		t.Fatalf("audit export: want one created outcome with session %q, got %+v", sessionID, created)
	}
}
