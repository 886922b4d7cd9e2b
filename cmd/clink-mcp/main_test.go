package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service/auth"
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
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	file := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	empty := file("empty-key", "\n")
	twoLines := file("two-line-key", "sk_test_abc\nsk_test_def\n")
	hexSecret := strings.Repeat("9f8e", 16)
	bearer := auth.TokenPrefix + "Q29ycmVjdEhvcnNlQmF0dGVyeVN0YXBsZTAxMjM0NTY"
	spaced := file("spaced-key", "sk_test_abc def\n")
	testKey := file("test-key", "sk_test_abc\n")
	badPolicy := file("bad.yaml", "version: 1\ncurrencies:\n  USD: { max_amount: 10, colour: red }\n")
	badPrincipals := file("principals.yaml", "- just a list\n")
	notPEM := file("cert.pem", "not a certificate\n")
	const goodPolicy = "../../tools/testdata/policy.yaml"
	withPolicy := func(args ...string) []string { return append([]string{"--policy", goodPolicy}, args...) }
	key := map[string]string{"CLINK_API_KEY": "sk_test_abc"}
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want []string // in the one line, in order
		not  []string // nowhere in it: other settings' names, secrets
	}{
		{"a bare start suggests the sandbox, the demo, and a key and a policy", nil, nil,
			[]string{"nothing to serve: no Clink API key and no policy file", "--sandbox", "clink-mcp demo", "CLINK_API_KEY", "--policy, CLINK_POLICY"}, nil},
		{"a bare start in production says the same", map[string]string{"CLINK_ENV": "production"}, nil,
			[]string{"nothing to serve", "--sandbox"}, nil},
		{"production without a policy file refuses to start", map[string]string{"CLINK_API_KEY": "sk_prod_abc"}, nil,
			[]string{"policy (CLINK_POLICY): production needs a policy file", "--sandbox"}, nil},
		{"no API key and no sandbox refuses to start", nil, withPolicy(),
			[]string{"CLINK_API_KEY is not set", "api-key-file (CLINK_API_KEY_FILE)", "--sandbox"}, nil},
		{"an unknown environment is named", map[string]string{"CLINK_ENV": "staging"}, []string{"--sandbox"},
			[]string{`env (CLINK_ENV): "staging" is not sandbox or production`}, nil},
		{"a bad log level is named", map[string]string{"CLINK_LOG_LEVEL": "loud"}, []string{"--sandbox"},
			[]string{`log-level (CLINK_LOG_LEVEL): "loud" is not debug, info, warn or error`}, nil},
		{"a bad log format is named", nil, []string{"--sandbox", "--log-format", "xml"},
			[]string{`log-format (CLINK_LOG_FORMAT): "xml" is not text or json`}, nil},
		{"an empty key file is named", nil, withPolicy("--api-key-file", empty),
			[]string{"api-key-file (CLINK_API_KEY_FILE): " + empty + " is empty"}, nil},
		{"a missing key file is named", nil, []string{"--api-key-file", filepath.Join(dir, "nope")},
			[]string{"api-key-file (CLINK_API_KEY_FILE): cannot read " + filepath.Join(dir, "nope")}, nil},
		{"a two-line key file is named, not CLINK_API_KEY", nil, withPolicy("--api-key-file", twoLines),
			[]string{"api-key-file (CLINK_API_KEY_FILE): " + twoLines + " has more than one line"}, []string{"CLINK_API_KEY:", "sk_test_abc", "sk_test_def"}},
		{"a key file holding a space is named, not CLINK_API_KEY", map[string]string{"CLINK_API_KEY_FILE": spaced}, withPolicy(),
			[]string{"api-key-file (CLINK_API_KEY_FILE): API key contains spaces"}, []string{"CLINK_API_KEY:", "sk_test_abc"}},
		{"a key in the environment holding a space is named as CLINK_API_KEY", map[string]string{"CLINK_API_KEY": "sk_test_abc def"}, withPolicy(),
			[]string{"CLINK_API_KEY: API key contains spaces"}, []string{"api-key-file", "sk_test_abc"}},
		{"a broken policy file is named with its line", nil, []string{"--sandbox", "--policy", badPolicy},
			[]string{"policy (CLINK_POLICY): ", badPolicy + ":3"}, nil},
		{"a bad boolean variable is named with its flag", map[string]string{"CLINK_SANDBOX": "maybe"}, nil,
			[]string{`sandbox (CLINK_SANDBOX): "maybe" is not a boolean`}, nil},
		{"a bad boolean flag is named", nil, []string{"--sandbox=maybe"},
			[]string{`invalid boolean value "maybe" for -sandbox`}, nil},
		{"a test key from the environment against production is named as CLINK_API_KEY", map[string]string{"CLINK_API_KEY": "sk_test_abc", "CLINK_ENV": "production"}, withPolicy(),
			[]string{"CLINK_API_KEY: API key is a sandbox key (sk_test_) but the environment is production"}, []string{"api-key-file"}},
		{"a test key from a file against production is named as the file", map[string]string{"CLINK_ENV": "production"}, withPolicy("--api-key-file", testKey),
			[]string{"api-key-file (CLINK_API_KEY_FILE): API key is a sandbox key (sk_test_)"}, []string{"CLINK_API_KEY:"}},
		{"the sandbox with production is refused", map[string]string{"CLINK_ENV": "production"}, []string{"--sandbox"},
			[]string{"sandbox (CLINK_SANDBOX): the built-in sandbox cannot run with env (CLINK_ENV) production"}, nil},
		{"an unknown flag is refused, pointing to help", nil, []string{"--api-token", "abc"},
			[]string{"flag provided but not defined: -api-token", "clink-mcp help"}, nil},
		{"a key on the command line is refused, not shown", nil, []string{"--api-key", "sk_test_x"},
			[]string{"an argument looks like a Clink API key", "(the argument is not shown)", "CLINK_API_KEY"}, []string{"sk_test_x"}},
		{"a key as a flag's value is named by the flag, not shown", nil, []string{"--api-key-file=sk_test_abcdef"},
			[]string{"api-key-file (CLINK_API_KEY_FILE): its value looks like a Clink API key", "(the value is not shown)"}, []string{"sk_test_abcdef"}},
		{"a key in another setting's variable is named by it, not shown", map[string]string{"CLINK_POLICY": "sk_prod_abcdef123"}, nil,
			[]string{"policy (CLINK_POLICY): its value looks like a Clink API key"}, []string{"sk_prod_abcdef123"}},
		{"a key as an argument to serve is refused, not shown", nil, []string{"serve", "sk_prod_abcdef123"},
			[]string{"an argument looks like a Clink API key"}, []string{"sk_prod_abcdef123"}},
		{"a key as a command is refused, not shown", nil, []string{"sk_test_Abc123secret"},
			[]string{"an argument looks like a Clink API key"}, []string{"sk_test_Abc123secret"}},
		{"a key as an approval ID is refused, not shown", nil, []string{"approvals", "approve", "sk_test_Abc123secret", "--by", "me"},
			[]string{"an argument looks like a Clink API key"}, []string{"sk_test_Abc123secret"}},
		{"a key as a policy file to check is refused, not shown", nil, []string{"policy", "check", "sk_prod_Abc123secret"},
			[]string{"an argument looks like a Clink API key"}, []string{"sk_prod_Abc123secret"}},
		{"a key with a dash as a flag's value is named by the flag, not shown", nil, []string{"--env=sk_test_Abc-123"},
			[]string{"env (CLINK_ENV): its value looks like a Clink API key"}, []string{"sk_test_Abc-123"}},
		{"a state secret as the secret file's path is named by the flag, not shown", map[string]string{"CLINK_STATE_SECRET_FILE": hexSecret}, []string{"--sandbox"},
			[]string{"state-secret-file (CLINK_STATE_SECRET_FILE): its value looks like a secret (a long hex string)", "(the value is not shown)"}, []string{hexSecret}},
		{"a database URL as the policy is named by the flag, not shown", map[string]string{"CLINK_POLICY": "postgres://clink:Hunter2Pw@db/clink"}, nil,
			[]string{"policy (CLINK_POLICY): its value looks like a database URL", "CLINK_DATABASE_URL"}, []string{"Hunter2Pw"}},
		{"a bearer token as the principals file is named by the flag, not shown", nil, []string{"--principals=" + bearer},
			[]string{"principals (CLINK_PRINCIPALS): its value looks like a bearer token"}, []string{bearer}},
		{"a bearer token as an argument is refused, not shown", nil, []string{"approvals", "approve", bearer, "--by", "me"},
			[]string{"an argument looks like a bearer token", "(the argument is not shown)"}, []string{bearer}},
		{"a path holding a key's prefix is a path", nil, []string{"--policy", filepath.Join(dir, "sk_test_dir", "p.yaml")},
			[]string{"policy (CLINK_POLICY): ", "sk_test_dir"}, []string{"looks like a Clink API key"}},
		{"the sandbox with a production key is refused", map[string]string{"CLINK_API_KEY": "sk_prod_abcdefghij"}, []string{"--sandbox"},
			[]string{"sandbox (CLINK_SANDBOX): the built-in sandbox cannot run with a production key (CLINK_API_KEY holds an sk_prod_ key)"}, []string{"sk_prod_abcdefghij"}},
		{"a base URL that is not http is named as the base URL, not the key", key, withPolicy("--base-url", "ftp://x"),
			[]string{`base-url (CLINK_BASE_URL): base URL "ftp://x" must use http or https`}, []string{"CLINK_API_KEY"}},
		{"a base URL with a password is named without it", key, withPolicy("--base-url", "https://u:hunter2@clink.example.com"),
			[]string{"base-url (CLINK_BASE_URL): ", "must not contain user info"}, []string{"CLINK_API_KEY", "hunter2"}},
		{"a base URL with the sandbox is refused", nil, []string{"--sandbox", "--base-url", "https://clink.example.com"},
			[]string{"base-url (CLINK_BASE_URL): cannot be combined with --sandbox"}, nil},
		{"a database with the sandbox is refused", map[string]string{"CLINK_DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/db"}, []string{"--sandbox"},
			[]string{"CLINK_DATABASE_URL: cannot be combined with --sandbox"}, []string{"hunter2"}},
		{"a database that cannot be reached is named without its password", map[string]string{"CLINK_API_KEY": "sk_test_abc", "CLINK_DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/db"}, withPolicy(),
			[]string{"store (CLINK_DATABASE_URL): "}, []string{"hunter2"}},
		{"a state secret file that cannot be read is named", key, withPolicy("--state-secret-file", filepath.Join(dir, "nope")),
			[]string{"state-secret-file (CLINK_STATE_SECRET_FILE): "}, nil},
		{"a bad shutdown grace is named", map[string]string{"CLINK_SHUTDOWN_GRACE": "soon"}, []string{"--sandbox"},
			[]string{`shutdown-grace (CLINK_SHUTDOWN_GRACE): "soon" is not a duration`}, nil},
		{"a bad shutdown delay is named", nil, []string{"--sandbox", "--shutdown-delay", "-5s"},
			[]string{`shutdown-delay (CLINK_SHUTDOWN_DELAY): "-5s" is not a duration`}, nil},
		{"a bad stdio worker count is named before anything is wired", nil, []string{"--sandbox", "--stdio-workers", "0"},
			[]string{`stdio-workers (CLINK_STDIO_WORKERS): "0" is not a number from 1 to 100`}, nil},
		{"a bad stdio worker count is named over HTTP too", nil, []string{"--sandbox", "--http", "127.0.0.1:0", "--stdio-workers", "bogus"},
			[]string{`stdio-workers (CLINK_STDIO_WORKERS): "bogus" is not a number from 1 to 100`}, nil},
		{"an argument to serve is refused", nil, []string{"serve", "--sandbox", "now"},
			[]string{`serve takes no arguments, got "now"`}, nil},
		{"a principals file over stdio is refused", nil, []string{"--sandbox", "--principals", badPrincipals},
			[]string{"principals (CLINK_PRINCIPALS): only used with --http (CLINK_HTTP_ADDR)"}, nil},
		{"a TLS certificate over stdio is refused", nil, []string{"--sandbox", "--tls-cert", notPEM},
			[]string{"tls-cert (CLINK_TLS_CERT): only used with --http"}, nil},
		{"a TLS key over stdio is refused", nil, []string{"--sandbox", "--tls-key", notPEM},
			[]string{"tls-key (CLINK_TLS_KEY): only used with --http"}, nil},
		{"allowed origins over stdio are refused", map[string]string{"CLINK_ALLOWED_ORIGINS": "https://app.example.com"}, []string{"--sandbox"},
			[]string{"allowed-origins (CLINK_ALLOWED_ORIGINS): only used with --http"}, nil},
		{"an HTTP address that is not host:port is named", nil, []string{"--sandbox", "--http", "8080"},
			[]string{`http (CLINK_HTTP_ADDR): "8080" is not host:port`}, nil},
		{"an HTTP address beyond loopback without principals is refused", nil, []string{"--sandbox", "--http", "0.0.0.0:0"},
			[]string{"http (CLINK_HTTP_ADDR): 0.0.0.0:0 is not a loopback address", "--principals, CLINK_PRINCIPALS"}, nil},
		{"a TLS certificate without its key is refused", nil, []string{"--sandbox", "--http", "127.0.0.1:0", "--tls-cert", notPEM},
			[]string{"tls-cert, tls-key (CLINK_TLS_CERT, CLINK_TLS_KEY): give both, or neither"}, nil},
		{"TLS files that are not PEM are named", nil, []string{"--sandbox", "--http", "127.0.0.1:0", "--tls-cert", notPEM, "--tls-key", notPEM},
			[]string{"tls-cert, tls-key (CLINK_TLS_CERT, CLINK_TLS_KEY): "}, nil},
		{"a broken principals file is named with its line", nil, []string{"--sandbox", "--http", "127.0.0.1:0", "--principals", badPrincipals},
			[]string{"principals (CLINK_PRINCIPALS): ", badPrincipals + ":1"}, nil},
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
			rest := stderr
			for _, want := range tt.want {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("stderr = %q, want it to say %q (after %q)", stderr, want, tt.want[:slices.Index(tt.want, want)])
					break
				}
				rest = rest[i+len(want):]
			}
			for _, not := range append(tt.not, "sk_prod_abc") {
				if strings.Contains(stderr, not) {
					t.Errorf("stderr = %q, want it without %q", stderr, not)
				}
			}
		})
	}
}

