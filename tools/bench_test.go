package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/gate/state/statetest"
	"github.com/clink-mcp/clink-mcp/policy"
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

// BenchmarkServerCostPerCallWithStore is BenchmarkServerCostPerCall with
// the durable SQLite store on: duplicate guard, two budgets and two rate
// limits reserved and settled, and an audit record, per call. Every call
// is distinct (a new idempotency key), so none is a replay. It reports the
// median and 99th percentile of the calls as p50-ns and p99-ns.
func BenchmarkServerCostPerCallWithStore(b *testing.B) {
	st, err := state.OpenSQLite(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	p, err := policy.Load("testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := NewServer(wire(b, nopPayments{}, p, st, nil, nil), "bench")
	ctx := context.Background()
	var times []time.Duration
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		msg := json.RawMessage(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
			`{"amount":12,"currency":"USD","customerEmail":"c%d@example.org","idempotencyKey":"bench-key-%d"}}}`, i, i%50, i))
		start := time.Now()
		res := s.HandleMessage(ctx, msg)
		out, err := json.Marshal(res)
		times = append(times, time.Since(start))
		if err != nil || !strings.Contains(string(out), `"sessionId"`) {
			b.Fatalf("%v %s", err, out)
		}
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
}

// flatCalls is how many calls BenchmarkCostStaysFlat makes per store.
const flatCalls = 10_000

// BenchmarkCostStaysFlat makes 10,000 distinct calls through the server on
// one store, every stateful rule on and every entry still in its window
// (the worst case for a ledger that sums its entries), each creating a
// session on the sandbox over loopback HTTP with the real Clink client, and
// reports the median per-call time of the first and the last 10% of the
// calls, their ratio, and the write transactions per call. The SQLite store
// runs against the in-memory one in the same process, interleaved call by
// call, and the benchmark reports the ratio of their medians over the last
// 10%. Run it once:
//
//	go test -run '^$' -bench CostStaysFlat -benchtime 1x ./tools/
func BenchmarkCostStaysFlat(b *testing.B) {
	p, err := policy.Load("testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	sq, err := state.OpenSQLite(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer sq.Close()
	type run struct {
		name  string
		store *statetest.Counting
		srv   *server.MCPServer
		times []time.Duration
	}
	runs := []*run{{name: "sqlite", store: &statetest.Counting{Store: sq}}, {name: "memory", store: &statetest.Counting{Store: state.NewMemory()}}}
	sb := httptest.NewServer(sandbox.New())
	defer sb.Close()
	pay, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithEnvironment(clink.Sandbox), clink.WithBaseURL(sb.URL+"/"))
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range runs {
		r.srv = NewServer(wire(b, pay, p, r.store, nil, nil), "bench")
	}
	ctx := context.Background()
	for b.Loop() {
		for i := range flatCalls {
			for _, r := range runs {
				msg := json.RawMessage(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
					`{"amount":12,"currency":"USD","customerEmail":"c%d@example.org","idempotencyKey":"flat-key-%d"}}}`, i, i%50, i))
				start := time.Now()
				out, err := json.Marshal(r.srv.HandleMessage(ctx, msg))
				r.times = append(r.times, time.Since(start))
				if err != nil || !strings.Contains(string(out), `"sessionId"`) {
					b.Fatalf("%s call %d: %v %s", r.name, i, err, out)
				}
			}
		}
	}
	median := func(ts []time.Duration) time.Duration {
		ts = slices.Clone(ts)
		slices.Sort(ts)
		return ts[len(ts)/2]
	}
	tenth := flatCalls / 10
	last := map[string]time.Duration{}
	for _, r := range runs {
		ts := r.times[len(r.times)-flatCalls:]
		first, end := median(ts[:tenth]), median(ts[len(ts)-tenth:])
		last[r.name] = end
		b.ReportMetric(float64(first.Microseconds()), r.name+"-first10%-p50-µs")
		b.ReportMetric(float64(end.Microseconds()), r.name+"-last10%-p50-µs")
		b.ReportMetric(float64(end)/float64(first), r.name+"-last/first")
		b.ReportMetric(float64(r.store.Writes())/float64(len(r.times)), r.name+"-tx/call")
	}
	b.ReportMetric(float64(last["sqlite"])/float64(last["memory"]), "sqlite/memory")
}

// benchLine is a typical tools/call line, as the stdio transport reads it.
const benchLine = `{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"create_checkout_session","arguments":` + benchArgs + `}}`

// BenchmarkCheckMessage measures the check of one message, against the
// implementation it replaced (jsonrpc_reference_test.go).
func BenchmarkCheckMessage(b *testing.B) {
	for _, bc := range []struct {
		name  string
		check func([]byte) error
	}{{"jsontext", CheckMessage}, {"reference", refCheckMessage}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			msg := []byte(benchLine)
			for b.Loop() {
				if err := bc.check(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeStrict measures the strict decoding of a checkout's
// arguments, against the implementation it replaced
// (decode_reference_test.go).
func BenchmarkDecodeStrict(b *testing.B) {
	for _, bc := range []struct {
		name   string
		decode func([]byte, *shape, any) error
	}{{"jsontext", decodeStrict}, {"reference", refDecodeStrict}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			raw := []byte(benchArgs)
			for b.Loop() {
				var args checkoutSessionArgs
				if err := bc.decode(raw, checkoutSessionShape, &args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
