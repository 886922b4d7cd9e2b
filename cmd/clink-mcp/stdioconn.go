package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clink-mcp/clink-mcp/tools"
)

// stdioConnMaxMessage bounds one message, one line on stdin, in bytes, the
// newline not counted. mcp-go reads a line whole, however long, before
// anything parses it, so this is the only bound on what a line costs: a
// longer one is discarded as it streams in and answered with an error,
// never buffered. The largest legitimate message, a tool call at the
// tools' 1 MiB limit on arguments, stays far below it; what reaches
// mcp-go is copied a few times over as it is decoded, so this costs tens of
// MiB at most.
const stdioConnMaxMessage = 4 << 20

// stdioConnChunk is how much Reader reads from stdin at a time.
const stdioConnChunk = 64 << 10

// codeInvalidRequest is JSON-RPC's error code for a message that is not an
// acceptable request, as an oversized one is.
const codeInvalidRequest = -32600

// codeServerBusy is the JSON-RPC error code (one of those left to the
// server) of a request refused because too many are in flight.
const codeServerBusy = -32000

// codeMethodNotFound is JSON-RPC's error code for a method the server does
// not have.
const codeMethodNotFound = -32601

// methodCancelled is the MCP notification by which a client cancels one of
// its requests.
const methodCancelled = "notifications/cancelled"

// stdioConn sits between the process's stdin and stdout and the
// server.StdioServer serving them, to fix what mcp-go's stdio transport
// gets wrong. Two things about the end of a request:
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
// And two about its start: every message is bounded and checked before
// mcp-go sees it.
//
//   - mcp-go reads each line whole into memory, however long, so a client
//     could make it hold gigabytes. stdioConn discards a line longer than
//     stdioConnMaxMessage as it streams in, in constant memory, and answers
//     it with a JSON-RPC error (-32600), with the request's id if the line
//     shows one, and null if not (or not at all if it shows itself to be a
//     notification).
//   - encoding/json takes the last of a repeated key, and matches the
//     envelope's keys case-insensitively, so a tools/call with "arguments"
//     twice could be read one way and run another. Every line is checked by
//     tools.CheckMessage; a refused one never reaches mcp-go and is answered
//     with a JSON-RPC error naming the key (-32600), or, if it is not JSON,
//     with the parse error (-32700) mcp-go would have sent. A refused
//     notification, or response, gets no answer, as JSON-RPC wants; a
//     refused (or oversized) response to one of the server's requests (an
//     approval question) is passed on to mcp-go as an error response to
//     it, so that the request fails rather than waits. A response to
//     nothing the server asked, or to a question whose request has ended
//     (cancelled, or answered without it), is dropped, valid or not:
//     mcp-go would take it for a request and answer it. So is an answer
//     whose error member mcp-go cannot decode, passed on as a refused one,
//     and mcp-go's answer to an answer it no longer waits for (its call
//     cancelled while another runs): that answer has the question's id,
//     which may be one of the client's own requests'.
//   - A request whose "jsonrpc" is not a string, which mcp-go answers
//     with a null id (so that it would stay pending for good), is refused
//     with its own id (-32600).
//   - A request beyond maxPending in flight is refused (-32000): mcp-go
//     runs a tools/call that finds its queue full on the loop reading
//     stdin, where one that asks the client a question deadlocks.
//
// Requests and responses are matched by JSON-RPC id, one message per line,
// as the stdio transport frames them. Give Listen Reader and Writer in
// place of stdin and stdout.
type stdioConn struct {
	in  io.Reader
	out io.Writer

	// maxMessage is stdioConnMaxMessage, a field so that tests can reach
	// the limit cheaply.
	maxMessage int
	// maxPending, when positive, is how many requests may be pending at
	// once; one more is refused (codeServerBusy) without reaching mcp-go.
	// Set to the size of mcp-go's tool call queue, it keeps the queue from
	// filling: mcp-go runs a tools/call that finds it full on the loop that
	// reads stdin, where a call that asks the client a question waits for
	// an answer only that loop could read.
	maxPending int
	// log takes, at debug level, the messages dropped unanswered: a
	// response to nothing the server waits for, and the response to a
	// cancelled request. Discarded unless set.
	log *slog.Logger

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
	// asked holds the ids of the requests the server has sent the client
	// (an approval question: elicitation/create) and had no response to,
	// as mcp-go matches a response to them (questionID), each with the
	// keys of the client's requests pending when it was sent. mcp-go sends
	// a question while it handles one of those requests, and stops waiting
	// for its answer when that request ends: once none of them is pending,
	// the question is forgotten, so that a late answer is dropped, as one
	// to nothing asked, and a question never answered is not kept.
	asked map[int64]map[string]struct{}
	// inputEnded is set once in has ended: a question asked after that
	// can never be answered. askedLate wakes the drain when one is.
	inputEnded bool
	askedLate  chan struct{}
	// idle is closed whenever nothing is pending, and replaced by an open
	// channel when a request becomes pending, so that Wait can select on it.
	idle chan struct{}
	// drainCtx and drainTimeout bound the wait at the end of stdin.
	drainCtx     context.Context
	drainTimeout time.Duration

	// Read state. An io.Reader is read by one goroutine at a time, and so
	// is this one; these need no lock.
	chunk    []byte             // what is read from in, stdioConnChunk bytes
	partial  []byte             // the start of a line whose end has not been read
	skipping bool               // the line being read is too long: discarded
	skipped  stdioConnIDScanner // what the discarded line shows of itself
	ready    []byte             // lines admitted and not yet returned by Read
	readyOff int                // how much of ready Read has returned
	readErr  error              // the error in returned, held back until drained
	drained  bool               // the wait at the end of input is over
	drainEnd context.Context    // the drain's deadline, once it has begun
	stopEnd  context.CancelFunc // releases drainEnd

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
		in:         in,
		out:        out,
		maxMessage: stdioConnMaxMessage,
		log:        slog.New(slog.DiscardHandler),
		pending:    make(map[string]int),
		cancelled:  make(map[string]struct{}),
		asked:      make(map[int64]map[string]struct{}),
		askedLate:  make(chan struct{}, 1),
		idle:       idle,
		// No bound until SetDrainTimeout sets one.
		drainTimeout: -1,
	}
}

