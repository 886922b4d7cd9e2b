package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The formats a validating client checks, as Ajv's ajv-formats does in its
// default ("full") mode, which the MCP Inspector and the TypeScript SDK
// use: stricter than jsonschema's own, which reads a "uri" as Go's
// url.Parse does and lets braces and spaces through.
var (
	// ajvURI is an absolute URI of RFC 3986's characters only: a scheme,
	// then unreserved and reserved characters and percent-escapes, at most
	// one fragment.
	ajvURI = regexp.MustCompile(`(?i)^[a-z][a-z0-9+.\-]*:(?:[a-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9a-f]{2})*(?:#(?:[a-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9a-f]{2})*)?$`)
	// ajvEmail is a dot-atom local part at a dotted host name.
	ajvEmail = regexp.MustCompile("(?i)^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
	// ajvDateTime is an RFC 3339 date-time, its time zone required.
	ajvDateTime = regexp.MustCompile(`(?i)^\d{4}-\d\d-\d\d[t ]\d\d:\d\d:\d\d(?:\.\d+)?(?:z|[+-]\d\d(?::?\d\d)?)$`)
)

// strictFormats are the formats checked, each as a jsonschema.Format.
var strictFormats = []*jsonschema.Format{
	{Name: "uri", Validate: func(v any) error {
		if s, ok := v.(string); ok && !ajvURI.MatchString(s) {
			return errors.New("not an RFC 3986 absolute URI")
		}
		return nil
	}},
	{Name: "email", Validate: func(v any) error {
		if s, ok := v.(string); ok && !ajvEmail.MatchString(s) {
			return errors.New("not an email address")
		}
		return nil
	}},
	{Name: "date-time", Validate: func(v any) error {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		if !ajvDateTime.MatchString(s) {
			return errors.New("not an RFC 3339 date-time")
		}
		// Calendar checks (no 31 February), leap seconds aside.
		norm := strings.Replace(strings.ToUpper(s), " ", "T", 1)
		norm = strings.Replace(norm, ":60", ":59", 1)
		if _, err := time.Parse(time.RFC3339Nano, norm); err != nil {
			return errors.New("not an RFC 3339 date-time")
		}
		return nil
	}},
}

// strictCompiler compiles schemas as a validating client does: draft
// 2020-12 by default, formats asserted.
func strictCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for _, f := range strictFormats {
		c.RegisterFormat(f)
	}
	return c
}

// compileSchema compiles one schema, given as a decoded JSON value.
func compileSchema(t *testing.T, schema any) *jsonschema.Schema {
	t.Helper()
	c := strictCompiler()
	if err := c.AddResource("mem://schema.json", schema); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("mem://schema.json")
	if err != nil {
		t.Fatalf("compiling %v: %v", schema, err)
	}
	return s
}

// example is one example a schema gives: in its description, or in its
// "examples" or "default" keyword.
type example struct {
	where string // the JSON pointer to the schema, and which kind of example
	value any
}

// schemaExamples returns every example in schema and in its subschemas,
// each with the subschema it must satisfy.
func schemaExamples(t *testing.T, pointer string, schema map[string]any, visit func(example, map[string]any)) {
	t.Helper()
	if d, ok := schema["description"].(string); ok {
		for i, text := range descriptionExamples(t, pointer, d) {
			visit(example{fmt.Sprintf("%s (example %d in the description)", pointer, i+1), text}, schema)
		}
	}
	if list, ok := schema["examples"].([]any); ok {
		for i, v := range list {
			visit(example{fmt.Sprintf("%s/examples/%d", pointer, i), v}, schema)
		}
	}
	if v, ok := schema["default"]; ok {
		visit(example{pointer + "/default", v}, schema)
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		for name, sub := range props {
			schemaExamples(t, pointer+"/properties/"+name, sub.(map[string]any), visit)
		}
	}
	for _, key := range []string{"items", "additionalProperties", "propertyNames"} {
		if sub, ok := schema[key].(map[string]any); ok {
			schemaExamples(t, pointer+"/"+key, sub, visit)
		}
	}
}

// jsonNumberPrefix matches a JSON number at the start of a text.
var jsonNumberPrefix = regexp.MustCompile(`^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?`)

