package tools

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/clink-mcp/clink-mcp/policy"
)

// updateGolden rewrites the tool snapshots: UPDATE_GOLDEN=1 go test ./tools/
var updateGolden = os.Getenv("UPDATE_GOLDEN") != ""

// TestToolSnapshots keeps the JSON of every tool definition, as tools/list
// sends it, in testdata/, so that a change to a schema or a description
// shows up in review.
func TestToolSnapshots(t *testing.T) {
	for _, tool := range All(testDeps(t, &fakePayments{}, testPolicy(t))) {
		t.Run(tool.Tool.Name, func(t *testing.T) {
			got, err := json.MarshalIndent(tool.Tool, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tool.Tool.Name+".golden.json")
			if updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed; review the diff and run UPDATE_GOLDEN=1 go test ./tools/ to accept it.\ngot:\n%s", path, got)
			}
		})
	}
}

func TestEveryToolIsDescribedAndAnnotated(t *testing.T) {
	for _, tool := range All(testDeps(t, &fakePayments{}, testPolicy(t))) {
		t.Run(tool.Tool.Name, func(t *testing.T) {
			tl := tool.Tool
			if tl.Description == "" || tl.Title == "" || tl.Annotations.Title == "" {
				t.Error("a tool needs a description, a title and an annotation title")
			}
			a := tl.Annotations
			for name, hint := range map[string]*bool{"readOnly": a.ReadOnlyHint, "destructive": a.DestructiveHint, "idempotent": a.IdempotentHint, "openWorld": a.OpenWorldHint} {
				if hint == nil {
					t.Errorf("annotation %sHint is not set explicitly", name)
				}
			}
			switch tl.Name {
			case policy.ToolAgentPaymentSession, policy.ToolCheckoutSession:
				if *a.ReadOnlyHint || *a.DestructiveHint || *a.IdempotentHint || !*a.OpenWorldHint {
					t.Errorf("annotations = %+v, want not read-only, not destructive, not idempotent, open world", a)
				}
				if !strings.Contains(tl.Description, "Limits set by this server's operator") {
					t.Error("the description does not state the operator's limits")
				}
			case ToolCheckPaymentPolicy:
				// Reads the policy and the store only: a closed world.
				if !*a.ReadOnlyHint || *a.DestructiveHint || !*a.IdempotentHint || *a.OpenWorldHint {
					t.Errorf("annotations = %+v, want read-only, not destructive, idempotent, closed world", a)
				}
			case ToolGetAgentPaymentSession, ToolGetCheckoutSession:
				// Reads from Clink: an open world.
				if !*a.ReadOnlyHint || *a.DestructiveHint || !*a.IdempotentHint || !*a.OpenWorldHint {
					t.Errorf("annotations = %+v, want read-only, not destructive, idempotent, open world", a)
				}
			default:
				t.Errorf("tool %s has no expected annotations here", tl.Name)
			}
			if len(tl.RawOutputSchema) == 0 {
				t.Error("the tool has no output schema")
			}
		})
	}
}

// TestSchemasMatchTheDecoder proves the schema the model reads and the
// decoder that judges its calls agree: the same properties, the same
// required ones, a description on each, and no extra properties allowed.
func TestSchemasMatchTheDecoder(t *testing.T) {
	cases := []struct {
		tool   string
		schema string
		args   any
	}{
		{agent, agentPaymentSessionInputSchema, agentPaymentSessionArgs{}},
		{checkout, checkoutSessionInputSchema, checkoutSessionArgs{}},
		{checkout + " line item", checkoutSessionInputSchema, priceDataArgs{}},
		{ToolGetCheckoutSession, getSessionInputSchema, getSessionArgs{}},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			var s map[string]any
			if err := json.Unmarshal([]byte(c.schema), &s); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(c.tool, "line item") {
				s = s["properties"].(map[string]any)["priceDataList"].(map[string]any)["items"].(map[string]any)
			}
			checkObjectSchema(t, s, reflect.TypeOf(c.args))
		})
	}
	t.Run("output schemas match the results", func(t *testing.T) {
		for _, c := range []struct {
			schema string
			result any
		}{
			{agentPaymentSessionOutputSchema, agentPaymentSessionResult{}},
			{checkoutSessionOutputSchema, checkoutSessionResult{}},
			{checkPolicyOutputSchema, checkPolicyResult{}},
			{checkoutStatusOutputSchema, checkoutStatusResult{}},
			{agentPaymentStatusOutputSchema, agentPaymentStatusResult{}},
		} {
			var s map[string]any
			if err := json.Unmarshal([]byte(c.schema), &s); err != nil {
				t.Fatal(err)
			}
			checkObjectSchema(t, s, reflect.TypeOf(c.result))
		}
	})
}