// Reader returns the stream to give Listen as its stdin. It passes on the
// complete lines of in that are messages within stdioConnMaxMessage and
// that tools.CheckMessage accepts, unchanged, noting the requests and
// cancellations they carry; it answers the others itself, on out. It never
// returns part of a line whose end it has not read, nor a last line without
// a newline, which mcp-go ignores. When in ends it holds the end (io.EOF or
// any other error) back until no request is pending or the drain deadline
// passes: Listen cancels every running request as soon as it sees the end.
// Like any io.Reader it is for one goroutine at a time.
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
// read, the grace period a context made in advance can't express. Zero ends
// the wait at once (a grace period of 0: calls in flight are not waited
// for); a negative d, the default, sets no bound. It applies together with
// SetDrainDeadline: the first to expire ends the wait.
func (c *stdioConn) SetDrainTimeout(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainTimeout = d
}

// Pending reports how many requests have been read and not yet answered:
// what a drain still waits for. The tests hold the accounting to it.
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

// Read returns lines admitted from in, reading in until it has one: each
// is inspected before it is returned, so that a request is pending before
// mcp-go can see it, let alone answer it. Lines read with an error are
// returned first, and the error once they all are, after the drain: they
// may hold requests Listen must still read.
func (r *stdioConnReader) Read(p []byte) (int, error) {
	c := (*stdioConn)(r)
	if len(p) == 0 {
		return 0, nil
	}
	for empty := 0; len(c.ready) == 0; {
		if c.readErr != nil {
			if c.abandonQuestions() || c.endOfInput() {
				continue
			}
			return 0, c.readErr
		}
		if c.chunk == nil {
			c.chunk = make([]byte, stdioConnChunk)
		}
		n, err := c.in.Read(c.chunk)
		c.scan(c.chunk[:n])
		switch {
		case err != nil:
			c.readErr = err
		case n > 0:
			empty = 0
		default:
			// As bufio does: a reader that never makes progress is broken.
			if empty++; empty == 100 {
				c.readErr = io.ErrNoProgress
			}
		}
		if c.readErr != nil {
			c.mu.Lock()
			c.inputEnded = true
			c.mu.Unlock()
		}
	}
	n := copy(p, c.ready[c.readyOff:])
	c.readyOff += n
	if c.readyOff == len(c.ready) {
		c.readyOff = 0
		if cap(c.ready) > 64<<10 {
			c.ready = nil // don't keep a long line's buffer for good
		} else {
			c.ready = c.ready[:0]
		}
	}
	return n, nil
}

