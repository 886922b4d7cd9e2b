package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
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
// only ever finishes by being cancelled runs: Listen must return once the
// drain deadline passes, not before and not never, having cancelled it.
func TestStdioConnStopsWaitingAtTheDrainDeadline(t *testing.T) {
	const grace = 300 * time.Millisecond
	tests := []struct {
		name string
		// configure sets the deadline up, called just before stdin ends.
		configure func(*testing.T, *stdioConn)
	}{
		{"a drain deadline context", func(t *testing.T, c *stdioConn) {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			t.Cleanup(cancel)
			c.SetDrainDeadline(ctx)
		}},
		{"a drain timeout counted from the end of stdin", func(_ *testing.T, c *stdioConn) { c.SetDrainTimeout(grace) }},
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
			out := h.wait()
			if elapsed := time.Since(start); elapsed < grace-50*time.Millisecond {
				t.Errorf("Listen returned %v after the end of stdin, before the %v deadline", elapsed, grace)
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

// TestStdioConnAccountsForEachLine feeds a conn lines from both sides and
// checks what reaches stdout and what is left pending. Every chunk read must
// come through unchanged, and stdout must only ever hold complete lines.
func TestStdioConnAccountsForEachLine(t *testing.T) {
	long := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"pad":"` + strings.Repeat("x", 200) + `"}}` + "\n"
	tests := []struct {
		name        string
		steps       []stdioConnStep
		wantOut     string
		wantPending int
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
			name:        "lines that are not JSON pass through both ways",
			steps:       []stdioConnStep{{read: stdioConnRequest("1")}, {read: "hello\n"}, {write: "not json\n"}, {write: "{\n"}},
			wantOut:     "not json\n{\n",
			wantPending: 1,
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
				{read: `{"jsonrpc":"2.0","id":3,"result":{}}` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"method":"ping","result":{}}` + "\n"},
				{read: `[{"jsonrpc":"2.0","id":3,"method":"ping"}]` + "\n"},
				{read: `{"jsonrpc":"2.0","id":3,"method":7}` + "\n"},
			},
		},
		{
			name:        "a line longer than the limit passes through uninspected, and the next is inspected",
			steps:       []stdioConnStep{{read: long[:100]}, {read: long[100:] + stdioConnRequest("2")}, {read: long}},
			wantPending: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &stdioConnIn{}
			out := &stdioConnOut{}
			c := newStdioConn(in, out)
			c.maxLine = 128
			if len(long) <= c.maxLine {
				t.Fatal("the long line is not longer than the limit")
			}
			r, w := c.Reader(), c.Writer()
			buf := make([]byte, 4096)
			for _, s := range tt.steps {
				if s.read != "" {
					in.next = []byte(s.read)
					n, err := r.Read(buf)
					if err != nil || string(buf[:n]) != s.read {
						t.Fatalf("Read = %q, %v, want %q, nil", buf[:n], err, s.read)
					}
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
