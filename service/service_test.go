package service_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a service over HTTP against an in-process sandbox.
type fixture struct {
	t       *testing.T
	dir     string
	svc     *service.Service
	srv     *httptest.Server
	sandbox *sandbox.Server
	store   state.Store
	logs    *syncBuffer
	tokens  map[string]string // principal name -> bearer token
}

// setup describes a fixture: the server's policy, the principals (name ->
// policy file name, "" for the server's) and further policy files.
type setup struct {
	policy     string
	principals map[string]string
	policies   map[string]string
	store      state.Store // nil: a fresh memory store
	opts       service.HTTPOptions
	// principalsYAML, when set, is the principals file as written.
	principalsYAML string
}

const basePolicy = `version: 1
currencies:
  USD: { max_amount: 200 }
  EUR: { max_amount: 200 }
duplicates: { window: 10m }
`

func newFixture(t *testing.T, s setup) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), logs: &syncBuffer{}, tokens: map[string]string{}}
	if s.policy == "" {
		s.policy = basePolicy
	}
	// The server's policy is a file in the fixture's folder, as the
	// command loads it.
	serverPolicy := filepath.Join(f.dir, "policy.yaml")
	if err := os.WriteFile(serverPolicy, []byte(s.policy), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(serverPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range s.policies {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var principals *auth.File
	if s.principals != nil || s.principalsYAML != "" {
		var yaml strings.Builder
		if len(s.principals) > 0 {
			yaml.WriteString("principals:\n")
		}
		for name, pol := range s.principals {
			token, err := auth.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			f.tokens[name] = token
			fmt.Fprintf(&yaml, "  - name: %s\n    token_sha256: %s\n", name, auth.HashToken(token))
			if pol != "" {
				fmt.Fprintf(&yaml, "    policy: %s\n", pol)
			}
		}
		yaml.WriteString(s.principalsYAML)
		path := filepath.Join(f.dir, "principals.yaml")
		if err := os.WriteFile(path, []byte(yaml.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if principals, err = auth.Load(path, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.sandbox = sandbox.New()
	url := listenSandbox(t, f.sandbox)
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(url))
	if err != nil {
		t.Fatal(err)
	}
	f.store = s.store
	if f.store == nil {
		f.store = state.NewMemory()
	}
	f.svc, err = service.New(service.Config{
		Policy: pol, Principals: principals, Payments: cl,
		Account: gate.AccountID(url, sandbox.DefaultAPIKey), Store: f.store,
		Secret: bytes.Repeat([]byte{7}, gate.MinSecretLen), Version: "test",
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.svc.Close(context.Background()) })
	f.srv = httptest.NewServer(f.svc.Handler(s.opts))
	t.Cleanup(f.srv.Close)
	return f
}

// client connects an MCP client as principal ("" for none), speaking
// protocol version (mcp-go's newest when "").
func (f *fixture) client(principal, version string) *client.Client {
	f.t.Helper()
	var topts []transport.StreamableHTTPCOption
	if principal != "" {
		topts = append(topts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + f.tokens[principal]}))
	}
	tr, err := transport.NewStreamableHTTP(f.srv.URL+"/mcp", topts...)
	if err != nil {
		f.t.Fatal(err)
	}
	var copts []client.ClientOption
	if version != "" {
		copts = append(copts, client.WithProtocolVersion(version))
	}
	c := client.NewClient(tr, copts...)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		f.t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "service-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		f.t.Fatalf("initialize: %v", err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

// call makes one tools/call and returns its result's text and whether it is
// an error.
func call(t *testing.T, c *client.Client, tool, args string) (string, bool) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = json.RawMessage(args)
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return text.String(), res.IsError
}

// get fetches path with the given headers and returns the status, the
// WWW-Authenticate header and the body.
func (f *fixture) get(method, path string, body io.Reader, headers map[string]string) (int, http.Header, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if h, ok := headers["Host"]; ok {
		req.Host = h
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

const agentArgs = `{"customerEmail":"alice@example.com","amount":30,"currency":"USD"}`

func TestBothProtocolVersionsCallTheTools(t *testing.T) {
	f := newFixture(t, setup{})
	for _, version := range []string{mcp.LATEST_PROTOCOL_VERSION, "2025-11-25"} {
		t.Run(version, func(t *testing.T) {
			c := f.client("", version)
			tools, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(tools.Tools) < 2 {
				t.Fatalf("tools/list gave %d tools", len(tools.Tools))
			}
			text, isErr := call(t, c, policy.ToolCheckoutSession, `{"amount":12,"currency":"EUR","customerEmail":"p-`+version+`@example.com"}`)
			if isErr {
				t.Fatalf("checkout refused: %s", text)
			}
		})
	}
	if got := f.sandbox.Requests(); got != 2 {
		t.Errorf("the sandbox got %d requests, want 2", got)
	}
}

func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	f := newFixture(t, setup{principals: map[string]string{"alpha": ""}})
	initBody := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	for name, headers := range map[string]map[string]string{
		"no token":          {},
		"a wrong token":     {"Authorization": "Bearer clk_not-the-token"},
		"a basic auth":      {"Authorization": "Basic YWxwaGE6c2VjcmV0"},
		"a token in a path": {},
	} {
		t.Run(name, func(t *testing.T) {
			path := "/mcp"
			if name == "a token in a path" {
				path += "?access_token=" + f.tokens["alpha"]
			}
			headers["Content-Type"] = "application/json"
			status, h, body := f.get(http.MethodPost, path, strings.NewReader(initBody), headers)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", status, body)
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	// Who is calling is settled before the body is read: an anonymous
	// caller learns nothing from it, and costs no parse.
	dup := `{"jsonrpc":"2.0","id":1,"method":"ping","id":2}`
	if status, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(dup), map[string]string{"Content-Type": "application/json"}); status != http.StatusUnauthorized {
		t.Errorf("an anonymous body with duplicate keys: %d %s, want 401", status, body)
	}
	if f.sandbox.Requests() != 0 {
		t.Error("a refused request reached Clink")
	}
	if strings.Contains(f.logs.String(), f.tokens["alpha"]) {
		t.Error("the token is in the logs")
	}
}

func TestPerPrincipalBudgetsHoldInParallel(t *testing.T) {
	// Each principal may spend USD 100 a day; together they may spend 150.
	// Thirty-USD calls: each principal alone would get three, but the
	// shared budget lets only five through in all.
	const pol = `version: 1
currencies:
  USD: { max_amount: 200 }
budgets:
  - { currency: USD, window: 24h, max_amount: 100, per: principal }
  - { currency: USD, window: 24h, max_amount: 150 }
`
	f := newFixture(t, setup{policy: pol, principals: map[string]string{"alpha": "", "beta": ""}})
	clients := map[string]*client.Client{"alpha": f.client("alpha", ""), "beta": f.client("beta", "")}
	created := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range clients {
		for i := range 8 {
			wg.Go(func() {
				args := fmt.Sprintf(`{"customerEmail":"c%d-%s@example.com","amount":30,"currency":"USD"}`, i, name)
				text, isErr := call(t, c, policy.ToolAgentPaymentSession, args)
				if isErr {
					if !strings.Contains(text, "budget_exceeded") {
						t.Errorf("%s: refused for another reason: %s", name, text)
					}
					return
				}
				mu.Lock()
				created[name]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if created["alpha"] > 3 || created["beta"] > 3 || created["alpha"]+created["beta"] != 5 {
		t.Errorf("created %v: want at most 3 each and 5 in all", created)
	}
	if got := f.sandbox.Requests(); got != 5 {
		t.Errorf("the sandbox got %d requests, want 5", got)
	}
}

func TestEachPrincipalHasItsPolicy(t *testing.T) {
	f := newFixture(t, setup{
		principals: map[string]string{"alpha": "", "euro": "euro.yaml"},
		policies:   map[string]string{"euro.yaml": "version: 1\ncurrencies:\n  EUR: { max_amount: 50 }\n"},
	})
	alpha, euro := f.client("alpha", ""), f.client("euro", "")
	if text, isErr := call(t, alpha, policy.ToolAgentPaymentSession, agentArgs); isErr {
		t.Fatalf("alpha's USD call refused: %s", text)
	}
	if text, isErr := call(t, euro, policy.ToolAgentPaymentSession, agentArgs); !isErr || !strings.Contains(text, "currency_not_allowed") {
		t.Fatalf("euro's USD call: %v %s", isErr, text)
	}
	tools, err := euro.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range tools.Tools {
		if tl.Name != policy.ToolAgentPaymentSession {
			continue
		}
		if d := tl.Description; !strings.Contains(d, "EUR") || strings.Contains(d, "USD") {
			t.Errorf("euro's tool description does not state its policy: %s", d)
		}
	}
}

// A principal looks up only the sessions its own calls created: another's
// session ID, however it learnt it, is refused as unknown, without Clink
// being asked and without the customer's email.
func TestPrincipalsLookUpOnlyTheirOwnSessions(t *testing.T) {
	f := newFixture(t, setup{principals: map[string]string{"alice": "", "mallory": ""}})
	alice, mallory := f.client("alice", ""), f.client("mallory", "")
	text, isErr := call(t, alice, policy.ToolAgentPaymentSession, agentArgs)
	if isErr {
		t.Fatalf("alice's create: %s", text)
	}
	id := regexp.MustCompile(`aps_[A-Z0-9]+`).FindString(text)
	if id == "" {
		t.Fatalf("no session ID in %s", text)
	}
	before := f.sandbox.Requests()
	got, isErr := call(t, mallory, "get_agent_payment_session", `{"sessionId":"`+id+`"}`)
	if !isErr || !strings.Contains(got, "session_not_found") || strings.Contains(got, "alice@example.com") {
		t.Errorf("mallory looked up alice's session %s: %s", id, got)
	}
	if n := f.sandbox.Requests() - before; n != 0 {
		t.Errorf("mallory's lookup reached Clink (%d requests)", n)
	}
	if got, isErr := call(t, alice, "get_agent_payment_session", `{"sessionId":"`+id+`"}`); isErr || !strings.Contains(got, "alice@example.com") {
		t.Errorf("alice's lookup of her own session: %v %s", isErr, got)
	}
}

func TestReadinessFollowsTheStore(t *testing.T) {
	st, err := state.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, setup{store: st})
	if status, _, body := f.get(http.MethodGet, "/readyz", nil, nil); status != http.StatusOK {
		t.Fatalf("readyz: %d %s", status, body)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	status, _, body := f.get(http.MethodGet, "/readyz", nil, nil)
	if status != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: store unreachable") || strings.Count(body, "\n") != 1 {
		t.Errorf("readyz with the store gone: %d %q", status, body)
	}
	if status, _, _ := f.get(http.MethodGet, "/healthz", nil, nil); status != http.StatusOK {
		t.Errorf("healthz: %d", status)
	}
}

func TestReadinessTurnsOffWhenDraining(t *testing.T) {
	f := newFixture(t, setup{})
	if err := f.svc.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	status, _, body := f.get(http.MethodGet, "/readyz", nil, nil)
	if status != http.StatusServiceUnavailable || body != "not ready: shutting down\n" {
		t.Errorf("readyz while draining: %d %q", status, body)
	}
}

func TestMetricsCountAMixedRun(t *testing.T) {
	f := newFixture(t, setup{})
	c := f.client("", "")
	call(t, c, policy.ToolAgentPaymentSession, agentArgs)                                                          // created
	call(t, c, policy.ToolAgentPaymentSession, agentArgs)                                                          // replayed
	call(t, c, policy.ToolAgentPaymentSession, `{"customerEmail":"bob@example.com","amount":30,"currency":"GBP"}`) // refused
	call(t, c, policy.ToolCheckoutSession, `{"amount":12,"currency":"EUR","customerEmail":"carol@example.com"}`)   // created
	_, _, body := f.get(http.MethodGet, "/metrics", nil, nil)
	for _, want := range []string{
		`clink_mcp_tool_calls_total{decision="created",tool="create_agent_payment_session"} 1`,
		`clink_mcp_tool_calls_total{decision="replayed",tool="create_agent_payment_session"} 1`,
		`clink_mcp_tool_calls_total{decision="currency_not_allowed",tool="create_agent_payment_session"} 1`,
		`clink_mcp_tool_calls_total{decision="created",tool="create_checkout_session"} 1`,
		`clink_mcp_replays_total{tool="create_agent_payment_session"} 1`,
		`clink_mcp_clink_requests_total{endpoint="POST /order/payment-session",outcome="ok"} 1`,
		`clink_mcp_clink_requests_total{endpoint="POST /checkout/session",outcome="ok"} 1`,
		`clink_mcp_tool_call_duration_seconds_count{tool="create_agent_payment_session"} 3`,
		`clink_mcp_store_operation_duration_seconds_count{operation="hold"} 3`,
		`clink_mcp_http_requests_total{code="200",handler="/mcp"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{"alice", "carol", "example.com", sandbox.DefaultAPIKey} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics holds %q", secret)
		}
	}
}

func TestTheOriginIsChecked(t *testing.T) {
	f := newFixture(t, setup{opts: service.HTTPOptions{AllowedOrigins: []string{"https://app.example.com"}}})
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for origin, want := range map[string]int{
		"https://evil.example.com": http.StatusForbidden,
		"null":                     http.StatusForbidden,
		"https://app.example.com":  http.StatusOK,
		f.srv.URL:                  http.StatusOK,
	} {
		status, _, text := f.get(http.MethodPost, "/mcp", strings.NewReader(body), map[string]string{
			"Origin": origin, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
			"Mcp-Protocol-Version": "2025-11-25",
		})
		if status != want {
			t.Errorf("Origin %s: status %d, want %d: %s", origin, status, want, text)
		}
	}
}

// A page whose name was rebound to 127.0.0.1 reaches a loopback server
// with its own name as Host: every path refuses it, not /mcp alone.
func TestEveryPathRefusesARebindingHost(t *testing.T) {
	f := newFixture(t, setup{opts: service.HTTPOptions{AllowedHosts: []string{"mcp.example.com", "[fd00::1]", "fd00::2", "[FD00:0:0::3]:8443"}}})
	for _, path := range []string{"/metrics", "/readyz", "/healthz", "/mcp"} {
		method, body := http.MethodGet, ""
		if path == "/mcp" {
			method, body = http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"ping"}`
		}
		headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-11-25"}
		for host, want := range map[string]int{
			"evil.example.com:80":                    http.StatusForbidden,
			"evil.example.com":                       http.StatusForbidden,
			"mcp.example.com":                        http.StatusOK, // listed in AllowedHosts: a same-host proxy's name
			"MCP.example.com:443":                    http.StatusOK,
			"mcp.example.com.":                       http.StatusOK, // fully qualified
			"mcp.example.com.:8443":                  http.StatusOK,
			"mcp.example.com..":                      http.StatusForbidden,
			strings.TrimPrefix(f.srv.URL, "http://"): http.StatusOK,
			"localhost":                              http.StatusOK,
			"[::1]:80":                               http.StatusOK,
			// An IPv6 address allowed with or without brackets, in any
			// spelling, is allowed with or without a port.
			"[fd00::1]":      http.StatusOK,
			"[fd00::1]:80":   http.StatusOK,
			"[FD00:0::1]:80": http.StatusOK,
			"[fd00::2]":      http.StatusOK,
			"[fd00::2]:443":  http.StatusOK,
			"[fd00::3]:8443": http.StatusOK,
			"[fd00::3]:80":   http.StatusForbidden,
			"[fd00::3]":      http.StatusForbidden,
			"[fd00::4]":      http.StatusForbidden,
			"fd00::1":        http.StatusOK, // bare, as no Host should be, but the address allowed
		} {
			headers["Host"] = host
			status, _, text := f.get(method, path, strings.NewReader(body), headers)
			if status != want {
				t.Errorf("%s %s with Host %s: status %d, want %d: %s", method, path, host, status, want, text)
			}
			if want == http.StatusForbidden && strings.Contains(text, "clink_mcp") {
				t.Errorf("%s with Host %s leaked metrics: %.80s", path, host, text)
			}
		}
	}
	// HTTP/1.0 without a Host, as some load balancers' health checks send:
	// no browser sends that.
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz HTTP/1.0 without a Host: status %d, want 200", res.StatusCode)
	}
}

func TestRequestBodiesAreBoundedAndChecked(t *testing.T) {
	f := newFixture(t, setup{})
	headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	big := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", service.MaxRequestBody) + `"}}`
	if status, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(big), headers); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the limit: %d %s", status, body)
	}
	dup := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":{"amount":1,"amount":900,"currency":"USD","customerEmail":"a@example.com"}}}`
	status, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(dup), headers)
	if status != http.StatusBadRequest || !strings.Contains(body, `"id":7`) || !strings.Contains(body, "duplicate key") {
		t.Errorf("duplicate keys: %d %s", status, body)
	}
	// An approval's answer that reads "decline" by its exact key and
	// "accept" as encoding/json decodes it.
	twoWays := `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":{"amount":1,"currency":"USD","customerEmail":"a@example.com"},` +
		`"requestState":"x","inputResponses":{"approve_payment":{"action":"decline","Action":"accept","content":{"approve":true}}}}}`
	status, _, body = f.get(http.MethodPost, "/mcp", strings.NewReader(twoWays), headers)
	if status != http.StatusBadRequest || !strings.Contains(body, `"id":8`) || !strings.Contains(body, "duplicate key") {
		t.Errorf("an answer's action in two cases: %d %s", status, body)
	}
	if f.sandbox.Requests() != 0 {
		t.Error("a refused body reached Clink")
	}
}

// leasedMemory is a memory store with a lease ([state.Leaser]) that counts
// its renewals (Clock calls).
type leasedMemory struct {
	*state.Memory
	clocks atomic.Int64
}

func (s *leasedMemory) Lease() time.Duration { return 600 * time.Millisecond }

func (s *leasedMemory) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	s.clocks.Add(1)
	return s.Memory.Clock(ctx, at)
}

// The service's gates see the lease of the store under its metrics and
// renew it every third of it, not at their default five seconds.
func TestTheServiceRenewsTheStoresLeaseInTime(t *testing.T) {
	st := &leasedMemory{Memory: state.NewMemory()}
	t.Cleanup(func() { st.Close() })
	newFixture(t, setup{store: st})
	before := st.clocks.Load()
	time.Sleep(1800 * time.Millisecond)
	if n := st.clocks.Load() - before; n < 4 {
		t.Errorf("%d renewals in three leases, want one every third of the lease", n)
	}
}

// A page of an allowed origin can call /mcp from a browser: its
// preflight is answered without credentials (a preflight carries none),
// and every answer, a 401's challenge included, tells the browser the page
// may read it. Another origin's preflight is refused; the server's own
// origin needs no CORS.
func TestAnAllowedOriginCanCallFromABrowser(t *testing.T) {
	const app = "https://app.example.com"
	f := newFixture(t, setup{principals: map[string]string{"agent": ""}, opts: service.HTTPOptions{AllowedOrigins: []string{app}}})
	preflight := map[string]string{"Origin": app, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name"}
	status, h, body := f.get(http.MethodOptions, "/mcp", nil, preflight)
	if status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != app || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("the preflight = %d %v %s; want 204 allowing %s to POST", status, h, body, app)
	}
	allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"authorization", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("the preflight allows the headers %q, without %s", allowed, want)
		}
	}
	call := map[string]string{"Origin": app, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2025-11-25", "Authorization": "Bearer " + f.tokens["agent"]}
	status, h, body = f.get(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), call)
	if status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != app || !slices.Contains(h.Values("Vary"), "Origin") {
		t.Errorf("the call = %d %v %s; want 200 readable by %s", status, h, body, app)
	}
	call["Authorization"] = "Bearer wrong"
	status, h, _ = f.get(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), call)
	if status != http.StatusUnauthorized || h.Get("Access-Control-Allow-Origin") != app || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("a refused call = %d %v; want 401 whose challenge %s may read", status, h, app)
	}
	preflight["Origin"] = "https://evil.example.com"
	if status, h, _ := f.get(http.MethodOptions, "/mcp", nil, preflight); status != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin's preflight = %d %v, want 403 without CORS headers", status, h)
	}
	delete(call, "Origin")
	call["Authorization"] = "Bearer " + f.tokens["agent"]
	if status, h, _ := f.get(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), call); status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a call without Origin = %d %v, want 200 without CORS headers", status, h)
	}
}

