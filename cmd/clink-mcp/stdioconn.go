package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// stdioConnMaxLine bounds how much of one input line stdioConn holds while
// it waits for the line's end. A longer line still reaches mcp-go unchanged;
// it is only not inspected, so that a client can't make us buffer without
// limit. No real request or cancellation comes near it.
const stdioConnMaxLine = 4 << 20

// methodCancelled is the MCP notification by which a client cancels one of
// its requests.
const methodCancelled = "notifications/cancelled"

// stdioConn sits between the process's stdin and stdout and the
// server.StdioServer serving them, to fix two things mcp-go's stdio
// transport gets wrong:
//
//   - At the end of stdin, Listen cancels the context of every request still
//     running and its workers may drop tool calls still queued, so a client
//     that sends its requests and closes stdin gets no answers. stdioConn
//     keeps track of the requests that have been read and not yet answered,
//     and holds back the end of stdin from Listen until they all are (or a
//     drain deadline passes).
//   - When a client cancels a request with notifications/cancelled, mcp-go
//     cancels the handler's context but still sends the handler's response,
//     where the MCP specification says a cancelled request gets none.
//     stdioConn drops the response to a request cancelled while pending.
//
// Requests and responses are matched by JSON-RPC id, one message per line,
// as the stdio transport frames them. Give Listen Reader and Writer in
// place of stdin and stdout.
type stdioConn struct {
	in  io.Reader
	out io.Writer

	// maxLine is stdioConnMaxLine, a field so that tests can reach the
	// limit cheaply.
	maxLine int

	// mu guards the bookkeeping shared by Reader, Writer and Wait.
	mu sync.Mutex
	// pending counts, by idKey, the requests read and not yet answered.
	// A count rather than a set, so that a client that reuses an id while
	// its first request runs can't make us forget the second.
	pending map[string]int
	// npending is the sum of pending, for Pending and the fast path in
	// settle.
	npending int
	// cancelled holds the ids of pending requests the client has cancelled.
	// Every key in it is also in pending.
	cancelled map[string]struct{}
	// idle is closed whenever nothing is pending, and replaced by an open
	// channel when a request becomes pending, so that Wait can select on it.
	idle chan struct{}
	// drainCtx and drainTimeout bound the wait at the end of stdin.
	drainCtx     context.Context
	drainTimeout time.Duration

	// Read state. An io.Reader is read by one goroutine at a time, and so
	// is this one; these need no lock.
	partial  []byte // the start of a line whose end has not been read
	skipping bool   // the line being read is too long to inspect
	readErr  error  // the error in returned, held back until drained
	drained  bool   // the wait at the end of input is over

	// Write state, guarded by wmu: mcp-go writes from several goroutines.
	wmu    sync.Mutex
	wbuf   []byte // the start of a line whose end has not been written
	outErr error  // the first error from out; later lines are not written
}

// newStdioConn wraps in and out, the streams Listen would otherwise be
// given. Without a drain deadline, the end of in waits for every pending
// request to be answered.
func newStdioConn(in io.Reader, out io.Writer) *stdioConn {
	idle := make(chan struct{})
	close(idle)
	return &stdioConn{
		in:        in,
		out:       out,
		maxLine:   stdioConnMaxLine,
		pending:   make(map[string]int),
		cancelled: make(map[string]struct{}),
		idle:      idle,
	}
}

// Reader returns the stream to give Listen as its stdin. It passes in
// through unchanged, noting the requests and cancellations it carries, and
// when in ends it holds the end (io.EOF or any other error) back until no
// request is pending or the drain deadline passes: Listen cancels every
// running request as soon as it sees the end. Like any io.Reader it is for
// one goroutine at a time.
func (c *stdioConn) Reader() io.Reader { return (*stdioConnReader)(c) }

// Writer returns the stream to give Listen as its stdout. It passes every
// line through to out, except the response to a request the client has
// cancelled, and notes which requests have been answered. It is safe for
// concurrent use.
func (c *stdioConn) Writer() io.Writer { return (*stdioConnWriter)(c) }

