package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// demoPolicy is the policy the demo runs under: small enough to read in the
// transcript, with rules of most kinds to show refusing (it sets no
// redirect hosts and no tool budget).
//
//go:embed demo-policy.yaml
var demoPolicy []byte

// demoDisabledPolicy is the policy of the demo's second server, for the
// steps marked disabled: a short one with the checkout tool switched off,
// to show the tool_disabled refusal. The transcript prints it before the
// first such step.
//
//go:embed demo-policy-checkout-off.yaml
var demoDisabledPolicy []byte

// The demo policies' names, as the transcript shows them.
const (
	demoPolicyName         = "demo-policy.yaml"
	demoDisabledPolicyName = "demo-policy-checkout-off.yaml"
)

// demoStep is one call of the demo and what it must do.
type demoStep struct {
	title string
	tool  string
	args  string // raw JSON, sent as written once {{name}} is replaced by the session kept as name
	want  string // "" for success, else a substring of the refusal (its code)
	// says are substrings the result's text must hold too: what is left
	// of a budget, the rule that refuses.
	says []string
	// fields are values the structured content must hold, by field name,
	// as fmt.Sprint prints them.
	fields map[string]string
	// user is how the demo's user answers the approval question the call
	// must put to them (demoApprove, demoDecline); "" when the call must
	// ask nothing. question is a substring the question must hold.
	user     string
	question string
	// keep names the session a successful create makes, for later steps'
	// args to use as {{keep}}.
	keep string
	// resource, instead of a tool call: the resource to read; the lines
	// of its sections named by show are printed.
	resource string
	show     []string
	// disabled runs the call on the server whose checkout tool is off.
	disabled bool
	// replayed: the call must succeed as a replay, without reaching Clink.
	replayed bool
}

// The demo user's answers to approval questions.
const (
	demoApprove = "approve"
	demoDecline = "decline"
)

