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
)

// maxArgumentBytes bounds the size of one call's arguments. The largest
// legitimate checkout (100 line items, 20 metadata entries of 500 characters)
// stays far below it.
const maxArgumentBytes = 256 << 10

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
)

// shapeOf derives the shape of t. It panics on a type it does not support:
// argument types are fixed at compile time, so that is a programming error
// caught by every test.
func shapeOf(t reflect.Type) *shape {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == numberType {
		return &shape{kind: kindNumber}
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
	w := walker{dec: json.NewDecoder(bytes.NewReader(raw))}
	w.dec.UseNumber()
	tok, err := w.dec.Token()
	if err != nil {
		return decodeProblems{"the arguments are not valid JSON"}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return decodeProblems{"the arguments must be a JSON object"}
	}
	if err := w.object(sh, ""); err != nil {
		return decodeProblems{"the arguments are not valid JSON"}
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return decodeProblems{"the arguments must be a single JSON object"}
	}
	if len(w.problems) > 0 {
		return w.problems
	}
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

// walker checks a JSON document against a shape, token by token.
type walker struct {
	dec      *json.Decoder
	problems decodeProblems
}

func (w *walker) addf(format string, args ...any) {
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// object walks the members of an object whose '{' has been read.
func (w *walker) object(sh *shape, path string) error {
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		p := joinPath(path, key)
		if seen[key] {
			w.addf("argument %q is given more than once", p)
			if err := w.skip(); err != nil {
				return err
			}
			continue
		}
		seen[key] = true
		var val *shape
		if sh.kind == kindStringMap {
			val = sh.elem
		} else {
			val = sh.fields[key]
		}
		if val == nil {
			w.unknown(sh, path, key)
			if err := w.skip(); err != nil {
				return err
			}
			continue
		}
		// A map's null value or a list's null item is a value, not an
		// argument left out: it would reach Clink as "" (or a zero item).
		if err := w.value(val, p, sh.kind != kindStringMap); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // '}'
	return err
}

// unknown reports a key the shape does not have, suggesting the known name
// it was probably meant to be.
func (w *walker) unknown(sh *shape, path, key string) {
	p := joinPath(path, key)
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

// value walks one value that must have shape sh; null is "not given" if
// nullOK, else refused.
func (w *walker) value(sh *shape, path string, nullOK bool) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		if !nullOK {
			w.addf("argument %q must be %s, not null", path, sh.kind)
		}
		return nil
	}
	got := tokenKind(tok)
	want := sh.kind
	switch {
	case want == kindInteger && got == kindNumber:
		if _, err := strconv.ParseInt(string(tok.(json.Number)), 10, 64); err != nil {
			// JSON Schema's integer admits 2.0; this server reads integers
			// only as written without a fraction or exponent, and says so.
			w.addf("argument %q must be a whole number written without a decimal point or exponent (such as 2), not %s", path, tok)
		}
		return nil
	case want == kindStringMap && got == kindObject:
		return w.object(sh, path)
	case got != want:
		w.addf("argument %q must be %s, not %s", path, want, describe(tok))
		return w.skipRest(tok)
	case got == kindObject:
		return w.object(sh, path)
	case got == kindArray:
		for i := 0; w.dec.More(); i++ {
			if err := w.value(sh.elem, fmt.Sprintf("%s[%d]", path, i), false); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // ']'
		return err
	}
	return nil
}

// tokenKind is the kind of JSON value a token starts.
func tokenKind(tok json.Token) kind {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return kindArray
		}
		return kindObject
	case string:
		return kindString
	case json.Number:
		return kindNumber
	default:
		return kindBoolean
	}
}

// describe names a JSON value's type for a message, with the value itself
// when it is short and scalar.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		if len(v) <= 24 {
			return fmt.Sprintf("the string %q", v)
		}
		return "a string"
	case json.Number:
		return "the number " + string(v)
	default:
		return fmt.Sprintf("%v", v)
	}
}

// skip consumes one whole value.
func (w *walker) skip() error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	return w.skipRest(tok)
}

// skipRest consumes the rest of a value whose first token was tok.
func (w *walker) skipRest(tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}
