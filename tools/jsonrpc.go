package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxMessageDepth bounds how deeply a JSON-RPC message may nest objects and
// arrays, the message itself being level 1. A tool call's arguments are at
// level 3 and the deepest of them, the objects of a checkout's
// priceDataList, at level 5; MCP's own messages nest little more. The bound
// only stops a message built to be deep.
const MaxMessageDepth = 64

// The reasons CheckMessage refuses a message, which its *MessageError wraps.
var (
	// ErrInvalidJSON: the message is not a single valid JSON value. It
	// takes precedence over the other two: a message that is both invalid
	// and, say, repeats a key is reported as invalid.
	ErrInvalidJSON = errors.New("not valid JSON")
	// ErrDuplicateKey: an object repeats a key.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrTooDeep: objects and arrays nest more than MaxMessageDepth levels.
	ErrTooDeep = errors.New("nested too deeply")
	// ErrNumberOutOfRange: a number in a request's params (a tool's
	// argument, say) is beyond what a float64 holds, such as 1e400 or an
	// integer of 400 digits. mcp-go decodes params into float64s and would
	// answer with encoding/json's words, naming Go types; refused here, the
	// answer names the argument instead.
	ErrNumberOutOfRange = errors.New("number out of range")
)

// JSON-RPC error codes for the answer to a refused message.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInvalidParams  = -32602
)

// A MessageError is why CheckMessage refused a message.
type MessageError struct {
	// Err is ErrInvalidJSON, ErrDuplicateKey, ErrTooDeep or
	// ErrNumberOutOfRange.
	Err error
	// Path locates the repeated key, the object or array one level too
	// deep, or the number out of range, from the message down: "params.arguments",
	// "params.arguments.lineItems[2].name", "[0].id" in a batch. Keys in it
	// are as the message first spells them, each cut to 64 bytes. It is
	// empty for ErrInvalidJSON.
	Path string
	// As is, for a key repeated in another case ("Arguments" after
	// "arguments"), the repeat's spelling; empty for an exact repeat.
	As string

	syntax error  // for ErrInvalidJSON, what encoding/json found wrong
	number string // for ErrNumberOutOfRange, the number, cut short
	arg    string // for ErrNumberOutOfRange in a tool's arguments, the argument's path in them
}

// Error describes the refusal in a sentence fit for a JSON-RPC error
// message, such as `duplicate key "params.arguments"`.
func (e *MessageError) Error() string {
	switch e.Err {
	case ErrDuplicateKey:
		s := "duplicate key " + strconv.Quote(e.Path)
		if e.As != "" {
			s += " (again as " + strconv.Quote(e.As) + ")"
		}
		return s
	case ErrTooDeep:
		return "nested too deeply at " + strconv.Quote(e.Path) + ": the limit is " + strconv.Itoa(MaxMessageDepth) + " levels of objects and arrays"
	case ErrNumberOutOfRange:
		if e.arg != "" {
			return "invalid arguments: argument " + strconv.Quote(e.arg) + ": the number " + e.number + " is out of range: no argument takes a number of that size"
		}
		return "invalid params: the number " + e.number + " at " + strconv.Quote(e.Path) + " is out of range"
	}
	if e.syntax != nil {
		return e.Err.Error() + ": " + e.syntax.Error()
	}
	return e.Err.Error()
}

// Unwrap returns Err, so that errors.Is(err, ErrDuplicateKey) works.
func (e *MessageError) Unwrap() error { return e.Err }

// Code returns the JSON-RPC error code to answer the message with: -32700
// (parse error) for ErrInvalidJSON, -32602 (invalid params) for
// ErrNumberOutOfRange, -32600 (invalid request) otherwise.
func (e *MessageError) Code() int {
	switch e.Err {
	case ErrInvalidJSON:
		return codeParseError
	case ErrNumberOutOfRange:
		return codeInvalidParams
	}
	return codeInvalidRequest
}

