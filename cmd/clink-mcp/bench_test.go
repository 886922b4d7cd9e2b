package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// BenchmarkStartupToToolsList measures what a desktop assistant waits for:
// from starting the clink-mcp process (serve --sandbox, the built-in demo
// policy) to reading its answer to tools/list on stdout.
func BenchmarkStartupToToolsList(b *testing.B) {
	bin, err := buildBinary()
	if err != nil {
		b.Fatal(err)
	}
	input := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + mcp.LATEST_PROTOCOL_VERSION + `","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
	}, "\n") + "\n"
	for b.Loop() {
		cmd := exec.Command(bin, "serve", "--sandbox")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(stdin, input); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		found := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), `{"jsonrpc":"2.0","id":2,`) && strings.Contains(sc.Text(), "create_checkout_session") {
				found = true
				break
			}
		}
		b.StopTimer()
		stdin.Close()
		io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil || !found {
			b.Fatalf("tools/list answer found: %v, exit: %v", found, err)
		}
		b.StartTimer()
	}
}

// stdioServer is a clink-mcp process driven one call at a time.
type stdioServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startStdioServer(b *testing.B, bin string, env []string, args ...string) *stdioServer {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &stdioServer{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	s.out.Buffer(make([]byte, 1<<20), 1<<20)
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	s.roundTrip(b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	if _, err := io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		b.Fatal(err)
	}
	return s
}

// roundTrip sends one request and reads lines until its answer.
func (s *stdioServer) roundTrip(b *testing.B, line string) string {
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		b.Fatal(err)
	}
	for s.out.Scan() {
		if strings.Contains(s.out.Text(), `"id":`) {
			return s.out.Text()
		}
	}
	b.Fatalf("no answer: %v", s.out.Err())
	return ""
}

// BenchmarkStdioCostStaysFlat measures what an agent waits for per call,
// over stdio against a Clink sandbox on loopback, with every stateful rule
// on: 10,000 distinct calls to a server on the SQLite store, interleaved
// call by call with 10,000 to one on the in-memory store (the built-in
// sandbox). It reports the median of the first and the last 10% of each
// server's calls, their ratio, and the ratio of SQLite's to memory's over
// the last 10%. Run it once:
//
//	go test -run '^$' -bench StdioCostStaysFlat -benchtime 1x ./cmd/clink-mcp/
func BenchmarkStdioCostStaysFlat(b *testing.B) {
	bin, err := buildBinary()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	base, err := os.ReadFile("../../tools/testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(policyFile, append(base, "store: { path: "+filepath.Join(dir, "state.db")+" }\n"...), 0o600); err != nil {
		b.Fatal(err)
	}
	sb := httptest.NewServer(sandbox.New())
	defer sb.Close()
	servers := []struct {
		name  string
		s     *stdioServer
		times []time.Duration
	}{
		{name: "sqlite", s: startStdioServer(b, bin, []string{"CLINK_API_KEY=" + sandbox.DefaultAPIKey, "CLINK_BASE_URL=" + sb.URL + "/"},
			"serve", "--policy", policyFile, "--log-level", "error")},
		{name: "memory", s: startStdioServer(b, bin, nil, "serve", "--sandbox", "--policy", policyFile, "--log-level", "error")},
	}
	const calls = 10_000
	for b.Loop() {
		for i := range calls {
			for k := range servers {
				srv := &servers[k]
				line := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
					`{"amount":12,"currency":"USD","customerEmail":"c%d@example.org","idempotencyKey":"flat-key-%d"}}}`, i+1, i%50, i)
				start := time.Now()
				out := srv.s.roundTrip(b, line)
				srv.times = append(srv.times, time.Since(start))
				if !strings.Contains(out, `"sessionId"`) {
					b.Fatalf("%s call %d: %s", srv.name, i, out)
				}
			}
		}
	}
	median := func(ts []time.Duration) time.Duration {
		ts = slices.Clone(ts)
		slices.Sort(ts)
		return ts[len(ts)/2]
	}
	last := map[string]time.Duration{}
	for _, srv := range servers {
		ts := srv.times[len(srv.times)-calls:]
		first, end := median(ts[:calls/10]), median(ts[len(ts)-calls/10:])
		last[srv.name] = end
		b.ReportMetric(float64(first.Microseconds()), srv.name+"-first10%-p50-µs")
		b.ReportMetric(float64(end.Microseconds()), srv.name+"-last10%-p50-µs")
		b.ReportMetric(float64(end)/float64(first), srv.name+"-last/first")
	}
	b.ReportMetric(float64(last["sqlite"])/float64(last["memory"]), "sqlite/memory")
}