// SetDrainDeadline bounds the wait at the end of stdin by ctx: once ctx is
// done, Reader reports the end even with requests pending, and Listen
// cancels them. A nil ctx, the default, sets no bound. It may be called at
// any time before the end of stdin is reached.
func (c *stdioConn) SetDrainDeadline(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainCtx = ctx
}

// SetDrainTimeout bounds the wait at the end of stdin to d after the end is
// read, the grace period a context made in advance can't express. Zero, the
// default, sets no bound. It applies together with SetDrainDeadline: the
// first to expire ends the wait.
func (c *stdioConn) SetDrainTimeout(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainTimeout = d
}

// Pending reports how many requests have been read and not yet answered,
// so that shutdown can say what it is waiting for, or abandoning.
func (c *stdioConn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.npending
}

// Wait blocks until nothing is pending, returning nil, or until ctx is
// done, returning ctx's error, so that a shutdown (on SIGTERM, say) can let
// running requests finish before it cancels them. Nothing pending at some
// instant is enough: requests read after that are not waited for.
func (c *stdioConn) Wait(ctx context.Context) error {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	default:
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stdioConnReader is stdioConn seen as the stream Listen reads, so that
// Reader needs no allocation and the conn no exported Read method.
type stdioConnReader stdioConn

// Read reads from in and inspects what it read before returning it, so that
// a request is pending before mcp-go can see it, let alone answer it. Data
// that comes with an error is returned first, and the error on the next
// call, after the drain: the data may hold requests Listen must still read.
func (r *stdioConnReader) Read(p []byte) (int, error) {
	c := (*stdioConn)(r)
	if c.readErr != nil {
		return 0, c.endOfInput()
	}
	n, err := c.in.Read(p)
	if n > 0 {
		c.scan(p[:n])
	}
	if err != nil {
		c.readErr = err
		if n == 0 {
			return 0, c.endOfInput()
		}
	}
	return n, nil
}

// endOfInput waits, the first time it is called, for the pending requests to
// be answered or the drain deadline to pass, and then returns the error that
// ended in.
func (c *stdioConn) endOfInput() error {
	if c.drained {
		return c.readErr
	}
	c.drained = true
	c.mu.Lock()
	ctx, d := c.drainCtx, c.drainTimeout
	c.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	_ = c.Wait(ctx) // past the deadline the requests are abandoned to Listen
	return c.readErr
}

// scan splits what Read returned into lines and inspects each complete one,
// holding the start of an incomplete line until its end is read. Only
// complete lines are inspected: mcp-go ignores a last line that has no
// newline, so a request on one would never be answered.
func (c *stdioConn) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.hold(p)
			return
		}
		line := p[:i]
		p = p[i+1:]
		if len(c.partial) > 0 || c.skipping {
			c.hold(line)
			line = c.partial
		}
		if !c.skipping && len(line) <= c.maxLine {
			c.readLine(line)
		}
		c.skipping = false
		if cap(c.partial) > 64<<10 {
			c.partial = nil // don't keep a long line's buffer for good
		} else {
			c.partial = c.partial[:0]
		}
	}
}

// hold appends b to the line being read, unless the line has grown past
// maxLine, in which case it is given up on until its end.
func (c *stdioConn) hold(b []byte) {
	if c.skipping {
		return
	}
	if len(c.partial)+len(b) > c.maxLine {
		c.skipping = true
		c.partial = nil
		return
	}
	c.partial = append(c.partial, b...)
}

// stdioConnMessage is the part of a JSON-RPC message stdioConn looks at.
// encoding/json matches the names as mcp-go does, case-insensitively.
type stdioConnMessage struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	Params json.RawMessage `json:"params"`
}