var demoSteps = []demoStep{
	{title: "an agent payment session", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amount":25.5,"currency":"USD"}`},
	{title: "dry run: the checkout below, checked before it is made", tool: tools.ToolCheckPaymentPolicy,
		args:   `{"tool":"create_checkout_session","arguments":{"amount":59.98,"currency":"USD","customerEmail":"bob@shop.example.org","priceDataList":[{"name":"Team plan, 1 month","unitAmount":29.99,"quantity":2}],"successUrl":"https://shop.example.com/thanks"}}`,
		fields: map[string]string{"allowed": "true", "code": "allowed", "needsApproval": "false"},
		says:   []string{"rolling 24h USD budget: 274.50 USD left of 300.00 USD"}},
	{title: "a checkout session with line items", tool: policy.ToolCheckoutSession, keep: "bob",
		args: `{"amount":59.98,"currency":"USD","customerEmail":"bob@shop.example.org","priceDataList":[{"name":"Team plan, 1 month","unitAmount":29.99,"quantity":2}],"successUrl":"https://shop.example.com/thanks"}`},

	{title: "policy: a currency not on the allowlist", tool: policy.ToolCheckoutSession,
		args: `{"amount":20,"currency":"GBP","customerEmail":"alice@example.com"}`, want: "currency_not_allowed"},
	{title: "policy: over the per-session cap", tool: policy.ToolCheckoutSession,
		args: `{"amount":900,"currency":"USD","customerEmail":"alice@example.com"}`, want: "amount_over_cap"},
	{title: "policy: over the agent tool's narrower cap", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amount":75,"currency":"USD"}`, want: "amount_over_cap"},
	{title: "policy: line items worth more than the cap, under a small total", tool: policy.ToolCheckoutSession,
		args: `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","priceDataList":[{"name":"Server","unitAmount":99,"quantity":3}]}`, want: "amount_over_cap"},
	{title: "policy: under the minimum", tool: policy.ToolCheckoutSession,
		args: `{"amount":0.75,"currency":"USD","customerEmail":"alice@example.com"}`, want: "amount_under_min"},
	{title: "policy: a customer email not on the allowlist", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"mallory@example.com.evil.test","amount":10,"currency":"USD"}`, want: "email_not_allowed"},
	{title: "policy: a denied customer email", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"blocked@example.com","amount":10,"currency":"USD"}`, want: "email_not_allowed"},
	{title: "policy: a checkout with no email, which this policy requires", tool: policy.ToolCheckoutSession,
		args: `{"amount":10,"currency":"USD","referenceCustomerId":"user-1042"}`, want: "email_required"},
	{title: "policy: an allowlisted email beside another customer's ID", tool: policy.ToolCheckoutSession,
		args: `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","customerId":"cus_someone_else"}`, want: "customer_id_not_allowed"},
	{title: "policy: a price from the Clink dashboard, whose amount the policy cannot see", tool: policy.ToolCheckoutSession,
		args: `{"amount":1,"currency":"USD","customerEmail":"alice@example.com","priceId":"price_enterprise"}`, want: "dashboard_price_not_allowed"},
	{title: "policy: a tool the operator switched off", tool: policy.ToolCheckoutSession, disabled: true,
		args: `{"amount":10,"currency":"USD","customerEmail":"alice@example.com"}`, want: "tool_disabled"},

	{title: "duplicates: the first call again, as an agent might retry it", tool: policy.ToolAgentPaymentSession, replayed: true,
		args: `{"customerEmail":"alice@example.com","amount":25.5,"currency":"USD"}`},
	{title: "duplicates: a call with an idempotency key", tool: policy.ToolCheckoutSession,
		args: `{"amount":20,"currency":"USD","customerEmail":"dave@example.com","idempotencyKey":"order-2026-0042"}`},
	{title: "duplicates: the same key with other arguments", tool: policy.ToolCheckoutSession,
		args: `{"amount":21,"currency":"USD","customerEmail":"dave@example.com","idempotencyKey":"order-2026-0042"}`, want: "idempotency_key_reused"},
	{title: "rate limit: a first call for carol", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"carol@example.com","amount":5,"currency":"USD"}`},
	{title: "rate limit: a second call for carol", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"carol@example.com","amount":6,"currency":"USD"}`},
	{title: "rate limit: a third call for carol within the minute", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"carol@example.com","amount":7,"currency":"USD"}`, want: "rate_limited"},

	{title: "approval: a dry run of a checkout above the 100 USD approval threshold", tool: tools.ToolCheckPaymentPolicy,
		args:   `{"tool":"create_checkout_session","arguments":{"amount":150,"currency":"USD","customerEmail":"frank@example.com"}}`,
		fields: map[string]string{"allowed": "true", "code": "approval_required", "needsApproval": "true"},
		says:   []string{"would need a person's approval"}},
	{title: "approval: that checkout, which the user declines", tool: policy.ToolCheckoutSession,
		user: demoDecline, question: "USD 150.00 for frank@example.com",
		args: `{"amount":150,"currency":"USD","customerEmail":"frank@example.com"}`, want: "approval_declined"},
	{title: "approval: a checkout of 120 USD, which the user approves", tool: policy.ToolCheckoutSession,
		user: demoApprove, question: "USD 120.00 for grace@example.com",
		args: `{"amount":120,"currency":"USD","customerEmail":"grace@example.com"}`, says: []string{"120.00 USD"}},

	{title: "budget: a dry run of the checkout below, which the budget has no room left for", tool: tools.ToolCheckPaymentPolicy,
		args:   `{"tool":"create_checkout_session","arguments":{"amount":199,"currency":"USD","customerEmail":"erin@example.com"}}`,
		fields: map[string]string{"allowed": "false", "code": "budget_exceeded", "needsApproval": "false"},
		says:   []string{"rolling 24h USD budget: 63.52 USD left of 300.00 USD"}},
	{title: "budget: a call the rolling 24h USD budget has no room left for", tool: policy.ToolCheckoutSession,
		args: `{"amount":199,"currency":"USD","customerEmail":"erin@example.com"}`, want: "budget_exceeded", says: []string{"63.52 USD left"}},

	{title: "status: the checkout session created for bob above", tool: tools.ToolGetCheckoutSession,
		args:   `{"sessionId":"{{bob}}"}`,
		fields: map[string]string{"sessionId": "{{bob}}", "status": "open", "paymentStatus": "unpaid", "amount": "59.98", "currency": "USD"}},
	{title: "status: a session this server did not create", tool: tools.ToolGetCheckoutSession,
		args: `{"sessionId":"sess_MADE_ELSEWHERE_0001"}`, want: "session_not_found"},
	{title: "resource: the agent's view of its limits", resource: tools.PolicyURI,
		show: []string{"## Approvals", "## Budgets and rate limits"},
		says: []string{"| 300.00 USD | 236.48 USD | 63.52 USD |", "Sessions above USD 100.00 need a person's approval", "nobody answers within 15m"}},

	{title: "validation: a misspelt argument", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amout":10,"currency":"USD"}`, want: `unknown argument "amout"`},
	{title: "validation: the same argument twice, in two cases", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amount":10,"Amount":1000,"currency":"USD"}`, want: `did you mean "amount"`},
	{title: "validation: an amount as a string", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amount":"10","currency":"USD"}`, want: "must be a number"},
	{title: "validation: more decimals than the currency has", tool: policy.ToolCheckoutSession,
		args: `{"amount":10.005,"currency":"USD","customerEmail":"alice@example.com"}`, want: `argument "amount"`},
	{title: "validation: not an email address", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice at example.com","amount":10,"currency":"USD"}`, want: `argument "customerEmail"`},
	{title: "validation: embedded checkout without a return URL", tool: policy.ToolCheckoutSession,
		args: `{"amount":10,"currency":"USD","customerEmail":"alice@example.com","uiMode":"elements"}`, want: `"returnUrl" is required`},
}

// demoCommand runs the server against the built-in sandbox through a real
// in-process MCP client and prints a transcript. It fails when any call did
// not behave as the transcript says it should.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("demo takes no arguments, got %q", args[0])
	}
	logger := slog.New(slog.DiscardHandler)
	main, err := newDemoApp(demoPolicyName, demoPolicy, logger)
	if err != nil {
		return err
	}
	defer main.close()
	off, err := newDemoApp(demoDisabledPolicyName, demoDisabledPolicy, logger)
	if err != nil {
		return err
	}
	defer off.close()

	// The main client declares elicitation, so the server asks its scripted
	// user to approve payments above the threshold.
	user := &demoUser{out: stdout}
	mainClient, err := connect(ctx, main, client.WithElicitationHandler(user))
	if err != nil {
		return err
	}
	defer mainClient.Close()
	offClient, err := connect(ctx, off)
	if err != nil {
		return err
	}
	defer offClient.Close()

	fmt.Fprintf(stdout, "clink-mcp %s demo: the MCP server against its built-in Clink sandbox.\n", build.Version)
	fmt.Fprintln(stdout, "Sessions are simulated; nothing is charged; budgets, rate limits, approvals and the audit trail are kept in memory.")
	fmt.Fprintln(stdout, "The client declares elicitation; a scripted user answers its approval questions as each step says.")
	var offSteps []string
	for i, step := range demoSteps {
		if step.disabled {
			offSteps = append(offSteps, fmt.Sprint(i+1))
		}
	}
	if len(offSteps) > 0 {
		fmt.Fprintf(stdout, "Every step runs under the policy below except step %s, which runs on a second server under a second policy, printed with it.\n",
			strings.Join(offSteps, ", "))
	}
	fmt.Fprintf(stdout, "\nPolicy:\n%s\n", indent(demoRender(main.policy), "  "))

	list, err := mainClient.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return fmt.Errorf("demo: tools/list: %v", err)
	}
	fmt.Fprintln(stdout, "Tools:")
	for _, t := range list.Tools {
		fmt.Fprintf(stdout, "  %s (%s)\n", t.Name, t.Title)
	}

	kept := map[string]string{} // session IDs by demoStep.keep
	failures, sessions := 0, int64(0)
	offShown := false
	for i, step := range demoSteps {
		fmt.Fprintf(stdout, "\n%d. %s\n", i+1, step.title)
		if step.disabled && !offShown {
			fmt.Fprintf(stdout, "   On a second server, under this policy:\n%s\n", indent(demoRender(off.policy), "     "))
			offShown = true
		}
		var problem string
		if step.resource != "" {
			problem, err = demoRead(ctx, mainClient, step, stdout)
		} else {
			a, cli := main, mainClient
			if step.disabled {
				a, cli = off, offClient
			}
			var created int64
			created, problem, err = demoCall(ctx, a, cli, user, step, kept, stdout)
			sessions += created
		}
		if err != nil {
			return err
		}
		if problem != "" {
			failures++
			fmt.Fprintf(stdout, "   !! unexpected: %s\n", problem)
		}
	}
	// The sandbox holds every session any call made, counted or not.
	if held := int64(main.sandbox.SessionCount() + off.sandbox.SessionCount()); held != sessions {
		failures++
		fmt.Fprintf(stdout, "\n!! unexpected: the calls above created %d sessions, the sandbox holds %d\n", sessions, held)
	}
	if failures > 0 {
		fmt.Fprintf(stderr, "clink-mcp demo: %d of %d steps did not behave as expected\n", failures, len(demoSteps))
		return errFailed
	}
	fmt.Fprintf(stdout, "\nAll %d steps behaved as expected: %d sessions created; no refusal, dry run, declined approval or replay reached Clink.\n",
		len(demoSteps), sessions)
	return nil
}