// CheckMessage checks one JSON-RPC message, as a transport receives it and
// before anything decodes it, for what encoding/json would silently accept
// and a reader of the message could then take two ways:
//
//   - a key repeated in any object, at any depth: encoding/json keeps the
//     last value, where another reader (a log, an audit, a proxy) may keep
//     the first, so "arguments" twice in a tools/call could show one call
//     and run another;
//   - a key repeated in another case, such as "Method" after "method" or
//     "Arguments" after "arguments", where mcp-go decodes the object into a
//     struct: encoding/json matches struct fields case-insensitively,
//     Unicode folds included (the Kelvin sign is a K), so these are repeats
//     too. That is the envelope (the message's own object, or each of a
//     batch's), its "params", a response's "result" and "error", and each
//     answer in a request's "params.inputResponses" ("Action" after
//     "action" would otherwise read as a decline and run as an approval).
//     Deeper, only exact repeats count: what lies there is decoded into
//     maps (_meta, capabilities' experimental and extensions, error data,
//     an answer's content), where case matters and two such keys are two
//     entries, or by the tools' strict decoder (arguments), which refuses
//     a case variant of an argument's name itself;
//   - objects and arrays nested more than MaxMessageDepth levels;
//   - in an envelope's "params", a number beyond a float64's range (1e400,
//     -1e400, an integer of 400 digits), which mcp-go's decoding into
//     float64 refuses in words that name Go's types rather than the
//     argument. A number too small for a float64 (1e-400) is left to the
//     tool, which refuses it by name as it does any amount with too many
//     decimals.
//
// It walks the message as a token stream, holding no more than the keys of
// the objects open on the way, and returns nil or a *MessageError: Err says
// which of the above, or ErrInvalidJSON for a message that is not one valid
// JSON value (as json.Valid has it), and Code the JSON-RPC error code to
// answer with. It is for every transport: the stdio one calls it on each
// line (through ReadMessage, which also returns the envelope).
func CheckMessage(msg []byte) error {
	_, err := ReadMessage(msg)
	return err
}

// Envelope is what a transport reads of a message's envelope to track its
// requests: what encoding/json decodes into a struct with the fields id,
// method, result, error and params.requestId, matched to the keys in any
// case. ID, Result, Error and RequestID are the members' JSON as sent, in
// the message's bytes; each is nil when the member is absent, and
// RequestID also when params is not an object. Method is "" when absent or
// not a string. Version is the jsonrpc member's JSON as sent, nil when
// absent.
type Envelope struct {
	ID, Result, Error, RequestID, Version json.RawMessage
	Method                                string
}

// ReadMessage is CheckMessage, and returns, for a message it accepts that
// is one JSON object, its envelope, read in the same walk. A batch, or any
// other value, has a zero Envelope.
func ReadMessage(msg []byte) (Envelope, error) {
	if !json.Valid(msg) {
		// In encoding/json's words: json.Unmarshal checks the whole
		// input before it decodes anything.
		return Envelope{}, &MessageError{Err: ErrInvalidJSON, syntax: json.Unmarshal(msg, new(discard))}
	}
	w := walkers.Get().(*messageWalker)
	defer w.release()
	w.read(msg)
	w.msg = msg
	w.noting = w.dec.PeekKind() == '{'
	err := w.value(levelTop)
	if err == nil {
		if _, err = w.dec.ReadToken(); err == io.EOF {
			return w.env, nil
		}
		if err == nil {
			err = errors.New("data after the message")
		}
	}
	var me *MessageError
	if errors.As(err, &me) {
		return Envelope{}, me
	}
	// The decoder refuses what json.Valid accepts: refuse it too.
	return Envelope{}, &MessageError{Err: ErrInvalidJSON, syntax: err}
}

// discard is a json.Unmarshaler that keeps nothing: json.Unmarshal into it
// only checks its input.
type discard struct{}

func (discard) UnmarshalJSON([]byte) error { return nil }

// level is what an object is in a JSON-RPC message, which decides how its
// keys are compared.
type level int

const (
	levelTop       level = iota // the message: an envelope or a batch of them
	levelEnvelope               // an envelope: jsonrpc, id, method, params…
	levelParams                 // an envelope's params
	levelAnswer                 // a response's result or error, or one of params.inputResponses
	levelResponses              // params.inputResponses: answers by the name of their request
	levelOther                  // anything deeper
)

// folds reports whether keys at lv are compared as encoding/json matches
// them to struct fields: case-insensitively.
func (lv level) folds() bool {
	return lv == levelEnvelope || lv == levelParams || lv == levelAnswer
}

// walkOptions are the decoder's: a repeated key and invalid UTF-8 are
// for the walk to judge (encoding/json, which mcp-go decodes with, accepts
// both, the second as U+FFFD, which is how the walk reads a key too).
var walkOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// inPlace is a jsontext.Decoder that reads a byte slice in place (jsontext
// reads a bytes.Buffer's bytes without copying them), with walkOptions.
// The walks keep theirs in pools: they run on every message.
type inPlace struct {
	src bytes.Buffer
	dec *jsontext.Decoder
}

// read points d at b, which it must not outlive.
func (d *inPlace) read(b []byte) {
	if d.dec == nil {
		d.dec = jsontext.NewDecoder(&d.src, walkOptions...)
	}
	d.src = *bytes.NewBuffer(b)
	d.dec.Reset(&d.src, walkOptions...)
}

