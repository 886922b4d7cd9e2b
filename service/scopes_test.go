package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// budgetPolicy allows 60 USD a day, shared by every principal it governs.
const budgetPolicy = `version: 1
currencies:
  USD: { max_amount: 200 }
budgets:
  - { currency: USD, window: 24h, max_amount: 60 }
`

// spend makes n distinct 30 USD calls as principal and returns how many
// were created.
func spend(t *testing.T, c *client.Client, principal string, n int) int {
	created := 0
	for i := range n {
		args := fmt.Sprintf(`{"customerEmail":"%s-%d@example.com","amount":30,"currency":"USD"}`, principal, i)
		if text, isErr := call(t, c, policy.ToolAgentPaymentSession, args); !isErr {
			created++
		} else if !strings.Contains(text, "budget_exceeded") {
			t.Errorf("%s: refused for another reason: %s", principal, text)
		}
	}
	return created
}

func TestAPrincipalNamingTheServersPolicyFileSharesItsBudgets(t *testing.T) {
	// bob names the server's own file (the fixture writes it as
	// policy.yaml beside the principals file); alice takes the default.
	// One file, one shared budget: two calls in all, not two each.
	f := newFixture(t, setup{policy: budgetPolicy, principals: map[string]string{"alice": "", "bob": "policy.yaml"}})
	got := spend(t, f.client("alice", ""), "alice", 2) + spend(t, f.client("bob", ""), "bob", 2)
	if got != 2 {
		t.Errorf("created %d in all under one file's 60 USD budget, want 2", got)
	}
}

func TestTwoPolicyFilesKeepTheirCountersApart(t *testing.T) {
	f := newFixture(t, setup{
		policy:     budgetPolicy,
		principals: map[string]string{"alice": "a.yaml", "bob": "b.yaml"},
		policies:   map[string]string{"a.yaml": budgetPolicy, "b.yaml": budgetPolicy},
	})
	if a, b := spend(t, f.client("alice", ""), "alice", 3), spend(t, f.client("bob", ""), "bob", 3); a != 2 || b != 2 {
		t.Errorf("created %d for a.yaml and %d for b.yaml, want 2 each: each file's budget is its own", a, b)
	}
}