// descriptionExamples returns the values of the "Example: <JSON>." phrases
// of a description. A phrase whose value is not JSON fails the test: an
// example must be what a client can send.
func descriptionExamples(t *testing.T, pointer, d string) []any {
	t.Helper()
	var out []any
	for rest := d; ; {
		_, after, found := strings.Cut(rest, "Example: ")
		if !found {
			return out
		}
		// A number that ends the sentence ("Example: 2.") is read
		// without the full stop, which JSON would take for a fraction.
		text := after
		if m := jsonNumberPrefix.FindString(after); m != "" {
			text = m
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%s: the example in %q is not JSON: %v", pointer, d, err)
			return out
		}
		out = append(out, v)
		rest = after[dec.InputOffset():]
	}
}

// TestEveryExampleValidatesAgainstItsSchema checks that a client which
// validates arguments against the tools' input schemas (Ajv with formats
// asserted, as the MCP Inspector and the TypeScript SDK do) accepts every
// example those schemas give.
func TestEveryExampleValidatesAgainstItsSchema(t *testing.T) {
	n := 0
	for _, tool := range All(testDeps(t, &fakePayments{}, testPolicy(t))) {
		t.Run(tool.Tool.Name, func(t *testing.T) {
			schema := decodeJSON(t, tool.Tool.RawInputSchema)
			compileSchema(t, schema) // the whole schema compiles too
			schemaExamples(t, "#", schema, func(ex example, sub map[string]any) {
				n++
				// Validate the example as a client holds it: decoded
				// from JSON.
				b, err := json.Marshal(ex.value)
				if err != nil {
					t.Fatal(err)
				}
				v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if err := compileSchema(t, sub).Validate(v); err != nil {
					t.Errorf("%s: %s does not validate against its schema: %v", ex.where, b, err)
				}
			})
		})
	}
	if n < 30 {
		t.Errorf("found %d examples; the schemas give more than that: is the extraction broken?", n)
	}
}

// TestTheStrictFormatsRefuseWhatAClientRefuses checks the formats the test
// above uses against values a validating client refuses and accepts.
func TestTheStrictFormatsRefuseWhatAClientRefuses(t *testing.T) {
	tests := []struct {
		format, value string
		ok            bool
	}{
		{"uri", "https://shop.example.com/complete?session_id=abc#top", true},
		{"uri", "https://shop.example.com/complete?session_id={ELEMENTS_SESSION_ID}", false},
		{"uri", "https://shop.example.com/a b", false},
		{"uri", "https://shop.example.com/café", false},
		{"uri", "/relative/path", false},
		{"email", "alice@example.com", true},
		{"email", "Alice <alice@example.com>", false},
		{"email", "alice@localhost", false},
		{"date-time", "2026-07-28T10:00:00Z", true},
		{"date-time", "2026-07-28T10:00:00.5+02:00", true},
		{"date-time", "2026-02-31T10:00:00Z", false},
		{"date-time", "2026-07-28T10:00:00", false},
	}
	for _, tt := range tests {
		t.Run(tt.format+" "+tt.value, func(t *testing.T) {
			s := compileSchema(t, map[string]any{"type": "string", "format": tt.format})
			err := s.Validate(tt.value)
			if (err == nil) != tt.ok {
				t.Errorf("Validate(%q) = %v, want ok %v", tt.value, err, tt.ok)
			}
		})
	}
}

// decodeJSON decodes a schema.
func decodeJSON(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("the schema is not an object: %s", raw)
	}
	return m
}

// The schema refuses the idempotency keys the server refuses (printable
// ASCII only), so that a model that follows it is not refused.
func TestTheIdempotencyKeySchemaRefusesWhatTheServerRefuses(t *testing.T) {
	for _, tc := range []struct {
		schema, args string
	}{
		{agentPaymentSessionInputSchema, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD","idempotencyKey":%q}`},
		{checkoutSessionInputSchema, `{"customerEmail":"alice@example.com","amount":10,"currency":"USD","idempotencyKey":%q}`},
	} {
		s := compileSchema(t, decodeJSON(t, json.RawMessage(tc.schema)))
		for key, ok := range map[string]bool{"7c9e6679-7425-40de-944b-e07fc1f90ae7": true, "order 42, try 1": true, "zahlung-ä-0001": false, "tab\there-123": false} {
			err := s.Validate(decodeJSON(t, json.RawMessage(fmt.Sprintf(tc.args, key))))
			if (err == nil) != ok {
				t.Errorf("idempotencyKey %q: schema error %v, want ok %v", key, err, ok)
			}
		}
	}
}
