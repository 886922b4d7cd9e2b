package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/tools"
)

// The tests that serve over a stdioConn run a real mcp-go StdioServer. Its
// session is a package-level singleton in mcp-go, so none of them may run in
// parallel with another.

// stdioConnOut is the stdout a stdioConn writes to: it keeps everything
// written, for the test to read while the server runs.
type stdioConnOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p.
func (o *stdioConnOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String returns everything written so far.
func (o *stdioConnOut) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// stdioConnReply is the part of a line on stdout the tests look at.
type stdioConnReply struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result *struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// stdioConnReplies parses every line in out, failing the test on one that
// is not a complete JSON object.
func stdioConnReplies(t *testing.T, out string) []stdioConnReply {
	t.Helper()
	var replies []stdioConnReply
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("stdout ends in an incomplete line: %q", line)
		}
		var r stdioConnReply
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		replies = append(replies, r)
	}
	return replies
}

// toolText returns the text of a tool call's reply, or a description of
// what came instead.
func (r stdioConnReply) toolText() string {
	switch {
	case r.Error != nil:
		return "error: " + r.Error.Message
	case r.Result == nil || len(r.Result.Content) != 1:
		return fmt.Sprintf("no single text content: %+v", r.Result)
	case r.Result.IsError:
		return "isError: " + r.Result.Content[0].Text
	}
	return r.Result.Content[0].Text
}

// stdioConnEventually fails the test unless cond comes true within a few
// seconds.
func stdioConnEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// stdioConnServer is an MCP server with one tool, "wait", served by
// mcp-go's StdioServer over a stdioConn, its stdin a pipe the test writes.
// A call to wait with argument n starts, then answers "done n" once the
// test releases the calls, or "cancelled n" once its context is cancelled.
type stdioConnServer struct {
	t       *testing.T
	conn    *stdioConn
	stdin   *io.PipeWriter
	out     *stdioConnOut
	started chan string   // each call's n, as its handler starts
	calls   atomic.Int64  // how many calls the handler has had
	release func()        // lets every call, running or to come, finish
	done    chan struct{} // closed when Listen returns
	err     error         // what Listen returned, once done is closed
}

// startStdioConnServer starts the server and sends the initialize
// handshake.
func startStdioConnServer(t *testing.T) *stdioConnServer {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	released := make(chan struct{})
	var once sync.Once
	h := &stdioConnServer{
		t:       t,
		stdin:   stdinW,
		out:     &stdioConnOut{},
		started: make(chan string, 100),
		release: func() { once.Do(func() { close(released) }) },
		done:    make(chan struct{}),
	}
	h.conn = newStdioConn(stdinR, h.out)

	s := server.NewMCPServer("stdioconn-test", "1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("wait",
		mcp.WithDescription("Waits until the test releases it or it is cancelled."),
		mcp.WithString("n", mcp.Required()),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		n := req.GetString("n", "")
		h.calls.Add(1)
		h.started <- n
		select {
		case <-released:
			return mcp.NewToolResultText("done " + n), nil
		case <-ctx.Done():
			return mcp.NewToolResultText("cancelled " + n), nil
		}
	})
	stdio := server.NewStdioServer(s)
	stdio.SetErrorLogger(log.New(io.Discard, "", 0))
	go func() {
		defer close(h.done)
		h.err = stdio.Listen(context.Background(), h.conn.Reader(), h.conn.Writer())
	}()
	// However a test ends, let Listen end before the next one starts.
	t.Cleanup(func() {
		h.release()
		_ = stdinW.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Listen still running at the end of the test")
		}
	})

	h.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"stdioconn-test","version":"1"}}}`)
	stdioConnEventually(t, "initialize is answered", func() bool {
		return strings.Contains(h.out.String(), `"id":0,`)
	})
	h.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return h
}

// send writes each message to stdin as a line.
func (h *stdioConnServer) send(msgs ...string) {
	h.t.Helper()
	for _, m := range msgs {
		if _, err := io.WriteString(h.stdin, m+"\n"); err != nil {
			h.t.Fatalf("writing stdin: %v", err)
		}
	}
}

// stdioConnCall returns a tools/call of wait with the given JSON id and n.
func stdioConnCall(id, n string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"wait","arguments":{"n":"` + n + `"}}}`
}

// awaitStarted waits until count calls have started.
func (h *stdioConnServer) awaitStarted(count int) {
	h.t.Helper()
	for range count {
		select {
		case <-h.started:
		case <-time.After(10 * time.Second):
			h.t.Fatalf("timed out waiting for %d calls to start", count)
		}
	}
}

// wait waits for Listen to return and returns stdout as it stood then.
func (h *stdioConnServer) wait() string {
	h.t.Helper()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Fatal("Listen did not return")
	}
	if h.err != nil {
		h.t.Fatalf("Listen: %v", h.err)
	}
	return h.out.String()
}