func TestDrainStopsEveryPolicyFilesCallsAtOnce(t *testing.T) {
	f := newFixture(t, setup{
		principals: map[string]string{"alice": "", "bob": "b.yaml"},
		policies:   map[string]string{"b.yaml": basePolicy},
	})
	alice, bob := f.client("alice", ""), f.client("bob", "")
	// A call under the server's policy holds its gate's drain open.
	f.sandbox.SetFault(sandboxLatency(400 * time.Millisecond))
	inFlight := make(chan string, 1)
	go func() {
		text, _ := call(t, alice, policy.ToolAgentPaymentSession, agentArgs)
		inFlight <- text
	}()
	time.Sleep(100 * time.Millisecond)
	drained := make(chan error, 1)
	go func() { drained <- f.svc.Drain(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	text, isErr := call(t, bob, policy.ToolAgentPaymentSession, `{"customerEmail":"bob@example.com","amount":5,"currency":"USD"}`)
	if !isErr || !strings.Contains(text, "shutting down") {
		t.Errorf("bob's call while alice's drains: %v %s, want it refused as shutting down", isErr, text)
	}
	if text := <-inFlight; !strings.HasPrefix(text, "Created") {
		t.Errorf("the call in flight: %s", text)
	}
	if err := <-drained; err != nil {
		t.Error(err)
	}
	if f.sandbox.Requests() != 1 {
		t.Errorf("the sandbox got %d requests, want the 1 in flight", f.sandbox.Requests())
	}
}

func TestMCPServerForGovernsByThePrincipalsPolicy(t *testing.T) {
	f := newFixture(t, setup{
		principals: map[string]string{"euro": "euro.yaml"},
		policies:   map[string]string{"euro.yaml": "version: 1\ncurrencies:\n  EUR: { max_amount: 50 }\n"},
	})
	p := auth.Principal{Name: "euro", Policy: filepath.Join(f.dir, "euro.yaml"), Method: auth.MethodToken}
	srv, err := f.svc.MCPServerFor(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewInProcessClient(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := auth.NewContext(context.Background(), p)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = policy.ToolAgentPaymentSession
	req.Params.Arguments = map[string]any{"customerEmail": "a@example.com", "amount": 10, "currency": "USD"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError {
		t.Error("a USD call under the EUR-only policy was allowed")
	}
	if _, err := f.svc.MCPServerFor(auth.Principal{Policy: "/no/such.yaml"}); err == nil {
		t.Error("MCPServerFor an unknown policy gave a server")
	}
}

func TestScopesDoNotDependOnHowThePrincipalsFileIsNamed(t *testing.T) {
	// Two replicas on one store, one started with the principals file's
	// absolute path, the other from its folder with a relative one: the
	// counters of b.yaml must be the same counters.
	dir := t.TempDir()
	for name, text := range map[string]string{"b.yaml": budgetPolicy} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	token, _ := auth.NewToken()
	principals := "principals:\n  - name: bob\n    token_sha256: " + auth.HashToken(token) + "\n    policy: b.yaml\n"
	if err := os.WriteFile(filepath.Join(dir, "principals.yaml"), []byte(principals), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	t.Cleanup(func() { _ = os.Chdir(wd) })
	store := newSharedStore()
	created := 0
	for i, path := range []string{filepath.Join(dir, "principals.yaml"), "principals.yaml"} {
		if i == 1 {
			if err := os.Chdir(dir); err != nil {
				t.Fatal(err)
			}
		}
		f := newReplica(t, path, store, budgetPolicy)
		status, _, body := f.postCall(token, fmt.Sprintf(`{"customerEmail":"r%d-a@example.com","amount":30,"currency":"USD"}`, i))
		if status == http.StatusOK && strings.Contains(body, "Created") {
			created++
		}
		status, _, body = f.postCall(token, fmt.Sprintf(`{"customerEmail":"r%d-b@example.com","amount":30,"currency":"USD"}`, i))
		if status == http.StatusOK && strings.Contains(body, "Created") {
			created++
		}
	}
	if created != 2 {
		t.Errorf("created %d across the two replicas under b.yaml's 60 USD budget, want 2", created)
	}
}

func sandboxLatency(d time.Duration) sandbox.Fault { return sandbox.Fault{Latency: d} }

// sharedStore hands out handles on one in-memory state, as replicas on one
// database have.
type sharedStore struct {
	m     *state.Memory
	first bool
}

func newSharedStore() *sharedStore { return &sharedStore{m: state.NewMemory(), first: true} }

func (s *sharedStore) handle() state.Store {
	if s.first {
		s.first = false
		return s.m
	}
	return s.m.Open()
}

// replica is a service over HTTP, built as the command builds it from a
// principals file path.
type replica struct {
	t   *testing.T
	url string
}

func newReplica(t *testing.T, principalsPath string, store *sharedStore, serverPolicy string) *replica {
	t.Helper()
	polPath := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(polPath, []byte(serverPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	principals, err := auth.Load(principalsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb := sandbox.New()
	url := listenSandbox(t, sb)
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(url))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{
		Policy: pol, Principals: principals, Payments: cl, Account: "acct",
		Store: store.handle(), Secret: bytes.Repeat([]byte{5}, gate.MinSecretLen), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	srv := httptest.NewServer(svc.Handler(service.HTTPOptions{}))
	t.Cleanup(srv.Close)
	return &replica{t: t, url: srv.URL}
}

// postCall posts one create_agent_payment_session tools/call with a bearer
// token and returns the status, headers and body.
func (r *replica) postCall(token, args string) (int, http.Header, string) {
	r.t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":` + args + `}}`
	req, err := http.NewRequest(http.MethodPost, r.url+"/mcp", strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}
