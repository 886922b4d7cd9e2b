package tools

// The implementation of CheckMessage before it read messages with jsontext:
// encoding/json's Decoder.Token, which allocates for every token. It is
// kept here, unchanged but for its names, as the reference the new one is
// fuzzed against (FuzzCheckMessageMatchesReference): both must refuse the
// same messages for the same reasons, at the same paths.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// refCheckMessage is CheckMessage as it was.
func refCheckMessage(msg []byte) error {
	if !json.Valid(msg) {
		// In encoding/json's words: json.Unmarshal checks the whole
		// input before it decodes anything.
		return &MessageError{Err: ErrInvalidJSON, syntax: json.Unmarshal(msg, new(refDiscard))}
	}
	w := refWalker{dec: json.NewDecoder(bytes.NewReader(msg))}
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

// refDiscard is a json.Unmarshaler that keeps nothing: json.Unmarshal into it
// only checks its input.
type refDiscard struct{}

func (refDiscard) UnmarshalJSON([]byte) error { return nil }

// refWalker walks a message's tokens, keeping the path to the value
// being walked.
type refWalker struct {
	dec   *json.Decoder
	path  []refPathElem
	depth int
}

// refPathElem is one step of a path: a key, or an index in an array.
type refPathElem struct {
	key   string // if isKey
	index int    // if not
	isKey bool
}

// value walks one value at lv. It returns a *MessageError for the first
// problem it finds, or the decoder's error.
func (w *refWalker) value(lv level) error {
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
		return &MessageError{Err: ErrTooDeep, Path: w.refPathString()}
	}
	defer func() { w.depth-- }()
	if d == '[' {
		return w.array(lv)
	}
	return w.object(lv)
}

