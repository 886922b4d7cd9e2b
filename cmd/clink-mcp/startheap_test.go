package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestStartRunsNoCollection: `serve --sandbox` answers initialize and
// tools/list without one garbage collection (internal/startheap raises the
// first one's threshold), shown by the runtime's own traces on stderr. A
// dependency that makes the start allocate past 16 MB, or a change that
// loses the import, fails it: the start collects at 4 MB without it, and
// the package's own init must appear in the trace of inits.
func TestStartRunsNoCollection(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--sandbox", "--log-level", "error")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1,inittrace=1")
	cmd.Stdin = strings.NewReader(initLine + "\n" + initializedLine + "\n" + `{"jsonrpc":"2.0","id":2,"method":"tools/list"}` + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("serve --sandbox: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"id":2,"result":{"tools":[`) {
		t.Fatalf("no tools/list answer:\n%s", stdout.String())
	}
	initialised := false
	for line := range strings.Lines(stderr.String()) {
		if strings.HasPrefix(line, "gc ") {
			t.Errorf("a collection during the start: %s", line)
		}
		initialised = initialised || strings.HasPrefix(line, "init github.com/clink-mcp/clink-mcp/internal/startheap ")
	}
	if !initialised {
		t.Error("internal/startheap was not initialised: the command must import it")
	}
}
