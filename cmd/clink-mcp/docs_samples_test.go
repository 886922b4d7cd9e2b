package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	"github.com/clink-mcp/clink-mcp/tools"
)

// The sample tests check the blocks marked <!-- sample: NAME -->. A configuration sample is
// parsed by the code that reads it and checked against the settings clink-mcp has; several
// blocks may share one such name. Any other sample is the real output of a story told here,
// through the built binary or the real server in process, and each of its names marks exactly
// one block.
//
// Before a comparison, normalizeSample replaces what differs from run to run, and nothing
// else: approval IDs (numbered by first appearance), times, waits, Clink session IDs and call
// IDs. In a sample, "…" stands for any text (a field or fields left out of a long line).

// configSamples are the checks of configuration samples, by name.
var configSamples = map[string]func(t *testing.T, s sample){
	"client-config":  checkClientConfig,
	"principals":     checkPrincipals,
	"systemd":        checkSystemdUnit,
	"packages":       checkPackageDiagram,
	"builtin-policy": checkBuiltinPolicy,
}

// storySamples are the samples that the stories below produce, each in exactly one block.
var storySamples = []string{
	"approvals-policy", "approval-required", "approvals-cli", "audit-export",
	"admin-endpoint", "http-curl",
	"tools-example-policy", "check-payment-policy", "check-payment-policy-text", "policy-resource",
	"limits-example-policy", "limit-refusals",
	"agent-errors", "approval-question", "approval-threshold",
}

var sampleMarkerRE = regexp.MustCompile(`^sample:\s*([a-z0-9-]+)$`)

// sample is one block marked as a sample.
type sample struct {
	where string // file:line of the opening fence
	info  string
	body  []string
}

func (s sample) text() string { return strings.Join(s.body, "\n") }

// docSamples returns the docs' samples by name.
func docSamples(t *testing.T) map[string][]sample {
	t.Helper()
	out := map[string][]sample{}
	for _, d := range readDocs(t) {
		for _, b := range d.blocks {
			if m := sampleMarkerRE.FindStringSubmatch(b.marker); m != nil {
				out[m[1]] = append(out[m[1]], sample{where: fmt.Sprintf("%s:%d", d.path, b.start+1), info: b.info, body: b.body})
			}
		}
	}
	return out
}

// oneSample returns the one block marked with name.
func oneSample(t *testing.T, all map[string][]sample, name string) sample {
	t.Helper()
	if n := len(all[name]); n != 1 {
		t.Fatalf("%d blocks are marked <!-- sample: %s -->, want exactly 1", n, name)
	}
	return all[name][0]
}

var (
	approvalIDRE = regexp.MustCompile(`apr_[0-9a-f]{20}`)
	timeRE       = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	waitRE       = regexp.MustCompile(`\(in (?:\d+(?:\.\d+)?[hms])+\)`) // 15m0s, 1h, 24h0m1s, 0.5s
	sessionIDRE  = regexp.MustCompile(`\bsess_[A-Za-z0-9]+`)
	callIDRE     = regexp.MustCompile(`"call":"[0-9a-f]{24}"`)
)

// normalizeSample replaces what differs between runs: approval IDs become apr_1, apr_2, … in
// order of first appearance; times become TIME, waits (in 15m0s) become (in WAIT), Clink
// session IDs sess_ID and the audit trail's call IDs CALL. Trailing spaces and blank lines go.
func normalizeSample(s string) string {
	ids := map[string]string{}
	s = approvalIDRE.ReplaceAllStringFunc(s, func(id string) string {
		if _, ok := ids[id]; !ok {
			ids[id] = fmt.Sprintf("apr_%d", len(ids)+1)
		}
		return ids[id]
	})
	s = timeRE.ReplaceAllString(s, "TIME")
	s = waitRE.ReplaceAllString(s, "(in WAIT)")
	s = sessionIDRE.ReplaceAllString(s, "sess_ID")
	s = callIDRE.ReplaceAllString(s, `"call":"CALL"`)
	return normalize(s)
}

