package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
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
)

// buildBinary builds clink-mcp once for the tests that run it.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "clink-mcp-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "clink-mcp")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out}
	}
	return bin, nil
})

type buildError struct{ out []byte }

func (e *buildError) Error() string { return "go build: " + string(e.out) }

// lineRecorder passes the server's stdout to the client while keeping every
// line for inspection.
type lineRecorder struct {
	mu    sync.Mutex
	lines []string
	buf   bytes.Buffer
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	for {
		line, err := r.buf.ReadString('\n')
		if err != nil {
			r.buf.WriteString(line) // incomplete: keep for later
			break
		}
		r.lines = append(r.lines, strings.TrimRight(line, "\n"))
	}
	return len(p), nil
}

// TestStdioBinaryKeepsStdoutToJSONRPCAndLeaksNoSecret runs the built binary
// with a real MCP client over its stdin and stdout, against a sandbox that
// accepts a planted API key and returns a planted tokenValue. Every stdout
// line must be JSON-RPC, and neither secret may appear on stdout or stderr.
func TestStdioBinaryKeepsStdoutToJSONRPCAndLeaksNoSecret(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	const apiKey = "sk_test_PLANTED_API_KEY_7f3a9c"
	const token = "tok_PLANTED_TOKEN_VALUE_41b2"
	sb := sandbox.New(sandbox.WithAPIKey(apiKey), sandbox.WithTokenGenerator(func() string { return token }))
	srv := httptest.NewServer(sb)
	defer srv.Close()

	policyFile := policyWithStore(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(os.Environ(),
		"CLINK_API_KEY="+apiKey,
		"CLINK_ENV=sandbox",
		"CLINK_BASE_URL="+srv.URL+"/",
		"CLINK_POLICY="+policyFile,
	)
	stdin, stdoutPipe, stderr := startPiped(t, cmd)
	rec := &lineRecorder{}
	tr := transport.NewIO(io.TeeReader(stdoutPipe, rec), stdin, io.NopCloser(strings.NewReader("")))
	cli := client.NewClient(tr)
	if err := cli.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "stdio-test", Version: "1"}
	if _, err := cli.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v\nstderr:\n%s", err, stderr.String())
	}
	list, err := cli.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil || len(list.Tools) != 5 {
		t.Fatalf("tools/list: %v, %d tools", err, len(list.Tools))
	}
	calls := []struct {
		tool, args string
		isError    bool
	}{
		{"create_checkout_session", `{"amount":25,"currency":"USD","customerEmail":"alice@example.com"}`, false},
		{"create_agent_payment_session", `{"customerEmail":"alice@example.com","amount":10,"currency":"USD"}`, false},
		{"create_checkout_session", `{"amount":900,"currency":"USD","customerEmail":"alice@example.com"}`, true},
	}
	for _, c := range calls {
		res, err := cli.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: c.tool, Arguments: json.RawMessage(c.args)}})
		if err != nil {
			t.Fatalf("%s: %v", c.tool, err)
		}
		if res.IsError != c.isError {
			t.Fatalf("%s %s: isError = %v: %v", c.tool, c.args, res.IsError, res.Content)
		}
	}
	// End of stdin shuts the server down cleanly.
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("server exit: %v\nstderr:\n%s", err, stderr.String())
	}

	rec.mu.Lock()
	lines := rec.lines
	rec.mu.Unlock()
	if len(lines) < 5 {
		t.Fatalf("only %d stdout lines", len(lines))
	}
	for _, line := range lines {
		var msg struct {
			JSONRPC string `json:"jsonrpc"`
		}
		if err := json.Unmarshal([]byte(line), &msg); err != nil || msg.JSONRPC != "2.0" {
			t.Errorf("stdout line is not JSON-RPC: %q", line)
		}
	}
	all := strings.Join(lines, "\n") + stderr.String()
	for _, secret := range []string{apiKey, token} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q appears in the output", secret)
		}
	}
	if n := strings.Count(stderr.String(), `"msg":"tool call"`); n != 3 {
		t.Errorf("stderr has %d tool call lines, want 3:\n%s", n, stderr.String())
	}
	if strings.Contains(stderr.String(), "alice@example.com") {
		t.Error("stderr contains a raw customer email")
	}
	if sb.Requests() != 2 {
		t.Errorf("sandbox saw %d requests, want 2", sb.Requests())
	}

	// The audit commands find the server's store through the same policy
	// file: one outcome record per call and an intent before each of the
	// two that reached Clink, an intact chain, and no secret in it.
	code, out, errOut := runCmd(t, nil, "audit", "verify", "--policy", policyFile)
	if code != 0 || !strings.Contains(out, "5 records, hash chain intact") {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, map[string]string{"CLINK_POLICY": policyFile}, "audit", "export")
	if code != 0 || strings.Count(out, "\n") != 5 || strings.Count(out, `"kind":"intent"`) != 2 {
		t.Fatalf("audit export: exit %d\n%s%s", code, out, errOut)
	}
	for _, secret := range []string{apiKey, token, "alice@example.com"} {
		if strings.Contains(out, secret) {
			t.Errorf("the audit export contains %q", secret)
		}
	}
	// Nor is any of them anywhere in the store's files: replays of results
	// naming the customer are stored encrypted.
	files, err := filepath.Glob(storePathOf(t, policyFile) + "*")
	if err != nil || len(files) == 0 {
		t.Fatalf("store files: %v %v", files, err)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.IsDir() {
			continue // the owners' lock files, empty
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{apiKey, token, "alice@example.com"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s contains %q", filepath.Base(f), secret)
			}
		}
	}
}

// policyWithStore writes the tools' test policy with its store in a
// temporary directory, and returns the file's path.
func policyWithStore(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile("../../tools/testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	data := append(base, []byte("store: { path: "+filepath.Join(dir, "state.db")+" }\n")...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStdioBinaryStopsOnSIGTERM proves a signal shuts the server down with
// exit code 0 while stdin is still open.
func TestStdioBinaryStopsOnSIGTERM(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--sandbox")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the banner, so the signal handler is in place.
	sc := bufio.NewScanner(stderrPipe)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), "serving MCP over stdio") {
			break
		}
	}
	if !strings.Contains(strings.Join(seen, "\n"), "sessions are simulated") {
		t.Errorf("no sandbox banner on stderr: %q", seen)
	}
	go io.Copy(io.Discard, stderrPipe)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server did not stop after SIGTERM")
	}
}