// demoCall makes step's tool call on cli, prints it and its result, and
// checks it. It returns how many sessions the call created in a's sandbox
// and what is wrong with its outcome, or "".
func demoCall(ctx context.Context, a *app, cli *client.Client, user *demoUser, step demoStep, kept map[string]string, out io.Writer) (created int64, problem string, err error) {
	args := expandKept(step.args, kept)
	fmt.Fprintf(out, "   %s %s\n", step.tool, args)
	user.expect(step.user)
	before := a.sandbox.Requests()
	res, err := cli.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{
		Name: step.tool, Arguments: json.RawMessage(args)}})
	if err != nil {
		return 0, "", fmt.Errorf("demo: tools/call: %v", err)
	}
	o := demoOutcome{res: res, text: tools.ResultText(res), upstream: a.sandbox.Requests() - before}
	o.questions = user.asked()
	if res.IsError {
		fmt.Fprintf(out, "   -> refused: %s\n", o.text)
	} else {
		fmt.Fprintf(out, "   -> %s\n", o.text)
	}
	if isCreateTool(step.tool) {
		created = o.upstream
	}
	problem = checkDemoStep(step, o, kept)
	if problem == "" && step.keep != "" {
		id, _ := structuredOf(res)["sessionId"].(string)
		if id == "" {
			problem = "the result names no sessionId"
		}
		kept[step.keep] = id
	}
	return created, problem, nil
}

