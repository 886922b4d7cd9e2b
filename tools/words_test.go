package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/policy"
)

// TestTheInstructionsSayWhatTheServerDoes checks the server's instructions
// in each mode: a sandbox moves no real money, production creates real
// payment requests, and a repeated call is answered from the first only
// when the duplicate guard is on.
func TestTheInstructionsSayWhatTheServerDoes(t *testing.T) {
	tests := []struct {
		name          string
		sandbox       bool
		duplicates    time.Duration
		want, wantNot []string
	}{
		{"a sandbox says no real money moves", true, 10 * time.Minute,
			[]string{"Clink sandbox", "move no real money", "within the duplicate window"},
			[]string{"real payment requests"}},
		{"production says the requests are real", false, 10 * time.Minute,
			[]string{"These tools create real payment requests.", "within the duplicate window"},
			[]string{"sandbox", "no real money"}},
		{"without the duplicate guard only an idempotencyKey answers a repeat", false, 0,
			[]string{"real payment requests", "Only a call that repeats an earlier call's idempotencyKey"},
			[]string{"An identical call repeated", "duplicate window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Instructions(tt.sandbox, tt.duplicates)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("the instructions do not say %q:\n%s", w, got)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("the instructions say %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestTheServerGivesTheInstructionsOfItsMode checks that NewServer tells
// an MCP client the instructions of Deps.Sandbox and the policy's
// duplicate guard.
func TestTheServerGivesTheInstructionsOfItsMode(t *testing.T) {
	for _, sandbox := range []bool{true, false} {
		d := testDeps(t, &fakePayments{}, testPolicy(t))
		d.Sandbox = sandbox
		cli, err := client.NewInProcessClient(NewServer(d, "test"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		ctx := context.Background()
		if err := cli.Start(ctx); err != nil {
			t.Fatal(err)
		}
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
		req.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
		res, err := cli.Initialize(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if want := Instructions(sandbox, testPolicy(t).DuplicatesWindow()); res.Instructions != want {
			t.Errorf("sandbox %v: the server's instructions are\n%s\nwant\n%s", sandbox, res.Instructions, want)
		}
	}
}

// descriptionPolicies are policies that differ in what the create tools'
// descriptions must say: the duplicate guard on or off, and the customer
// email rules, with whether a checkout's customerId is refused beside an
// email the policy takes.
var descriptionPolicies = []struct {
	name, customers string
	duplicates      bool
	customerID      string // the sentence on customerId the checkout's description gives
	refused         bool   // whether the policy refuses customerId beside alice@example.com
}{
	{"any email, duplicate guard on", ``, true,
		"customerEmail is required; customerId and referenceCustomerId may be given beside it.", false},
	{"any email, duplicate guard off", ``, false,
		"customerEmail is required; customerId and referenceCustomerId may be given beside it.", false},
	{"an allowlist", `customers: { allow_emails: [alice@example.com] }`, true,
		"customerEmail is required and customerId is refused, since this server restricts customer emails", true},
	{"a deny list", `customers: { deny_emails: [mallory@example.com] }`, false,
		"customerEmail is required and customerId is refused, since this server restricts customer emails", true},
	{"an allowlist and checkouts without an email", `customers: { allow_emails: [alice@example.com], allow_without_email: true }`, true,
		"Identify the customer by customerEmail, customerId or referenceCustomerId (at least one).", false},
}

// TestTheDescriptionsSayWhatThePolicyDoes checks the create tools'
// descriptions under each of descriptionPolicies: what they say of a
// repeated call agrees with the duplicate guard and never contradicts
// itself, and what the checkout's says of customerId is what the policy
// decides.
func TestTheDescriptionsSayWhatThePolicyDoes(t *testing.T) {
	for _, pc := range descriptionPolicies {
		t.Run(pc.name, func(t *testing.T) {
			yaml := "version: 1\ncurrencies:\n  USD: { max_amount: 500 }\n" + pc.customers + "\n"
			if !pc.duplicates {
				yaml += "duplicates: { window: 0 }\n"
			}
			p := parsePolicy(t, yaml)
			if (p.DuplicatesWindow() > 0) != pc.duplicates {
				t.Fatalf("the policy's duplicate window is %v", p.DuplicatesWindow())
			}
			amount, err := policy.ParseMoney("20", "USD")
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&policy.Request{Tool: policy.ToolCheckoutSession, Amount: amount,
				CustomerEmail: "alice@example.com", CustomerID: "cus_1"})
			if refused := d.Code == policy.CodeCustomerIDNotAllowed; refused != pc.refused {
				t.Fatalf("the policy decides %s for customerId beside an allowed email; the test expects refused %v", d.Code, pc.refused)
			}
			for _, tool := range All(testDeps(t, &fakePayments{}, p)) {
				desc := tool.Tool.Description
				if tool.Tool.Name == ToolCheckPaymentPolicy || strings.HasPrefix(tool.Tool.Name, "get_") {
					continue
				}
				say := func(want string, yes bool) {
					t.Helper()
					if strings.Contains(desc, want) != yes {
						t.Errorf("%s: saying %q is %v, want %v:\n%s", tool.Tool.Name, want, !yes, yes, desc)
					}
				}
				say("returns the first call's result", pc.duplicates)
				say("Without an idempotencyKey, each call creates a new session.", !pc.duplicates)
				say("not idempotent", false)
				if tool.Tool.Name == policy.ToolCheckoutSession {
					say(pc.customerID, true)
					say("customerId is refused", pc.refused)
				}
			}
		})
	}
}

// TestNoDescriptionContradictsItself checks every description of every
// tool, and of each of its arguments, under each of descriptionPolicies:
// none says both that each call creates a new session and that a repeat
// returns the first call's result.
func TestNoDescriptionContradictsItself(t *testing.T) {
	for _, pc := range descriptionPolicies {
		yaml := "version: 1\ncurrencies:\n  USD: { max_amount: 500 }\n" + pc.customers + "\n"
		if !pc.duplicates {
			yaml += "duplicates: { window: 0 }\n"
		}
		for _, tool := range All(testDeps(t, &fakePayments{}, parsePolicy(t, yaml))) {
			descs := []string{tool.Tool.Description}
			var schema any
			if err := json.Unmarshal(tool.Tool.RawInputSchema, &schema); err != nil {
				t.Fatal(err)
			}
			collectDescriptions(schema, &descs)
			for _, d := range descs {
				fresh := strings.Contains(d, "not idempotent") || strings.Contains(d, "creates a new session")
				if fresh && strings.Contains(d, "returns the first call's result") {
					t.Errorf("%s, %s: a description contradicts itself: %s", pc.name, tool.Tool.Name, d)
				}
			}
		}
	}
}

// collectDescriptions appends every "description" in a schema to out.
func collectDescriptions(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "description" {
				*out = append(*out, s)
				continue
			}
			collectDescriptions(e, out)
		}
	case []any:
		for _, e := range v {
			collectDescriptions(e, out)
		}
	}
}