// clear lets go of what d read, before d goes back to its pool.
func (d *inPlace) clear() {
	d.src = bytes.Buffer{}
	d.dec.Reset(&d.src, walkOptions...)
}

// walkers keeps messageWalkers, with their decoders and buffers, for reuse:
// CheckMessage runs on every message a transport receives.
var walkers = sync.Pool{New: func() any { return new(messageWalker) }}

// messageWalker walks a message's tokens, keeping the path to the value
// being walked. The keys of the objects open on the path, as spelled and
// as folded, are kept back to back in names, each object's after its
// parent's, and dropped when the object ends: a walk allocates nothing for
// them.
type messageWalker struct {
	inPlace
	msg    []byte   // the message
	env    Envelope // the envelope, if noting
	noting bool     // the message is one object, whose envelope env notes
	path   []pathElem
	names  []byte
	depth  int
}

// release returns w to walkers, holding on to neither the message nor a
// large message's buffers.
func (w *messageWalker) release() {
	w.clear()
	w.msg, w.env, w.noting = nil, Envelope{}, false
	w.path = w.path[:0]
	w.depth = 0
	if cap(w.names) > 64<<10 || cap(w.path) > 1024 {
		return // let the pool take another
	}
	w.names = w.names[:0]
	walkers.Put(w)
}

// span is a key in messageWalker.names.
type span struct{ start, end int }

// pathElem is one step of a path: a key, or an index in an array.
type pathElem struct {
	key   span // if isKey
	index int  // if not
	isKey bool
	// params marks an envelope's "params" key, arguments the "arguments"
	// key in it (each in any case, as encoding/json matches them).
	params, arguments bool
}

// name returns the bytes of a key.
func (w *messageWalker) name(s span) []byte { return w.names[s.start:s.end] }

// value walks one value at lv. It returns a *MessageError for the first
// problem it finds, or the decoder's error.
func (w *messageWalker) value(lv level) error {
	switch w.dec.PeekKind() {
	case '{', '[':
		tok, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		if w.depth++; w.depth > MaxMessageDepth {
			return &MessageError{Err: ErrTooDeep, Path: w.pathString()}
		}
		if tok.Kind() == '[' {
			err = w.array(lv)
		} else {
			err = w.object(lv)
		}
		w.depth--
		return err
	case '0':
		n, err := w.dec.ReadValue()
		if err != nil {
			return err
		}
		return w.number(n)
	}
	return w.dec.SkipValue() // another scalar, or the decoder's error
}