// array walks the elements of an array whose '[' has been read: the
// envelopes of a batch at the top, anything elsewhere.
func (w *refWalker) array(lv level) error {
	elem := levelOther
	if lv == levelTop {
		elem = levelEnvelope
	}
	for i := 0; w.dec.More(); i++ {
		w.path = append(w.path, refPathElem{index: i})
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
func (w *refWalker) object(lv level) error {
	if lv == levelTop {
		lv = levelEnvelope
	}
	fold := lv.folds()
	var seen refKeySet
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
			id = refFoldKey(key)
		}
		if first, dup := seen.add(id, key); dup {
			w.path = append(w.path, refPathElem{key: first, isKey: true})
			e := &MessageError{Err: ErrDuplicateKey, Path: w.refPathString()}
			if first != key {
				e.As = cut(key)
			}
			return e
		}
		child := levelOther
		switch {
		case lv == levelEnvelope && id == refFoldedParams:
			child = levelParams
		case lv == levelEnvelope && (id == refFoldedResult || id == refFoldedError):
			child = levelAnswer
		case lv == levelParams && id == refFoldedInputResponses:
			child = levelResponses
		case lv == levelResponses:
			child = levelAnswer
		}
		w.path = append(w.path, refPathElem{key: key, isKey: true})
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
func (w *refWalker) number(n json.Number) error {
	params := w.paramsAt()
	if params < 0 {
		return nil
	}
	if _, err := strconv.ParseFloat(string(n), 64); err == nil {
		return nil
	}
	// json.Valid has accepted the number, so the error is ErrRange.
	e := &MessageError{Err: ErrNumberOutOfRange, Path: w.refPathString(), number: cutNumber(string(n))}
	if args := params + 1; len(w.path) > args+1 && w.path[args].isKey && refFoldKey(w.path[args].key) == refFoldedArguments {
		e.arg = refPathString(w.path[args+1:])
	}
	return e
}

// paramsAt returns the index in the path of an envelope's "params" key
// (in any case, as encoding/json matches it) when the walk is inside it, or
// -1.
func (w *refWalker) paramsAt() int {
	i := 0
	if len(w.path) > 0 && !w.path[0].isKey {
		i = 1 // an envelope of a batch
	}
	if len(w.path) > i && w.path[i].isKey && refFoldKey(w.path[i].key) == refFoldedParams {
		return i
	}
	return -1
}

func (w *refWalker) refPathString() string { return refPathString(w.path) }

// refPathString renders a path: keys joined by dots, indexes in brackets.
func refPathString(path []refPathElem) string {
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

// refKeySet is the keys of one object seen so far, each under its identity
// (the key, or its fold) with its first spelling. Most objects have few
// keys: those stay in an array, without a map.
type refKeySet struct {
	n     int
	small [8]struct{ id, key string }
	more  map[string]string
}

// add records key under id and reports, if id was already there, the
// spelling it was first seen under.
func (s *refKeySet) add(id, key string) (first string, dup bool) {
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

// The keys whose objects CheckMessage compares case-insensitively, or
// refers to, refFolded by refFoldKey.
var (
	refFoldedParams         = refFoldKey("params")
	refFoldedArguments      = refFoldKey("arguments")
	refFoldedResult         = refFoldKey("result")
	refFoldedError          = refFoldKey("error")
	refFoldedInputResponses = refFoldKey("inputResponses")
)

// refFoldKey folds a key as encoding/json does to match it to a struct field
// case-insensitively: two keys match a field alike exactly when they fold
// alike. Each rune becomes the smallest of those Unicode folds together
// with it, so that "ID", "id" and "iD" fold alike, and so do "K", "k" and
// the Kelvin sign.
func refFoldKey(key string) string {
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

// FuzzCheckMessageMatchesReference holds CheckMessage to the implementation
// it replaced: on any input both accept, or both refuse for the same reason
// at the same path, in the same words.
func FuzzCheckMessageMatchesReference(f *testing.F) {
	for _, tt := range checkMessageCases {
		f.Add([]byte(tt.msg))
	}
	for _, msg := range []string{
		// Keys that decode alike though spelled apart: escapes, invalid
		// UTF-8 (U+FFFD, once per byte), surrogates alone and in pairs.
		`{"a\u0062":1,"ab":2}`, "{\"a\xff\":1,\"a\xfe\":2}", "{\"a\xff\":1,\"a\uFFFD\":2}",
		`{"\ud800":1,"\ufffd":2}`, `{"\ud800\u0041":1,"\ufffdA":2}`, `{"\ud83d\ude00":1,"😀":2}`,
		"{\"\xe2\x82\":1,\"\uFFFD\uFFFD\":2}", `{"params":{"Ar\u0067uments":{},"arguments":{}}}`,
		`{"ſ":1,"S":2}`, `{"params":{"K":1,"k":2}}`, `{"params":{"\u212a":1,"k":2}}`,
		// Numbers at the edge of a float64's range, in and out of params.
		`{"params":{"n":1.7976931348623157e308}}`, `{"params":{"n":1.7976931348623159e308}}`,
		`{"params":{"n":1e-400}}`, `{"params":{"arguments":{"a":[1e309]}}}`, `{"n":1e999}`,
		`[{"params":{"x":-1E+400}}]`, `{"PARAMS":{"Arguments":{"q":` + strings.Repeat("9", 309) + `}}}`,
		`{"params":{"n":` + strings.Repeat("9", 308) + `}}`,
	} {
		f.Add([]byte(msg))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, want := CheckMessage(msg), refCheckMessage(msg)
		if (got == nil) != (want == nil) {
			t.Fatalf("CheckMessage(%q) = %v, the reference %v", msg, got, want)
		}
		if got == nil {
			return
		}
		var g, r *MessageError
		if !errors.As(got, &g) || !errors.As(want, &r) {
			t.Fatalf("CheckMessage(%q) = %#v, the reference %#v: not both *MessageError", msg, got, want)
		}
		if g.Err != r.Err || g.Path != r.Path || g.As != r.As || g.number != r.number || g.arg != r.arg || g.Error() != r.Error() {
			t.Fatalf("CheckMessage(%q) = %#v (%v),\nthe reference %#v (%v)", msg, g, g, r, r)
		}
	})
}
