package tools

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

const benchArgs = `{"amount":120,"currency":"USD","customerEmail":"bob@example.org","successUrl":"https://shop.example.com/ok",` +
	`"priceDataList":[{"name":"Plan","unitAmount":60,"quantity":2}],"metadata":{"order":"42"}}`

// initialized returns an MCP server whose Clink answers at once, after an
// initialize handshake.
func initialized(b *testing.B) *server.MCPServer {
	s := NewServer(testDeps(b, nopPayments{}, testPolicy(b)), "bench")
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + mcp.LATEST_PROTOCOL_VERSION +
		`","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`
	if res := s.HandleMessage(context.Background(), json.RawMessage(init)); res == nil {
		b.Fatal("no answer to initialize")
	}
	return s
}

// BenchmarkServerCostPerCall measures the server's own cost per tool call,
// which is what it adds to the Clink call: a JSON-RPC tools/call message in,
// strict decoding, validation, policy, result, and the JSON-RPC answer out
// as bytes, with a Clink that answers at once.
func BenchmarkServerCostPerCall(b *testing.B) {
	s := initialized(b)
	msg := json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_checkout_session","arguments":` + benchArgs + `}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res := s.HandleMessage(ctx, msg)
		out, err := json.Marshal(res)
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkInProcessRoundTrip is the same call through mcp-go's in-process
// client, so it includes the client's own marshalling: an upper bound on
// the server's cost.
func BenchmarkInProcessRoundTrip(b *testing.B) {
	ctx := context.Background()
	cli, err := client.NewInProcessClient(NewServer(testDeps(b, nopPayments{}, testPolicy(b)), "bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	if err := cli.Start(ctx); err != nil {
		b.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "bench", Version: "1"}
	if _, err := cli.Initialize(ctx, init); err != nil {
		b.Fatal(err)
	}
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: checkout, Arguments: json.RawMessage(benchArgs)}}
	b.ReportAllocs()
	for b.Loop() {
		res, err := cli.CallTool(ctx, req)
		if err != nil || res.IsError {
			b.Fatalf("call: %v %v", err, res)
		}
	}
}

// BenchmarkHandler measures the tool handler alone: decoding, validation,
// policy and the result, without JSON-RPC.
func BenchmarkHandler(b *testing.B) {
	handler := All(testDeps(b, nopPayments{}, testPolicy(b)))[1].Handler
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: checkout, RawArguments: json.RawMessage(benchArgs)}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res, err := handler(ctx, req); err != nil || res.IsError {
			b.Fatal(err, res)
		}
	}
}