// TestMCPTakesOnlyOneMessageByPost: the stateless /mcp answers another
// method than POST with 405 and Allow: POST, saying why, and a JSON-RPC
// batch with "invalid request", naming batches; neither reaches Clink.
func TestMCPTakesOnlyOneMessageByPost(t *testing.T) {
	f := newFixture(t, setup{})
	headers := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for _, version := range []string{mcp.LATEST_PROTOCOL_VERSION, "2025-11-25"} {
		headers["Mcp-Protocol-Version"] = version
		for method, why := range map[string]string{
			http.MethodGet: "opens no event stream", http.MethodDelete: "keeps no MCP session",
			http.MethodPut: "send each JSON-RPC message with POST", http.MethodPatch: "send each JSON-RPC message with POST",
		} {
			status, h, body := f.get(method, "/mcp", strings.NewReader(`{}`), headers)
			if status != http.StatusMethodNotAllowed || h.Get("Allow") != http.MethodPost || !strings.Contains(body, why) {
				t.Errorf("%s %s /mcp: %d, Allow %q, %q; want 405, Allow POST, saying %q", version, method, status, h.Get("Allow"), body, why)
			}
		}
		batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":` + agentArgs + `}}]`
		status, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(batch), headers)
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":-32600`) || !strings.Contains(body, "batches are not supported") {
			t.Errorf("%s a batch: %d %s; want 400, -32600 naming batches", version, status, body)
		}
	}
	if f.sandbox.Requests() != 0 {
		t.Error("a refused request reached Clink")
	}
}
