package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// demoPolicy is the policy the demo runs under: small enough to read in the
// transcript, with a rule of every kind to show refusing.
//
//go:embed demo-policy.yaml
var demoPolicy []byte

// demoDisabledPolicy is demoPolicy with the checkout tool switched off, to
// show the tool_disabled refusal.
const demoDisabledPolicy = `version: 1
currencies:
  USD: { max_amount: 200 }
tools:
  create_checkout_session: { enabled: false }
`

// demoStep is one call of the demo and what it must do.
type demoStep struct {
	title string
	tool  string
	args  string // raw JSON, sent as written
	want  string // "" for success, else a substring of the refusal (its code)
	// disabled runs the call on the server whose checkout tool is off.
	disabled bool
	// replayed: the call must succeed as a replay, without reaching Clink.
	replayed bool
}

var demoSteps = []demoStep{
	{title: "an agent payment session", tool: policy.ToolAgentPaymentSession,
		args: `{"customerEmail":"alice@example.com","amount":25.5,"currency":"USD"}`},
	{title: "a checkout session with line items", tool: policy.ToolCheckoutSession,
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
	{title: "budget: a call the rolling 24h USD budget has no room left for", tool: policy.ToolCheckoutSession,
		args: `{"amount":199,"currency":"USD","customerEmail":"erin@example.com"}`, want: "budget_exceeded"},

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
	main, err := newDemoApp(demoPolicy, logger)
	if err != nil {
		return err
	}
	defer main.close()
	off, err := newDemoApp([]byte(demoDisabledPolicy), logger)
	if err != nil {
		return err
	}
	defer off.close()

	mainClient, err := connect(ctx, main)
	if err != nil {
		return err
	}
	defer mainClient.Close()
	offClient, err := connect(ctx, off)
	if err != nil {
		return err
	}
	defer offClient.Close()

	fmt.Fprintf(stdout, "clink-mcp %s demo: the MCP server against its built-in Clink sandbox.\n", clink.Version)
	fmt.Fprintln(stdout, "Sessions are simulated; nothing is charged; budgets, rate limits and the audit trail are kept in memory.")
	fmt.Fprintf(stdout, "\nPolicy:\n%s\n", indent(main.policy.Render(), "  "))

	list, err := mainClient.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return fmt.Errorf("demo: tools/list: %v", err)
	}
	fmt.Fprintln(stdout, "Tools:")
	for _, t := range list.Tools {
		fmt.Fprintf(stdout, "  %s (%s)\n", t.Name, t.Title)
	}

	failures, sessions := 0, 0
	for i, step := range demoSteps {
		a, cli := main, mainClient
		if step.disabled {
			a, cli = off, offClient
		}
		before := a.sandbox.Requests()
		fmt.Fprintf(stdout, "\n%d. %s\n   %s %s\n", i+1, step.title, step.tool, step.args)
		res, err := cli.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{
			Name: step.tool, Arguments: json.RawMessage(step.args)}})
		if err != nil {
			return fmt.Errorf("demo: tools/call: %v", err)
		}
		text := tools.ResultText(res)
		upstream := a.sandbox.Requests() - before
		switch {
		case res.IsError:
			fmt.Fprintf(stdout, "   -> refused: %s\n", text)
		default:
			fmt.Fprintf(stdout, "   -> %s\n", text)
		}
		if problem := checkDemoStep(step, res, text, upstream); problem != "" {
			failures++
			fmt.Fprintf(stdout, "   !! unexpected: %s\n", problem)
		}
		sessions += int(upstream)
	}
	if failures > 0 {
		fmt.Fprintf(stderr, "clink-mcp demo: %d of %d calls did not behave as expected\n", failures, len(demoSteps))
		return errFailed
	}
	fmt.Fprintf(stdout, "\nAll %d calls behaved as expected: %d sessions created; no refusal or replay reached Clink.\n",
		len(demoSteps), sessions)
	return nil
}

// checkDemoStep says what is wrong with a step's outcome, or "".
func checkDemoStep(step demoStep, res *mcp.CallToolResult, text string, upstream int64) string {
	if step.replayed {
		if res.IsError || !strings.Contains(text, "Replay") {
			return "the call should have been answered with the earlier result"
		}
		if upstream != 0 {
			return fmt.Sprintf("a replay reached Clink (%d requests)", upstream)
		}
		return ""
	}
	if step.want == "" {
		if res.IsError {
			return "the call should have created a session"
		}
		if upstream != 1 {
			return fmt.Sprintf("the call should have made 1 request to Clink, made %d", upstream)
		}
		return ""
	}
	if !res.IsError {
		return "the call should have been refused"
	}
	if !strings.Contains(text, step.want) {
		return fmt.Sprintf("the refusal should mention %s", step.want)
	}
	if upstream != 0 {
		return fmt.Sprintf("a refused call reached Clink (%d requests)", upstream)
	}
	return ""
}

// newDemoApp wires a sandbox-backed server under the given policy.
func newDemoApp(policyYAML []byte, logger *slog.Logger) (*app, error) {
	p, err := policy.Parse("demo-policy.yaml", policyYAML)
	if err != nil {
		return nil, fmt.Errorf("demo: %v", err)
	}
	return newApp(&config{sandbox: true}, logger, p)
}

// connect starts an initialised in-process MCP client on a's server.
func connect(ctx context.Context, a *app) (*client.Client, error) {
	cli, err := client.NewInProcessClient(a.mcp)
	if err != nil {
		return nil, err
	}
	if err := cli.Start(ctx); err != nil {
		return nil, err
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "clink-mcp-demo", Version: clink.Version}
	if _, err := cli.Initialize(ctx, init); err != nil {
		cli.Close()
		return nil, errors.Join(errors.New("demo: initialize"), err)
	}
	return cli, nil
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
