package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// maxArgumentBytes bounds the size of one call's arguments. The largest
// checkout the schema allows (100 line items, 20 metadata entries of 500
// characters, every URL at 2,048), its text in characters of four UTF-8
// bytes, is some 340 KB, and some 600 KB from a client that escapes each
// as a surrogate pair (\ud83d\ude00): both stay below it, and it below the
// transports' 4 MiB for a whole message.
const maxArgumentBytes = 1 << 20

// kind is the JSON type an argument must have.
type kind int

const (
	kindString kind = iota
	kindNumber
	kindInteger
	kindBoolean
	kindArray
	kindObject    // a struct: a closed set of keys
	kindStringMap // a map of strings to strings: any keys
	kindRawObject // a json.RawMessage: any object, read later by its own decoder
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindInteger:
		return "a whole number"
	case kindBoolean:
		return "true or false"
	case kindArray:
		return "an array"
	default:
		return "an object"
	}
}

// shape describes what JSON a Go argument type accepts, derived once from its
// struct fields and json tags so the schema's names and the decoder's names
// cannot drift apart.
type shape struct {
	kind   kind
	elem   *shape            // kindArray, kindStringMap
	fields map[string]*shape // kindObject, by JSON name
	names  []string          // kindObject, sorted, for messages
}

var (
	numberType = reflect.TypeFor[json.Number]()
	rawType    = reflect.TypeFor[json.RawMessage]()
)

// shapeOf derives the shape of t. It panics on a type it does not support:
// argument types are fixed at compile time, so that is a programming error
// caught by every test.
func shapeOf(t reflect.Type) *shape {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case numberType:
		return &shape{kind: kindNumber}
	case rawType:
		return &shape{kind: kindRawObject}
	}
	switch t.Kind() {
	case reflect.String:
		return &shape{kind: kindString}
	case reflect.Bool:
		return &shape{kind: kindBoolean}
	case reflect.Int, reflect.Int64:
		return &shape{kind: kindInteger}
	case reflect.Slice:
		return &shape{kind: kindArray, elem: shapeOf(t.Elem())}
	case reflect.Map:
		if t.Key().Kind() != reflect.String || t.Elem().Kind() != reflect.String {
			panic("tools: unsupported map type " + t.String())
		}
		return &shape{kind: kindStringMap, elem: &shape{kind: kindString}}
	case reflect.Struct:
		s := &shape{kind: kindObject, fields: map[string]*shape{}}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			s.fields[name] = shapeOf(f.Type)
			s.names = append(s.names, name)
		}
		sort.Strings(s.names)
		return s
	}
	panic("tools: unsupported argument type " + t.String())
}

// decodeProblems is the list of everything wrong with a call's arguments,
// reported at once so the model can fix them in one go.
type decodeProblems []string

func (p decodeProblems) Error() string { return strings.Join(p, "; ") }

// decodeStrict decodes raw JSON arguments into dst, whose shape is sh. Before
// anything is decoded it walks the whole document and refuses, by name,
// unknown arguments (listing the valid ones), duplicate keys, keys that
// differ from a known one only in case, and values of the wrong JSON type. A
// null argument or field is taken as "not given"; a null map value or list
// item is refused. The returned error is a decodeProblems.
func decodeStrict(raw []byte, sh *shape, dst any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if len(raw) > maxArgumentBytes {
		return decodeProblems{fmt.Sprintf("the arguments are too large (%d bytes; the limit is %d)", len(raw), maxArgumentBytes)}
	}
	w := argWalkers.Get().(*walker)
	defer w.release()
	w.read(raw)
	tok, err := w.dec.ReadToken()
	if err != nil {
		return decodeProblems{"the arguments are not valid JSON"}
	}
	if tok.Kind() != '{' {
		return decodeProblems{"the arguments must be a JSON object"}
	}
	if err := w.object(sh); err != nil {
		var se *jsontext.SyntacticError
		if errors.As(err, &se) && se.Err != nil && se.Err.Error() == "exceeded max depth" {
			// Valid JSON all the same, deeper than the decoder reads
			// (10,000 levels); the transports refuse past 64 before this.
			return decodeProblems{"the arguments are nested too deeply"}
		}
		return decodeProblems{"the arguments are not valid JSON"}
	}
	if _, err := w.dec.ReadToken(); !errors.Is(err, io.EOF) {
		return decodeProblems{"the arguments must be a single JSON object"}
	}
	if len(w.problems) > 0 {
		return w.problems
	}
	raw = w.rewrite(raw)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		// The walk has checked every type, so this is a value out of range
		// for its Go type.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return decodeProblems{fmt.Sprintf("argument %q is out of range", te.Field)}
		}
		return decodeProblems{"the arguments could not be decoded"}
	}
	return nil
}