// array walks the elements of an array whose '[' has been read: the
// envelopes of a batch at the top, anything elsewhere.
func (w *messageWalker) array(lv level) error {
	elem := levelOther
	if lv == levelTop {
		elem = levelEnvelope
	}
	for i := 0; w.dec.PeekKind() != ']'; i++ {
		w.path = append(w.path, pathElem{index: i})
		if err := w.value(elem); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	_, err := w.dec.ReadToken() // ']'
	return err
}

// The keys CheckMessage refers to, folded by appendFold.
const (
	foldedParams         = "PARAMS"
	foldedArguments      = "ARGUMENTS"
	foldedResult         = "RESULT"
	foldedError          = "ERROR"
	foldedInputResponses = "INPUTRESPONSES"
	foldedID             = "ID"
	foldedMethod         = "METHOD"
	foldedRequestID      = "REQUESTID"
	foldedJSONRPC        = "JSONRPC"
)

// object walks the members of an object whose '{' has been read, refusing
// the first key that repeats one before it.
func (w *messageWalker) object(lv level) error {
	if lv == levelTop {
		lv = levelEnvelope
	}
	fold := lv.folds()
	mark := len(w.names)
	var seen keySet
	for w.dec.PeekKind() != '}' {
		raw, err := w.dec.ReadValue()
		if err != nil {
			return err
		}
		if raw.Kind() != '"' { // the decoder refuses anything else here; be sure
			return errors.New("object key is not a string")
		}
		key := unquoteInto(&w.names, raw)
		id := key
		if fold {
			start := len(w.names)
			w.names = appendFold(w.names, w.name(key))
			id = span{start, len(w.names)}
		}
		if first, dup := seen.add(w.names, id, key); dup {
			w.path = append(w.path, pathElem{key: first, isKey: true})
			e := &MessageError{Err: ErrDuplicateKey, Path: w.pathString()}
			if !bytes.Equal(w.name(first), w.name(key)) {
				e.As = cut(string(w.name(key)))
			}
			return e
		}
		child := levelOther
		folded := string(w.name(id))
		switch {
		case lv == levelEnvelope && folded == foldedParams:
			child = levelParams
		case lv == levelEnvelope && (folded == foldedResult || folded == foldedError):
			child = levelAnswer
		case lv == levelParams && folded == foldedInputResponses:
			child = levelResponses
		case lv == levelResponses:
			child = levelAnswer
		}
		w.path = append(w.path, pathElem{key: key, isKey: true,
			params:    lv == levelEnvelope && folded == foldedParams,
			arguments: lv == levelParams && folded == foldedArguments})
		if err := w.member(lv, folded, child); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	w.names = w.names[:mark]
	_, err := w.dec.ReadToken() // '}'
	return err
}

// member walks the value of the member of an object at lv whose key folds
// to folded, noting it in the envelope if it is part of it.
func (w *messageWalker) member(lv level, folded string, child level) error {
	var note *json.RawMessage
	switch {
	case !w.noting:
	case lv == levelEnvelope && folded == foldedID:
		note = &w.env.ID
	case lv == levelEnvelope && folded == foldedResult:
		note = &w.env.Result
	case lv == levelEnvelope && folded == foldedError:
		note = &w.env.Error
	case lv == levelParams && folded == foldedRequestID:
		note = &w.env.RequestID
	case lv == levelEnvelope && folded == foldedJSONRPC:
		note = &w.env.Version
	case lv == levelEnvelope && folded == foldedMethod && w.dec.PeekKind() == '"':
		raw, err := w.dec.ReadValue()
		if err != nil {
			return err
		}
		// As encoding/json decodes it: invalid UTF-8 as U+FFFD.
		s := unquoteInto(&w.names, raw)
		w.env.Method = string(w.names[s.start:s.end])
		w.names = w.names[:s.start]
		return nil
	}
	if note == nil {
		return w.value(child)
	}
	start := w.dec.InputOffset()
	if err := w.value(child); err != nil {
		return err
	}
	// What was read since the key: the colon, spaces maybe, the value.
	raw := bytes.TrimLeft(w.msg[start:w.dec.InputOffset()], " \t\r\n")
	*note = bytes.TrimLeft(raw[1:], " \t\r\n")
	return nil
}

// unquoteInto appends the key raw, a JSON string the decoder has read, to
// names as encoding/json decodes it, invalid UTF-8 as U+FFFD, and returns
// where it is.
func unquoteInto(names *[]byte, raw jsontext.Value) span {
	start := len(*names)
	plain := true
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		*names = append(*names, raw[1:len(raw)-1]...)
	} else {
		// The decoder has read a valid string; the only error left is
		// the invalid UTF-8 the options allow, replaced all the same.
		*names, _ = jsontext.AppendUnquote(*names, raw)
	}
	return span{start, len(*names)}
}

// number refuses n if it is in an envelope's params and beyond a float64's
// range, which is where mcp-go would fail to decode it.
func (w *messageWalker) number(n []byte) error {
	params := w.paramsAt()
	if params < 0 || !mayOverflow(n) {
		return nil
	}
	if _, err := strconv.ParseFloat(string(n), 64); err == nil {
		return nil
	}
	// json.Valid has accepted the number, so the error is ErrRange.
	e := &MessageError{Err: ErrNumberOutOfRange, Path: w.pathString(), number: cutNumber(string(n))}
	if args := params + 1; len(w.path) > args+1 && w.path[args].arguments {
		e.arg = pathString(w.names, w.path[args+1:], true)
	}
	return e
}

// mayOverflow reports whether a JSON number might be beyond a float64's
// range: it has an exponent, or 300 bytes or more, where the largest
// float64 has 309 digits.
func mayOverflow(n []byte) bool {
	return len(n) >= 300 || bytes.ContainsAny(n, "eE")
}

// paramsAt returns the index in the path of an envelope's "params" key
// when the walk is inside it, or -1.
func (w *messageWalker) paramsAt() int {
	for i := 0; i < len(w.path) && i < 2; i++ {
		if w.path[i].params {
			return i
		}
	}
	return -1
}

// cutNumber shortens a number's text for a message to at most 24 bytes,
// marking the cut with an ellipsis.
func cutNumber(n string) string {
	const limit = 24
	if len(n) <= limit {
		return n
	}
	return n[:limit] + "…"
}

// pathString renders the path as MessageError.Path, keys cut short.
func (w *messageWalker) pathString() string { return pathString(w.names, w.path, true) }

// pathString renders a path whose keys are in names: keys joined by dots,
// indexes in brackets, each key cut to 64 bytes if cutKeys.
func pathString(names []byte, path []pathElem, cutKeys bool) string {
	var b strings.Builder
	for i, p := range path {
		if !p.isKey {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		key := names[p.key.start:p.key.end]
		if cutKeys {
			b.WriteString(cut(string(key)))
		} else {
			b.Write(key)
		}
	}
	return b.String()
}

// cut shortens a key to at most 64 bytes for a message, on a rune
// boundary, marking the cut with an ellipsis.
func cut(key string) string {
	const limit = 64
	if len(key) <= limit {
		return key
	}
	n := limit
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n] + "…"
}

// appendFold appends key folded as encoding/json folds a key to match it to
// a struct field case-insensitively: two keys match a field alike exactly
// when they fold alike. Each rune becomes the smallest of those Unicode
// folds together with it, so that "ID", "id" and "iD" fold alike, and so do
// "K", "k" and the Kelvin sign. key is valid UTF-8.
func appendFold(dst, key []byte) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(key[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		dst = utf8.AppendRune(dst, r)
		i += size
	}
	return dst
}

// keySet is the keys of one object seen so far, each under its identity
// (the key, or its fold) with its first spelling, both in the walker's
// names. Most objects have few keys: those stay in an array, without a
// map.
type keySet struct {
	n     int
	small [8]struct{ id, key span }
	more  map[string]span
}

// add records key under id and reports, if id was already there, the
// spelling it was first seen under.
func (s *keySet) add(names []byte, id, key span) (first span, dup bool) {
	ident := names[id.start:id.end]
	for i := range s.n {
		if string(names[s.small[i].id.start:s.small[i].id.end]) == string(ident) {
			return s.small[i].key, true
		}
	}
	if first, ok := s.more[string(ident)]; ok {
		return first, true
	}
	if s.n < len(s.small) {
		s.small[s.n].id, s.small[s.n].key = id, key
		s.n++
		return span{}, false
	}
	if s.more == nil {
		s.more = make(map[string]span)
	}
	s.more[string(ident)] = key
	return span{}, false
}

// ReadAnswer reads line, a message a server writes, as encoding/json would
// decode it into a struct with the fields id, method, result and error
// (matched to the keys in any case, the last of a repeated one counting),
// and returns its id, and whether it is a response (one JSON object with a
// result or an error, null counting, and without a method, or with "") or
// a request of the server's (a method and an id that is not null). It
// reads the top-level keys and skips the values, allocating nothing; a
// line that is not one valid JSON object is neither. The id is in line.
func ReadAnswer(line []byte) (id json.RawMessage, response, request bool) {
	r := answerReaders.Get().(*answerReader)
	defer r.release()
	r.read(line)
	if r.dec.PeekKind() != '{' {
		return nil, false, false
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, false, false
	}
	answer, request := false, false
	for r.dec.PeekKind() == '"' {
		raw, err := r.dec.ReadValue()
		if err != nil {
			return nil, false, false
		}
		r.name, _ = jsontext.AppendUnquote(r.name[:0], raw)
		switch {
		case bytes.EqualFold(r.name, []byte("id")):
			v, err := r.dec.ReadValue()
			if err != nil {
				return nil, false, false
			}
			id = json.RawMessage(v) // in line: the decoder reads line in place
		case bytes.EqualFold(r.name, []byte("method")):
			v, err := r.dec.ReadValue()
			if err != nil {
				return nil, false, false
			}
			// As encoding/json: the last method counts, null leaves it
			// as it was.
			switch {
			case v.Kind() == 'n':
			case v.Kind() != '"':
				return nil, false, false // encoding/json would fail on it
			default:
				request = len(v) > 2 // a method that is not ""
			}
		case bytes.EqualFold(r.name, []byte("result")), bytes.EqualFold(r.name, []byte("error")):
			answer = true
			fallthrough
		default:
			if r.dec.SkipValue() != nil {
				return nil, false, false
			}
		}
	}
	if _, err := r.dec.ReadToken(); err != nil { // '}'
		return nil, false, false
	}
	if _, err := r.dec.ReadToken(); err != io.EOF {
		return nil, false, false
	}
	if request {
		return id, false, len(id) > 0 && string(id) != "null"
	}
	return id, answer, false
}

// answerReader is ReadAnswer's decoder, with a buffer for a key.
type answerReader struct {
	inPlace
	name []byte
}

// answerReaders keeps answerReaders for reuse.
var answerReaders = sync.Pool{New: func() any { return new(answerReader) }}

// release returns r to answerReaders, holding on to no line.
func (r *answerReader) release() {
	r.clear()
	if cap(r.name) > 4<<10 {
		r.name = nil
	}
	answerReaders.Put(r)
}
