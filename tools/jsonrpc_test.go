package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// nest returns a value of n arrays, one inside the other, around inner.
func nest(n int, inner string) string {
	return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
}

// checkMessageCases are CheckMessage's table tests, and the fuzz test's
// seeds.
var checkMessageCases = []struct {
	name string
	msg  string
	// want is nil, ErrInvalidJSON, ErrDuplicateKey or ErrTooDeep; path
	// and as are the refusal's Path and As.
	want     error
	path, as string
}{
	// Accepted.
	{name: "a plain tool call is accepted",
		msg: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":25,"currency":"USD"},"_meta":{"progressToken":"p"}}}`},
	{name: "the same key in sibling objects and at different levels is no repeat",
		msg: `{"jsonrpc":"2.0","id":1,"method":"m","params":{"name":"n","arguments":{"name":{"name":1},"id":2,"b":{"id":3}}}}`},
	{name: "objects in an array may have the same keys as each other",
		msg: `{"id":1,"params":{"arguments":{"lineItems":[{"sku":"a","qty":1},{"sku":"b","qty":2},{"sku":"c","qty":3}]}}}`},
	{name: "strings holding braces, quotes and keys are only strings",
		msg: `{"id":"{\"id\":1}","method":"}{","params":{"arguments":{"note":"\"a\":1,\"a\":2 ]]]}}} \\\" {","a":"\\"}}}`},
	{name: "keys that differ in case are distinct inside arguments, where the tool's decoder refuses the unknown one",
		msg: `{"id":1,"params":{"arguments":{"amount":1,"Amount":2}}}`},
	{name: "keys that differ in case are distinct inside _meta, a map",
		msg: `{"id":1,"params":{"_meta":{"trace":"a","Trace":"b"}}}`},
	{name: "metadata keys that differ in case are distinct, deep in the arguments and in arrays there",
		msg: `{"id":1,"params":{"arguments":{"metadata":{"orderId":"1","OrderId":"2"},"priceDataList":[{"x":{"a":1,"A":2}}]}}}`},
	{name: "keys that differ in case are distinct inside a nested _meta",
		msg: `{"id":1,"result":{"_meta":{"trace":"a","Trace":"b"},"action":"accept"}}`},
	{name: "an answer's content is a map, read by exact keys: its keys that differ in case are distinct",
		msg: `{"id":1,"result":{"action":"accept","content":{"approve":false,"Approve":true}}}`},
	{name: "experimental and extension capabilities are maps (2025-11-25 initialize)",
		msg: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"experimental":{"feature":{},"Feature":{"mode":"a","Mode":"b"}},"extensions":{"io.example/ui":{"k":1,"K":2}}},"clientInfo":{"name":"c","version":"1"}}}`},
	{name: "an error response's data is any JSON",
		msg: `{"jsonrpc":"2.0","id":"s-1","error":{"code":-32603,"message":"x","data":{"detail":"a","Detail":"b"}}}`},
	{name: "completion/complete's context arguments are a map",
		msg: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"x://{id}/{ID}"},"argument":{"name":"id","value":"a"},"context":{"arguments":{"id":"1","ID":"2"}}}}`},
	{name: "the names of input responses are a map's keys",
		msg: `{"id":2,"method":"tools/call","params":{"name":"t","inputResponses":{"approve_payment":{"action":"accept"},"Approve_Payment":{"action":"decline"}}}}`},
	{name: "keys that only look alike, or fold together only for strings.ToLower, are distinct",
		msg: `{"id":1,"ıd":2,"İd":3,"i d":4,"params":{"name":"a","nam":"b","named":"c"}}`},
	{name: "the envelopes of a batch may repeat each other's keys",
		msg: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`},
	{name: "a message that is not an object is left to the server", msg: ` 1e999 `},
	{name: "an empty object is accepted", msg: `{}`},
	{name: "nesting of exactly the limit is accepted",
		msg: `{"id":1,"params":{"arguments":` + nest(MaxMessageDepth-3, "") + `}}`},
	{name: "trailing whitespace and a carriage return are not data", msg: "{\"id\":1}\r\n \t"},

	// Exact repeats.
	{name: "an envelope key given twice is refused", msg: `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`,
		want: ErrDuplicateKey, path: "method"},
	{name: "arguments given twice is refused",
		msg:  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"amount":1},"arguments":{"amount":900}}}`,
		want: ErrDuplicateKey, path: "params.arguments"},
	{name: "the tool's name given twice is refused",
		msg:  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"harmless","arguments":{},"name":"create_checkout_session"}}`,
		want: ErrDuplicateKey, path: "params.name"},
	{name: "a key repeated deep in the arguments is refused with its path",
		msg:  `{"id":1,"params":{"arguments":{"a":{"b":{"c":1,"d":2,"c":3}}}}}`,
		want: ErrDuplicateKey, path: "params.arguments.a.b.c"},
	{name: "a key repeated in an object in an array is refused with the element's index",
		msg:  `{"id":1,"params":{"arguments":{"lineItems":[{"sku":"a"},{"sku":"b","sku":"c"}]}}}`,
		want: ErrDuplicateKey, path: "params.arguments.lineItems[1].sku"},
	{name: "a key repeated in an object in arrays in arrays is refused with every index",
		msg:  `{"a":[[1],[2,{"x":[{},{"y":1,"y":2}]}]]}`,
		want: ErrDuplicateKey, path: "a[1][1].x[1].y"},
	{name: "a key repeated in an envelope of a batch is refused with the envelope's index",
		msg:  `[{"id":1},{"id":2,"params":{"name":"a","name":"b"}}]`,
		want: ErrDuplicateKey, path: "[1].params.name"},
	{name: "a key repeated with an escape in one spelling is refused",
		msg:  `{"id":1,"params":{"arguments":{"amount":1,"\u0061mount":2}}}`,
		want: ErrDuplicateKey, path: "params.arguments.amount"},
	{name: "a key repeated after many others, past the small set, is refused",
		msg:  `{"id":1,"params":{"arguments":{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k9":2}}}`,
		want: ErrDuplicateKey, path: "params.arguments.k9"},
	{name: "an empty key repeated is refused", msg: `{"":1,"":2}`, want: ErrDuplicateKey, path: ""},
	{name: "the first repeat in the message is the one reported",
		msg:  `{"id":1,"params":{"arguments":{"a":1,"a":2}},"id":2}`,
		want: ErrDuplicateKey, path: "params.arguments.a"},

	// Repeats in another case, where encoding/json matches struct fields.
	{name: "jsonrpc repeated in capitals is refused", msg: `{"jsonrpc":"2.0","JSONRPC":"1.0"}`,
		want: ErrDuplicateKey, path: "jsonrpc", as: "JSONRPC"},
	{name: "id repeated in another case is refused", msg: `{"Id":1,"iD":2}`,
		want: ErrDuplicateKey, path: "Id", as: "iD"},
	{name: "method repeated in another case is refused", msg: `{"method":"ping","Method":"tools/call"}`,
		want: ErrDuplicateKey, path: "method", as: "Method"},
	{name: "params repeated in another case is refused", msg: `{"params":{},"PARAMS":{}}`,
		want: ErrDuplicateKey, path: "params", as: "PARAMS"},
	{name: "params repeated with a long s, which folds to s, is refused", msg: `{"params":{},"paramſ":{}}`,
		want: ErrDuplicateKey, path: "params", as: "paramſ"},
	{name: "the tool's name repeated in another case is refused",
		msg:  `{"method":"tools/call","params":{"name":"harmless","Name":"create_checkout_session"}}`,
		want: ErrDuplicateKey, path: "params.name", as: "Name"},
	{name: "arguments repeated in another case is refused",
		msg:  `{"params":{"arguments":{},"ARGUMENTS":{}}}`,
		want: ErrDuplicateKey, path: "params.arguments", as: "ARGUMENTS"},
	{name: "_meta repeated in another case is refused", msg: `{"params":{"_meta":{},"_Meta":{}}}`,
		want: ErrDuplicateKey, path: "params._meta", as: "_Meta"},
	{name: "a params key repeated with the Kelvin sign, which folds to k, is refused",
		msg:  `{"params":{"task":{},"tas\u212a":{}}}`,
		want: ErrDuplicateKey, path: "params.task", as: "tas\u212a"},
	{name: "params spelled in capitals is still params, where case-variants count",
		msg:  `{"Params":{"name":"a","NAME":"b"}}`,
		want: ErrDuplicateKey, path: "Params.name", as: "NAME"},
	{name: "an envelope key of a batch's envelope repeated in another case is refused",
		msg:  `[{"id":1,"ID":2}]`,
		want: ErrDuplicateKey, path: "[0].id", as: "ID"},
	{name: "an approval's answer whose action is repeated in another case is refused (2026-07-28)",
		msg:  `{"id":2,"method":"tools/call","params":{"name":"t","arguments":{},"inputResponses":{"approve_payment":{"action":"decline","Action":"accept","content":{"approve":true}}}}}`,
		want: ErrDuplicateKey, path: "params.inputResponses.approve_payment.action", as: "Action"},
	{name: "an elicitation's answer whose action is repeated in another case is refused (2025-11-25)",
		msg:  `{"jsonrpc":"2.0","id":1,"result":{"action":"decline","Action":"accept","content":{"approve":true}}}`,
		want: ErrDuplicateKey, path: "result.action", as: "Action"},
	{name: "an error's code repeated in another case is refused",
		msg:  `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"Code":1,"message":"x"}}`,
		want: ErrDuplicateKey, path: "error.code", as: "Code"},
	{name: "a long repeated key is cut short in the path",
		msg:  `{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`,
		want: ErrDuplicateKey, path: strings.Repeat("k", 64) + "…"},

	// Depth.
	{name: "nesting one level past the limit is refused with the path to the level",
		msg:  `{"id":1,"params":{"arguments":{"a":` + nest(MaxMessageDepth-2, "") + `}}}`,
		want: ErrTooDeep, path: "params.arguments.a" + strings.Repeat("[0]", MaxMessageDepth-3)},
	{name: "deep nesting of objects is refused",
		msg:  strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000),
		want: ErrTooDeep, path: strings.TrimPrefix(strings.Repeat(".a", MaxMessageDepth), ".")},
	{name: "nesting deeper than encoding/json allows is not JSON",
		msg:  nest(10001, ""),
		want: ErrInvalidJSON},

	// Numbers beyond a float64, which mcp-go cannot decode into params.
	{name: "a number too large for a float64 in the arguments is refused with its path",
		msg:  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"amount":1e400}}}`,
		want: ErrNumberOutOfRange, path: "params.arguments.amount"},
	{name: "a negative number too large for a float64 deep in the arguments is refused with its path",
		msg:  `{"id":1,"params":{"arguments":{"priceDataList":[{"unitAmount":1},{"unitAmount":-1e400}]}}}`,
		want: ErrNumberOutOfRange, path: "params.arguments.priceDataList[1].unitAmount"},
	{name: "an integer of 400 digits in the arguments is refused",
		msg:  `{"id":1,"params":{"arguments":{"quantity":1` + strings.Repeat("0", 399) + `}}}`,
		want: ErrNumberOutOfRange, path: "params.arguments.quantity"},
	{name: "a number too large for a float64 elsewhere in params is refused",
		msg:  `[{"id":1},{"id":2,"Params":{"_meta":{"progressToken":1e999}}}]`,
		want: ErrNumberOutOfRange, path: "[1].Params._meta.progressToken"},
	{name: "a number too small for a float64 is left to the tool, which refuses it by name",
		msg: `{"id":1,"params":{"arguments":{"amount":1e-400}}}`},
	{name: "a number too large for a float64 outside params is left to the server",
		msg: `{"id":1,"result":{"n":1e400}}`},

	// Not JSON: refused as that, whatever else is wrong.
	{name: "an empty message is not JSON", msg: ``, want: ErrInvalidJSON},
	{name: "a truncated message is not JSON", msg: `{"id":1,"params":{`, want: ErrInvalidJSON},
	{name: "two messages on one line are not JSON", msg: `{"id":1} {"id":2}`, want: ErrInvalidJSON},
	{name: "trailing garbage is not JSON", msg: `{"id":1}x`, want: ErrInvalidJSON},
	{name: "a trailing comma is not JSON", msg: `{"id":1,}`, want: ErrInvalidJSON},
	{name: "a key that is not a string is not JSON", msg: `{1:2}`, want: ErrInvalidJSON},
	{name: "a repeat in a message that is not JSON is reported as not JSON",
		msg: `{"id":1,"id":2,"params":}`, want: ErrInvalidJSON},
	{name: "nesting too deep in a message that is not JSON is reported as not JSON",
		msg: nest(100, "") + "]", want: ErrInvalidJSON},
	{name: "a control character in a string is not JSON", msg: "{\"a\":\"\x01\"}", want: ErrInvalidJSON},
}

func TestCheckMessage(t *testing.T) {
	for _, tt := range checkMessageCases {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMessage([]byte(tt.msg))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckMessage = %v, want nil", err)
				}
				return
			}
			var me *MessageError
			if !errors.As(err, &me) || !errors.Is(err, tt.want) {
				t.Fatalf("CheckMessage = %v, want a *MessageError for %v", err, tt.want)
			}
			if me.Path != tt.path || me.As != tt.as {
				t.Errorf("Path, As = %q, %q, want %q, %q", me.Path, me.As, tt.path, tt.as)
			}
			wantCode := -32600
			switch tt.want {
			case ErrInvalidJSON:
				wantCode = -32700
			case ErrNumberOutOfRange:
				wantCode = -32602
			}
			if me.Code() != wantCode {
				t.Errorf("Code() = %d, want %d", me.Code(), wantCode)
			}
		})
	}
}

// TestCheckMessageErrorSaysWhatAndWhere checks the messages a client gets.
func TestCheckMessageErrorSaysWhatAndWhere(t *testing.T) {
	tests := []struct{ name, msg, want string }{
		{"an exact repeat names the key's path",
			`{"params":{"arguments":{},"arguments":{}}}`, `duplicate key "params.arguments"`},
		{"a repeat in another case names both spellings",
			`{"params":{"arguments":{},"Arguments":{}}}`, `duplicate key "params.arguments" (again as "Arguments")`},
		{"too deep names the path and the limit",
			`{"a":` + nest(64, "") + `}`, `nested too deeply at "a` + strings.Repeat("[0]", 63) + `": the limit is 64 levels of objects and arrays`},
		{"not JSON says what encoding/json says",
			`{"a":}`, `not valid JSON: invalid character '}' looking for beginning of value`},
		{"a number out of range in the arguments names the argument",
			`{"params":{"arguments":{"items":[{"quantity":-1e400}]}}}`,
			`invalid arguments: argument "items[0].quantity": the number -1e400 is out of range: no argument takes a number of that size`},
		{"a long number out of range is cut short",
			`{"params":{"arguments":{"n":` + strings.Repeat("9", 400) + `}}}`,
			`invalid arguments: argument "n": the number ` + strings.Repeat("9", 24) + `… is out of range: no argument takes a number of that size`},
		{"a number out of range elsewhere in params names its path",
			`{"params":{"_meta":{"p":1e400}}}`,
			`invalid params: the number 1e400 at "params._meta.p" is out of range`},
		{"control characters in a key are quoted",
			`{"a\n":1,"a\n":2}`, `duplicate key "a\n"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMessage([]byte(tt.msg))
			if err == nil || err.Error() != tt.want {
				t.Errorf("CheckMessage = %v, want %s", err, tt.want)
			}
		})
	}
}

