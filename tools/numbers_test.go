package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/policy"
)

// exchange answers one JSON-RPC message as the stdio and HTTP transports
// do: CheckMessage first, answering a refusal with its code and message,
// then mcp-go. It returns the answer as JSON.
func exchange(t *testing.T, srv *server.MCPServer, msg string) []byte {
	t.Helper()
	var out any
	if err := CheckMessage([]byte(msg)); err != nil {
		var me *MessageError
		if !errors.As(err, &me) {
			t.Fatalf("CheckMessage = %#v, not a *MessageError", err)
		}
		out = map[string]any{"jsonrpc": "2.0", "id": 1, "error": map[string]any{"code": me.Code(), "message": me.Error()}}
	} else {
		out = srv.HandleMessage(context.Background(), json.RawMessage(msg))
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// initializedServer returns the tools' MCP server after an initialize
// handshake.
func initializedServer(t *testing.T) *server.MCPServer {
	t.Helper()
	srv := NewServer(testDeps(t, &fakePayments{}, testPolicy(t)), "test")
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + mcp.LATEST_PROTOCOL_VERSION +
		`","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`
	if res := srv.HandleMessage(context.Background(), json.RawMessage(init)); res == nil {
		t.Fatal("no answer to initialize")
	}
	return srv
}

// TestNumbersOutOfRangeAreRefusedByArgumentName sends every numeric
// argument of every tool a number a float64 cannot hold (too large, too
// small, or an integer of 400 digits) over the JSON-RPC path, and checks
// the answer: a tool result or a -32602 error that names the argument, in
// words about the argument rather than about Go.
func TestNumbersOutOfRangeAreRefusedByArgumentName(t *testing.T) {
	const agentArgs = `{"customerEmail":"alice@example.com","amount":%s,"currency":"USD"}`
	const checkoutArgs = `{"amount":%s,"currency":"USD","customerEmail":"alice@example.com"}`
	const unitArgs = `{"amount":20,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Plan","unitAmount":%s,"quantity":1}]}`
	const quantityArgs = `{"amount":20,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Plan","unitAmount":10,"quantity":%s}]}`
	type argument struct {
		tool, name, args string // args has %s where the number goes
	}
	arguments := []argument{
		{policy.ToolAgentPaymentSession, "amount", agentArgs},
		{policy.ToolCheckoutSession, "amount", checkoutArgs},
		{policy.ToolCheckoutSession, "priceDataList[0].unitAmount", unitArgs},
		{policy.ToolCheckoutSession, "priceDataList[0].quantity", quantityArgs},
		{ToolCheckPaymentPolicy, "arguments.amount", `{"tool":"create_agent_payment_session","arguments":` + agentArgs + `}`},
		{ToolCheckPaymentPolicy, "arguments.priceDataList[0].quantity", `{"tool":"create_checkout_session","arguments":` + quantityArgs + `}`},
	}
	numbers := []struct{ name, text string }{
		{"a huge exponent", "1e400"},
		{"a huge negative exponent", "-1e400"},
		{"a tiny exponent", "1e-400"},
		{"an integer of 400 digits", "1" + strings.Repeat("0", 399)},
	}
	srv := initializedServer(t)
	for _, a := range arguments {
		for _, n := range numbers {
			t.Run(a.tool+" "+a.name+" given "+n.name, func(t *testing.T) {
				args := strings.Replace(a.args, "%s", n.text, 1)
				msg := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + a.tool + `","arguments":` + args + `}}`
				out := exchange(t, srv, msg)
				var resp struct {
					Result *struct {
						IsError bool `json:"isError"`
						Content []struct {
							Text string `json:"text"`
						} `json:"content"`
					} `json:"result"`
					Error *struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal(out, &resp); err != nil {
					t.Fatalf("answer %s: %v", out, err)
				}
				var text string
				switch {
				case resp.Error != nil:
					if resp.Error.Code != -32602 {
						t.Fatalf("error code %d, want -32602 or a tool result: %s", resp.Error.Code, out)
					}
					text = resp.Error.Message
				case resp.Result != nil:
					for _, c := range resp.Result.Content {
						text += c.Text
					}
					if a.tool != ToolCheckPaymentPolicy && !resp.Result.IsError {
						t.Fatalf("a tool result that is not an error: %s", out)
					}
				default:
					t.Fatalf("neither a result nor an error: %s", out)
				}
				if !strings.Contains(text, "invalid arguments") && !strings.Contains(text, "invalid_arguments") {
					t.Errorf("the answer does not say the arguments are invalid: %s", text)
				}
				// check_payment_policy reports the create tool's problems,
				// named as that tool's arguments.
				name := a.name
				if a.tool == ToolCheckPaymentPolicy && resp.Result != nil {
					name = strings.TrimPrefix(name, "arguments.")
				}
				if !strings.Contains(text, `argument "`+name+`"`) {
					t.Errorf("the answer does not name argument %q: %s", name, text)
				}
				for _, goText := range []string{"Go struct", "Go value", "unmarshal", "float64", "json:", "strconv"} {
					if strings.Contains(string(out), goText) {
						t.Errorf("the answer speaks of Go (%q): %s", goText, out)
					}
				}
			})
		}
	}
}
