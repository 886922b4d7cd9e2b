package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/policy"
)

// httpProcess is the built binary serving --http.
type httpProcess struct {
	cmd    *exec.Cmd
	url    string // of /mcp
	stderr *syncBuffer
	exited chan error
}

// startHTTP runs the binary with args (plus --http on a free loopback port
// and JSON logs) and waits for the URL it logs.
func startHTTP(t testing.TB, env []string, args ...string) *httpProcess {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"serve", "--http", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLINK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := &httpProcess{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			var rec struct {
				Msg, URL string
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving MCP over streamable HTTP" {
				found <- rec.URL
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case p.url = <-found:
	case err := <-p.exited:
		t.Fatalf("the server exited (%v): %s", err, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no URL logged: %s", p.stderr.String())
	}
	return p
}

// awaitLog waits up to 10 s for msg in p's log, failing t without it.
func (p *httpProcess) awaitLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged:\n%s", msg, p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitKilled waits, up to 10 s, for the process to end killed by a
// signal, after the signals named in what, sent in its 60 s shutdown delay.
func (p *httpProcess) awaitKilled(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Errorf("exit after %s: %v, want killed by a signal", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after %s, in a 60 s shutdown delay", what)
	}
}

// mcpClient connects to p with a bearer token ("" for none).
func (p *httpProcess) mcpClient(t *testing.T, token string) *client.Client {
	t.Helper()
	var opts []transport.StreamableHTTPCOption
	if token != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	c, err := client.NewStreamableHttpClient(p.url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "http-test", Version: "1"}
	if _, err := c.Initialize(context.Background(), init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}

func TestHTTPBinaryServesPrincipalsAndDrainsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCmd(t, nil, "token", "new", "agent-one")
	if code != 0 {
		t.Fatalf("token new: %d %s", code, errOut)
	}
	token := ""
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) == 1 && strings.HasPrefix(f[0], "clk_") {
			token = f[0]
		}
	}
	if token == "" {
		t.Fatalf("token new printed no token:\n%s", out)
	}
	principals := filepath.Join(dir, "principals.yaml")
	var yaml strings.Builder
	yaml.WriteString("principals:\n")
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "  ") {
			yaml.WriteString(line)
		}
	}
	if err := os.WriteFile(principals, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startHTTP(t, nil, "--sandbox", "--principals", principals)

	// Without the token: 401, and nothing else.
	res, err := http.Post(p.url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d", res.StatusCode)
	}

	c := p.mcpClient(t, token)
	req := mcp.CallToolRequest{}
	req.Params.Name = policy.ToolAgentPaymentSession
	req.Params.Arguments = json.RawMessage(`{"customerEmail":"alice@example.com","amount":25.5,"currency":"USD"}`)
	got, err := c.CallTool(context.Background(), req)
	if err != nil || got.IsError {
		t.Fatalf("call: %v %+v", err, got)
	}

	ready, err := http.Get(strings.TrimSuffix(p.url, "/mcp") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusOK {
		t.Errorf("readyz: %d", ready.StatusCode)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGTERM")
	}
	logs := p.stderr.String()
	if strings.Contains(logs, token) {
		t.Error("the bearer token is in the logs")
	}
	if !strings.Contains(logs, `"caller":"agent-one"`) && !strings.Contains(logs, `"principal":"agent-one"`) {
		t.Errorf("no log line names the principal:\n%s", logs)
	}
}

func TestHTTPWithoutPrincipalsListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8080"} {
		code, _, stderr := runCmd(t, nil, "serve", "--sandbox", "--http", addr)
		if code != 1 || !strings.Contains(stderr, "http (CLINK_HTTP_ADDR)") || !strings.Contains(stderr, "loopback") {
			t.Errorf("--http %s: exit %d, %q", addr, code, stderr)
		}
	}
	code, _, stderr := runCmd(t, nil, "serve", "--sandbox", "--principals", "x.yaml")
	if code != 1 || !strings.Contains(stderr, "only used with --http") {
		t.Errorf("--principals over stdio: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCmd(t, nil, "serve", "--sandbox", "--http", "127.0.0.1:0", "--tls-cert", "c.pem")
	if code != 1 || !strings.Contains(stderr, "give both") {
		t.Errorf("--tls-cert alone: exit %d, %q", code, stderr)
	}
}

// fakeListener is a listener bound at addr, which the machine need not
// have: it accepts nothing and records its closing.
type fakeListener struct {
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return l.addr }

// Without a principals file, a name that passes as loopback ("localhost")
// but that Listen resolves to another address (/etc/hosts, DNS) is refused
// once bound, and the socket closed, before anything is served.
func TestHTTPWithoutPrincipalsRefusesANameBoundOffLoopback(t *testing.T) {
	var opened []*fakeListener
	listen := netListen
	t.Cleanup(func() { netListen = listen })
	netListen = func(network, addr string) (net.Listener, error) {
		l := &fakeListener{addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8080}, closed: make(chan struct{})}
		opened = append(opened, l)
		return l, nil
	}
	for _, addr := range []string{"localhost:8080", "localhost.:8080"} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"serve", "--sandbox", "--http", addr}, env(nil), strings.NewReader(""), &stdout, &stderr)
		cancel()
		want := "http (CLINK_HTTP_ADDR): " + addr + " was bound on 192.0.2.1:8080, which is not a loopback address"
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("--http %s bound on 192.0.2.1: exit %d, %q; want 1 and %q", addr, code, stderr.String(), want)
		}
	}
	if len(opened) != 2 {
		t.Fatalf("%d listeners opened, want 2", len(opened))
	}
	for _, l := range opened {
		select {
		case <-l.closed:
		default:
			t.Error("the listener bound off loopback was left open")
		}
	}
}

