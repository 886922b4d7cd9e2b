package main

// The figures of the README's performance table, each measured against the
// floor: a one-tool mcp-go stdio server that echoes its argument
// (testdata/floor), built and run the same way, interleaved with clink-mcp
// so that both see the same machine. Whole processes, over stdio.
//
//	go test -run '^$' -bench 'VsFloor' -benchtime 200x ./cmd/clink-mcp/
//	go test -run '^$' -bench 'StdioInFlight' -benchtime 3x ./cmd/clink-mcp/
//	go test -run '^$' -bench 'SandboxMemory' -benchtime 1x ./cmd/clink-mcp/

import (
	"bufio"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// buildFloor builds the floor server once.
var buildFloor = sync.OnceValues(func() (string, error) { return buildFloorWith("") })

// buildFloorLinked builds the floor with the floorlinked tag once: linking
// every package clink-mcp's command imports (testdata/floor/linked.go).
var buildFloorLinked = sync.OnceValues(func() (string, error) { return buildFloorWith("floorlinked") })

// buildFloorProm builds the floor with the floorprom tag once: linking
// Prometheus's Go client (testdata/floor/prom.go).
var buildFloorProm = sync.OnceValues(func() (string, error) { return buildFloorWith("floorprom") })

// buildFloorWith builds testdata/floor with the build tag, if any, into a
// new temporary directory and returns its path.
func buildFloorWith(tag string) (string, error) {
	dir, err := os.MkdirTemp("", "clink-mcp-floor"+tag)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "floor")
	out, err := exec.Command("go", "build", "-tags", tag, "-o", bin, "./testdata/floor").CombinedOutput()
	if err != nil {
		return "", &buildError{out}
	}
	return bin, nil
}

// TestFloorLinkedLinksWhatTheCommandLinks holds testdata/floor/linked.go
// to its promise: built with the floorlinked tag, the floor links the very
// packages the command does, no fewer and no more, so that
// BenchmarkFloorLinkedStartup's split stays true as imports change.
func TestFloorLinkedLinksWhatTheCommandLinks(t *testing.T) {
	deps := func(args ...string) map[string]bool {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", args, err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	cmd, floor := deps("."), deps("-tags", "floorlinked", "./testdata/floor")
	delete(cmd, "github.com/clink-mcp/clink-mcp/cmd/clink-mcp")
	delete(floor, "github.com/clink-mcp/clink-mcp/cmd/clink-mcp/testdata/floor")
	for p := range cmd {
		if !floor[p] {
			t.Errorf("the command links %s, the floorlinked floor does not: import it in testdata/floor/linked.go", p)
		}
	}
	for p := range floor {
		if !cmd[p] {
			t.Errorf("the floorlinked floor links %s, the command does not", p)
		}
	}
}

// binaries returns clink-mcp's and the floor's.
func binaries(b *testing.B) (clinkMCP, floor string) {
	b.Helper()
	clinkMCP, err := buildBinary()
	if err != nil {
		b.Fatal(err)
	}
	if floor, err = buildFloor(); err != nil {
		b.Fatal(err)
	}
	return clinkMCP, floor
}

const (
	initLine        = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`
	initializedLine = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
)

// startToToolsList runs bin with args and returns how long it took from the
// process's start to its answer to tools/list.
func startToToolsList(b *testing.B, bin string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	input := initLine + "\n" + initializedLine + "\n" + `{"jsonrpc":"2.0","id":2,"method":"tools/list"}` + "\n"
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.WriteString(stdin, input); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var took time.Duration
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"jsonrpc":"2.0","id":2,`) {
			took = time.Since(start)
			break
		}
	}
	stdin.Close()
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil || took == 0 {
		b.Fatalf("%s: no tools/list answer (exit: %v)", bin, err)
	}
	return took
}