// endOfInput waits for the pending requests to be answered or the drain
// deadline to pass, and reports whether it stopped waiting early because a
// request asked the client a question meanwhile, which abandonQuestions
// must answer before the wait goes on (the deadline stays the one the
// first wait set). Once the wait is over it reports false at once.
func (c *stdioConn) endOfInput() bool {
	if c.drained {
		return false
	}
	if c.drainEnd == nil {
		c.mu.Lock()
		ctx, d := c.drainCtx, c.drainTimeout
		c.mu.Unlock()
		if ctx == nil {
			ctx = context.Background()
		}
		c.drainEnd, c.stopEnd = ctx, func() {}
		if d >= 0 {
			c.drainEnd, c.stopEnd = context.WithTimeout(ctx, d)
		}
	}
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
	case <-c.drainEnd.Done(): // past the deadline the requests are abandoned to Listen
	case <-c.askedLate:
		return true
	}
	c.drained = true
	c.stopEnd()
	return false
}

// abandonQuestions answers, once in has ended, every question the server
// asked the client and has no answer to, with an error response handed to
// Listen, so that the request that asked stops waiting at once rather than
// waits out the drain for an answer that cannot come (a call asking for
// approval then ends with its approval pending, saying why). It reports
// whether it handed any.
func (c *stdioConn) abandonQuestions() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q := range c.asked {
		delete(c.asked, q)
		c.pass(strconv.AppendInt(nil, q, 10), codeInvalidRequest, "the client's input ended before it answered")
	}
	return len(c.ready) > 0
}