// A principals file whose resource URL has a path no route can hold (the
// metadata is served under it) stops the server at start with the file's
// line, never a panic.
func TestHTTPRefusesAResourceURLNoRouteCanHold(t *testing.T) {
	for _, resource := range []string{"https://mcp.example.com/a{b}", "https://mcp.example.com/a%20b", "https://mcp.example.com/{tenant}/mcp"} {
		principals := filepath.Join(t.TempDir(), "principals.yaml")
		file := "oauth:\n  issuer: https://auth.example.com\n  resource: " + resource + "\n  allow_unlisted: true\n"
		if err := os.WriteFile(principals, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("resource %s: the server panicked: %v", resource, r)
				}
			}()
			// A server that starts is stopped after a while (a wildcard
			// such as {tenant} mounts without a panic, at a path that
			// matches any tenant).
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := run(ctx, []string{"serve", "--sandbox", "--http", "127.0.0.1:0", "--principals", principals}, env(nil), strings.NewReader(""), &stdout, &stderr)
			if want := principals + ":3: oauth: resource"; code != 1 || !strings.Contains(stderr.String(), want) {
				t.Errorf("resource %s: exit %d, %q; want 1 and %q", resource, code, stderr.String(), want)
			}
		}()
	}
}

// A same-host proxy's name, given with --allowed-hosts, reaches every path
// of a loopback listener; another name is refused on every path, /mcp
// included (DNS rebinding).
func TestHTTPAllowedHostsReachALoopbackListener(t *testing.T) {
	p := startHTTP(t, nil, "--sandbox", "--allowed-hosts", "mcp.example.com, other.example.com:8443")
	base := strings.TrimSuffix(p.url, "/mcp")
	for _, c := range []struct {
		host, path string
		want       int
	}{
		{"mcp.example.com", "/readyz", http.StatusOK},
		{"other.example.com:8443", "/metrics", http.StatusOK},
		{"evil.example.com", "/readyz", http.StatusForbidden},
		{"evil.example.com", "/mcp", http.StatusForbidden},
	} {
		req, err := http.NewRequest(http.MethodGet, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("GET %s with Host %s: %d, want %d", c.path, c.host, res.StatusCode, c.want)
		}
	}
	code, _, stderr := runCmd(t, nil, "serve", "--sandbox", "--allowed-hosts", "mcp.example.com")
	if code != 1 || !strings.Contains(stderr, "allowed-hosts (CLINK_ALLOWED_HOSTS): only used with --http") {
		t.Errorf("--allowed-hosts over stdio: exit %d, %q", code, stderr)
	}
}

func TestTokenNewPrintsTheTokenOnceAndItsHash(t *testing.T) {
	code, out, _ := runCmd(t, nil, "token", "new", "billing-agent")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	code2, out2, _ := runCmd(t, nil, "token", "new", "billing-agent")
	if code2 != 0 || out == out2 {
		t.Errorf("two runs printed the same token")
	}
	if !strings.Contains(out, "name: billing-agent") || !strings.Contains(out, "token_sha256: ") {
		t.Errorf("output lacks the lines to paste:\n%s", out)
	}
	if code, _, stderr := runCmd(t, nil, "token", "new", "bad name!"); code != 1 || stderr == "" {
		t.Errorf("a bad name: exit %d %q", code, stderr)
	}
	if code, _, _ := runCmd(t, nil, "token"); code != 1 {
		t.Errorf("token without new: exit %d", code)
	}
}

// callTool makes one create_agent_payment_session call of amount USD and
// returns its result's text and whether it is an error.
func callTool(t *testing.T, c *client.Client, amount string) (string, bool, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = policy.ToolAgentPaymentSession
	req.Params.Arguments = json.RawMessage(`{"customerEmail":"alice@example.com","amount":` + amount + `,"currency":"USD"}`)
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		return "", false, err
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return text.String(), res.IsError, nil
}