// demoOutcome is what a step's call did.
type demoOutcome struct {
	res       *mcp.CallToolResult
	text      string   // the result's text
	upstream  int64    // requests sent to Clink
	questions []string // the questions put to the user
}

// demoRead reads step's resource on cli, prints the sections step.show
// names, and checks it holds what step.says. It returns what is wrong, or "".
func demoRead(ctx context.Context, cli *client.Client, step demoStep, out io.Writer) (string, error) {
	fmt.Fprintf(out, "   resources/read %s\n", step.resource)
	res, err := cli.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: step.resource}})
	if err != nil {
		return "", fmt.Errorf("demo: resources/read: %v", err)
	}
	var b strings.Builder
	for _, c := range res.Contents {
		if t, ok := c.(mcp.TextResourceContents); ok {
			b.WriteString(t.Text)
		}
	}
	text := b.String()
	shown := markdownSections(text, step.show)
	fmt.Fprintf(out, "   -> %d lines of Markdown, among them:\n%s", strings.Count(text, "\n"), indent(shown, "      "))
	if shown == "" {
		return fmt.Sprintf("the resource has none of the sections %q", step.show), nil
	}
	for _, want := range step.says {
		if !strings.Contains(text, want) {
			return fmt.Sprintf("the resource should say %q", want), nil
		}
	}
	return "", nil
}

// checkDemoStep says what is wrong with a step's outcome, or "". kept
// holds the sessions earlier steps kept.
func checkDemoStep(step demoStep, o demoOutcome, kept map[string]string) string {
	res, text, upstream := o.res, o.text, o.upstream
	switch asked := len(o.questions); {
	case step.user == "" && asked > 0:
		return fmt.Sprintf("the call asked the user to approve it %d times, and should not have", asked)
	case step.user != "" && asked != 1:
		return fmt.Sprintf("the call should have asked the user once, asked %d times", asked)
	case step.user != "" && !strings.Contains(o.questions[0], step.question):
		return fmt.Sprintf("the question should say %q", step.question)
	}
	switch {
	case step.replayed:
		if res.IsError || !strings.Contains(text, "Replay") {
			return "the call should have been answered with the earlier result"
		}
		if upstream != 0 {
			return fmt.Sprintf("a replay reached Clink (%d requests)", upstream)
		}
	case step.want == "":
		if res.IsError && isCreateTool(step.tool) {
			return "the call should have created a session"
		}
		if res.IsError {
			return "the call should have succeeded"
		}
		if want := wantUpstream(step.tool); upstream != want {
			return fmt.Sprintf("the call should have made %d requests to Clink, made %d", want, upstream)
		}
	default:
		if !res.IsError {
			return "the call should have been refused"
		}
		if !strings.Contains(text, step.want) {
			return fmt.Sprintf("the refusal should mention %s", step.want)
		}
		if upstream != 0 {
			return fmt.Sprintf("a refused call reached Clink (%d requests)", upstream)
		}
	}
	for _, want := range step.says {
		if !strings.Contains(text, want) {
			return fmt.Sprintf("the result should say %q", want)
		}
	}
	got := structuredOf(res)
	for _, name := range slices.Sorted(maps.Keys(step.fields)) {
		want := expandKept(step.fields[name], kept)
		if v, ok := got[name]; !ok || fmt.Sprint(v) != want {
			return fmt.Sprintf("the result's %s should be %s, is %v", name, want, v)
		}
	}
	return ""
}