func checkObjectSchema(t *testing.T, s map[string]any, typ reflect.Type) {
	t.Helper()
	if s["additionalProperties"] != false {
		t.Errorf("%s: additionalProperties must be false", typ)
	}
	props := s["properties"].(map[string]any)
	var names []string
	for name, p := range props {
		names = append(names, name)
		if d, _ := p.(map[string]any)["description"].(string); len(d) < 20 {
			t.Errorf("%s: property %s has no real description", typ, name)
		}
	}
	sort.Strings(names)
	sh := shapeOf(typ)
	if !slices.Equal(names, sh.names) {
		t.Errorf("%s: schema properties %v, decoder accepts %v", typ, names, sh.names)
	}
	var required []string
	for _, r := range s["required"].([]any) {
		required = append(required, r.(string))
	}
	sort.Strings(required)
	// Arguments are required where validation requires them; a result field
	// is required unless it is omitted when empty.
	var wantRequired []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		result := strings.HasSuffix(typ.Name(), "Result") && !strings.Contains(f.Tag.Get("json"), "omitempty")
		if strings.HasPrefix(f.Tag.Get("validate"), "required") || result {
			wantRequired = append(wantRequired, name)
		}
	}
	sort.Strings(wantRequired)
	if !slices.Equal(required, wantRequired) {
		t.Errorf("%s: schema requires %v, validation requires %v", typ, required, wantRequired)
	}
}

// The checkout's input schema follows the policy's rule for customer
// identifiers, so that a model that obeys it sends what the policy takes:
// customerEmail required unless another identifier may stand in for it,
// customerId left out where it is refused; every other property kept, in
// its order, and the schema valid.
func TestTheCheckoutSchemaFollowsThePolicysCustomerRule(t *testing.T) {
	names := func(raw json.RawMessage) []string {
		t.Helper()
		dec := jsontext.NewDecoder(bytes.NewReader(raw))
		var out []string
		for {
			tok, err := dec.ReadToken()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			if kind, n := dec.StackIndex(dec.StackDepth()); dec.StackDepth() == 2 && kind == '{' && n%2 == 1 {
				out = append(out, tok.String())
			}
		}
	}
	all := names(json.RawMessage(checkoutSessionInputSchema))
	for _, tc := range []struct {
		use        policy.CustomerIDUse
		required   []string
		customerID bool
	}{
		{policy.CustomerIDWithoutEmail, []string{"amount", "currency"}, true},
		{policy.CustomerIDBesideEmail, []string{"amount", "currency", "customerEmail"}, true},
		{policy.CustomerIDRefused, []string{"amount", "currency", "customerEmail"}, false},
	} {
		raw := checkoutInputSchema(tc.use)
		schema := decodeJSON(t, raw)
		compileSchema(t, schema)
		var required []string
		for _, r := range schema["required"].([]any) {
			required = append(required, r.(string))
		}
		want := all
		if !tc.customerID {
			want = slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == "customerId" })
		}
		if got := names(raw); !slices.Equal(required, tc.required) || !slices.Equal(got, want) {
			t.Errorf("use %d: required %v, properties %v; want %v and %v", tc.use, required, got, tc.required, want)
		}
	}
}