// elided reports whether real matches the sample line doc, where each "…" in doc stands for
// any text.
func elided(doc, real string) bool {
	parts := strings.Split(doc, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*`) + `$`).MatchString(real)
}

// compareSample compares a sample with the real text, both normalised, line by line with
// elisions; on a difference it prints the real text to copy into the docs.
func compareSample(t *testing.T, s sample, real string) {
	t.Helper()
	doc, got := strings.Split(normalizeSample(s.text()), "\n"), strings.Split(normalizeSample(real), "\n")
	same := len(doc) == len(got)
	for i := 0; same && i < len(doc); i++ {
		same = elided(doc[i], got[i])
	}
	if !same {
		t.Errorf("%s: the sample is not the real output (- docs, + real):\n%s\nthe real output:\n%s", s.where, lineDiff(strings.Join(doc, "\n"), strings.Join(got, "\n")), real)
	}
}

// --- configuration samples ---

// settingEnv reports whether name is one of clink-mcp's environment variables.
func settingEnv(name string) bool {
	if name == "CLINK_API_KEY" || name == "CLINK_DATABASE_URL" {
		return true
	}
	return slices.ContainsFunc(settings, func(s setting) bool { return s.env == name })
}

// checkServeArgs checks a command line's arguments: serve, then flags clink-mcp has.
func checkServeArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: args %q do not start with serve", where, args)
		return
	}
	for _, a := range args[1:] {
		flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !slices.ContainsFunc(settings, func(s setting) bool { return s.flag == flag }) {
			t.Errorf("%s: %s is not a flag of clink-mcp serve", where, a)
		}
	}
}

// checkClientConfig checks an MCP client's configuration: JSON; under mcpServers (or VS Code's
// servers), each entry either starts the clink-mcp binary with serve, real flags and real
// environment variables, or connects to a /mcp URL with a bearer token.
func checkClientConfig(t *testing.T, s sample) {
	t.Helper()
	checkClientConfigJSON(t, s.where, []byte(s.text()))
}

func checkClientConfigJSON(t *testing.T, where string, data []byte) {
	t.Helper()
	var cfg map[string]map[string]struct {
		Type    string            `json:"type"`
		Command string            `json:"command"`
		Args    []string          `json:"args"`
		Env     map[string]string `json:"env"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}
	// VS Code declares the ${input:ID} variables its servers use under inputs.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Errorf("%s: not JSON: %v", where, err)
		return
	}
	inputs := map[string]bool{}
	if raw, ok := top["inputs"]; ok {
		var in []struct {
			Type        string `json:"type"`
			ID          string `json:"id"`
			Description string `json:"description"`
			Password    bool   `json:"password"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			t.Errorf("%s: inputs: %v", where, err)
		}
		for _, i := range in {
			inputs[i.ID] = true
		}
		delete(top, "inputs")
		data, _ = json.Marshal(top)
	}
	for _, m := range regexp.MustCompile(`\$\{input:([^}]+)\}`).FindAllStringSubmatch(string(data), -1) {
		if !inputs[m[1]] {
			t.Errorf("%s: ${input:%s} is used but not declared under inputs", where, m[1])
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Errorf("%s: not an MCP client configuration: %v", where, err)
		return
	}
	servers := cfg["mcpServers"]
	if servers == nil {
		servers = cfg["servers"]
	}
	if len(cfg) != 1 || len(servers) == 0 {
		t.Errorf("%s: want one mcpServers (or servers) object with entries", where)
	}
	for name, e := range servers {
		at := where + ": " + name
		switch {
		case e.Command != "":
			if base := filepath.Base(e.Command); base != "clink-mcp" {
				t.Errorf("%s: command %s is not the clink-mcp binary", at, e.Command)
			}
			checkServeArgs(t, at, e.Args)
			for k := range e.Env {
				if !settingEnv(k) {
					t.Errorf("%s: env %s is not a clink-mcp variable", at, k)
				}
			}
			if e.Type != "" && e.Type != "stdio" {
				t.Errorf("%s: type %q with a command", at, e.Type)
			}
		case e.URL != "":
			if !strings.HasSuffix(e.URL, "/mcp") || !strings.HasPrefix(e.Headers["Authorization"], "Bearer ") {
				t.Errorf("%s: want a URL ending in /mcp and an Authorization: Bearer header, got %s %v", at, e.URL, e.Headers)
			}
		default:
			t.Errorf("%s: neither a command nor a url", at)
		}
	}
}

func TestDocsClientConfigExampleFileIsValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "mcp.json.example"))
	if err != nil {
		t.Fatal(err)
	}
	checkClientConfigJSON(t, "mcp.json.example", data)
}

// checkPrincipals loads a principals file as the server does (policy files are not read: the
// sample names files of the reader's).
func checkPrincipals(t *testing.T, s sample) {
	t.Helper()
	if _, err := auth.Parse("principals.yaml", []byte(s.text()), nil); err != nil {
		t.Errorf("%s: the principals file does not load:\n%v", s.where, err)
	}
}

func checkPolicySample(t *testing.T, s sample) {
	t.Helper()
	if _, err := policy.Parse("policy.yaml", []byte(s.text())); err != nil {
		t.Errorf("%s: the policy does not load:\n%v", s.where, err)
	}
}

// checkSystemdUnit checks a systemd unit: its Environment= variables are clink-mcp's, its
// ExecStart runs clink-mcp serve with real flags, and TimeoutStopSec leaves room for the
// shutdown delay and grace.
func checkSystemdUnit(t *testing.T, s sample) {
	t.Helper()
	env := map[string]string{}
	stop := 0
	for i, line := range s.body {
		at := fmt.Sprintf("%s+%d", s.where, i+1)
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch key {
		case "Environment":
			k, v, _ := strings.Cut(value, "=")
			if !settingEnv(k) {
				t.Errorf("%s: %s is not a clink-mcp variable", at, k)
			}
			env[k] = v
		case "ExecStart":
			words := strings.Fields(value)
			if filepath.Base(words[0]) != "clink-mcp" {
				t.Errorf("%s: ExecStart runs %s", at, words[0])
			}
			checkServeArgs(t, at, words[1:])
		case "TimeoutStopSec":
			stop, _ = strconv.Atoi(value)
		}
	}
	need := time.Duration(0)
	for _, k := range []string{"CLINK_SHUTDOWN_DELAY", "CLINK_SHUTDOWN_GRACE"} {
		v := env[k]
		if v == "" {
			i := slices.IndexFunc(settings, func(s setting) bool { return s.env == k })
			v = settings[i].def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		need += d
	}
	if time.Duration(stop)*time.Second <= need {
		t.Errorf("%s: TimeoutStopSec=%d is not above the shutdown delay plus grace (%s)", s.where, stop, need)
	}
}

// checkPackageDiagram checks that every directory the diagram names exists.
func checkPackageDiagram(t *testing.T, s sample) {
	t.Helper()
	dirRE := regexp.MustCompile(`(?:^|\s)([a-z][a-z0-9-]*(?:/[a-z][a-z0-9-]*)*/?)(?:\s|,|$)`)
	n := 0
	for _, line := range s.body {
		for _, m := range dirRE.FindAllStringSubmatch(line, -1) {
			if !strings.Contains(m[1], "/") {
				continue
			}
			n++
			if !isDir(filepath.Join(repoRoot, m[1])) {
				t.Errorf("%s: %s is not a directory", s.where, m[1])
			}
		}
	}
	if n < 8 {
		t.Errorf("%s: only %d directories found in the diagram", s.where, n)
	}
}

// checkBuiltinPolicy compares the block with the built-in demo policy, less its leading
// comment.
func checkBuiltinPolicy(t *testing.T, s sample) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(policy.DemoYAML()), "\n"), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:]
	}
	if got, want := s.text(), strings.Join(lines, "\n"); got != want {
		t.Errorf("%s: the block is not the built-in demo policy (policy/demo.yaml):\n%s", s.where, lineDiff(got, want))
	}
}

func TestDocsConfigurationSamplesLoad(t *testing.T) {
	all := docSamples(t)
	for name, check := range configSamples {
		if len(all[name]) == 0 {
			t.Errorf("no block is marked <!-- sample: %s -->", name)
		}
		for _, s := range all[name] {
			check(t, s)
		}
	}
	for name := range all {
		if configSamples[name] == nil && !slices.Contains(storySamples, name) {
			t.Errorf("%s: <!-- sample: %s --> is a sample no test checks", all[name][0].where, name)
		}
	}
}

// --- the approvals, through the binary ---

// TestDocsApprovalsSamplesAreReal tells docs/approvals.md's story with the binary on a SQLite
// store, under the policy the page shows: a checkout of USD 250.00 and an agent payment
// session of USD 120.00 wait for approval; the page's approvals commands run; the checkout is
// repeated and created; then the audit trail is exported.
func TestDocsApprovalsSamplesAreReal(t *testing.T) {
	all := docSamples(t)
	polSample := oneSample(t, all, "approvals-policy")
	checkPolicySample(t, polSample)
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(polSample.text()+"\nstore: { path: "+filepath.Join(dir, "state.db")+" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli, stderr := approvalsServer(t, polPath, sandbox.New(), mcp.ProtocolVersion20260728, nil)
	const checkout = `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`
	textA, _ := toolCall(t, cli, policy.ToolCheckoutSession, checkout)
	textB, _ := toolCall(t, cli, policy.ToolAgentPaymentSession, `{"amount":120,"currency":"USD","customerEmail":"bob@example.com"}`)
	real := []string{approvalID.FindString(textA), approvalID.FindString(textB)}
	if real[0] == "" || real[1] == "" {
		t.Fatalf("the calls = %s / %s, want both pending\nstderr:\n%s", textA, textB, stderr)
	}
	compareSample(t, oneSample(t, all, "approval-required"), textA)

	// The transcript: the approvals its commands name are the real ones, in order of first
	// appearance; each $ line runs with --policy the test's file.
	cliSample := oneSample(t, all, "approvals-cli")
	toReal := map[string]string{}
	for _, line := range cliSample.body {
		if !strings.HasPrefix(line, "$ ") {
			continue
		}
		for _, id := range approvalIDRE.FindAllString(line, -1) {
			if _, ok := toReal[id]; !ok && len(toReal) < len(real) {
				toReal[id] = real[len(toReal)]
			}
		}
	}
	var transcript strings.Builder
	for _, line := range cliSample.body {
		cmd, ok := strings.CutPrefix(line, "$ ")
		if !ok {
			continue
		}
		fmt.Fprintln(&transcript, line)
		args, ok := binaryArgs(shellWords(cmd))
		if !ok {
			t.Fatalf("%s: %q is not a clink-mcp command", cliSample.where, cmd)
		}
		for i, a := range args {
			if r, ok := toReal[a]; ok {
				args[i] = r
			}
			if i > 0 && args[i-1] == "--policy" {
				args[i] = polPath
			}
		}
		_, stdout, errOut := runClink(t, args...)
		out := stdout + errOut
		for doc, r := range toReal {
			out = strings.ReplaceAll(out, r, doc)
		}
		transcript.WriteString(out)
	}
	compareSample(t, cliSample, transcript.String())

	if text, isErr := toolCall(t, cli, policy.ToolCheckoutSession, checkout); isErr {
		t.Fatalf("the approved checkout, repeated = %s", text)
	}
	code, export, errOut := runClink(t, "audit", "export", "--policy", polPath)
	if code != 0 {
		t.Fatalf("audit export exits %d: %s", code, errOut)
	}
	// The sample shows some of the records: each of its lines must match a record, in order.
	auditSample := oneSample(t, all, "audit-export")
	records := strings.Split(normalizeSample(export), "\n")
	next := 0
	for _, doc := range strings.Split(normalizeSample(auditSample.text()), "\n") {
		i := slices.IndexFunc(records[next:], func(r string) bool { return elided(doc, r) })
		if i < 0 {
			t.Errorf("%s: no record after the %dth matches\n%s\nthe records:\n%s", auditSample.where, next, doc, strings.Join(records, "\n"))
			break
		}
		next += i + 1
	}
}

// --- the server in process ---

// docService is a service under the policy text, on the sandbox and a memory store, with the
// principals file's YAML when not "".
type docService struct {
	sb     *sandbox.Server
	st     *state.Memory
	svc    *service.Service
	srv    *httptest.Server
	tokens map[string]string
}

func newDocService(t *testing.T, policyText string, principals ...string) *docService {
	t.Helper()
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &docService{tokens: map[string]string{}}
	var file *auth.File
	if len(principals) > 0 {
		var yaml strings.Builder
		yaml.WriteString("principals:\n")
		for _, p := range principals {
			name, admin := strings.CutSuffix(p, " (admin)")
			token, err := auth.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			d.tokens[name] = token
			fmt.Fprintf(&yaml, "  - name: %s\n    token_sha256: %s\n    admin: %t\n", name, auth.HashToken(token), admin)
		}
		path := filepath.Join(dir, "principals.yaml")
		if err := os.WriteFile(path, []byte(yaml.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if file, err = auth.Load(path, nil); err != nil {
			t.Fatal(err)
		}
	}
	sb := sandbox.New()
	url, shutdown, err := sb.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(url))
	if err != nil {
		t.Fatal(err)
	}
	st := state.NewMemory()
	t.Cleanup(func() { st.Close() })
	d.sb, d.st = sb, st
	d.svc, err = service.New(service.Config{
		Policy: pol, Principals: file, Payments: cl, Account: gate.AccountID(url, sandbox.DefaultAPIKey),
		Store: st, Secret: bytes.Repeat([]byte{7}, gate.MinSecretLen), Version: "docs",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.svc.Close(context.Background()) })
	d.srv = httptest.NewServer(d.svc.Handler(service.HTTPOptions{}))
	t.Cleanup(d.srv.Close)
	return d
}

// connectDocClient starts an MCP client, in process or over HTTP as a principal; neither can ask its
// user, so approvals go to an operator.
func connectDocClient(t *testing.T, c *client.Client) *client.Client {
	t.Helper()
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "docs-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (d *docService) inProcess(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.NewInProcessClient(d.svc.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	return connectDocClient(t, c)
}

func (d *docService) over(t *testing.T, principal string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(d.srv.URL+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + d.tokens[principal]}))
	if err != nil {
		t.Fatal(err)
	}
	return connectDocClient(t, client.NewClient(tr))
}

// docCall makes one call and returns its result.
func docCall(t *testing.T, c *client.Client, tool, args string) *mcp.CallToolResult {
	t.Helper()
	res, err := c.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: json.RawMessage(args)}})
	if err != nil {
		t.Fatalf("tools/call %s: %v", tool, err)
	}
	return res
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestDocsAdminEndpointSampleIsReal runs the admin endpoint's curl commands of
// docs/approvals.md against the HTTP handler, under the page's policy: billing-agent's checkout
// of USD 250.00 waits for approval, and ops (admin: true) decides. A command naming an approval
// not seen yet gets a new one: billing-agent's agent payment session of USD 120.00.
func TestDocsAdminEndpointSampleIsReal(t *testing.T) {
	all := docSamples(t)
	d := newDocService(t, oneSample(t, all, "approvals-policy").text(), "billing-agent", "ops (admin)")
	agent := d.over(t, "billing-agent")
	pending := func(tool, args string) string {
		text := resultText(docCall(t, agent, tool, args))
		id := approvalIDRE.FindString(text)
		if id == "" {
			t.Fatalf("%s = %s, want a pending approval", tool, text)
		}
		return id
	}
	fresh := []string{pending(policy.ToolCheckoutSession, `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`)}

	s := oneSample(t, all, "admin-endpoint")
	toReal := map[string]string{}
	lines, out := runCurlSample(t, s, "https://payments.example.com", func(c *curlCommand) {
		if c.headers.Get("Authorization") != "Bearer $OPS_TOKEN" {
			t.Fatalf("%s: %q: want ops's bearer token", s.where, c.line)
		}
		c.headers.Set("Authorization", "Bearer "+d.tokens["ops"])
		c.path = approvalIDRE.ReplaceAllStringFunc(c.path, func(id string) string {
			if _, ok := toReal[id]; !ok {
				if len(fresh) == 0 {
					fresh = append(fresh, pending(policy.ToolAgentPaymentSession, `{"amount":120,"currency":"USD","customerEmail":"bob@example.com"}`))
				}
				toReal[id], fresh = fresh[0], fresh[1:]
			}
			return toReal[id]
		})
	}, d.srv.URL)
	for doc, r := range toReal {
		out = strings.ReplaceAll(out, r, doc)
	}
	compareSample(t, sample{where: s.where, body: lines}, out)
}

// curlCommand is a curl command line of a sample, as runCurlSample understands it.
type curlCommand struct {
	line    string
	method  string
	path    string // the URL less the sample's base
	headers http.Header
	body    string
}

// runCurlSample runs the curl commands of s against server, where the sample says base: each
// command's line, continuations joined, and its response when the sample shows one (a "# "
// line after it). adjust may change a command before it runs (its credentials, IDs). It
// returns the sample's lines, continuations joined, and the transcript to compare with them;
// every response must be 200.
func runCurlSample(t *testing.T, s sample, base string, adjust func(*curlCommand), server string) (lines []string, transcript string) {
	t.Helper()
	for i := 0; i < len(s.body); i++ {
		line := s.body[i]
		for strings.HasSuffix(line, "\\") && i+1 < len(s.body) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(s.body[i])
		}
		lines = append(lines, line)
	}
	var out strings.Builder
	for n, line := range lines {
		if !strings.HasPrefix(line, "curl ") {
			continue // a response: compared as part of the transcript
		}
		fmt.Fprintln(&out, line)
		c := &curlCommand{line: line, method: "GET", headers: http.Header{}}
		words := shellWords(line)
		for i := 1; i < len(words); i++ {
			switch w := words[i]; {
			case w == "-s":
			case w == "-X" && i+1 < len(words):
				i++
				c.method = words[i]
			case w == "-H" && i+1 < len(words):
				i++
				k, v, _ := strings.Cut(words[i], ": ")
				c.headers.Add(k, v)
			case w == "-d" && i+1 < len(words):
				i++
				c.method, c.body = "POST", words[i]
			case strings.HasPrefix(w, base+"/"):
				c.path = strings.TrimPrefix(w, base)
			default:
				t.Fatalf("%s: %q: %s is not understood here", s.where, line, w)
			}
		}
		if c.path == "" {
			t.Fatalf("%s: %q: no URL of %s", s.where, line, base)
		}
		adjust(c)
		req, err := http.NewRequest(c.method, server+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = c.headers
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %s = %d %s", s.where, c.method, c.path, res.StatusCode, body)
		}
		if n+1 < len(lines) && strings.HasPrefix(lines[n+1], "# ") {
			fmt.Fprintln(&out, "# "+strings.TrimSpace(string(body)))
		}
	}
	return lines, out.String()
}

// TestDocsCurlSampleIsReal runs docs/operations.md's curl commands against the HTTP handler
// under the built-in demo policy, without principals as on loopback: a checkout at protocol
// 2025-11-25, then the same call at 2026-07-28, which replays it.
func TestDocsCurlSampleIsReal(t *testing.T) {
	d := newDocService(t, string(policy.DemoYAML()))
	s := oneSample(t, docSamples(t), "http-curl")
	lines, out := runCurlSample(t, s, "http://127.0.0.1:8080", func(*curlCommand) {}, d.srv.URL)
	compareSample(t, sample{where: s.where, body: lines}, out)
}

// TestDocsToolSamplesAreReal produces docs/tools.md's check_payment_policy result and
// clink://policy excerpt under the page's example policy, after a checkout of USD 250.00 that
// waits for approval.
func TestDocsToolSamplesAreReal(t *testing.T) {
	all := docSamples(t)
	d := newDocService(t, oneSample(t, all, "tools-example-policy").text())
	c := d.inProcess(t)
	if text := resultText(docCall(t, c, policy.ToolCheckoutSession, `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`)); !strings.Contains(text, "approval_required") {
		t.Fatalf("the checkout = %s, want it pending", text)
	}
	res := docCall(t, c, tools.ToolCheckPaymentPolicy, `{"tool":"create_checkout_session","arguments":{"amount":250,"currency":"USD","customerEmail":"carol@example.com"}}`)
	s := oneSample(t, all, "check-payment-policy")
	var doc, real any
	if err := json.Unmarshal([]byte(s.text()), &doc); err != nil {
		t.Errorf("%s: not JSON: %v", s.where, err)
	}
	realJSON, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(realJSON, &real); err != nil {
		t.Fatal(err)
	}
	if docJSON, _ := json.Marshal(doc); string(docJSON) != string(realJSON) {
		t.Errorf("%s: the sample is not the real result:\n- %s\n+ %s", s.where, docJSON, realJSON)
	}
	compareSample(t, oneSample(t, all, "check-payment-policy-text"), resultText(res))

	// The resource excerpt: each of its paragraphs is in the real text, in order.
	rr, err := c.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "clink://policy"}})
	if err != nil {
		t.Fatal(err)
	}
	text := rr.Contents[0].(mcp.TextResourceContents).Text
	s = oneSample(t, all, "policy-resource")
	rest := text
	for _, para := range strings.Split(s.text(), "\n\n") {
		i := strings.Index(rest, para)
		if i < 0 {
			t.Errorf("%s: this part of the excerpt is not in clink://policy (or not in this order):\n%s\nthe resource:\n%s", s.where, para, text)
			break
		}
		rest = rest[i+len(para):]
	}
}

// TestDocsLimitRefusalsAreReal produces docs/policy.md's refusals by budgets and rate limits
// under the page's example: a USD 400.00 call that no hourly allowance of 300.00 per customer
// can hold; then 21 calls of one customer within the hour; then calls of other customers up
// to USD 1850.00 of the 2000.00 a day, and one of USD 300.00.
func TestDocsLimitRefusalsAreReal(t *testing.T) {
	all := docSamples(t)
	d := newDocService(t, oneSample(t, all, "limits-example-policy").text())
	c := d.inProcess(t)
	var refusals strings.Builder
	agentCall := func(email string, cents int) {
		t.Helper()
		args := fmt.Sprintf(`{"amount":%d.%02d,"currency":"USD","customerEmail":%q}`, cents/100, cents%100, email)
		res := docCall(t, c, policy.ToolAgentPaymentSession, args)
		if res.IsError {
			fmt.Fprintln(&refusals, resultText(res))
		}
	}
	agentCall("dave@example.com", 40000)
	for i := range 21 {
		agentCall("erin@example.com", 101+i)
	}
	spent := 0 // the first 20 of erin's calls; the 21st is refused
	for i := range 20 {
		spent += 101 + i
	}
	for i := 0; spent < 185000; i++ {
		n := min(30000, 185000-spent)
		agentCall(fmt.Sprintf("buyer%d@example.com", i), n)
		spent += n
	}
	agentCall("frank@example.com", 30000)
	compareSample(t, oneSample(t, all, "limit-refusals"), refusals.String())
}

// agentErrorsPolicy is the policy TestDocsAgentErrorsAreReal calls under: a cap of USD 500.00, an
// approval above 200.00, two redirect hosts, a budget of 2000.00 a day and 20 calls an hour for
// each customer.
const agentErrorsPolicy = `version: 1
currencies:
  USD: { max_amount: 500.00, approve_above: 200 }
urls: { allow_hosts: [shop.example.com, "*.example.com"] }
budgets:
  - { currency: USD, window: 24h, max_amount: 2000 }
rate_limits:
  - { window: 1h, max_calls: 20, per: customer }
`

// TestDocsAgentErrorsAreReal produces the messages of docs/tools.md's "Errors the agent sees"
// in process: each line of the sample must match one of them. The messages of an expired
// approval and of an altered answer are rendered from their format in gate/approval.go (the
// first takes 15 minutes to happen, the second a forged requestState).
func TestDocsAgentErrorsAreReal(t *testing.T) {
	all := docSamples(t)
	d := newDocService(t, agentErrorsPolicy)
	c := d.inProcess(t)
	var real []string
	call := func(tool, args string) string {
		t.Helper()
		res := docCall(t, c, tool, args)
		text := resultText(res)
		if !res.IsError {
			return text
		}
		real = append(real, text)
		return text
	}
	co, ag := policy.ToolCheckoutSession, policy.ToolAgentPaymentSession
	call(co, `{"amount":"ten","currency":"USD","customerEmail":"alice@example.com"}`)
	call(co, `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","successUrl":"https://evil.example/ok"}`)
	call(co, `{"amount":900,"currency":"USD","customerEmail":"alice@example.com"}`)
	d.sb.SetFault(sandbox.Fault{Code: 400, Msg: sandbox.MsgCustomerNotFound, Count: 1})
	call(co, `{"amount":10,"currency":"USD","customerEmail":"nobody@example.com"}`)
	d.sb.SetFault(sandbox.Fault{Status: http.StatusInternalServerError, Count: 1})
	call(ag, `{"amount":1,"currency":"USD","customerEmail":"outage@example.com"}`)
	d.sb.ClearFault()
	// The approval, then its denial.
	id := approvalIDRE.FindString(call(co, `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`))
	if id == "" {
		t.Fatalf("the checkout of USD 250.00 is not pending: %v", real)
	}
	if _, err := gate.DecideApproval(context.Background(), d.st, id, false, "operator:dana"); err != nil {
		t.Fatal(err)
	}
	call(co, `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`)
	// 21 calls of one customer, then the budget spent to USD 1850.00 and a call of 200.00.
	cents := 100 // the call during the outage, whose outcome is unknown
	for i := range 21 {
		call(ag, fmt.Sprintf(`{"amount":1.%02d,"currency":"USD","customerEmail":"erin@example.com"}`, i+1))
		if i < 20 {
			cents += 101 + i
		}
	}
	for i := 0; cents < 185000; i++ {
		n := min(20000, 185000-cents)
		call(ag, fmt.Sprintf(`{"amount":%d.%02d,"currency":"USD","customerEmail":"buyer%d@example.com"}`, n/100, n%100, i))
		cents += n
	}
	call(ag, `{"amount":200,"currency":"USD","customerEmail":"frank@example.com"}`)
	call(tools.ToolGetCheckoutSession, `{"sessionId":"sess_0123456789abcdef"}`)
	// A checkout session looked up with the other kind's status tool.
	made := regexp.MustCompile(`session (sess_[A-Za-z0-9]+)`).FindStringSubmatch(call(co, `{"amount":10,"currency":"USD","customerEmail":"grace@example.com"}`))
	if made == nil {
		t.Fatalf("the checkout for grace was not created: %v", real)
	}
	call(tools.ToolGetAgentPaymentSession, `{"sessionId":"`+made[1]+`"}`)

	src, err := os.ReadFile(filepath.Join(repoRoot, "gate", "approval.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"CodeApprovalExpired", "CodeApprovalInvalid"} {
		m := regexp.MustCompile(`Sprintf\("([^"]*)", policy\.` + code).FindSubmatch(src)
		if m == nil {
			t.Fatalf("gate/approval.go: no message with policy.%s", code)
		}
		var want string
		switch code {
		case "CodeApprovalExpired":
			want = string(policy.CodeApprovalExpired)
		default:
			want = string(policy.CodeApprovalInvalid)
		}
		real = append(real, strings.Replace(strings.ReplaceAll(string(m[1]), "%s", "…"), "(…)", "("+want+")", 1))
	}

	s := oneSample(t, all, "agent-errors")
	for i, line := range strings.Split(normalizeSample(s.text()), "\n") {
		if strings.HasPrefix(line, "approval declined") {
			continue // TestDocsApprovalQuestionIsReal checks it
		}
		if !slices.ContainsFunc(real, func(r string) bool {
			return elided(line, normalizeSample(r)) || elided(normalizeSample(r), line) && strings.Contains(r, "…")
		}) {
			t.Errorf("%s+%d: no real message is this one:\n%s\nthe real messages:\n%s", s.where, i+1, line, strings.Join(real, "\n"))
		}
	}
}

// declineAll declines every question and keeps the last one.
type declineAll struct{ asked []string }

func (d *declineAll) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	d.asked = append(d.asked, req.Params.Message)
	res := &mcp.ElicitationResult{}
	res.Action = mcp.ElicitationResponseActionDecline
	return res, nil
}