// TestStdioConnAnswersEveryRequestInFlightWhenStdinEnds sends more tool
// calls than mcp-go has workers, closes stdin while they all wait, and only
// then lets them finish: each must still be answered with its own result,
// before Listen returns. Without stdioConn Listen would cancel them all at
// the end of stdin and return without waiting.
func TestStdioConnAnswersEveryRequestInFlightWhenStdinEnds(t *testing.T) {
	tests := []struct {
		name string
		id   func(i int) string
	}{
		{"eight calls with number ids, three of them queued behind mcp-go's five workers", func(i int) string { return fmt.Sprint(i) }},
		{"eight calls with string ids", func(i int) string { return fmt.Sprintf(`"call-%d"`, i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startStdioConnServer(t)
			const calls = 8
			want := map[string]string{} // reply id -> text
			for i := 1; i <= calls; i++ {
				n := fmt.Sprint(i)
				h.send(stdioConnCall(tt.id(i), n))
				want[tt.id(i)] = "done " + n
			}
			stdioConnEventually(t, "every call is pending", func() bool { return h.conn.Pending() == calls })
			if err := h.stdin.Close(); err != nil {
				t.Fatal(err)
			}
			h.awaitStarted(5) // mcp-go's default worker pool
			time.Sleep(50 * time.Millisecond)
			select {
			case <-h.done:
				t.Fatalf("Listen returned with %d calls in flight: %v\n%s", h.conn.Pending(), h.err, h.out.String())
			default:
			}
			h.release()

			got := map[string]string{}
			for _, r := range stdioConnReplies(t, h.wait()) {
				if string(r.ID) == "0" || r.Method != "" {
					continue // initialize, or a notification
				}
				if _, dup := got[string(r.ID)]; dup {
					t.Errorf("two replies to %s", r.ID)
				}
				got[string(r.ID)] = r.toolText()
			}
			for id, text := range want {
				if got[id] != text {
					t.Errorf("reply to %s = %q, want %q", id, got[id], text)
				}
			}
			if len(got) != len(want) {
				t.Errorf("replies: %v, want %v", got, want)
			}
			if n := h.conn.Pending(); n != 0 {
				t.Errorf("Pending() = %d after Listen returned", n)
			}
		})
	}
}

// TestStdioConnDropsTheResponseToACancelledRequest cancels one of two
// running calls: mcp-go cancels its handler, which answers, and that answer
// must not reach stdout, while the other call's does.
func TestStdioConnDropsTheResponseToACancelledRequest(t *testing.T) {
	tests := []struct {
		name string
		// cancelled is the id of the call that is cancelled, as the call
		// and as the cancellation write it; other is the other call's.
		cancelled, cancelledAs, other string
	}{
		{"with number ids", `1`, `1`, `2`},
		{"with string ids", `"a"`, `"a"`, `"b"`},
		{"when the call writes its id 1.0 and the cancellation 1", `1.0`, `1`, `2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startStdioConnServer(t)
			h.send(stdioConnCall(tt.cancelled, "cancelled-one"), stdioConnCall(tt.other, "other"))
			h.awaitStarted(2)
			h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + tt.cancelledAs + `,"reason":"test"}}`)
			// The cancelled call's answer has gone through the conn once
			// only the other call is pending.
			stdioConnEventually(t, "the cancelled call has answered", func() bool { return h.conn.Pending() == 1 })
			h.release()
			if err := h.stdin.Close(); err != nil {
				t.Fatal(err)
			}

			var ids []string
			for _, r := range stdioConnReplies(t, h.wait()) {
				if r.Method != "" {
					continue
				}
				ids = append(ids, string(r.ID))
				if string(r.ID) == tt.other {
					if text := r.toolText(); text != "done other" {
						t.Errorf("reply to the other call = %q, want %q", text, "done other")
					}
				}
			}
			if want := []string{"0", tt.other}; !slices.Equal(ids, want) {
				t.Errorf("replies to %v, want to %v", ids, want)
			}
		})
	}
}

// TestStdioConnStopsWaitingAtTheDrainDeadline ends stdin while a call that
// only ever finishes by being cancelled runs (as one waiting for a client
// gone while it was asked to approve): Listen must return once the drain
// deadline passes, not before and not never, having cancelled it. A drain
// timeout of 0 (a grace period of 0) ends the wait at once.
func TestStdioConnStopsWaitingAtTheDrainDeadline(t *testing.T) {
	const grace = 300 * time.Millisecond
	tests := []struct {
		name  string
		grace time.Duration
		// configure sets the deadline up, called just before stdin ends.
		configure func(*testing.T, *stdioConn)
	}{
		{"a drain deadline context", grace, func(t *testing.T, c *stdioConn) {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			t.Cleanup(cancel)
			c.SetDrainDeadline(ctx)
		}},
		{"a drain timeout counted from the end of stdin", grace, func(_ *testing.T, c *stdioConn) { c.SetDrainTimeout(grace) }},
		{"a drain timeout of zero", 0, func(_ *testing.T, c *stdioConn) { c.SetDrainTimeout(0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startStdioConnServer(t)
			h.send(stdioConnCall("1", "forever"))
			h.awaitStarted(1)
			tt.configure(t, h.conn)
			start := time.Now()
			if err := h.stdin.Close(); err != nil {
				t.Fatal(err)
			}
			out := h.wait() // fails after 10 s if Listen never returns
			elapsed := time.Since(start)
			if elapsed < tt.grace-50*time.Millisecond {
				t.Errorf("Listen returned %v after the end of stdin, before the %v deadline", elapsed, tt.grace)
			}
			if tt.grace == 0 && elapsed > 3*time.Second {
				t.Errorf("Listen returned %v after the end of stdin, with a drain timeout of zero", elapsed)
			}
			var texts []string
			for _, r := range stdioConnReplies(t, out) {
				if string(r.ID) == "1" {
					texts = append(texts, r.toolText())
				}
			}
			if want := []string{"cancelled forever"}; !slices.Equal(texts, want) {
				t.Errorf("replies to the call: %q, want %q", texts, want)
			}
		})
	}
}

// stdioConnIn is the stdin of the unit tests: each Read returns the chunk
// the test put in next, then, once it is used, io.EOF.
type stdioConnIn struct{ next []byte }

// Read returns the next chunk whole.
func (in *stdioConnIn) Read(p []byte) (int, error) {
	if in.next == nil {
		return 0, io.EOF
	}
	n := copy(p, in.next)
	in.next = nil
	return n, nil
}

// stdioConnStep is one step of a unit test: a chunk the client sends, read
// through the conn, or one the server writes to it.
type stdioConnStep struct{ read, write string }

// stdioConnRequest returns the line of a client's request with JSON id id.
func stdioConnRequest(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"x"}}` + "\n"
}

// stdioConnResult returns the line of the server's response to the request
// with JSON id id.
func stdioConnResult(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[]}}` + "\n"
}

// stdioConnCancel returns the line of a client's cancellation of the request
// with JSON id id.
func stdioConnCancel(id string) string {
	return `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + id + `}}` + "\n"
}

// stdioConnFeed is the stdin of the table tests: the test feeds it chunks,
// which Read returns as they come, and can wait until the conn has read
// everything fed and asks for more.
type stdioConnFeed struct {
	mu      sync.Mutex
	cond    *sync.Cond
	chunks  [][]byte
	closed  bool
	waiting bool // a Read is waiting for a chunk
}

func newStdioConnFeed() *stdioConnFeed {
	f := &stdioConnFeed{}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Read returns the next chunk, as much of it as fits, waiting for one if
// need be, or io.EOF once the feed is closed and empty.
func (f *stdioConnFeed) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.chunks) == 0 && !f.closed {
		f.waiting = true
		f.cond.Broadcast()
		f.cond.Wait()
	}
	f.waiting = false
	if len(f.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.chunks[0])
	if f.chunks[0] = f.chunks[0][n:]; len(f.chunks[0]) == 0 {
		f.chunks = f.chunks[1:]
	}
	return n, nil
}

// feed queues a chunk.
func (f *stdioConnFeed) feed(chunk string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chunks = append(f.chunks, []byte(chunk))
	f.cond.Broadcast()
}

// settle waits until everything fed has been read and the reader waits for
// more: the conn has dealt with all of it.
func (f *stdioConnFeed) settle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.chunks) > 0 || !f.waiting {
		f.cond.Wait()
	}
}

// close ends the feed.
func (f *stdioConnFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.cond.Broadcast()
}

// stdioConnRefusal returns the line of the error response the conn answers
// a refused message with.
func stdioConnRefusal(id string, code int, message string) string {
	m, err := json.Marshal(message)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m) + "\n"
}

