package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
// It walks the message as a token stream, holding no more than a set of
// keys per open object, and returns nil or a *MessageError: Err says which
// of the above, or ErrInvalidJSON for a message that is not one valid JSON
// value (as json.Valid has it), and Code the JSON-RPC error code to answer
// with. It is for every transport: the stdio one calls it on each line.
func CheckMessage(msg []byte) error {
	if !json.Valid(msg) {
		// In encoding/json's words: json.Unmarshal checks the whole
		// input before it decodes anything.
		return &MessageError{Err: ErrInvalidJSON, syntax: json.Unmarshal(msg, new(discard))}
	}
	w := messageWalker{dec: json.NewDecoder(bytes.NewReader(msg))}
	// Numbers stay text: a float64 would refuse 1e999, which is valid JSON.
	w.dec.UseNumber()
	err := w.value(levelTop)
	if err == nil {
		if _, err = w.dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			err = errors.New("data after the message")
		}
	}
	var me *MessageError
	if errors.As(err, &me) {
		return me
	}
	// The decoder refuses what json.Valid accepts: refuse it too.
	return &MessageError{Err: ErrInvalidJSON, syntax: err}
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

// messageWalker walks a message's tokens, keeping the path to the value
// being walked.
type messageWalker struct {
	dec   *json.Decoder
	path  []pathElem
	depth int
}

// pathElem is one step of a path: a key, or an index in an array.
type pathElem struct {
	key   string // if isKey
	index int    // if not
	isKey bool
}

// value walks one value at lv. It returns a *MessageError for the first
// problem it finds, or the decoder's error.
func (w *messageWalker) value(lv level) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		if n, isNumber := tok.(json.Number); isNumber {
			return w.number(n)
		}
		return nil // another scalar
	}
	if w.depth++; w.depth > MaxMessageDepth {
		return &MessageError{Err: ErrTooDeep, Path: w.pathString()}
	}
	defer func() { w.depth-- }()
	if d == '[' {
		return w.array(lv)
	}
	return w.object(lv)
}

// array walks the elements of an array whose '[' has been read: the
// envelopes of a batch at the top, anything elsewhere.
func (w *messageWalker) array(lv level) error {
	elem := levelOther
	if lv == levelTop {
		elem = levelEnvelope
	}
	for i := 0; w.dec.More(); i++ {
		w.path = append(w.path, pathElem{index: i})
		if err := w.value(elem); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	_, err := w.dec.Token() // ']'
	return err
}

// object walks the members of an object whose '{' has been read, refusing
// the first key that repeats one before it.
func (w *messageWalker) object(lv level) error {
	if lv == levelTop {
		lv = levelEnvelope
	}
	fold := lv.folds()
	var seen keySet
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok { // the decoder refuses anything else here; be sure
			return errors.New("object key is not a string")
		}
		id := key
		if fold {
			id = foldKey(key)
		}
		if first, dup := seen.add(id, key); dup {
			w.path = append(w.path, pathElem{key: first, isKey: true})
			e := &MessageError{Err: ErrDuplicateKey, Path: w.pathString()}
			if first != key {
				e.As = cut(key)
			}
			return e
		}
		child := levelOther
		switch {
		case lv == levelEnvelope && id == foldedParams:
			child = levelParams
		case lv == levelEnvelope && (id == foldedResult || id == foldedError):
			child = levelAnswer
		case lv == levelParams && id == foldedInputResponses:
			child = levelResponses
		case lv == levelResponses:
			child = levelAnswer
		}
		w.path = append(w.path, pathElem{key: key, isKey: true})
		if err := w.value(child); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	_, err := w.dec.Token() // '}'
	return err
}

// number refuses n if it is in an envelope's params and beyond a float64's
// range, which is where mcp-go would fail to decode it.
func (w *messageWalker) number(n json.Number) error {
	params := w.paramsAt()
	if params < 0 {
		return nil
	}
	if _, err := strconv.ParseFloat(string(n), 64); err == nil {
		return nil
	}
	// json.Valid has accepted the number, so the error is ErrRange.
	e := &MessageError{Err: ErrNumberOutOfRange, Path: w.pathString(), number: cutNumber(string(n))}
	if args := params + 1; len(w.path) > args+1 && w.path[args].isKey && foldKey(w.path[args].key) == foldedArguments {
		e.arg = pathString(w.path[args+1:])
	}
	return e
}

// paramsAt returns the index in the path of an envelope's "params" key
// (in any case, as encoding/json matches it) when the walk is inside it, or
// -1.
func (w *messageWalker) paramsAt() int {
	i := 0
	if len(w.path) > 0 && !w.path[0].isKey {
		i = 1 // an envelope of a batch
	}
	if len(w.path) > i && w.path[i].isKey && foldKey(w.path[i].key) == foldedParams {
		return i
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

// pathString renders the path as MessageError.Path.
func (w *messageWalker) pathString() string { return pathString(w.path) }

// pathString renders a path: keys joined by dots, indexes in brackets.
func pathString(path []pathElem) string {
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
		b.WriteString(cut(p.key))
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

// The keys whose objects CheckMessage compares case-insensitively, or
// refers to, folded by foldKey.
var (
	foldedParams         = foldKey("params")
	foldedArguments      = foldKey("arguments")
	foldedResult         = foldKey("result")
	foldedError          = foldKey("error")
	foldedInputResponses = foldKey("inputResponses")
)

// foldKey folds a key as encoding/json does to match it to a struct field
// case-insensitively: two keys match a field alike exactly when they fold
// alike. Each rune becomes the smallest of those Unicode folds together
// with it, so that "ID", "id" and "iD" fold alike, and so do "K", "k" and
// the Kelvin sign.
func foldKey(key string) string {
	ascii := true
	for i := 0; i < len(key); i++ {
		if c := key[i]; c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(key)
	}
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}

// keySet is the keys of one object seen so far, each under its identity
// (the key, or its fold) with its first spelling. Most objects have few
// keys: those stay in an array, without a map.
type keySet struct {
	n     int
	small [8]struct{ id, key string }
	more  map[string]string
}

// add records key under id and reports, if id was already there, the
// spelling it was first seen under.
func (s *keySet) add(id, key string) (first string, dup bool) {
	for i := range s.n {
		if s.small[i].id == id {
			return s.small[i].key, true
		}
	}
	if first, ok := s.more[id]; ok {
		return first, true
	}
	if s.n < len(s.small) {
		s.small[s.n].id, s.small[s.n].key = id, key
		s.n++
		return "", false
	}
	if s.more == nil {
		s.more = make(map[string]string)
	}
	s.more[id] = key
	return "", false
}