// TestDocsApprovalQuestionIsReal asks docs/approvals.md's question with the binary, under the
// page's policy, to a client that can ask its user, who declines; and reads the threshold
// sentence of create_checkout_session's description.
func TestDocsApprovalQuestionIsReal(t *testing.T) {
	all := docSamples(t)
	pol := oneSample(t, all, "approvals-policy").text()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	u := &declineAll{}
	cli, stderr := approvalsServer(t, path, sandbox.New(), mcp.ProtocolVersion20251125, u)
	text, isErr := toolCall(t, cli, policy.ToolCheckoutSession, `{"amount":250,"currency":"USD","customerEmail":"alice@example.com"}`)
	if !isErr || len(u.asked) != 1 {
		t.Fatalf("asked %d times; the call = %s\nstderr:\n%s", len(u.asked), text, stderr)
	}
	compareSample(t, oneSample(t, all, "approval-question"), u.asked[0])
	// The declined line of docs/tools.md's errors.
	s := oneSample(t, all, "agent-errors")
	found := false
	for _, line := range s.body {
		if strings.HasPrefix(line, "approval declined") {
			found = true
			if !elided(normalizeSample(line), normalizeSample(text)) {
				t.Errorf("%s: the declined message is not\n%s\nbut\n%s", s.where, line, text)
			}
		}
	}
	if !found {
		t.Errorf("%s: no approval declined line", s.where)
	}

	res, err := cli.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	th := oneSample(t, all, "approval-threshold")
	for _, tool := range res.Tools {
		if tool.Name == policy.ToolCheckoutSession && !strings.Contains(tool.Description, th.text()) {
			t.Errorf("%s: create_checkout_session's description does not say this:\n%s\nit is:\n%s", th.where, th.text(), tool.Description)
		}
	}
}