// p50 is the median of ts.
func p50(ts []time.Duration) time.Duration {
	ts = slices.Clone(ts)
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// reportVsFloor reports both medians, in ms, and their ratio.
func reportVsFloor(b *testing.B, clinkMCP, floor []time.Duration) {
	c, f := p50(clinkMCP), p50(floor)
	b.ReportMetric(float64(c.Microseconds())/1000, "clink-mcp-p50-ms")
	b.ReportMetric(float64(f.Microseconds())/1000, "floor-p50-ms")
	b.ReportMetric(float64(c)/float64(f), "ratio")
	b.ReportMetric(0, "ns/op") // the metrics above are the figures
}

// BenchmarkVsFloorStartup: from the process's start to its tools/list
// answer, `clink-mcp serve --sandbox` against the floor, alternating.
func BenchmarkVsFloorStartup(b *testing.B) {
	clinkMCP, floor := binaries(b)
	var c, f []time.Duration
	for b.Loop() {
		c = append(c, startToToolsList(b, clinkMCP, "serve", "--sandbox", "--log-level", "error"))
		f = append(f, startToToolsList(b, floor))
	}
	reportVsFloor(b, c, f)
}

// BenchmarkFloorLinkedStartup splits the start-up ratio: the floor, the
// floor linking Prometheus's Go client alone (testdata/floor/prom.go), the
// floor linking every package clink-mcp's command imports (their package
// initialisation, nothing more: testdata/floor/linked.go) and `clink-mcp
// serve --sandbox`, alternating, each from its start to its tools/list
// answer. prom-ratio and linked-ratio are what linking the client, and
// every package, costs against the floor; main-ratio what clink-mcp's own
// work adds to the latter.
func BenchmarkFloorLinkedStartup(b *testing.B) {
	clinkMCP, floor := binaries(b)
	linked, err := buildFloorLinked()
	if err != nil {
		b.Fatal(err)
	}
	prom, err := buildFloorProm()
	if err != nil {
		b.Fatal(err)
	}
	var c, l, p, f []time.Duration
	starts := []func(){
		func() { f = append(f, startToToolsList(b, floor)) },
		func() { p = append(p, startToToolsList(b, prom)) },
		func() { l = append(l, startToToolsList(b, linked)) },
		func() { c = append(c, startToToolsList(b, clinkMCP, "serve", "--sandbox", "--log-level", "error")) },
	}
	i := 0
	for b.Loop() {
		// Each goes first in turn: the one after another pays for what
		// the other left in the caches, or finds what it warmed.
		for k := range starts {
			starts[(i+k)%len(starts)]()
		}
		i++
	}
	pc, pl, pp, pf := p50(c), p50(l), p50(p), p50(f)
	b.ReportMetric(float64(pf.Microseconds())/1000, "floor-p50-ms")
	b.ReportMetric(float64(pp.Microseconds())/1000, "prom-p50-ms")
	b.ReportMetric(float64(pl.Microseconds())/1000, "linked-p50-ms")
	b.ReportMetric(float64(pc.Microseconds())/1000, "clink-mcp-p50-ms")
	b.ReportMetric(float64(pp)/float64(pf), "prom-ratio")
	b.ReportMetric(float64(pl)/float64(pf), "linked-ratio")
	b.ReportMetric(float64(pc)/float64(pl), "main-ratio")
	b.ReportMetric(float64(pc)/float64(pf), "ratio")
	b.ReportMetric(0, "ns/op") // the metrics above are the figures
}

// BenchmarkVsFloorCall: one tools/call at a time over stdio, clink-mcp
// creating a checkout session on its built-in sandbox with in-memory state
// (every call distinct), the floor echoing; calls alternate between them.
func BenchmarkVsFloorCall(b *testing.B) {
	clinkMCP, floor := binaries(b)
	c := startStdioServer(b, clinkMCP, nil, "serve", "--sandbox", "--policy", "../../tools/testdata/bench-policy.yaml", "--log-level", "error")
	f := startStdioServer(b, floor, nil)
	var ct, ft []time.Duration
	i := 0
	for b.Loop() {
		i++
		line := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
			`{"amount":12,"currency":"USD","customerEmail":"alice@example.com","idempotencyKey":"floor-key-%08d"}}}`, i, i)
		start := time.Now()
		if out := c.roundTrip(b, line); !strings.Contains(out, `"sessionId"`) {
			b.Fatalf("clink-mcp call %d: %s", i, out)
		}
		ct = append(ct, time.Since(start))
		line = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"call %d"}}}`, i, i)
		start = time.Now()
		if out := f.roundTrip(b, line); !strings.Contains(out, `"call `) {
			b.Fatalf("floor call %d: %s", i, out)
		}
		ft = append(ft, time.Since(start))
	}
	reportVsFloor(b, ct, ft)
}