// FuzzCheckMessage checks CheckMessage against encoding/json on any input:
// it never panics; it refuses as not JSON exactly what json.Valid refuses;
// and on valid JSON each refusal is true and each acceptance has neither a
// repeated key (as a member count against encoding/json's map finds it)
// nor nesting past the limit.
func FuzzCheckMessage(f *testing.F) {
	for _, tt := range checkMessageCases {
		f.Add([]byte(tt.msg))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		err := CheckMessage(msg)
		if err != nil {
			var me *MessageError
			if !errors.As(err, &me) {
				t.Fatalf("CheckMessage = %#v, not a *MessageError", err)
			}
			_ = me.Error()
		}
		if !json.Valid(msg) {
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("CheckMessage(%q) = %v for invalid JSON", msg, err)
			}
			return
		}
		if errors.Is(err, ErrInvalidJSON) {
			t.Fatalf("CheckMessage(%q) = %v for valid JSON", msg, err)
		}
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.UseNumber()
		var tree any
		if err := dec.Decode(&tree); err != nil {
			t.Fatalf("json.Valid, but Decode: %v", err)
		}
		repeats := members(t, msg) > entries(tree)
		deep := depth(tree) > MaxMessageDepth
		var me *MessageError
		errors.As(err, &me)
		switch {
		case err == nil && (repeats || deep):
			t.Fatalf("CheckMessage(%q) = nil, but it repeats a key (%v) or nests too deeply (%v)", msg, repeats, deep)
		case errors.Is(err, ErrTooDeep) && !deep:
			t.Fatalf("CheckMessage(%q) = %v, but it nests only %d levels", msg, err, depth(tree))
		case errors.Is(err, ErrDuplicateKey) && me.As == "" && !repeats:
			t.Fatalf("CheckMessage(%q) = %v, but no key repeats exactly", msg, err)
		case errors.Is(err, ErrNumberOutOfRange) && !strings.Contains(strings.ToLower(me.Path), "param") && !strings.Contains(me.Path, "…"):
			t.Fatalf("CheckMessage(%q) = %v, but the number is not in params", msg, err)
		case errors.Is(err, ErrDuplicateKey) && me.As != "" && !strings.Contains(me.Path+me.As, "…") &&
			!strings.HasSuffix(refFoldKey(me.Path), refFoldKey(me.As)):
			t.Fatalf("CheckMessage(%q) = %v, but the spellings do not fold alike", msg, err)
		}
	})
}