// scan splits what was read from in into lines and admits or refuses each
// complete one, holding the start of an incomplete line until its end is
// read. Only complete lines are admitted: mcp-go ignores a last line that
// has no newline, so a request on one would never be answered.
func (c *stdioConn) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.hold(p)
			return
		}
		line := p[:i]
		p = p[i+1:]
		if len(c.partial) > 0 || c.skipping || len(line) > c.maxMessage {
			c.hold(line)
			line = c.partial
		}
		if c.skipping {
			c.refuseOversized()
		} else {
			c.admit(line)
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
// maxMessage, in which case it is discarded from then on until its end,
// only scanned for what the answer to it needs.
func (c *stdioConn) hold(b []byte) {
	if c.skipping {
		c.skipped.feed(b)
		return
	}
	need := len(c.partial) + len(b)
	if need > c.maxMessage {
		c.skipping = true
		c.skipped = stdioConnIDScanner{}
		c.skipped.feed(c.partial)
		c.skipped.feed(b)
		c.partial = nil
		return
	}
	if need > cap(c.partial) {
		// Double, up to the limit: append grows a large slice by a
		// quarter at a time, which would allocate five times the limit
		// on the way to it.
		grown := make([]byte, len(c.partial), min(max(2*cap(c.partial), need, 4<<10), c.maxMessage))
		copy(grown, c.partial)
		c.partial = grown
	}
	c.partial = append(c.partial, b...)
}

// admit passes a complete line on to Read's caller, noting what it
// carries, if tools.CheckMessage accepts it, and refuses it if not.
func (c *stdioConn) admit(line []byte) {
	env, err := tools.ReadMessage(line)
	if err != nil {
		c.refuse(line, err)
		return
	}
	if !c.readLine(env) {
		return
	}
	c.ready = append(c.ready, line...)
	c.ready = append(c.ready, '\n')
}

// refuse answers a line tools.CheckMessage refused with a JSON-RPC error,
// unless it is a notification or a response, which JSON-RPC never answers.
// A line that is not JSON is answered as mcp-go would, with a parse error
// and a null id; a refused message with the id of its request, unless the
// id is what repeats.
func (c *stdioConn) refuse(line []byte, err error) {
	var me *tools.MessageError
	if !errors.As(err, &me) {
		me = &tools.MessageError{Err: tools.ErrInvalidJSON} // not a case CheckMessage has
	}
	id := json.RawMessage("null")
	if me.Err != tools.ErrInvalidJSON {
		var m stdioConnMessage
		_ = json.Unmarshal(line, &m) // whatever fits, as mcp-go would have it
		if m.Method != "" && isJSONNull(m.ID) {
			return // a notification
		}
		if m.Method == "" && (m.Result != nil || m.Error != nil) {
			// A response to a request of the server's (the approval
			// question of a 2025-11-25 client): mcp-go would wait for it
			// until the call is cancelled, so it gets an error response
			// in its place, with the id mcp-go would have read, and the
			// call ends. A response whose id repeats names no request,
			// and one to nothing the server asked is dropped.
			if !(me.Err == tools.ErrDuplicateKey && strings.EqualFold(me.Path, "id")) && c.answers(m.ID) {
				c.pass(m.ID, me.Code(), "the client's response was refused: "+me.Error())
			}
			return
		}
		if !(me.Err == tools.ErrDuplicateKey && strings.EqualFold(me.Path, "id")) {
			id = stdioConnReplyID(m.ID)
		}
	}
	msg := me.Error()
	if me.Err == tools.ErrInvalidJSON {
		msg = "Parse error" // what mcp-go says
	}
	c.answer(id, me.Code(), msg)
}

// pass hands Listen, in place of a response to one of its requests that
// was refused, an error response to the request with id, saying why: the
// request then fails rather than waits.
func (c *stdioConn) pass(id json.RawMessage, code int, message string) {
	r := stdioConnErrorResponse{JSONRPC: "2.0", ID: id}
	r.Error.Code, r.Error.Message = code, message
	b, err := json.Marshal(r)
	if err != nil {
		return // an id encoding/json decoded is valid JSON: not reached
	}
	c.ready = append(append(c.ready, b...), '\n')
}

// refuseOversized answers the line just discarded for its length, with the
// id it showed, unless it showed itself to be a notification or a response.
func (c *stdioConn) refuseOversized() {
	s := &c.skipped
	tooLarge := "message too large: the limit is " + strconv.Itoa(c.maxMessage) + " bytes on one line"
	if s.closed && !s.method && s.result && c.answers(s.id) {
		c.pass(s.id, codeInvalidRequest, "the client's response was refused: "+tooLarge)
		return
	}
	if s.closed && ((s.method && isJSONNull(s.id)) || (!s.method && s.result)) {
		return
	}
	c.answer(stdioConnReplyID(s.id), codeInvalidRequest, tooLarge)
}

// questionID returns the id of a request of the server's that a response
// with id answers, as mcp-go matches it: an integer, written as a number
// or as a string.
func questionID(id json.RawMessage) (int64, bool) {
	var n json.Number
	if isJSONNull(id) || json.Unmarshal(id, &n) != nil {
		return 0, false
	}
	q, err := n.Int64()
	return q, err == nil
}

// answers reports whether a response with id answers a request the server
// sent and had no response to, and if so, notes that it has one.
func (c *stdioConn) answers(id json.RawMessage) bool {
	q, ok := questionID(id)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.asked[q]; !ok {
		return false
	}
	delete(c.asked, q)
	return true
}

// unroutedAnswer says why mcp-go would not take m, a response to one of
// its questions, for the answer: an error member that does not decode into
// its {code int, message string} (null, a string, a code that is not a
// whole number...) and no result. "" when mcp-go takes it.
func unroutedAnswer(m tools.Envelope) string {
	if m.Result != nil {
		return ""
	}
	var e *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(m.Error, &e) != nil || e == nil {
		return "its error is not an object with a whole-number code and a string message"
	}
	return ""
}

// emptyMethodNotFound is what mcp-go's answer to a message without a method
// says; repliesToAnAnswer looks for it.
var emptyMethodNotFound = []byte(`"Method  not found"`)

// repliesToAnAnswer reports whether line is mcp-go's answer to a message
// without a method: an error, METHOD_NOT_FOUND, "Method  not found" (the
// method's name empty). The only such messages the conn passes on are the
// client's answers to the server's questions, so this is mcp-go taking an
// answer it no longer waits for (the call that asked was cancelled) for a
// request. JSON-RPC answers no response, and the id, the question's, may
// be one of the client's own requests still pending: the line is dropped.
func repliesToAnAnswer(line []byte) bool {
	if len(line) > 256 || !bytes.Contains(line, emptyMethodNotFound) {
		return false
	}
	var m struct {
		Method string `json:"method"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(line, &m) == nil && m.Method == "" && m.Error != nil &&
		m.Error.Code == codeMethodNotFound && m.Error.Message == "Method  not found"
}

// stdioConnErrorResponse is a JSON-RPC error response.
type stdioConnErrorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// answer writes a JSON-RPC error response to out, between the lines Listen
// writes.
func (c *stdioConn) answer(id json.RawMessage, code int, message string) {
	r := stdioConnErrorResponse{JSONRPC: "2.0", ID: id}
	r.Error.Code, r.Error.Message = code, message
	b, err := json.Marshal(r)
	if err != nil {
		return // an id is valid JSON: not reached
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.emit(append(b, '\n'))
}

// stdioConnReplyID returns the id to answer a request whose id is raw with:
// the id as mcp-go echoes it, if it is a string or a number, and null if
// it is missing or anything else.
func stdioConnReplyID(raw json.RawMessage) json.RawMessage {
	key, ok := idKey(raw)
	if !ok || (key[0] != '"' && key[0] != '-' && (key[0] < '0' || key[0] > '9')) {
		return json.RawMessage("null")
	}
	return json.RawMessage(key)
}

// stdioConnIDScanner reads a line too long to keep as it streams past, for
// what its answer needs: the members of the top-level object that say
// whether it is a request and with what id. It holds no more than a short
// key or id at a time, and does not validate the JSON; keys are matched
// case-insensitively, as mcp-go's decoding would.
type stdioConnIDScanner struct {
	depth   int  // objects and arrays open, outside strings; 0 before the line's object
	inStr   bool // in a string
	esc     bool // after a backslash in a string
	done    bool // the line is not an object, or its object has ended
	inValue bool // past the current top-level member's colon
	member  stdioConnMember
	buf     []byte // the current top-level key as written, then an id's value
	over    bool   // buf overflowed: the key or id is too long to matter

	closed bool   // the top-level object ended
	id     []byte // the last top-level id's value, as written; nil if none
	method bool   // there is a top-level method
	result bool   // there is a top-level result or error
}

// stdioConnMember is which top-level member stdioConnIDScanner is in.
type stdioConnMember int

const (
	memberOther stdioConnMember = iota
	memberID
	memberMethod
	memberResult
)

// stdioConnScanMax bounds the key or id stdioConnIDScanner keeps.
const stdioConnScanMax = 128

// feed scans the next bytes of the line.
func (s *stdioConnIDScanner) feed(p []byte) {
	for i := 0; i < len(p); i++ {
		if s.done {
			return
		}
		if s.depth == 0 { // before the line's value
			switch p[i] {
			case ' ', '\t', '\r', '\n':
			case '{':
				s.depth = 1
			default:
				s.done = true // not an object: a batch, or not JSON
			}
			continue
		}
		if s.inStr && !s.esc && !s.recording() {
			// Skip to the string's next quote or backslash: the bulk of a
			// long line is in some string, read here at memchr's pace.
			q := bytes.IndexByte(p[i:], '"')
			if q < 0 {
				q = len(p) - i
			}
			if bs := bytes.IndexByte(p[i:i+q], '\\'); bs >= 0 {
				q = bs
			}
			if i += q; i == len(p) {
				return
			}
		}
		b := p[i]
		if s.inStr {
			if s.depth == 1 {
				s.record(b)
			}
			switch {
			case s.esc:
				s.esc = false
			case b == '\\':
				s.esc = true
			case b == '"':
				s.inStr = false
				if s.depth == 1 && !s.inValue {
					s.endKey()
				}
			}
			continue
		}
		switch b {
		case ' ', '\t', '\r', '\n':
		case '"':
			s.inStr = true
			if s.depth == 1 {
				if !s.inValue {
					s.buf, s.over = s.buf[:0], false
				}
				s.record(b)
			}
		case '{', '[':
			s.depth++
			if s.depth == 2 && s.inValue && s.member == memberID {
				s.over = true // an id is not an object
			}
		case '}', ']':
			s.depth--
			if s.depth == 0 {
				s.endMember()
				s.closed, s.done = true, true
			}
		case ':':
			if s.depth == 1 && !s.inValue {
				s.inValue = true
				s.buf, s.over = s.buf[:0], false
			}
		case ',':
			if s.depth == 1 {
				s.endMember()
			}
		default:
			if s.depth == 1 {
				s.record(b)
			}
		}
	}
}

// recording reports whether the byte at hand is kept: it is in the
// current top-level key, or in its value if it is the id.
func (s *stdioConnIDScanner) recording() bool {
	return s.depth == 1 && (!s.inValue || s.member == memberID)
}

// record keeps b, a byte of the current top-level key, or of its value if
// it is the id.
func (s *stdioConnIDScanner) record(b byte) {
	if s.inValue && s.member != memberID {
		return
	}
	if len(s.buf) == stdioConnScanMax {
		s.over = true
		return
	}
	if s.buf == nil {
		s.buf = make([]byte, 0, stdioConnScanMax)
	}
	s.buf = append(s.buf, b)
}

// endKey notes which member the key just read names.
func (s *stdioConnIDScanner) endKey() {
	s.member = memberOther
	var key string
	if s.over || json.Unmarshal(s.buf, &key) != nil {
		return
	}
	switch {
	case strings.EqualFold(key, "id"):
		s.member = memberID
	case strings.EqualFold(key, "method"):
		s.member = memberMethod
	case strings.EqualFold(key, "result"), strings.EqualFold(key, "error"):
		s.member = memberResult
	}
}

// endMember notes the top-level member that has just ended.
func (s *stdioConnIDScanner) endMember() {
	if s.inValue {
		switch s.member {
		case memberID:
			if s.over {
				s.id = []byte("{}") // there, but no id to answer with
			} else {
				s.id = append([]byte{}, bytes.TrimSpace(s.buf)...)
			}
		case memberMethod:
			s.method = true
		case memberResult:
			s.result = true
		}
	}
	s.inValue, s.member = false, memberOther
	s.buf, s.over = s.buf[:0], false
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

// readLine notes a request read from the client, whose envelope is m, as
// pending and a cancellation of a pending request as cancelled, and reports
// whether to pass the line on. Anything that isn't a single JSON object,
// such as a batch, is not a request mcp-go answers by id (its envelope is
// empty), and is passed on. A response (a result or an error, even null)
// to a request the server sent is passed on, whatever else it holds:
// mcp-go takes it as the answer. One to nothing the server asked is
// dropped: mcp-go would take it for a request and answer it.
func (c *stdioConn) readLine(m tools.Envelope) bool {
	if m.Result != nil || m.Error != nil {
		if c.answers(m.ID) {
			if why := unroutedAnswer(m); why != "" {
				// mcp-go would take it for a request, and the question
				// would wait on: the request that asked gets an error
				// response in its place, as for a refused answer.
				c.pass(m.ID, codeInvalidRequest, "the client's response was refused: "+why)
				return false
			}
			return true
		}
		if m.Method == "" {
			c.log.Debug("stdio: dropped a response to nothing the server waits for", "id", logID(m.ID))
			return false
		}
	}
	if m.Method == "" {
		return true
	}
	if isJSONNull(m.ID) {
		if m.Method == methodCancelled {
			c.cancel(m.RequestID)
		}
		return true
	}
	if len(m.Version) > 0 && m.Version[0] != '"' && !isJSONNull(m.Version) {
		// mcp-go cannot decode such a request and answers it with a null
		// id: the client would never learn its request failed, and it
		// would stay pending. It is refused here with its id.
		c.answer(stdioConnReplyID(m.ID), codeInvalidRequest, `Invalid JSON-RPC version: "jsonrpc" must be "2.0"`)
		return false
	}
	// mcp-go answers nothing with a result, whatever its method.
	if !isJSONNull(m.Result) {
		return true
	}
	key, ok := idKey(m.ID)
	if !ok {
		return true
	}
	c.mu.Lock()
	if c.maxPending > 0 && c.npending >= c.maxPending {
		c.mu.Unlock()
		c.answer(stdioConnReplyID(m.ID), codeServerBusy, "too many requests in flight on this connection ("+
			strconv.Itoa(c.maxPending)+"): wait for their answers before sending more")
		return false
	}
	defer c.mu.Unlock()
	c.pending[key]++
	c.npending++
	if c.npending == 1 {
		c.idle = make(chan struct{})
	}
	return true
}

// cancel marks the request a notifications/cancelled names, by its
// params.requestId, as cancelled, if it is pending. A cancellation of a
// request already answered, or never made, is ignored, so that it can't
// silence a later request that reuses the id.
func (c *stdioConn) cancel(requestID json.RawMessage) {
	key, ok := idKey(requestID)
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
		if line := data[start : next-1]; repliesToAnAnswer(line) {
			c.log.Debug("stdio: dropped mcp-go's answer to the client's answer to a withdrawn question")
			c.emit(data[run:start])
			run = next
		} else if !c.settle(line) {
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
	id, response, request := tools.ReadAnswer(line)
	if request {
		if q, ok := questionID(id); ok {
			c.mu.Lock()
			during := make(map[string]struct{}, len(c.pending))
			for key := range c.pending {
				during[key] = struct{}{}
			}
			c.asked[q] = during
			if c.inputEnded {
				select {
				case c.askedLate <- struct{}{}:
				default:
				}
			}
			c.mu.Unlock()
		}
		return true
	}
	if !response {
		return true
	}
	key, ok := idKey(id)
	if !ok {
		return true
	}
	c.mu.Lock()
	n := c.pending[key]
	if n == 0 {
		c.mu.Unlock()
		return true
	}
	if n == 1 {
		delete(c.pending, key)
		c.forgetQuestions(key)
	} else {
		c.pending[key] = n - 1
	}
	c.npending--
	if c.npending == 0 {
		close(c.idle)
	}
	_, cancelled := c.cancelled[key]
	delete(c.cancelled, key)
	c.mu.Unlock()
	if cancelled {
		c.log.Debug("stdio: dropped the response to a cancelled request", "id", logID(id))
	}
	return !cancelled
}

// logID is a client's JSON-RPC id for the log: as sent, cut to 64 bytes.
func logID(id json.RawMessage) string {
	if len(id) > 64 {
		return string(id[:64]) + "..."
	}
	return string(id)
}

// forgetQuestions notes that no request with key is pending any more, and
// forgets the questions that only a request with key could have asked.
// c.mu is held.
func (c *stdioConn) forgetQuestions(key string) {
	for q, during := range c.asked {
		delete(during, key)
		if len(during) == 0 {
			delete(c.asked, q)
		}
	}
}

// idKey returns the key under which a JSON-RPC id is pending: the id
// decoded and encoded again, as mcp-go does before it echoes the id in its
// response, so that 1.0 and 1 are one request, as mcp-go answers both with
// 1, while 1 and "1" stay two. A missing or null id has no key.
func idKey(id json.RawMessage) (string, bool) {
	if isJSONNull(id) {
		return "", false
	}
	if plainID(id) {
		return string(id), true // encoded again it is the same
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

// plainID reports whether id is written as encoding/json writes it again
// after decoding it into an interface: an integer of at most 15 digits
// without a sign or leading zero (a float64 holds it exactly, and is
// written without an exponent), or a string of printable ASCII that needs
// no escape (encoding/json escapes <, > and & besides the quote and the
// backslash).
func plainID(id []byte) bool {
	switch {
	case len(id) == 0:
		return false
	case id[0] == '"':
		if len(id) < 2 || id[len(id)-1] != '"' {
			return false
		}
		for _, c := range id[1 : len(id)-1] {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		return true
	case len(id) > 15 || (id[0] == '0' && len(id) > 1):
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isJSONNull reports whether raw, a member decoded by encoding/json, is
// absent or null.
func isJSONNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}