// inFlight sends calls over one stdio connection keeping window of them in
// flight, and returns how long they all took to be answered. Every answer
// must contain want.
func inFlight(b *testing.B, s *stdioServer, calls, window int, want string, line func(i int) string) time.Duration {
	b.Helper()
	slots := make(chan struct{}, window)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		for n := 0; n < calls; n++ {
			if !s.out.Scan() {
				done <- fmt.Errorf("stdout ended after %d answers: %v", n, s.out.Err())
				return
			}
			if !strings.Contains(s.out.Text(), want) {
				done <- fmt.Errorf("answer %d: %s", n, s.out.Text())
				return
			}
			<-slots
		}
		done <- nil
	}()
	for i := range calls {
		select {
		case slots <- struct{}{}:
		case err := <-done: // the reader stopped early: never wait on it
			if err == nil {
				err = fmt.Errorf("answers ended before call %d was sent", i)
			}
			b.Fatal(err)
		}
		if _, err := io.WriteString(s.stdin, line(i)+"\n"); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkStdioInFlight: calls/s on one stdio connection with 64 calls in
// flight, against a Clink that answers every request after 50 ms (the
// sandbox, over loopback, in this process), clink-mcp on a SQLite store
// (the production path: --sandbox answers at once and takes no base URL).
// The ceiling is 64/50 ms = 1,280 calls/s. workers=5 is mcp-go's default
// pool, for comparison: its ceiling is 5/50 ms = 100 calls/s.
func BenchmarkStdioInFlight(b *testing.B) {
	for _, workers := range []string{"default", "5"} {
		b.Run("workers="+workers, func(b *testing.B) { stdioInFlight(b, workers) })
	}
}

func stdioInFlight(b *testing.B, workers string) {
	clinkMCP, _ := binaries(b)
	sb := sandbox.New()
	sb.SetFault(sandbox.Fault{Latency: 50 * time.Millisecond})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	dir := b.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	base, err := os.ReadFile("../../tools/testdata/bench-policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(policyFile, append(base, "store: { path: "+filepath.Join(dir, "state.db")+" }\n"...), 0o600); err != nil {
		b.Fatal(err)
	}
	env := []string{"CLINK_API_KEY=" + sandbox.DefaultAPIKey, "CLINK_BASE_URL=" + srv.URL + "/"}
	calls := 2000
	if workers != "default" {
		env = append(env, "CLINK_STDIO_WORKERS="+workers)
		calls = 200
	}
	s := startStdioServer(b, clinkMCP, env, "serve", "--policy", policyFile, "--log-level", "error")
	const window = 64
	var rates []float64
	for b.Loop() {
		took := inFlight(b, s, calls, window, `"sessionId"`, func(i int) string {
			return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
				`{"amount":12,"currency":"USD","customerEmail":"c%d@example.org","idempotencyKey":"inflight-%d-%08d"}}}`, i+1, i%50, len(rates), i)
		})
		rates = append(rates, float64(calls)/took.Seconds())
	}
	slices.Sort(rates)
	b.ReportMetric(rates[len(rates)/2], "calls/s")
	b.ReportMetric(0, "ns/op")
}

// rss is the resident set size of pid, in bytes.
func rss(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkSandboxMemory: the resident memory of `clink-mcp serve
// --sandbox` over 100,000 distinct calls (64 in flight), sampled every
// 10,000, and the floor's over as many echoes. It reports the RSS after
// 10,000 and after 100,000 calls, and the growth per call between them.
func BenchmarkSandboxMemory(b *testing.B) {
	clinkMCP, floor := binaries(b)
	const calls, every = 100_000, 10_000
	for b.Loop() {
		for _, srv := range []struct {
			name, want string
			s          *stdioServer
			line       func(i int) string
		}{
			{"clink-mcp", `"sessionId"`, startStdioServer(b, clinkMCP, nil, "serve", "--sandbox", "--policy", "../../tools/testdata/bench-policy.yaml", "--log-level", "error"), func(i int) string {
				return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":`+
					`{"amount":1,"currency":"USD","customerEmail":"alice@example.com","idempotencyKey":"rss-key-%08d"}}}`, i+1, i)
			}},
			{"floor", `"text":"echo `, startStdioServer(b, floor, nil), func(i int) string {
				return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"echo %d"}}}`, i+1, i)
			}},
		} {
			var at10k int64
			for k := 0; k < calls/every; k++ {
				base := k * every
				inFlight(b, srv.s, every, 64, srv.want, func(i int) string { return srv.line(base + i) })
				if k == 0 {
					at10k = rss(b, srv.s.cmd.Process.Pid)
				}
			}
			at100k := rss(b, srv.s.cmd.Process.Pid)
			b.ReportMetric(float64(at10k)/(1<<20), srv.name+"-rss-10k-MB")
			b.ReportMetric(float64(at100k)/(1<<20), srv.name+"-rss-100k-MB")
			b.ReportMetric(float64(at100k-at10k)/float64(calls-every), srv.name+"-bytes/call")
		}
	}
	b.ReportMetric(0, "ns/op")
}