func TestFlagsWinOverTheirEnvironmentTwins(t *testing.T) {
	cfg, _, err := parseConfig("t", []string{"--log-level", "debug", "--policy", "a.yaml"},
		env(map[string]string{"CLINK_LOG_LEVEL": "error", "CLINK_POLICY": "b.yaml", "CLINK_LOG_FORMAT": "json"}), &bytes.Buffer{}, printUsage)
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
}

func TestHelpGoesToStdoutWithExitZeroEverywhere(t *testing.T) {
	var help strings.Builder
	printUsage(&help)
	tests := []struct {
		args []string
		want string // the start of stdout
	}{
		{[]string{"help"}, help.String()},
		{[]string{"--help"}, help.String()},
		{[]string{"-h"}, help.String()},
		{[]string{"-help"}, help.String()},
		{[]string{"--sandbox", "--help"}, help.String()},
		{[]string{"help", "--help"}, help.String()},
		{[]string{"help", "help"}, help.String()},
	}
	for _, cmd := range []string{"serve", "demo", "policy", "audit", "approvals", "token", "version", "help"} {
		var want strings.Builder
		commandUsage[cmd](&want)
		for _, ask := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
			tests = append(tests, struct {
				args []string
				want string
			}{append([]string{cmd}, ask...), want.String()})
		}
		tests = append(tests, struct {
			args []string
			want string
		}{[]string{"help", cmd}, want.String()})
	}
	// Help asked for after a subcommand or among flags.
	var audit, approvals, policyHelp, token strings.Builder
	commandUsage["audit"](&audit)
	commandUsage["approvals"](&approvals)
	commandUsage["policy"](&policyHelp)
	commandUsage["token"](&token)
	tests = append(tests, []struct {
		args []string
		want string
	}{
		{[]string{"audit", "verify", "--help"}, audit.String()},
		{[]string{"audit", "export", "--policy", "p.yaml", "-h"}, audit.String()},
		{[]string{"approvals", "list", "--help"}, approvals.String()},
		{[]string{"approvals", "approve", "apr_1", "--by", "ops", "-h"}, approvals.String()},
		{[]string{"policy", "check", "--help"}, policyHelp.String()},
		{[]string{"token", "new", "--help"}, token.String()},
	}...)
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCmd(t, nil, tt.args...)
			if code != 0 {
				t.Errorf("exit %d, stderr %q", code, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if stdout != tt.want {
				t.Errorf("stdout = %q, want %q", stdout, tt.want)
			}
		})
	}
	t.Run("every command has a usage that names it", func(t *testing.T) {
		for cmd, usage := range commandUsage {
			var b strings.Builder
			usage(&b)
			if !strings.Contains(b.String(), "clink-mcp "+cmd) && !strings.Contains(b.String(), "clink-mcp [serve]") {
				t.Errorf("%s's help does not name it: %q", cmd, b.String())
			}
		}
	})
	t.Run("help for an unknown command is an error naming the commands", func(t *testing.T) {
		code, stdout, stderr := runCmd(t, nil, "help", "pay")
		if code != 1 || stdout != "" || !strings.Contains(stderr, `unknown command "pay"`) || !strings.Contains(stderr, "approvals, audit, demo") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

func TestVersionPrintsTheVersion(t *testing.T) {
	code, want, _ := runCmd(t, nil, "version")
	if code != 0 || want != build.String()+"\n" {
		t.Fatalf("version: exit %d, %q", code, want)
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--sandbox", "--version"}, {"serve", "--version"}} {
		code, stdout, stderr := runCmd(t, nil, args...)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 0 and %q", strings.Join(args, " "), code, stdout, stderr, want)
		}
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

// TestDemoShowsEveryPolicyItUsesAndTheTruthAboutItsStore: the transcript
// says the state is kept in memory, so no policy it prints may say
// otherwise; and every policy a step runs under is printed, in full, before
// the first step that uses it.
func TestDemoShowsEveryPolicyItUsesAndTheTruthAboutItsStore(t *testing.T) {
	code, stdout, stderr := runCmd(t, nil, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "kept in memory") {
		t.Errorf("the transcript does not say where its state is:\n%s", stdout)
	}
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "Store: ") && strings.TrimSpace(l) != "Store: in memory, for the demo" {
			t.Errorf("the transcript says %q, but the demo keeps its state in memory", strings.TrimSpace(l))
		}
	}
	// beforeFirstCall is the transcript up to the call of the first step
	// run on the server that has the checkout tool off (disabled) or not.
	beforeFirstCall := func(disabled bool) string {
		for i, step := range demoSteps {
			if step.disabled != disabled || step.tool == "" {
				continue
			}
			heading := strings.Index(stdout, fmt.Sprintf("\n%d. %s\n", i+1, step.title))
			call := strings.Index(stdout[max(heading, 0):], "   "+step.tool+" ")
			if heading < 0 || call < 0 {
				t.Fatalf("the transcript does not show step %d's call", i+1)
			}
			return stdout[:heading+call]
		}
		t.Fatalf("no demo step calls a tool with disabled=%v", disabled)
		return ""
	}
	for _, pol := range []struct {
		name     string
		yaml     []byte
		disabled bool // the steps it serves
	}{
		{demoPolicyName, demoPolicy, false},
		{demoDisabledPolicyName, demoDisabledPolicy, true},
	} {
		p, err := policy.Parse(pol.name, pol.yaml)
		if err != nil {
			t.Fatal(err)
		}
		// Line by line, in order, before the first call under it: the
		// transcript indents.
		rest := beforeFirstCall(pol.disabled)
		for _, line := range strings.Split(strings.TrimRight(demoRender(p), "\n"), "\n") {
			i := strings.Index(rest, line)
			if i < 0 {
				t.Errorf("the policy %s is not printed before the first call under it: it lacks %q", pol.name, line)
				break
			}
			rest = rest[i+len(line):]
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

// besideTheServer are the commands that open a server's store beside it.
var besideTheServer = [][]string{
	{"audit", "verify"}, {"audit", "export"}, {"approvals", "list"},
	{"approvals", "approve", "apr_1", "--by", "dana"}, {"approvals", "deny", "apr_1", "--by", "dana"},
}

// userVersion is the schema version of the SQLite file at path.
func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A newer binary used beside an older server (to verify its trail, list
// or decide its approvals) must not upgrade its store: the older server
// would then refuse to restart. The commands refuse a store of an older
// schema, say why and what to do, and leave it at its schema.
func TestCommandsBesideTheServerNeverUpgradeItsStore(t *testing.T) {
	policyFile := policyWithStore(t)
	path := storePathOf(t, policyFile)
	st, err := state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	current := userVersion(t, path)
	if current != 3 {
		t.Fatalf("the schema is at %d: make the store of an older clink-mcp below by undoing the last step", current)
	}
	// What clink-mcp of schema 2 left: schema 3 without its approvals and
	// its session index.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE approvals`, `DROP INDEX audit_session`, `PRAGMA user_version = 2`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	for _, args := range besideTheServer {
		command := strings.Join(args[:2], " ")
		code, out, errOut := runCmd(t, nil, append(args, "--policy", policyFile)...)
		want := fmt.Sprintf("the store at %s has schema version %d, older than this clink-mcp's %d: \"clink-mcp %s\" does not upgrade it; run the clink-mcp that serves this store, or start the upgraded server once",
			path, current-1, current, command)
		if code != 1 || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", command, code, out, errOut, want)
		}
		if v := userVersion(t, path); v != current-1 {
			t.Fatalf("%s upgraded the store to schema %d", command, v)
		}
	}
}

// An empty file at store.path is not a store: the commands refuse it
// rather than make it one.
func TestCommandsBesideTheServerRefuseAFileThatIsNotAStore(t *testing.T) {
	policyFile := policyWithStore(t)
	path := storePathOf(t, policyFile)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range besideTheServer {
		code, out, errOut := runCmd(t, nil, append(args, "--policy", policyFile)...)
		if code != 1 || out != "" || !strings.Contains(errOut, path) || !strings.Contains(errOut, "not a clink-mcp store") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying %s is not a clink-mcp store", strings.Join(args[:2], " "), code, out, errOut, path)
		}
		if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
			t.Fatalf("%s: the file now has %d bytes (%v), want it left empty", strings.Join(args[:2], " "), len(b), err)
		}
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

// startPiped starts cmd with pipes to its stdin and from its stdout, and
// its stderr kept in a buffer (for failure messages), failing tb if it
// cannot.
func startPiped(tb testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser, stderr *bytes.Buffer) {
	tb.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		tb.Fatal(err)
	}
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return stdin, stdout, stderr
}

// A file in the working directory whose bare name starts like a key is a
// file: it exists, so --api-key-file reads it rather than refusing it.
func TestAKeyFileNamedLikeAKeyIsRead(t *testing.T) {
	policy, err := filepath.Abs("../../tools/testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	if err := os.WriteFile(filepath.Join(dir, "sk_test_named"), []byte("sk_test_abc def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, nil, "--policy", policy, "--api-key-file", "sk_test_named")
	if code != 1 || !strings.Contains(stderr, "api-key-file (CLINK_API_KEY_FILE): API key contains spaces") || strings.Contains(stderr, "looks like a Clink API key") {
		t.Errorf("exit %d, stderr %q; want the file read (its key refused for its space)", code, stderr)
	}
}

// Over stdio nothing serves /metrics, so the registry goes without the Go
// runtime and process collectors; over HTTP /metrics has them.
func TestOnlyHTTPRegistersTheRuntimeCollectors(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		runtime bool
	}{
		{[]string{"--sandbox"}, false},
		{[]string{"--sandbox", "--http", "127.0.0.1:0"}, true},
	} {
		cfg, _, err := parseConfig("t", tt.args, env(nil), &bytes.Buffer{}, printUsage)
		if err != nil {
			t.Fatal(err)
		}
		a, err := newApp(cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		families, err := a.svc.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		var goroutines, process bool
		for _, f := range families {
			goroutines = goroutines || f.GetName() == "go_goroutines"
			process = process || strings.HasPrefix(f.GetName(), "process_")
		}
		if goroutines != tt.runtime || process != tt.runtime {
			t.Errorf("%v: go_goroutines %v, process_* %v; want both %v", tt.args, goroutines, process, tt.runtime)
		}
		if err := a.close(); err != nil {
			t.Fatal(err)
		}
	}
}