// members counts the members of every object in msg, valid JSON, as its
// tokens have them: a repeated key is two members.
func members(t *testing.T, msg []byte) int {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	type frame struct{ object, wantKey bool }
	var stack []*frame
	n := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if _, isKey := tok.(string); isKey && top != nil && top.object && top.wantKey {
			n++
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value has ended: in an object, a key comes next.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
}

// entries counts the members of every object in a tree json.Unmarshal
// made, where a repeated key is one entry.
func entries(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n += len(v)
		for _, e := range v {
			n += entries(e)
		}
	case []any:
		for _, e := range v {
			n += entries(e)
		}
	}
	return n
}

// depth returns how deeply a tree json.Unmarshal made nests objects and
// arrays.
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// FuzzReadMessageEnvelope holds the envelope ReadMessage reads to what
// encoding/json decodes into a struct of the same fields, as the
// transports read it before.
func FuzzReadMessageEnvelope(f *testing.F) {
	for _, tt := range checkMessageCases {
		f.Add([]byte(tt.msg))
	}
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t"}}`,
		`{ "ID" : "a b" , "Method" : "notifications/cancelled" , "PARAMS" : { "RequestId" : { "x" : [ 1 , 2 ] } } }`,
		"{\"id\":\t-1.50e3\n,\"method\":\"m\xff\\u00e9\",\"result\":null}",
		`{"id":null,"method":17,"params":[1],"result":{"content":[]}}`,
		`{"id":{},"method":"\ud800","params":{"requestId":null},"error":{"code":1}}`,
		`{"ıd":1,"ID":2,"params":"x"}`, `[{"id":1,"method":"m"}]`, `"id"`, `{}`,
	} {
		f.Add([]byte(msg))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		env, err := ReadMessage(msg)
		if err != nil {
			if env.ID != nil || env.Result != nil || env.Error != nil || env.RequestID != nil || env.Method != "" {
				t.Fatalf("ReadMessage(%q) refused it (%v) with an envelope: %+v", msg, err, env)
			}
			return
		}
		var want struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
			Params struct {
				RequestID json.RawMessage `json:"requestId"`
			} `json:"params"`
		}
		var top any
		_ = json.Unmarshal(msg, &top)
		if _, object := top.(map[string]any); object {
			_ = json.Unmarshal(msg, &want) // a type error leaves the field as it is, as before
		}
		if string(env.ID) != string(want.ID) || (env.ID == nil) != (want.ID == nil) ||
			string(env.Result) != string(want.Result) || (env.Result == nil) != (want.Result == nil) ||
			string(env.Error) != string(want.Error) || (env.Error == nil) != (want.Error == nil) ||
			string(env.RequestID) != string(want.Params.RequestID) || (env.RequestID == nil) != (want.Params.RequestID == nil) ||
			env.Method != want.Method {
			t.Fatalf("ReadMessage(%q) = %+v,\nencoding/json reads id %q, method %q, result %q, error %q, requestId %q",
				msg, env, want.ID, want.Method, want.Result, want.Error, want.Params.RequestID)
		}
	})
}