// stdioConnParseError is the line answering a line that is not JSON, as
// mcp-go writes it.
const stdioConnParseError = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}` + "\n"

// TestStdioConnAccountsForEachLine feeds a conn lines from both sides and
// checks what reaches stdout, what is left pending, and what the server
// reads: every line admitted, unchanged, and nothing else. The server must
// never be handed part of a line, even for a moment, and stdout must only
// ever hold complete lines.
func TestStdioConnAccountsForEachLine(t *testing.T) {
	const limit = 256
	long := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"pad":"` + strings.Repeat("x", 300) + `"}}` + "\n"
	// pad is a value to put in a message to make it longer than the limit.
	pad := `"` + strings.Repeat("y", limit) + `"`
	tooLarge := "message too large: the limit is 256 bytes on one line"
	deep := strings.Repeat("[", tools.MaxMessageDepth) + strings.Repeat("]", tools.MaxMessageDepth)
	exact := `{"jsonrpc":"2.0","method":"x","params":{"pad":""}}`
	exact = exact[:len(exact)-3] + strings.Repeat("z", limit-len(exact)) + exact[len(exact)-3:]
	tests := []struct {
		name        string
		steps       []stdioConnStep
		wantOut     string
		wantPending int
		// wantRead is the lines the server reads, newlines cut; nil for
		// every complete line read.
		wantRead []string
	}{
		{
			name:    "a request is settled by its response",
			steps:   []stdioConnStep{{read: stdioConnRequest("1")}, {write: stdioConnResult("1")}},
			wantOut: stdioConnResult("1"),
		},
		{
			name:        "a request read in pieces is pending once",
			steps:       []stdioConnStep{{read: `{"jsonrpc":"2.0",`}, {read: `"id":7,"method":"ping"}`}, {read: "\n"}},
			wantPending: 1,
		},
		{
			name:        "a request without its newline is not pending, as mcp-go never reads it",
			steps:       []stdioConnStep{{read: strings.TrimSuffix(stdioConnRequest("1"), "\n")}},
			wantPending: 0,
		},
		{
			name: "a response written in pieces is held until its line ends",
			steps: []stdioConnStep{
				{read: stdioConnRequest("7")},
				{write: `{"jsonrpc":"2.0","id"`}, {write: `:7,"result":{}}`}, {write: "\n"},
			},
			wantOut: `{"jsonrpc":"2.0","id":7,"result":{}}` + "\n",
		},
		{
			name: "lines split across writes anywhere are each settled",
			steps: []stdioConnStep{
				{read: stdioConnRequest("1") + stdioConnRequest("2") + stdioConnRequest("3")},
				{read: stdioConnCancel("2")},
				{write: stdioConnResult("1") + stdioConnResult("2")[:10]},
				{write: stdioConnResult("2")[10:] + stdioConnResult("3")},
			},
			wantOut: stdioConnResult("1") + stdioConnResult("3"),
		},
		{
			name:    "ids 1 and \"1\" are different requests: cancelling \"1\" drops only its response",
			steps:   []stdioConnStep{{read: stdioConnRequest("1")}, {read: stdioConnRequest(`"1"`)}, {read: stdioConnCancel(`"1"`)}, {write: stdioConnResult("1")}, {write: stdioConnResult(`"1"`)}},
			wantOut: stdioConnResult("1"),
		},
		{
			name:    "ids 1 and \"1\" are different requests: cancelling 1 drops only its response",
			steps:   []stdioConnStep{{read: stdioConnRequest("1")}, {read: stdioConnRequest(`"1"`)}, {read: stdioConnCancel("1")}, {write: stdioConnResult(`"1"`)}, {write: stdioConnResult("1")}},
			wantOut: stdioConnResult(`"1"`),
		},
		{
			name:  "an error response to a cancelled request is dropped too",
			steps: []stdioConnStep{{read: stdioConnRequest("4")}, {read: stdioConnCancel("4")}, {write: `{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"cancelled"}}` + "\n"}},
		},
		{
			name: "a cancellation silences one response, not the next request's with the same id",
			steps: []stdioConnStep{
				{read: stdioConnRequest("5")}, {read: stdioConnCancel("5")}, {write: stdioConnResult("5")},
				{read: stdioConnRequest("5")}, {write: stdioConnResult("5")},
			},
			wantOut: stdioConnResult("5"),
		},
		{
			name: "a cancellation of an id not pending is ignored",
			steps: []stdioConnStep{
				{read: stdioConnCancel("6")}, {read: stdioConnRequest("6")}, {write: stdioConnResult("6")},
			},
			wantOut: stdioConnResult("6"),
		},
		{
			name:    "a request written with id 1.0 is cancelled by 1 and answered as 1, as mcp-go does",
			steps:   []stdioConnStep{{read: stdioConnRequest("1.0")}, {read: stdioConnRequest("2")}, {read: stdioConnCancel("1")}, {write: stdioConnResult("1")}, {write: stdioConnResult("2")}},
			wantOut: stdioConnResult("2"),
		},
		{
			name:        "an id reused while its request runs stays pending until both are answered",
			steps:       []stdioConnStep{{read: stdioConnRequest("1")}, {read: stdioConnRequest("1")}, {write: stdioConnResult("1")}},
			wantOut:     stdioConnResult("1"),
			wantPending: 1,
		},
		{
			name:        "a line read that is not JSON is answered with mcp-go's parse error, and one written passes through",
			steps:       []stdioConnStep{{read: stdioConnRequest("1")}, {read: "hello\n"}, {read: "\n"}, {read: `{"id":1}{"id":2}` + "\n"}, {write: "not json\n"}, {write: "{\n"}},
			wantOut:     stdioConnParseError + stdioConnParseError + stdioConnParseError + "not json\n{\n",
			wantPending: 1,
			wantRead:    []string{strings.TrimSuffix(stdioConnRequest("1"), "\n")},
		},
		{
			name:        "a response to an unknown id passes through",
			steps:       []stdioConnStep{{read: stdioConnRequest("1")}, {read: stdioConnCancel("1")}, {write: stdioConnResult("2")}, {write: stdioConnResult(`"x"`)}},
			wantOut:     stdioConnResult("2") + stdioConnResult(`"x"`),
			wantPending: 1,
		},
		{
			name: "the server's own notifications and requests pass through and settle nothing",
			steps: []stdioConnStep{
				{read: stdioConnRequest("1")}, {read: stdioConnCancel("1")},
				{write: `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}` + "\n"},
				{write: `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}` + "\n"},
			},
			wantOut:     `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}` + "\n" + `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}` + "\n",
			wantPending: 1,
		},
		{
			name: "what is not a request is not pending",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":null,"method":"ping"}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"method":"ping","result":{}}` + "\n"},
				{read: `[{"jsonrpc":"2.0","id":3,"method":"ping"}]` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"method":7}` + "\n"},
			},
		},
		{
			// mcp-go would take a response to nothing it asked for a
			// request, and answer it ("method not found"): the answer
			// could even settle a pending request with the same id.
			name: "a response to nothing the server asked is dropped",
			steps: []stdioConnStep{
				{read: stdioConnRequest("3")},
				{read: `{"jsonrpc":"2.0","id":3,"result":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":9,"result":null}` + "\n"},
			},
			wantRead:    []string{strings.TrimSuffix(stdioConnRequest("3"), "\n")},
			wantPending: 1,
		},
		{
			// mcp-go asks (elicitation/create) while it handles a request;
			// a response to the question is passed on once, as mcp-go
			// matches it (1 and "1" alike), and is not a request, even
			// with a method.
			name: "a response to the server's request is passed on once",
			steps: []stdioConnStep{
				{read: stdioConnRequest("7")},
				{write: `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}` + "\n"},
				{write: `{"jsonrpc":"2.0","id":2,"method":"elicitation/create","params":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":"1","result":{"action":"accept"}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":1,"result":{"action":"accept"}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":2,"method":"x","error":{"code":1,"message":"m"}}` + "\n"},
			},
			wantOut: `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}` + "\n" +
				`{"jsonrpc":"2.0","id":2,"method":"elicitation/create","params":{}}` + "\n",
			wantRead: []string{
				strings.TrimSuffix(stdioConnRequest("7"), "\n"),
				`{"jsonrpc":"2.0","id":"1","result":{"action":"accept"}}`,
				`{"jsonrpc":"2.0","id":2,"method":"x","error":{"code":1,"message":"m"}}`,
			},
			wantPending: 1,
		},
		{
			// mcp-go stops waiting for an answer when the request that
			// asked ends, and would answer a late one as a request.
			name: "an answer after every request pending when the server asked has ended is dropped",
			steps: []stdioConnStep{
				{read: stdioConnRequest("7")},
				{write: `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}` + "\n"},
				{write: stdioConnResult("7")},
				{read: `{"jsonrpc":"2.0","id":1,"result":{"action":"accept"}}` + "\n"},
				{read: stdioConnRequest("8")},
				{read: stdioConnRequest("9")},
				{write: `{"jsonrpc":"2.0","id":2,"method":"elicitation/create","params":{}}` + "\n"},
				{read: stdioConnRequest("10")},
				{write: `{"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{}}` + "\n"},
				{write: stdioConnResult("8")},
				{read: `{"jsonrpc":"2.0","id":2,"result":{"action":"accept"}}` + "\n"},
				{write: stdioConnResult("9")},
				{read: `{"jsonrpc":"2.0","id":3,"result":{"action":"decline"}}` + "\n"},
				{write: stdioConnResult("10")},
			},
			wantOut: `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}` + "\n" + stdioConnResult("7") +
				`{"jsonrpc":"2.0","id":2,"method":"elicitation/create","params":{}}` + "\n" +
				`{"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{}}` + "\n" +
				stdioConnResult("8") + stdioConnResult("9") + stdioConnResult("10"),
			wantRead: []string{
				strings.TrimSuffix(stdioConnRequest("7"), "\n"),
				strings.TrimSuffix(stdioConnRequest("8"), "\n"),
				strings.TrimSuffix(stdioConnRequest("9"), "\n"),
				strings.TrimSuffix(stdioConnRequest("10"), "\n"),
				// 9 was pending when 2 was asked: 2 may be its question.
				`{"jsonrpc":"2.0","id":2,"result":{"action":"accept"}}`,
				// 10 was pending when 3 was asked.
				`{"jsonrpc":"2.0","id":3,"result":{"action":"decline"}}`,
			},
		},
		{
			name:        "a line longer than the limit is answered with its id and never read, and the next is",
			steps:       []stdioConnStep{{read: long[:100]}, {read: long[100:] + stdioConnRequest("2")}, {read: long}},
			wantOut:     stdioConnRefusal("9", -32600, tooLarge) + stdioConnRefusal("9", -32600, tooLarge),
			wantPending: 1,
			wantRead:    []string{strings.TrimSuffix(stdioConnRequest("2"), "\n")},
		},
		{
			name:  "a line of exactly the limit is read",
			steps: []stdioConnStep{{read: exact + "\n"}},
		},
		{
			name: "a line longer than the limit is answered with its id wherever it is, as mcp-go would echo it",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","method":"tools/call","params":{"pad":` + pad + `},"id":"late"}` + "\n"},
				{read: `{"ID" : 2.0 , "method":"tools/call","params":{"pad":` + pad + `}}` + "\n"},
				{read: `{"id":"a\"b","pad":` + pad + `}` + "\n"},
				{read: `{"pad":"\"id\":5,","x":{"id":6},"pad2":` + pad + `,"id":"\u0037"}` + "\n"},
			},
			wantOut: stdioConnRefusal(`"late"`, -32600, tooLarge) + stdioConnRefusal("2", -32600, tooLarge) +
				stdioConnRefusal(`"a\"b"`, -32600, tooLarge) + stdioConnRefusal(`"7"`, -32600, tooLarge),
			wantRead: []string{},
		},
		{
			name: "a line longer than the limit without a usable id is answered with a null id",
			steps: []stdioConnStep{
				{read: strings.Repeat("x", limit+1) + "\n"},
				{read: `{"method":"tools/call","params":{"pad":` + pad + `}` + "\n"},
				{read: `{"id":{"a":1},"method":"tools/call","params":{"pad":` + pad + `}}` + "\n"},
				{read: `{"id":true,"method":"tools/call","params":{"pad":` + pad + `}}` + "\n"},
				{read: `[{"id":1,"method":"tools/call","params":{"pad":` + pad + `}}]` + "\n"},
			},
			wantOut:  strings.Repeat(stdioConnRefusal("null", -32600, tooLarge), 5),
			wantRead: []string{},
		},
		{
			name: "a notification or a response longer than the limit is dropped without an answer",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","method":"notifications/x","params":{"pad":` + pad + `}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":null,"method":"notifications/x","params":{"pad":` + pad + `}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"result":{"pad":` + pad + `}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"Error":{"pad":` + pad + `}}` + "\n"},
			},
			wantRead: []string{},
		},
		{
			name: "a response longer than the limit to the server's request reaches it as an error response",
			steps: []stdioConnStep{
				{read: stdioConnRequest("7")},
				{write: `{"jsonrpc":"2.0","id":4,"method":"elicitation/create","params":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":4,"result":{"pad":` + pad + `}}` + "\n"},
			},
			wantOut: `{"jsonrpc":"2.0","id":4,"method":"elicitation/create","params":{}}` + "\n",
			wantRead: []string{
				strings.TrimSuffix(stdioConnRequest("7"), "\n"),
				`{"jsonrpc":"2.0","id":4,"error":{"code":-32600,"message":"the client's response was refused: message too large: the limit is ` + strconv.Itoa(limit) + ` bytes on one line"}}`,
			},
			wantPending: 1,
		},
		{
			name: "a request repeating a key is answered with its id, naming the key, and never read",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"arguments":{}}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"x","Name":"y"}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"b":1,"b":2}]}}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":4,"method":"tools/list","Method":"tools/call"}` + "\n"},
			},
			wantOut: stdioConnRefusal("1", -32600, `duplicate key "params.arguments"`) +
				stdioConnRefusal(`"b"`, -32600, `duplicate key "params.name" (again as "Name")`) +
				stdioConnRefusal("3", -32600, `duplicate key "params.arguments.a[0].b"`) +
				stdioConnRefusal("4", -32600, `duplicate key "method" (again as "Method")`),
			wantRead: []string{},
		},
		{
			name: "a request repeating its id is answered with a null id",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}` + "\n"},
				{read: `{"jsonrpc":"2.0","Id":1,"iD":2,"method":"ping"}` + "\n"},
			},
			wantOut: stdioConnRefusal("null", -32600, `duplicate key "id"`) +
				stdioConnRefusal("null", -32600, `duplicate key "Id" (again as "iD")`),
			wantRead: []string{},
		},
		{
			name:     "a request nested too deeply is answered with its id and never read",
			steps:    []stdioConnStep{{read: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":` + deep + `}}` + "\n"}},
			wantOut:  stdioConnRefusal("1", -32600, `nested too deeply at "params.arguments`+strings.Repeat("[0]", tools.MaxMessageDepth-2)+`": the limit is 64 levels of objects and arrays`),
			wantRead: []string{},
		},
		{
			name: "a notification repeating a key is dropped without an answer",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","method":"notifications/initialized","method":"x"}` + "\n"},
			},
			wantRead: []string{},
		},
		{
			// The client sends nothing back, as JSON-RPC wants; the
			// server's request fails instead of waiting. A refused
			// response to nothing the server asked is dropped.
			name: "a refused response to the server's request reaches it as an error response, unanswered",
			steps: []stdioConnStep{
				{read: stdioConnRequest("7")},
				{write: `{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}` + "\n"},
				{write: `{"jsonrpc":"2.0","id":6,"method":"elicitation/create","params":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":5,"result":{},"result":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":"6","error":{"code":1,"message":"m","code":2}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":5,"result":{},"result":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":7,"result":{},"result":{}}` + "\n"},
			},
			wantOut: `{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}` + "\n" +
				`{"jsonrpc":"2.0","id":6,"method":"elicitation/create","params":{}}` + "\n",
			wantRead: []string{
				strings.TrimSuffix(stdioConnRequest("7"), "\n"),
				`{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"the client's response was refused: duplicate key \"result\""}}`,
				`{"jsonrpc":"2.0","id":"6","error":{"code":-32600,"message":"the client's response was refused: duplicate key \"error.code\""}}`,
			},
			wantPending: 1,
		},
		{
			name: "a response whose id repeats names no request: it is dropped",
			steps: []stdioConnStep{
				{read: `{"jsonrpc":"2.0","id":5,"id":6,"result":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","ID":5,"id":6,"result":{}}` + "\n"},
			},
			wantRead: []string{},
		},
		{
			name: "a cancellation repeating a key cancels nothing",
			steps: []stdioConnStep{
				{read: stdioConnRequest("1")},
				{read: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"requestId":1}}` + "\n"},
				{write: stdioConnResult("1")},
			},
			wantOut:  stdioConnResult("1"),
			wantRead: []string{strings.TrimSuffix(stdioConnRequest("1"), "\n")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newStdioConnFeed()
			out := &stdioConnOut{}
			c := newStdioConn(in, out)
			c.maxMessage = limit
			// The server: it reads what the conn passes on, as mcp-go does.
			var mu sync.Mutex
			var read []byte
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 16) // small, so that lines come in pieces
				for {
					n, err := c.Reader().Read(buf)
					mu.Lock()
					read = append(read, buf[:n]...)
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			t.Cleanup(func() {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				c.SetDrainDeadline(ctx) // don't wait for what is left pending
				in.close()
				<-done
			})
			w := c.Writer()
			var input string // everything read
			for _, s := range tt.steps {
				if s.read != "" {
					in.feed(s.read)
					in.settle()
					mu.Lock()
					got := string(read)
					mu.Unlock()
					if got != "" && !strings.HasSuffix(got, "\n") {
						t.Fatalf("the server has read part of a line: %q", got)
					}
					input += s.read
					continue
				}
				n, err := w.Write([]byte(s.write))
				if err != nil || n != len(s.write) {
					t.Fatalf("Write(%q) = %d, %v", s.write, n, err)
				}
				if got := out.String(); got != "" && !strings.HasSuffix(got, "\n") {
					t.Fatalf("stdout holds an incomplete line: %q", got)
				}
			}
			if got := out.String(); got != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, tt.wantOut)
			}
			if got := c.Pending(); got != tt.wantPending {
				t.Errorf("Pending() = %d, want %d", got, tt.wantPending)
			}
			c.mu.Lock()
			kept := len(c.asked)
			c.mu.Unlock()
			if tt.wantPending == 0 && kept != 0 {
				t.Errorf("nothing is pending, and %d questions are still waited for", kept)
			}
			wantRead := tt.wantRead
			if wantRead == nil {
				for line := range strings.Lines(input) {
					if strings.HasSuffix(line, "\n") {
						wantRead = append(wantRead, strings.TrimSuffix(line, "\n"))
					}
				}
			}
			mu.Lock()
			got := strings.Split(strings.TrimSuffix(string(read), "\n"), "\n")
			mu.Unlock()
			if len(read) == 0 {
				got = nil
			}
			if !slices.Equal(got, wantRead) && len(got)+len(wantRead) > 0 {
				t.Errorf("the server read:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRead, "\n"))
			}
		})
	}
}

// TestStdioConnHoldsBackTheEndOfInput reads a conn to its end while
// requests are pending: the end, EOF or another error, must only come once
// they are answered, and data read with the end must come before the wait.
func TestStdioConnHoldsBackTheEndOfInput(t *testing.T) {
	errBroken := errors.New("broken pipe")
	input := stdioConnRequest("1") + stdioConnRequest("2")
	tests := []struct {
		name   string
		in     io.Reader
		endErr error // the error that ends in
	}{
		{"when the input ends with EOF", strings.NewReader(input), io.EOF},
		{"when the last data comes with EOF", iotest.DataErrReader(strings.NewReader(input)), io.EOF},
		{"when the input ends with another error", io.MultiReader(strings.NewReader(input), iotest.ErrReader(errBroken)), errBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &stdioConnOut{}
			c := newStdioConn(tt.in, out)
			type result struct {
				data []byte
				err  error
			}
			done := make(chan result, 1)
			var mu sync.Mutex
			var read []byte // what has been read so far
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := c.Reader().Read(buf)
					mu.Lock()
					read = append(read, buf[:n]...)
					data := slices.Clone(read)
					mu.Unlock()
					if err != nil {
						if err == io.EOF {
							err = nil // as io.ReadAll reports it
						}
						done <- result{data, err}
						return
					}
				}
			}()
			// Every request must reach the server before the end waits for
			// its answer, or it never gets one.
			stdioConnEventually(t, "the whole input is read", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(read) == len(input)
			})
			if n := c.Pending(); n != 2 {
				t.Fatalf("Pending() = %d, want 2", n)
			}
			for _, id := range []string{"1", "2"} {
				time.Sleep(20 * time.Millisecond)
				select {
				case r := <-done:
					t.Fatalf("the input ended with a request pending: %q, %v", r.data, r.err)
				default:
				}
				if _, err := io.WriteString(c.Writer(), stdioConnResult(id)); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case r := <-done:
				wantErr := tt.endErr
				if wantErr == io.EOF {
					wantErr = nil // the reader's success
				}
				if string(r.data) != input || r.err != wantErr {
					t.Errorf("read %q, %v, want %q, %v", r.data, r.err, input, wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the input did not end once nothing was pending")
			}
			// The end, once reached, is reported again at once.
			if n, err := c.Reader().Read(make([]byte, 10)); n != 0 || err != tt.endErr {
				t.Errorf("Read after the end = %d, %v, want 0, %v", n, err, tt.endErr)
			}
		})
	}
}

// TestStdioConnWaitsForPendingRequests checks Wait, the drain for a
// shutdown that does not come from the end of stdin.
func TestStdioConnWaitsForPendingRequests(t *testing.T) {
	tests := []struct {
		name    string
		pending []string // ids of requests read
		answer  []string // ids answered while Wait waits
		wantErr error
	}{
		{"returns at once when nothing is pending", nil, nil, nil},
		{"returns once the last pending request is answered", []string{"1", "2"}, []string{"2", "1"}, nil},
		{"returns the context's error while a request stays pending", []string{"1", "2"}, []string{"2"}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &stdioConnIn{}
			c := newStdioConn(in, io.Discard)
			for _, id := range tt.pending {
				in.next = []byte(stdioConnRequest(id))
				if _, err := c.Reader().Read(make([]byte, 4096)); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.Pending(); got != len(tt.pending) {
				t.Fatalf("Pending() = %d, want %d", got, len(tt.pending))
			}
			go func() {
				for _, id := range tt.answer {
					time.Sleep(10 * time.Millisecond)
					_, _ = io.WriteString(c.Writer(), stdioConnResult(id))
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if err := c.Wait(ctx); !errors.Is(err, tt.wantErr) {
				t.Errorf("Wait = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && c.Pending() != 0 {
				t.Errorf("Wait returned with %d pending", c.Pending())
			}
		})
	}
}

// TestStdioConnWritesConcurrently writes responses from many goroutines at
// once, as mcp-go's workers do: every line must arrive whole, once, except
// the cancelled ones.
func TestStdioConnWritesConcurrently(t *testing.T) {
	const requests = 64
	in := &stdioConnIn{}
	out := &stdioConnOut{}
	c := newStdioConn(in, out)
	var want []string
	for i := range requests {
		id := fmt.Sprint(i)
		in.next = []byte(stdioConnRequest(id))
		if _, err := c.Reader().Read(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			in.next = []byte(stdioConnCancel(id))
			if _, err := c.Reader().Read(make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
		} else {
			want = append(want, strings.TrimSuffix(stdioConnResult(id), "\n"))
		}
	}
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			if _, err := io.WriteString(c.Writer(), stdioConnResult(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("stdout lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

// stdioConnBrokenOut is a stdout that has gone away.
type stdioConnBrokenOut struct{ err error }

// Write fails.
func (o stdioConnBrokenOut) Write([]byte) (int, error) { return 0, o.err }

// TestStdioConnKeepsSettlingAfterStdoutFails writes responses to a stdout
// that fails: each Write must report the failure, and the responses must
// still settle their requests, so that a dead stdout can't hold the end of
// stdin back for ever.
func TestStdioConnKeepsSettlingAfterStdoutFails(t *testing.T) {
	errGone := errors.New("stdout gone")
	tests := []struct {
		name   string
		writes []string
	}{
		{"when each response is written whole", []string{stdioConnResult("1"), stdioConnResult("2")}},
		{"when the responses are written together", []string{stdioConnResult("1") + stdioConnResult("2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &stdioConnIn{next: []byte(stdioConnRequest("1") + stdioConnRequest("2"))}
			c := newStdioConn(in, stdioConnBrokenOut{errGone})
			if _, err := c.Reader().Read(make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.writes {
				if _, err := io.WriteString(c.Writer(), s); !errors.Is(err, errGone) {
					t.Errorf("Write = %v, want %v", err, errGone)
				}
			}
			if n := c.Pending(); n != 0 {
				t.Errorf("Pending() = %d, want 0", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.SetDrainDeadline(ctx)
			if _, err := io.ReadAll(c.Reader()); err != nil {
				t.Errorf("ReadAll = %v", err)
			}
			if ctx.Err() != nil {
				t.Error("the end of input waited for answered requests")
			}
		})
	}
}

// TestStdioConnPassesOnlyWholeAdmittedLinesHoweverTheyArrive reads a
// stream of requests, refusals and a last line without its end through a
// conn, in chunks of every size, as mcp-go does (bufio's ReadString): the
// server must read the admitted lines whole and nothing else, not even the
// start of the last line, and each refusal must be answered once.
func TestStdioConnPassesOnlyWholeAdmittedLinesHoweverTheyArrive(t *testing.T) {
	const limit = 256
	oversized := `{"jsonrpc":"2.0","id":"o","method":"tools/call","params":{"pad":"` + strings.Repeat("x", 2*limit) + `"}}`
	input := stdioConnRequest("1") +
		oversized + "\n" +
		`{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"x","name":"y"}}` + "\n" +
		stdioConnRequest("2") +
		oversized // no newline: mcp-go would never read it
	wantOut := stdioConnRefusal(`"o"`, -32600, "message too large: the limit is 256 bytes on one line") +
		stdioConnRefusal(`"d"`, -32600, `duplicate key "params.name"`)
	wantRead := []string{stdioConnRequest("1"), stdioConnRequest("2")}
	tests := []struct {
		name string
		in   func(io.Reader) io.Reader
	}{
		{"read whole", func(r io.Reader) io.Reader { return r }},
		{"read a byte at a time", iotest.OneByteReader},
		{"read half of what is asked", iotest.HalfReader},
		{"read with EOF along with the last data", iotest.DataErrReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &stdioConnOut{}
			c := newStdioConn(tt.in(strings.NewReader(input)), out)
			c.maxMessage = limit
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			c.SetDrainDeadline(ctx) // the requests are not answered here
			r := bufio.NewReader(c.Reader())
			var read []string
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					if err != io.EOF || line != "" {
						t.Errorf("last ReadString = %q, %v, want \"\", EOF", line, err)
					}
					break
				}
				read = append(read, line)
			}
			if !slices.Equal(read, wantRead) {
				t.Errorf("the server read %q, want %q", read, wantRead)
			}
			if got := out.String(); got != wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, wantOut)
			}
			if n := c.Pending(); n != 2 {
				t.Errorf("Pending() = %d, want 2", n)
			}
		})
	}
}

// stdioConnStuckIn is a stdin whose Read returns nothing, without error,
// for ever.
type stdioConnStuckIn struct{}

func (stdioConnStuckIn) Read([]byte) (int, error) { return 0, nil }

// TestStdioConnReportsAStdinThatMakesNoProgress checks that a conn waiting
// for a whole line neither spins for ever on a stdin that returns nothing,
// nor returns nothing itself, which bufio takes for a broken reader: it
// ends the input with io.ErrNoProgress, as bufio would.
func TestStdioConnReportsAStdinThatMakesNoProgress(t *testing.T) {
	c := newStdioConn(stdioConnStuckIn{}, io.Discard)
	if n, err := c.Reader().Read(make([]byte, 10)); n != 0 || err != io.ErrNoProgress {
		t.Errorf("Read = %d, %v, want 0, %v", n, err, io.ErrNoProgress)
	}
	if n, err := c.Reader().Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v, want 0, nil", n, err)
	}
}

// awaitReplies waits until stdout holds a reply to each of the JSON ids,
// and returns the replies by id.
func (h *stdioConnServer) awaitReplies(ids ...string) map[string]stdioConnReply {
	h.t.Helper()
	var got map[string]stdioConnReply
	stdioConnEventually(h.t, "every reply has come", func() bool {
		got = map[string]stdioConnReply{}
		for _, r := range stdioConnReplies(h.t, h.out.String()) {
			if r.Method == "" {
				got[string(r.ID)] = r
			}
		}
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				return false
			}
		}
		return true
	})
	return got
}

// TestStdioConnRefusesAnOversizedLineInConstantMemory streams tool calls
// of 16 and 64 MiB to a real mcp-go server: each must be answered with an
// error carrying its id, never reach the tool, and cost memory bounded by
// the limit, whatever its length; the call after them on the same stream
// must be answered as usual. Without the limit mcp-go reads a whole line
// into memory, several times over, and runs the call.
func TestStdioConnRefusesAnOversizedLineInConstantMemory(t *testing.T) {
	h := startStdioConnServer(t)
	h.release()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	// send streams a call of size bytes through the pipe, so that the test
	// never holds the line either, and returns how much was allocated
	// meanwhile, until the call is answered.
	send := func(id string, size int) uint64 {
		t.Helper()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		call := stdioConnCall(id, "")
		head, tail, _ := strings.Cut(call, `"n":""`)
		if _, err := io.WriteString(h.stdin, head+`"n":"`); err != nil {
			t.Fatal(err)
		}
		for n := len(call); n < size; n += len(chunk) {
			if _, err := h.stdin.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		h.send(`"` + tail)
		h.awaitReplies(id)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	alloc16 := send(`"16MiB"`, 16<<20)
	alloc64 := send(`"64MiB"`, 64<<20)
	h.send(stdioConnCall("2", "after"))
	got := h.awaitReplies(`"16MiB"`, `"64MiB"`, "2")

	for _, id := range []string{`"16MiB"`, `"64MiB"`} {
		if r := got[id]; r.Error == nil || r.Error.Code != -32600 || !strings.HasPrefix(r.Error.Message, "message too large") {
			t.Errorf("reply to the call of %s: %+v, want a -32600 error saying it is too large", id, r)
		}
	}
	if text := got["2"].toolText(); text != "done after" {
		t.Errorf("reply to the call after them = %q, want %q", text, "done after")
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("the tool was called %d times, want once", n)
	}
	// What a line costs is what it takes to hold its first
	// stdioConnMaxMessage bytes before they turn out not to be all: about
	// twice that, as the buffer grows, whatever the line's length.
	t.Logf("allocated %.1f MiB while a 16 MiB line was refused, %.1f MiB for 64 MiB", float64(alloc16)/(1<<20), float64(alloc64)/(1<<20))
	limit := uint64(2*stdioConnMaxMessage + 1<<20)
	if alloc16 > limit || alloc64 > limit {
		t.Errorf("allocated %d bytes while the 16 MiB line was refused, %d for 64 MiB, want at most %d", alloc16, alloc64, limit)
	}
}