// isCreateTool reports whether tool creates sessions.
func isCreateTool(tool string) bool {
	return tool == policy.ToolAgentPaymentSession || tool == policy.ToolCheckoutSession
}

// wantUpstream is how many requests a successful call of tool sends Clink:
// one to create or look up a session, none for a dry run.
func wantUpstream(tool string) int64 {
	switch tool {
	case policy.ToolAgentPaymentSession, policy.ToolCheckoutSession, tools.ToolGetCheckoutSession, tools.ToolGetAgentPaymentSession:
		return 1
	}
	return 0
}

// structuredOf returns a result's structured content as JSON objects
// decode, or nil.
func structuredOf(res *mcp.CallToolResult) map[string]any {
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// expandKept replaces each {{name}} in s by the session kept as name.
func expandKept(s string, kept map[string]string) string {
	for name, id := range kept {
		s = strings.ReplaceAll(s, "{{"+name+"}}", id)
	}
	return s
}

// markdownSections returns the sections of md whose heading lines are in
// headings, each up to the next heading of its level, without trailing
// blank lines, separated by one blank line.
func markdownSections(md string, headings []string) string {
	var parts []string
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if !slices.Contains(headings, l) {
			continue
		}
		level := l[:strings.IndexByte(l, ' ')+1]
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], level) {
			j++
		}
		parts = append(parts, strings.TrimRight(strings.Join(lines[i:j], "\n"), "\n"))
	}
	return strings.Join(parts, "\n\n")
}

// demoUser is the demo's scripted user: it prints the question the server
// puts to it into the transcript and answers as the step says. A question
// no step expects is declined.
type demoUser struct {
	out       io.Writer
	mu        sync.Mutex
	answer    string   // demoApprove, demoDecline or ""
	questions []string // since the last expect
}

// expect sets the answer to the next questions and forgets earlier ones.
func (u *demoUser) expect(answer string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answer, u.questions = answer, nil
}

// asked returns the questions put since the last expect.
func (u *demoUser) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.questions)
}

// Elicit implements client.ElicitationHandler.
func (u *demoUser) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.questions = append(u.questions, req.Params.Message)
	fmt.Fprintf(u.out, "   [server asks the user] %s\n", req.Params.Message)
	res := &mcp.ElicitationResult{}
	if u.answer == demoApprove {
		res.Action, res.Content = mcp.ElicitationResponseActionAccept, map[string]any{"approve": true}
		fmt.Fprintln(u.out, "   [the user approves]")
	} else {
		res.Action = mcp.ElicitationResponseActionDecline
		fmt.Fprintln(u.out, "   [the user declines]")
	}
	return res, nil
}

// newDemoApp wires a sandbox-backed server under the policy policyYAML,
// named name.
func newDemoApp(name string, policyYAML []byte, logger *slog.Logger) (*app, error) {
	p, err := policy.Parse(name, policyYAML)
	if err != nil {
		return nil, fmt.Errorf("demo: %v", err)
	}
	return newApp(&config{sandbox: true}, logger, p)
}

// connect starts an initialised in-process MCP client on a's server, with
// the client options opts (an elicitation handler).
func connect(ctx context.Context, a *app, opts ...client.ClientOption) (*client.Client, error) {
	cli, err := client.NewInProcessClientWithOptions(a.mcp, opts...)
	if err != nil {
		return nil, err
	}
	if err := cli.Start(ctx); err != nil {
		return nil, err
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "clink-mcp-demo", Version: build.Version}
	if _, err := cli.Initialize(ctx, init); err != nil {
		cli.Close()
		return nil, errors.Join(errors.New("demo: initialize"), err)
	}
	return cli, nil
}

// demoRender is p's rendering with its store line telling the truth about
// the demo: served, the policy would use a file; the demo keeps its state
// in memory, as the sandbox does.
func demoRender(p *policy.Policy) string {
	lines := strings.Split(p.Render(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Store: ") {
			lines[i] = "Store: in memory, for the demo"
		}
	}
	return strings.Join(lines, "\n")
}

// indent prefixes every non-empty line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