// readLine notes a request read from the client as pending and a
// cancellation of a pending request as cancelled. Anything that isn't a
// single JSON object, such as a batch, is not a request mcp-go answers by
// id, and is left alone.
func (c *stdioConn) readLine(line []byte) {
	var m stdioConnMessage
	if json.Unmarshal(line, &m) != nil || m.Method == "" {
		return
	}
	if isJSONNull(m.ID) {
		if m.Method == methodCancelled {
			c.cancel(m.Params)
		}
		return
	}
	// mcp-go answers nothing with a result, whatever its method.
	if !isJSONNull(m.Result) {
		return
	}
	key, ok := idKey(m.ID)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[key]++
	c.npending++
	if c.npending == 1 {
		c.idle = make(chan struct{})
	}
}

// cancel marks the request named by a notifications/cancelled's params as
// cancelled, if it is pending. A cancellation of a request already answered,
// or never made, is ignored, so that it can't silence a later request that
// reuses the id.
func (c *stdioConn) cancel(params json.RawMessage) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil {
		return
	}
	key, ok := idKey(p.RequestID)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[key] > 0 {
		c.cancelled[key] = struct{}{}
	}
}

// stdioConnWriter is stdioConn seen as the stream Listen writes, so that
// Writer needs no allocation and the conn no exported Write method.
type stdioConnWriter stdioConn

// Write writes p's complete lines to out, less the responses to cancelled
// requests, and holds an incomplete last line until its end is written:
// mcp-go writes one message per call, but nothing here depends on it. After
// out fails, lines are still inspected, so that the answers Listen goes on
// producing still end the drain, but no longer written, and every Write
// returns out's error.
func (w *stdioConnWriter) Write(p []byte) (int, error) {
	c := (*stdioConn)(w)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	data := p
	if len(c.wbuf) > 0 {
		c.wbuf = append(c.wbuf, p...)
		data = c.wbuf
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	// Write runs of kept lines in one call each: usually all of data.
	run := 0
	for start := 0; start < end; {
		next := start + bytes.IndexByte(data[start:end], '\n') + 1
		if !c.settle(data[start : next-1]) {
			c.emit(data[run:start])
			run = next
		}
		start = next
	}
	c.emit(data[run:end])
	if end == len(data) && cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // don't keep a long line's buffer for good
	} else {
		c.wbuf = append(c.wbuf[:0], data[end:]...)
	}
	if c.outErr != nil {
		return 0, c.outErr
	}
	return len(p), nil
}

// emit writes b to out, unless out has already failed.
func (c *stdioConn) emit(b []byte) {
	if len(b) == 0 || c.outErr != nil {
		return
	}
	if _, err := c.out.Write(b); err != nil {
		c.outErr = err
	}
}

// settle notes that a response line answers its pending request, and
// reports whether the line is to be written: all lines are, but the
// response to a request cancelled while pending. The cancellation is used
// up by the one response it silences.
func (c *stdioConn) settle(line []byte) bool {
	c.mu.Lock()
	none := c.npending == 0
	c.mu.Unlock()
	if none {
		return true // nothing to match: spare a large result the parse
	}
	var m stdioConnMessage
	if json.Unmarshal(line, &m) != nil || m.Method != "" || (m.Result == nil && m.Error == nil) {
		return true
	}
	key, ok := idKey(m.ID)
	if !ok {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.pending[key]
	if n == 0 {
		return true
	}
	if n == 1 {
		delete(c.pending, key)
	} else {
		c.pending[key] = n - 1
	}
	c.npending--
	if c.npending == 0 {
		close(c.idle)
	}
	if _, ok := c.cancelled[key]; ok {
		delete(c.cancelled, key)
		return false
	}
	return true
}

// idKey returns the key under which a JSON-RPC id is pending: the id
// decoded and encoded again, as mcp-go does before it echoes the id in its
// response, so that 1.0 and 1 are one request, as mcp-go answers both with
// 1, while 1 and "1" stay two. A missing or null id has no key.
func idKey(id json.RawMessage) (string, bool) {
	if isJSONNull(id) {
		return "", false
	}
	var v any
	if json.Unmarshal(id, &v) != nil {
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// isJSONNull reports whether raw, a member decoded by encoding/json, is
// absent or null.
func isJSONNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}
