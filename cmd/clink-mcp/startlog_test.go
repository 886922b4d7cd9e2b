package main

// What the server logs at start: where Clink is and where its state is,
// never the key; warnings for a key file others may read and for a
// store.path --sandbox does not use; and a Clink nobody answers at, named.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

// logLine is one JSON log line, its attributes by name as JSON decodes them.
type logLine map[string]any

// startLogs runs "clink-mcp serve" with JSON logs and an empty stdin (it
// starts, logs, and stops at once) and returns its log lines. It fails the
// test unless the server exits 0 with nothing on stdout.
func startLogs(t *testing.T, vars map[string]string, args ...string) (lines []logLine, stderr string) {
	t.Helper()
	code, stdout, stderr := runCmd(t, vars, append([]string{"serve", "--log-format", "json"}, args...)...)
	if code != 0 || stdout != "" {
		t.Fatalf("serve: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	for _, l := range strings.Split(stderr, "\n") {
		var rec logLine
		if json.Unmarshal([]byte(l), &rec) == nil {
			lines = append(lines, rec)
		}
	}
	return lines, stderr
}

// find returns the log lines with message msg.
func find(lines []logLine, msg string) []logLine {
	var found []logLine
	for _, l := range lines {
		if l["msg"] == msg {
			found = append(found, l)
		}
	}
	return found
}

// keyFile writes key to a file with mode and returns its path.
func keyFile(t *testing.T, key string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clink.key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod, not WriteFile's mode, which the umask narrows.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

const plantedKey = "sk_test_PLANTED_START_KEY_5d1e7b"

func TestStartLogsWhereClinkAndTheStoreAre(t *testing.T) {
	t.Run("a SQLite store is named by its path and Clink by its base URL without the key", func(t *testing.T) {
		policyFile := policyWithStore(t)
		const base = "https://clink.example.test/api/"
		lines, stderr := startLogs(t, nil, "--policy", policyFile, "--api-key-file", keyFile(t, plantedKey, 0o600), "--base-url", base)
		if c := find(lines, "clink"); len(c) != 1 || c[0]["base_url"] != base || c[0]["env"] != "sandbox" {
			t.Errorf("clink lines = %v, want one with base_url %s and env sandbox", c, base)
		}
		if s := find(lines, "store"); len(s) != 1 || s[0]["where"] != storePathOf(t, policyFile) {
			t.Errorf("store lines = %v, want one with where %s", s, storePathOf(t, policyFile))
		}
		if strings.Contains(stderr, plantedKey) || strings.Contains(stderr, "PLANTED") {
			t.Errorf("the log holds the API key:\n%s", stderr)
		}
	})
	t.Run("the default Clink is named by its base URL", func(t *testing.T) {
		lines, _ := startLogs(t, map[string]string{"CLINK_API_KEY": plantedKey}, "--policy", policyWithStore(t))
		if c := find(lines, "clink"); len(c) != 1 || c[0]["base_url"] != "https://uat-api.clinkbill.com/api/" {
			t.Errorf("clink lines = %v, want the sandbox environment's base URL", c)
		}
	})
	t.Run("the built-in sandbox is in memory and in process", func(t *testing.T) {
		lines, _ := startLogs(t, nil, "--sandbox")
		if c := find(lines, "clink: the built-in sandbox, in process"); len(c) != 1 || c[0]["base_url"] != sandbox.BaseURL {
			t.Errorf("clink lines = %v, want one with base_url %s", c, sandbox.BaseURL)
		}
		if s := find(lines, "store"); len(s) != 1 || !strings.HasPrefix(fmt.Sprint(s[0]["where"]), "in memory") {
			t.Errorf("store lines = %v, want one saying in memory", s)
		}
	})
	// The database's ("the database (CLINK_DATABASE_URL)", never the URL)
	// is checked by the replica tests, which have a PostgreSQL server.
}

func TestStartWarnsOfAKeyFileOthersCanOpen(t *testing.T) {
	const msg = "the API key file is open to its group or others: make it readable by its owner alone"
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{
		{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}, {0o644, true}, {0o620, true},
	} {
		t.Run(fmt.Sprintf("mode %04o", tt.mode), func(t *testing.T) {
			path := keyFile(t, plantedKey, tt.mode)
			lines, stderr := startLogs(t, nil, "--policy", policyWithStore(t), "--api-key-file", path)
			w := find(lines, msg)
			switch {
			case !tt.warn && len(w) != 0:
				t.Errorf("a warning for a private key file: %v", w)
			case tt.warn && len(w) != 1:
				t.Errorf("no warning (want one) in:\n%s", stderr)
			case tt.warn && (w[0]["level"] != "WARN" || w[0]["file"] != path || w[0]["mode"] != fmt.Sprintf("%04o", tt.mode) || w[0]["fix"] != "chmod 600 "+path):
				t.Errorf("warning = %v, want level WARN, file %s, mode %04o, fix chmod 600 %s", w[0], path, tt.mode, path)
			}
			if strings.Contains(stderr, plantedKey) {
				t.Errorf("the log holds the API key:\n%s", stderr)
			}
		})
	}
}

func TestSandboxSaysThePolicysStorePathIsNotUsed(t *testing.T) {
	const msg = "the policy's store.path is not used with --sandbox, which keeps its state in memory"
	t.Run("a policy with a store.path", func(t *testing.T) {
		policyFile := policyWithStore(t)
		lines, stderr := startLogs(t, nil, "--sandbox", "--policy", policyFile)
		w := find(lines, msg)
		if len(w) != 1 || w[0]["store.path"] != storePathOf(t, policyFile) || w[0]["policy"] != policyFile {
			t.Errorf("warnings = %v, want one naming the policy and its store.path %s\n%s", w, storePathOf(t, policyFile), stderr)
		}
		if _, err := os.Stat(storePathOf(t, policyFile)); err == nil {
			t.Error("the sandbox created the store.path it says it does not use")
		}
	})
	t.Run("a policy without one", func(t *testing.T) {
		lines, _ := startLogs(t, nil, "--sandbox", "--policy", "../../tools/testdata/policy.yaml")
		if w := find(lines, msg); len(w) != 0 {
			t.Errorf("warnings = %v, want none", w)
		}
	})
}

// TestSandboxSaysTheStateSecretFileIsNotUsed: --sandbox keeps its state in
// memory with a secret of its own, so a --state-secret-file given with it
// (even one that does not exist, which is an error without --sandbox) is
// named as unused rather than ignored in silence.
func TestSandboxSaysTheStateSecretFileIsNotUsed(t *testing.T) {
	const msg = "the state secret file is not used with --sandbox, whose state in memory has a secret of its own"
	missing := filepath.Join(t.TempDir(), "no-such.secret")
	lines, stderr := startLogs(t, nil, "--sandbox", "--state-secret-file", missing)
	if w := find(lines, msg); len(w) != 1 || w[0]["level"] != "WARN" || w[0]["file"] != missing {
		t.Errorf("warnings = %v, want one naming %s\n%s", w, missing, stderr)
	}
	lines, _ = startLogs(t, nil, "--sandbox")
	if w := find(lines, msg); len(w) != 0 {
		t.Errorf("without the flag: warnings = %v, want none", w)
	}
}

// TestAClinkThatRefusesConnectionsIsNamedInTheLog runs the binary against
// a port nothing listens on: the agent gets an internal error, and the
// operator's log says that Clink is unreachable, where, and why.
func TestAClinkThatRefusesConnectionsIsNamedInTheLog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String() + "/"
	ln.Close()
	s := startServer(t, &gatedClink{url: base}, policyWithStore(t))
	s.call(1, "12.5")
	if r := s.reply(1, 30*time.Second); r.Result == nil || !r.Result.IsError || !strings.Contains(r.text(), "internal error") {
		t.Fatalf("reply = %s, want an internal error", r.raw)
	}
	want := "connection refused: Clink at " + base + " is unreachable"
	s.awaitLog(want, 10*time.Second)
	if log := s.stderr.String(); strings.Contains(log, sandbox.DefaultAPIKey) {
		t.Errorf("the log holds the API key:\n%s", log)
	}
}
