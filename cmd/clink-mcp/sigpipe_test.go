package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// ticketClink is a fake Clink that holds each POST until the test hands it
// a ticket: the calls at Clink finish one at a time.
type ticketClink struct {
	sb      *sandbox.Server
	posts   atomic.Int64
	tickets chan struct{}
}

func (g *ticketClink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		g.posts.Add(1)
		select {
		case <-g.tickets:
		case <-r.Context().Done():
			return
		}
	}
	g.sb.ServeHTTP(w, r)
}

// TestAGoneClientsClosedStdoutDoesNotKillTheDrain: a desktop client that
// dies closes both ends of its pipes. The server sees the end of stdin and
// drains: the calls in flight finish and are recorded (docs/operations.md),
// although the first answer is written to a broken stdout. Go ends a
// process writing to a broken fd 1 with SIGPIPE unless the signal is
// ignored, which serve does (found by this part's review of the stdio
// transport: without it the call still at Clink is never recorded).
func TestAGoneClientsClosedStdoutDoesNotKillTheDrain(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	g := &ticketClink{sb: sandbox.New(), tickets: make(chan struct{}, 4)}
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer func() { g.tickets <- struct{}{}; g.tickets <- struct{}{} }()
	policyFile := policyWithStore(t)

	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := serveCommandFor(bin, srv.URL+"/", policyFile)
	cmd.Stdout = outW
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	defer cmd.Process.Kill()
	lines := bufio.NewReader(outR)
	send := func(s string) { io.WriteString(stdin, s+"\n") }
	send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if l, err := lines.ReadString('\n'); err != nil || !strings.Contains(l, `"id":0`) {
		t.Fatalf("initialize: %q %v", l, err)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":{"customerEmail":"alice@example.com","amount":12.5,"currency":"USD"}}}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":{"customerEmail":"alice@example.com","amount":13.5,"currency":"USD"}}}`)
	deadline := time.Now().Add(15 * time.Second)
	for g.posts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("calls did not reach Clink\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The client dies: its ends of both pipes close.
	stdin.Close()
	outR.Close()
	time.Sleep(200 * time.Millisecond)
	g.tickets <- struct{}{} // one call finishes; its answer meets the broken pipe
	time.Sleep(500 * time.Millisecond)
	g.tickets <- struct{}{} // the other finishes

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("no exit")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Errorf("the server was killed by %v while draining", ws.Signal())
		}
	}
	if code, out, errOut := auditVerify(t, policyFile); code != 0 {
		t.Errorf("audit verify: exit %d: a call in flight was not recorded\n%s%s", code, out, errOut)
	}
	t.Logf("exit: %v\nstderr:\n%s", err, stderr.String())
}