// walker checks a JSON document against a shape, token by token, reading
// it in place with a jsontext.Decoder. The keys of the objects open on the
// way are kept back to back in names, and the path to the value being
// walked in path, which is rendered only for a problem: a walk of
// arguments without problems allocates nothing.
type walker struct {
	inPlace
	names    []byte
	path     []pathElem
	problems decodeProblems
	// integers are the whole numbers written otherwise (2.0, 2e0) that
	// the decode into an int64 must read as written plainly.
	integers []rewrite
}

// rewrite is a number to write otherwise: the bytes [start, end) of the
// arguments as text.
type rewrite struct {
	start, end int
	text       string
}

// rewrite returns raw with w.integers written in, or raw itself when there
// are none.
func (w *walker) rewrite(raw []byte) []byte {
	if len(w.integers) == 0 {
		return raw
	}
	out := make([]byte, 0, len(raw))
	at := 0
	for _, r := range w.integers {
		out = append(append(out, raw[at:r.start]...), r.text...)
		at = r.end
	}
	return append(out, raw[at:]...)
}

// argWalkers keeps walkers, with their decoders and buffers, for reuse.
var argWalkers = sync.Pool{New: func() any { return new(walker) }}

// release returns w to argWalkers, holding on to neither the arguments nor
// large buffers. The problems it found belong to the caller.
func (w *walker) release() {
	w.clear()
	w.path, w.problems, w.integers = w.path[:0], nil, w.integers[:0]
	if cap(w.names) > 64<<10 || cap(w.path) > 1024 {
		return
	}
	w.names = w.names[:0]
	argWalkers.Put(w)
}