// TestStdioConnRefusesRepeatedKeysBeforeTheTool sends a real mcp-go server
// tool calls that repeat a key of the envelope or of params, exactly or in
// another case: each must be answered with an error naming the key and its
// id, and never reach the tool, which encoding/json would otherwise call
// with the last of the values. A call that repeats nothing still runs.
func TestStdioConnRefusesRepeatedKeysBeforeTheTool(t *testing.T) {
	h := startStdioConnServer(t)
	h.release()
	refused := []struct{ id, line, want string }{
		{`1`, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wait","arguments":{"n":"a"},"arguments":{"n":"b"}}}`, `duplicate key "params.arguments"`},
		{`2`, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nothing","name":"wait","arguments":{"n":"c"}}}`, `duplicate key "params.name"`},
		{`3`, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"wait","arguments":{"n":"d"},"Arguments":{"n":"e"}}}`, `duplicate key "params.arguments" (again as "Arguments")`},
		{`4`, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"wait","arguments":{"n":"f"}},"params":{"name":"wait","arguments":{"n":"g"}}}`, `duplicate key "params"`},
		{`5`, `{"jsonrpc":"2.0","id":5,"method":"tools/list","METHOD":"tools/call","params":{"name":"wait","arguments":{"n":"h"}}}`, `duplicate key "method" (again as "METHOD")`},
		// ſ (U+017F) folds to s: encoding/json takes "paramſ" for params.
		{`6`, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"wait","arguments":{"n":"i"}},"paramſ":{"name":"wait","arguments":{"n":"j"}}}`, `duplicate key "params" (again as "paramſ")`},
		{`"7"`, `{"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"wait","arguments":{"n":"k","n":"l"}}}`, `duplicate key "params.arguments.n"`},
	}
	ids := []string{"9"}
	for _, r := range refused {
		h.send(r.line)
		ids = append(ids, r.id)
	}
	h.send(stdioConnCall("9", "fine"))
	got := h.awaitReplies(ids...)
	for _, r := range refused {
		reply := got[r.id]
		if reply.Error == nil || reply.Error.Code != -32600 || reply.Error.Message != r.want {
			t.Errorf("reply to %s: %+v, want a -32600 error %q", r.line, reply.Error, r.want)
		}
	}
	if text := got["9"].toolText(); text != "done fine" {
		t.Errorf("reply to the call that repeats nothing = %q, want %q", text, "done fine")
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("the tool was called %d times, want once", n)
	}
	if n := h.conn.Pending(); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

// TestStdioConnBinaryAnswersAnOversizedLineAndCarriesOn sends the built
// binary, serving the sandbox, a 6 MiB line between initialize and
// tools/list: the line must get an error response with its id, and
// tools/list its answer.
func TestStdioConnBinaryAnswersAnOversizedLineAndCarriesOn(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--sandbox")
	stdin, stdout, stderr := startPiped(t, cmd)
	waited := false
	t.Cleanup(func() {
		if !waited { // the test failed before stdin ended
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		_, _ = io.WriteString(stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+mcp.LATEST_PROTOCOL_VERSION+`","capabilities":{},"clientInfo":{"name":"stdioconn-test","version":"1"}}}`+"\n"+
			`{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"+
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"pad":"`)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range (6 << 20) / len(chunk) {
			if _, err := stdin.Write(chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(stdin, `"}}}`+"\n"+`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`+"\n")
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	replies := map[string]stdioConnReply{}
	lines := map[string]string{}
	for len(replies) < 3 && sc.Scan() {
		var r stdioConnReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("stdout line %q: %v", sc.Text(), err)
		}
		replies[string(r.ID)], lines[string(r.ID)] = r, sc.Text()
	}
	if r := replies["2"]; r.Error == nil || r.Error.Code != -32600 || !strings.HasPrefix(r.Error.Message, "message too large") {
		t.Errorf("reply to the oversized line: %q, want a -32600 error saying it is too large\nstderr:\n%s", lines["2"], stderr.String())
	}
	if r := replies["3"]; r.Result == nil || r.Error != nil || !strings.Contains(lines["3"], "create_checkout_session") {
		t.Errorf("reply to tools/list: %q\nstderr:\n%s", lines["3"], stderr.String())
	}
	// The end of stdin still shuts the server down cleanly. Whatever else
	// it writes is read, so that it can't block on a full pipe.
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, stdout) // to its end, when the server exits (or ctx kills it)
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("server exit: %v\nstderr:\n%s", err, stderr.String())
	}
}

// FuzzStdioConnIDScanner checks the scan of an oversized line against
// encoding/json: on any input, cut anywhere, it never panics, and on an
// object that is valid JSON it finds the id mcp-go would answer, unless
// the id is too long to keep, and sees the object end.
func FuzzStdioConnIDScanner(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`,
		`{"method":"x","params":{"id":2,"a":"\"id\":3"},"id":"late"}`,
		`{"ID" : 2.0 ,"Id":"a\"b"}`,
		`{"\u0069d":7,"x":[{"id":8}]}`,
		`{"id":{"a":1}}`,
		`{"id":null,"method":"n"}`,
		`[{"id":1}]`,
		`{"id":-1e3,"result":{}}`,
	} {
		f.Add([]byte(s), uint(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, line []byte, cut uint) {
		var s stdioConnIDScanner
		cut %= uint(len(line) + 1)
		s.feed(line[:cut])
		s.feed(line[cut:])
		var m stdioConnMessage
		trimmed := bytes.TrimSpace(line)
		if !json.Valid(line) || len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		_ = json.Unmarshal(line, &m) // a type error still fills ID
		if len(m.ID) > stdioConnScanMax-2 {
			return
		}
		if !s.closed {
			t.Errorf("the object's end was not seen in %q", line)
		}
		if got, want := string(stdioConnReplyID(s.id)), string(stdioConnReplyID(m.ID)); got != want {
			t.Errorf("id %s, want %s, in %q", got, want, line)
		}
	})
}

// FuzzAnswerIDMatchesEncodingJSON holds tools.ReadAnswer and idKey, which
// read the lines Listen writes without encoding/json, to what
// encoding/json reads: the line is a response (an object decoded without
// error, with a result or an error and no method) exactly when it says so,
// and its id has the key that decoding the id into an interface and
// encoding it again gives; it is a request of the server's (decoded
// without error, a method and an id not null) exactly when it says so,
// with that id.
func FuzzAnswerIDMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":"a<b","error":{"code":-32600,"message":"m"}}`,
		`{"ID":2.0,"Result":null}`, `{"id":12345678901234567,"result":1}`, `{"id":007,"result":1}`,
		`{"id":"\u00e9","result":{}}`, "{\"id\":\"\xff\",\"error\":{}}", `{"id":-0,"result":{}}`,
		`{"id":1,"method":"ping","result":{}}`, `{"id":1,"method":"","result":{}}`, `{"id":1,"method":null,"error":2}`,
		`{"id":1,"method":7,"result":{}}`, `{"id":1}`, `[{"id":1,"result":{}}]`, `{"id":1,"result":{}} {}`,
		`{"id":{"a":[1,"2"]},"result":{}}`, `{"id":1e2,"result":{}}`, `{"\u0069d":5,"r\u0065sult":0}`,
		`{"id":1,"id":2,"result":{}}`, ` {"id" : "x" , "error" : { } } `,
		// The last method counts (found by a review: the first was taken).
		`{"id":1,"method":"x","method":"","result":{}}`, `{"id":1,"method":"","method":"x","result":{}}`,
		`{"id":1,"method":"x","method":null,"result":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"elicitation/create","params":{}}`, `{"id":null,"method":"m"}`, `{"method":"m","ID":"q"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		wantKey, wantOK := func() (string, bool) {
			var m stdioConnMessage
			if json.Unmarshal(line, &m) != nil || m.Method != "" || (m.Result == nil && m.Error == nil) {
				return "", false
			}
			if isJSONNull(m.ID) {
				return "", false
			}
			var v any
			if json.Unmarshal(m.ID, &v) != nil {
				return "", false
			}
			b, err := json.Marshal(v)
			if err != nil {
				return "", false
			}
			return string(b), true
		}()
		id, ok, request := tools.ReadAnswer(line)
		key, keyOK := "", false
		if ok {
			key, keyOK = idKey(id)
		}
		if key != wantKey || keyOK != wantOK {
			t.Fatalf("tools.ReadAnswer(%q) = %q, %v: key %q, %v; encoding/json reads key %q, %v", line, id, ok, key, keyOK, wantKey, wantOK)
		}
		var m stdioConnMessage
		wantRequest := json.Unmarshal(line, &m) == nil && m.Method != "" && !isJSONNull(m.ID)
		if request != wantRequest || (request && string(id) != string(m.ID)) {
			t.Fatalf("tools.ReadAnswer(%q) = %q, request %v; encoding/json reads id %q, method %q", line, id, request, m.ID, m.Method)
		}
	})
}
