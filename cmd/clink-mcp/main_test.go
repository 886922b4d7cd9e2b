package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// env is a fake environment for run.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func runCmd(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, env(vars), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadConfigurationExitsWithOneLineNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty-key")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badPolicy, []byte("version: 1\ncurrencies:\n  USD: { max_amount: 10, colour: red }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"production without a policy file refuses to start", map[string]string{"CLINK_API_KEY": "sk_prod_abc"}, nil, "production needs a policy file"},
		{"no API key and no sandbox refuses to start", nil, []string{"--policy", "../../tools/testdata/policy.yaml"}, "CLINK_API_KEY is not set"},
		{"an unknown environment is named", map[string]string{"CLINK_ENV": "staging"}, []string{"--sandbox"}, "env (CLINK_ENV)"},
		{"a bad log level is named", map[string]string{"CLINK_LOG_LEVEL": "loud"}, []string{"--sandbox"}, "log-level (CLINK_LOG_LEVEL)"},
		{"a bad log format is named", nil, []string{"--sandbox", "--log-format", "xml"}, "log-format (CLINK_LOG_FORMAT)"},
		{"an empty key file is named", nil, []string{"--api-key-file", empty, "--policy", "../../tools/testdata/policy.yaml"}, "api-key-file"},
		{"a missing key file is named", nil, []string{"--api-key-file", filepath.Join(dir, "nope")}, "api-key-file"},
		{"a broken policy file is named with its line", nil, []string{"--sandbox", "--policy", badPolicy}, "bad.yaml:3"},
		{"a bad boolean variable is named", map[string]string{"CLINK_SANDBOX": "maybe"}, nil, "CLINK_SANDBOX"},
		{"a test key against production is refused", map[string]string{"CLINK_API_KEY": "sk_test_abc", "CLINK_ENV": "production"}, []string{"--policy", "../../tools/testdata/policy.yaml"}, "sk_test_"},
		{"the sandbox with production is refused", map[string]string{"CLINK_ENV": "production"}, []string{"--sandbox"}, "sandbox"},
		{"an unknown flag is refused", nil, []string{"--api-key", "sk_test_x"}, "api-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.vars, tt.args...)
			if code == 0 {
				t.Fatal("exit code 0")
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1; lines != 1 {
				t.Errorf("stderr has %d lines, want 1:\n%s", lines, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to name %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "sk_prod_abc") || strings.Contains(stderr, "sk_test_abc") {
				t.Errorf("stderr leaks the API key: %q", stderr)
			}
		})
	}
}