// TestHTTPSIGTERMFinishesTheCallInFlight: on SIGTERM the server stops
// being ready, refuses new calls as shutting down, lets the call already at
// Clink finish and answer, records it, and exits 0.
func TestHTTPSIGTERMFinishesTheCallInFlight(t *testing.T) {
	clink := newGatedClink(t)
	policyFile := policyWithStore(t)
	p := startHTTP(t, []string{
		"CLINK_API_KEY=" + sandbox.DefaultAPIKey, "CLINK_ENV=sandbox",
		"CLINK_BASE_URL=" + clink.url, "CLINK_POLICY=" + policyFile,
	})
	c := p.mcpClient(t, "")
	type answer struct {
		text  string
		isErr bool
		err   error
	}
	first := make(chan answer, 1)
	go func() {
		text, isErr, err := callTool(t, c, "12.5")
		first <- answer{text, isErr, err}
	}()
	clink.awaitPOSTs(t, 1, 15*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "shutting down: finishing the calls in flight")
	ready, err := http.Get(strings.TrimSuffix(p.url, "/mcp") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d, want 503", ready.StatusCode)
	}
	if text, isErr, err := callTool(t, c, "13.5"); err != nil || !isErr || !strings.Contains(text, "shutting down") {
		t.Errorf("a call after SIGTERM: %v %v %q, want it refused as shutting down", err, isErr, text)
	}
	clink.release()
	got := <-first
	if got.err != nil || got.isErr || !strings.HasPrefix(got.text, "Created agent payment session") {
		t.Fatalf("the call in flight: %+v", got)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after the call in flight ended")
	}
	if code, out, errOut := auditVerify(t, policyFile); code != 0 || !strings.Contains(out, "3 records, hash chain intact") {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
}

// TestHTTPShutdownDelayKeepsServingWhileNotReady: with --shutdown-delay,
// SIGTERM turns /readyz 503 at once while calls are still created, so a
// load balancer can stop sending them before any is refused.
func TestHTTPShutdownDelayKeepsServingWhileNotReady(t *testing.T) {
	p := startHTTP(t, nil, "--sandbox", "--shutdown-delay", "2s")
	c := p.mcpClient(t, "")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "not ready, still taking calls")
	ready, err := http.Get(strings.TrimSuffix(p.url, "/mcp") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz during the delay: %d, want 503", ready.StatusCode)
	}
	if text, isErr, err := callTool(t, c, "7"); err != nil || isErr || !strings.HasPrefix(text, "Created") {
		t.Errorf("a call during the delay: %v %v %q, want it created", err, isErr, text)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGTERM")
	}
}

// A second SIGTERM during the drain ends the process at once, as Ctrl-C
// twice does: the first only starts the drain (here a long shutdown delay).
// TestHTTPTwoSignalsAtOnceEndTheProcess sends SIGTERM and SIGINT back to
// back, the second before the drain can have begun: the second still ends
// the process (a second signal that came before the drain's start was
// swallowed, and the process ran the whole shutdown delay).
func TestHTTPTwoSignalsAtOnceEndTheProcess(t *testing.T) {
	p := startHTTP(t, nil, "--sandbox", "--shutdown-delay", "60s")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	p.awaitKilled(t, "SIGTERM and SIGINT")
}

func TestHTTPASecondSignalEndsTheDrain(t *testing.T) {
	p := startHTTP(t, nil, "--sandbox", "--shutdown-delay", "60s")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "not ready, still taking calls")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.awaitKilled(t, "a second SIGTERM")
}

// TestHTTPExitSaysWhenACallOutlivesTheGrace: a call still at Clink when
// the grace period ends is not waited for: its intent stays open (the
// next start resolves it as outcome_unknown), and the exit code and the
// last line say so, within one grace period (the drain and the closing
// share it).
func TestHTTPExitSaysWhenACallOutlivesTheGrace(t *testing.T) {
	clink := newGatedClink(t)
	defer clink.release()
	policyFile := policyWithStore(t)
	p := startHTTP(t, []string{
		"CLINK_API_KEY=" + sandbox.DefaultAPIKey, "CLINK_ENV=sandbox",
		"CLINK_BASE_URL=" + clink.url, "CLINK_POLICY=" + policyFile, "CLINK_SHUTDOWN_GRACE=1s",
	})
	c := p.mcpClient(t, "")
	go func() { _, _, _ = callTool(t, c, "12.5") }()
	clink.awaitPOSTs(t, 1, 15*time.Second)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("exit after SIGTERM with a call at Clink past the grace: %v, want exit code 1\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
	if took := time.Since(start); took > 1900*time.Millisecond {
		t.Errorf("exit %v after SIGTERM with a grace of 1s; want one grace period (the drain and the closing share it)", took)
	}
	if !strings.Contains(p.stderr.String(), "shut down without recording every call's outcome") {
		t.Errorf("stderr does not say a call's outcome was not recorded:\n%s", p.stderr.String())
	}
	if code, out, errOut := auditVerify(t, policyFile); code != 1 || !strings.Contains(out+errOut, "1 left by a server that stopped mid-call") {
		t.Errorf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
}
