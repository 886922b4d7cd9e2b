package service_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
)

// roundRobin sends each request to the next of its servers, as a load
// balancer without sticky sessions does.
type roundRobin struct {
	hosts []string
	next  atomic.Int64
	seen  map[string]*atomic.Int64
}

func (rr *roundRobin) RoundTrip(r *http.Request) (*http.Response, error) {
	host := rr.hosts[int(rr.next.Add(1)-1)%len(rr.hosts)]
	rr.seen[host].Add(1)
	r = r.Clone(r.Context())
	r.URL.Host, r.Host = host, host
	return http.DefaultTransport.RoundTrip(r)
}

// TestReplicasBehindARoundRobinBalancer: two servers sharing a store, each
// request of one client going to the other server than the last. The
// client's handshake, list and calls work whichever server answers, and an
// identical call answered by the second server replays the first's.
func TestReplicasBehindARoundRobinBalancer(t *testing.T) {
	pol, err := policy.Parse("policy.yaml", []byte(basePolicy))
	if err != nil {
		t.Fatal(err)
	}
	sb := sandbox.New()
	url := listenSandbox(t, sb)
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(url))
	if err != nil {
		t.Fatal(err)
	}
	shared := state.NewMemory()
	secret := bytes.Repeat([]byte{3}, gate.MinSecretLen)
	rr := &roundRobin{seen: map[string]*atomic.Int64{}}
	for _, st := range []state.Store{shared, shared.Open()} {
		svc, err := service.New(service.Config{Policy: pol, Payments: cl, Account: "acct", Store: st, Secret: secret, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = svc.Close(context.Background()) })
		srv := httptest.NewServer(svc.Handler(service.HTTPOptions{}))
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")
		rr.hosts = append(rr.hosts, host)
		rr.seen[host] = &atomic.Int64{}
	}

	for _, version := range []string{"2025-11-25", mcp.LATEST_PROTOCOL_VERSION} {
		t.Run(version, func(t *testing.T) {
			tr, err := transport.NewStreamableHTTP("http://"+rr.hosts[0]+"/mcp", transport.WithHTTPBasicClient(&http.Client{Transport: rr}))
			if err != nil {
				t.Fatal(err)
			}
			c := client.NewClient(tr, client.WithProtocolVersion(version))
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Initialize(context.Background(), mcp.InitializeRequest{}); err != nil {
				t.Fatal(err)
			}
			if tools, err := c.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil || len(tools.Tools) < 2 {
				t.Fatalf("tools/list: %v", err)
			}
			args := `{"customerEmail":"rr-` + version + `@example.com","amount":30,"currency":"USD"}`
			first, isErr := call(t, c, policy.ToolAgentPaymentSession, args)
			if isErr {
				t.Fatalf("first call refused: %s", first)
			}
			again, isErr := call(t, c, policy.ToolAgentPaymentSession, args)
			if isErr || !strings.HasPrefix(again, "Replay: ") {
				t.Fatalf("the identical call on the other server: %s", again)
			}
		})
	}
	for host, n := range rr.seen {
		if n.Load() < 3 {
			t.Errorf("server %s answered %d requests: the balancer did not spread them", host, n.Load())
		}
	}
	if got := sb.Requests(); got != 2 {
		t.Errorf("the sandbox got %d requests, want 2 (one per protocol version; the identical calls replayed)", got)
	}
}