func TestFlagsWinOverTheirEnvironmentTwins(t *testing.T) {
	cfg, _, err := parseConfig("t", []string{"--log-level", "debug", "--policy", "a.yaml"},
		env(map[string]string{"CLINK_LOG_LEVEL": "error", "CLINK_POLICY": "b.yaml", "CLINK_LOG_FORMAT": "json"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.logLevel != "debug" || cfg.policyPath != "a.yaml" || cfg.logFormat != "json" {
		t.Errorf("config = %+v", cfg)
	}
}

func TestHelpListsEveryFlagWithItsEnvironmentTwin(t *testing.T) {
	code, stdout, _ := runCmd(t, nil, "help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range settings {
		if !strings.Contains(stdout, "--"+s.flag) || !strings.Contains(stdout, s.env) {
			t.Errorf("help lacks --%s / %s", s.flag, s.env)
		}
	}
	for _, cmd := range []string{"demo", "policy check FILE", "version", "CLINK_API_KEY"} {
		if !strings.Contains(stdout, cmd) {
			t.Errorf("help lacks %q", cmd)
		}
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), strings.NewReader(""), &bytes.Buffer{}, &errb); code != 0 || !strings.Contains(errb.String(), "CLINK_POLICY") {
		t.Errorf("--help: exit %d, output %q", code, errb.String())
	}
}

func TestVersionPrintsTheVersion(t *testing.T) {
	code, stdout, _ := runCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "clink-mcp ") {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
}

func TestPolicyCheck(t *testing.T) {
	t.Run("a valid file prints the effective policy", func(t *testing.T) {
		code, stdout, stderr := runCmd(t, nil, "policy", "check", "../../tools/testdata/policy.yaml")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stdout, "valid") || !strings.Contains(stdout, "USD") || !strings.Contains(stdout, "500.00") {
			t.Errorf("stdout = %q", stdout)
		}
	})
	t.Run("an invalid file exits 1 with file:line messages", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(path, []byte("version: 1\ncurrencies:\n  USD: { min_amount: 1 }\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCmd(t, nil, "policy", "check", path)
		if code != 1 || !strings.Contains(stderr, path+":3") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("a missing file name is a usage error", func(t *testing.T) {
		if code, _, stderr := runCmd(t, nil, "policy", "check"); code != 1 || !strings.Contains(stderr, "usage") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestDemoBehavesAsItsTranscriptSays(t *testing.T) {
	code, stdout, stderr := runCmd(t, nil, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout, "unexpected") || !strings.Contains(stdout, "behaved as expected") {
		t.Errorf("transcript:\n%s", stdout)
	}
	for _, code := range []string{"currency_not_allowed", "amount_over_cap", "amount_under_min", "email_not_allowed", "email_required", "tool_disabled",
		"budget_exceeded", "approval_declined", "session_not_found"} {
		if !strings.Contains(stdout, code) {
			t.Errorf("transcript shows no %s refusal", code)
		}
	}
	for _, want := range []string{"check_payment_policy", "[server asks the user]", "[the user approves]", "[the user declines]",
		"status open, payment unpaid", "resources/read clink://policy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("transcript does not show %q", want)
		}
	}
}

func TestDemoFailsWhenTheUserAnswersOtherwise(t *testing.T) {
	saved := demoSteps
	t.Cleanup(func() { demoSteps = saved })
	demoSteps = append([]demoStep{}, saved...)
	flipped := 0
	for i, step := range demoSteps {
		if step.user == demoApprove {
			demoSteps[i].user = demoDecline // a payment the step says is created, declined
			flipped++
		}
	}
	if flipped == 0 {
		t.Fatal("no demo step has the user approve a payment")
	}
	code, stdout, stderr := runCmd(t, nil, "demo")
	if code != 1 || !strings.Contains(stdout, "should have created a session") || !strings.Contains(stderr, "did not behave as expected") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func TestDemoFailsWhenAStepMisbehaves(t *testing.T) {
	saved := demoSteps
	t.Cleanup(func() { demoSteps = saved })
	demoSteps = append([]demoStep{}, saved...)
	demoSteps[0].want = "amount_over_cap" // a call that succeeds, expected to be refused
	code, stdout, stderr := runCmd(t, nil, "demo")
	if code != 1 || !strings.Contains(stdout, "unexpected") || !strings.Contains(stderr, "did not behave as expected") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func TestAuditVerifyNamesATamperedRecord(t *testing.T) {
	policyFile := policyWithStore(t)
	st, err := state.OpenSQLite(storePathOf(t, policyFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		rec := &state.AuditRecord{Time: time.Unix(int64(1_800_000_000+i), 0), Tool: "create_checkout_session", Decision: "created", Amount: "10.00", Currency: "USD"}
		if err := st.AppendAudit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	if code, out, errOut := runCmd(t, nil, "audit", "verify", "--policy", policyFile); code != 0 || !strings.Contains(out, "4 records") {
		t.Fatalf("intact trail: exit %d %s%s", code, out, errOut)
	}

	// An operator with write access to the file edits a record.
	db, err := sql.Open("sqlite", storePathOf(t, policyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`DROP TRIGGER audit_no_update`, `UPDATE audit SET amount = '1.00' WHERE seq = 3`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	code, out, errOut := runCmd(t, nil, "audit", "verify", "--policy", policyFile)
	if code != 1 || !strings.Contains(errOut, "BROKEN at record 3") || out != "" {
		t.Fatalf("tampered trail: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestAuditCommandsNeedAnExistingStore(t *testing.T) {
	policyFile := policyWithStore(t)
	code, _, errOut := runCmd(t, nil, "audit", "verify", "--policy", policyFile)
	if code != 1 || !strings.Contains(errOut, "state.db") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "audit", "check"); code != 1 || !strings.Contains(errOut, "usage") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// storePathOf is the store path a policy file names.
func storePathOf(t *testing.T, policyFile string) string {
	t.Helper()
	p, err := policy.Load(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	path, err := p.StoreFile()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestACorruptStoreStopsTheServer(t *testing.T) {
	policyFile := policyWithStore(t)
	if err := os.WriteFile(storePathOf(t, policyFile), []byte("this is not a database, just bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, map[string]string{"CLINK_API_KEY": "sk_test_abc"}, "serve", "--policy", policyFile)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "store (the policy's store.path)") || !strings.Contains(stderr, "state.db") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestASandboxKeyWithoutAPolicyServesTheDemoPolicyOnTheDefaultStore(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	code, stdout, stderr := runCmd(t, map[string]string{"CLINK_API_KEY": "sk_test_abc"}, "serve")
	if code != 0 || stdout != "" {
		t.Fatalf("serve: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "built-in demo policy") {
		t.Errorf("stderr does not name the demo policy: %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "clink-mcp", "state.db")); err != nil {
		t.Fatalf("no store at the default path: %v", err)
	}
	code, stdout, stderr = runCmd(t, nil, "audit", "verify")
	if code != 0 || !strings.Contains(stdout, "0 records, hash chain intact") {
		t.Fatalf("audit verify: exit %d, %q %q", code, stdout, stderr)
	}
}