func (w *walker) addf(format string, args ...any) {
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

// pathString renders the first n steps of the path as the messages name
// an argument: keys joined by dots, indexes in brackets, keys whole.
func (w *walker) pathString(n int) string { return pathString(w.names, w.path[:n], false) }

// here is the path to the value being walked.
func (w *walker) here() string { return w.pathString(len(w.path)) }

// object walks the members of an object whose '{' has been read.
func (w *walker) object(sh *shape) error {
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
		w.path = append(w.path, pathElem{key: key, isKey: true})
		if _, dup := seen.add(w.names, key, key); dup {
			w.addf("argument %q is given more than once", w.here())
			if err := w.dec.SkipValue(); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
			continue
		}
		var val *shape
		if sh.kind == kindStringMap {
			val = sh.elem
		} else {
			val = sh.fields[string(w.names[key.start:key.end])]
		}
		if val == nil {
			w.unknown(sh, string(w.names[key.start:key.end]))
			if err := w.dec.SkipValue(); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
			continue
		}
		// A map's null value or a list's null item is a value, not an
		// argument left out: it would reach Clink as "" (or a zero item).
		if err := w.value(val, sh.kind != kindStringMap); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	w.names = w.names[:mark]
	_, err := w.dec.ReadToken() // '}'
	return err
}

// unknown reports key, which the shape of the object being walked does
// not have, suggesting the known name it was probably meant to be.
func (w *walker) unknown(sh *shape, key string) {
	p, path := w.here(), w.pathString(len(w.path)-1)
	for _, name := range sh.names {
		if strings.EqualFold(name, key) {
			w.addf("unknown argument %q: argument names are case-sensitive; did you mean %q?", p, joinPath(path, name))
			return
		}
	}
	where := "valid arguments are"
	if path != "" {
		where = "valid fields of " + strconv.Quote(path) + " are"
	}
	w.addf("unknown argument %q; %s: %s", p, where, strings.Join(sh.names, ", "))
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// value walks one value that must have shape sh; null is "not given" if
// nullOK, else refused.
func (w *walker) value(sh *shape, nullOK bool) error {
	got, want := w.dec.PeekKind(), sh.kind
	switch {
	case got == 'n':
		if _, err := w.dec.ReadToken(); err != nil {
			return err
		}
		if !nullOK {
			w.addf("argument %q must be %s, not null", w.here(), want)
		}
		return nil
	case got == '{' && (want == kindObject || want == kindStringMap):
		if _, err := w.dec.ReadToken(); err != nil {
			return err
		}
		return w.object(sh)
	case got == '{' && want == kindRawObject:
		return w.dec.SkipValue() // its own decoder reads it
	case got == '[' && want == kindArray:
		if _, err := w.dec.ReadToken(); err != nil {
			return err
		}
		for i := 0; w.dec.PeekKind() != ']'; i++ {
			w.path = append(w.path, pathElem{index: i})
			if err := w.value(sh.elem, false); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
		}
		_, err := w.dec.ReadToken() // ']'
		return err
	case got == '{' || got == '[':
		w.addf("argument %q must be %s, not %s", w.here(), want, kindOf(got))
		return w.dec.SkipValue()
	}
	v, err := w.dec.ReadValue()
	if err != nil {
		return err
	}
	switch {
	case want == kindInteger && got == '0':
		// JSON Schema's integer is any number whose value is whole: 2.0
		// and 2e0 are 2.
		text, whole, inRange := integerText(v)
		switch {
		case !whole:
			w.addf("argument %q must be a whole number (such as 2), not %s", w.here(), v)
		case !inRange:
			w.addf("argument %q is out of range: %s", w.here(), v)
		case text != string(v):
			end := int(w.dec.InputOffset())
			w.integers = append(w.integers, rewrite{start: end - len(v), end: end, text: text})
		}
	case kindOf(got) != want:
		w.addf("argument %q must be %s, not %s", w.here(), want, describe(v))
	}
	return nil
}

// integerText reads n, a valid JSON number, exactly: whole reports whether
// its value is a whole number (2, 2.0, 2.50e1, -0.0, 1E+2), inRange whether
// an int64 holds it, and text is then its value written plainly ("2",
// "25", "0", "100").
func integerText(n []byte) (text string, whole, inRange bool) {
	if len(n) > 0 && len(n) < 19 && !bytes.ContainsAny(n, ".eE") {
		if string(n) == "-0" {
			return "0", true, true
		}
		return string(n), true, true // at most 18 digits, a sign maybe
	}
	neg := n[0] == '-'
	if neg {
		n = n[1:]
	}
	mant, expPart, _ := bytes.Cut(bytes.ToLower(n), []byte("e"))
	intPart, frac, _ := bytes.Cut(mant, []byte("."))
	digits := append(append([]byte(nil), intPart...), frac...)
	// The value is digits × 10^exp.
	exp := -len(frac)
	if len(expPart) > 0 {
		// An exponent beyond ±2^40 dwarfs the digits (a message has
		// fewer than 2^23): the value is zero, out of any range, or a
		// fraction. Within it, exp and the sums below cannot overflow.
		const huge = 1 << 40
		e, err := strconv.ParseInt(string(expPart), 10, 64)
		if err != nil || e > huge || e < -huge {
			if len(bytes.Trim(digits, "0")) == 0 {
				return "0", true, true
			}
			return "", expPart[0] != '-', false
		}
		exp += int(e)
	}
	digits = bytes.TrimLeft(digits, "0")
	if len(digits) == 0 {
		return "0", true, true
	}
	for exp < 0 && digits[len(digits)-1] == '0' {
		digits, exp = digits[:len(digits)-1], exp+1
	}
	if exp < 0 {
		return "", false, false
	}
	if len(digits)+exp > 19 {
		return "", true, false // beyond any int64
	}
	s := string(digits) + strings.Repeat("0", exp)
	if neg {
		s = "-" + s
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return "", true, false
	}
	return s, true, true
}

// kindOf is the kind of JSON value that a token of kind k starts.
func kindOf(k jsontext.Kind) kind {
	switch k {
	case '[':
		return kindArray
	case '{':
		return kindObject
	case '"':
		return kindString
	case '0':
		return kindNumber
	default:
		return kindBoolean
	}
}

// describe names a JSON scalar's type for a message, with the value itself
// when it is short.
func describe(v jsontext.Value) string {
	switch v.Kind() {
	case '"':
		s, _ := jsontext.AppendUnquote(nil, v) // read already: valid
		if len(s) <= 24 {
			return fmt.Sprintf("the string %q", s)
		}
		return "a string"
	case '0':
		return "the number " + string(v)
	default:
		return string(v)
	}
}
