package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// updateGolden rewrites the golden files, as the tools' tests do.
var updateGolden = os.Getenv("UPDATE_GOLDEN") != ""

// checkGolden compares got with testdata/name, or rewrites it with
// UPDATE_GOLDEN set.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestAgentMarkdown(t *testing.T) {
	p, err := Load("testdata/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	standing := p.StandingLimits("bot-1")
	used := make([]int64, len(standing))
	for i, l := range standing {
		used[i] = l.Max / 4 // a quarter spent, rounded down
	}
	used[len(used)-1] = 9 // over the limit: nothing left
	md := p.AgentMarkdown("bot-1", p.DescribeLimits(standing, used))
	checkGolden(t, "agent.golden.md", md)

	t.Run("never names an email address or pattern from the file", func(t *testing.T) {
		for _, md := range []string{md, p.AgentMarkdown("bot-1", nil), p.AgentMarkdown("", nil)} {
			lower := strings.ToLower(md)
			for _, secret := range []string{"@", "alice", "example.org", "example.net", "ceo", "blocked"} {
				if strings.Contains(lower, secret) {
					t.Errorf("AgentMarkdown names %q:\n%s", secret, md)
				}
			}
		}
	})
	t.Run("describes rules without figures when the store's counts are not known", func(t *testing.T) {
		checkGolden(t, "agent-no-counts.golden.md", p.AgentMarkdown("bot-1", nil))
	})
}

func TestAgentMarkdownOfSmallPolicies(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"says a disabled tool is refused",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\ntools: { create_checkout_session: { enabled: false } }\n",
			"\n## create_checkout_session\n\n- Disabled by this server's policy: calls to it are refused.\n"},
		{"says there are no budgets or rate limits",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\n",
			"\n## Budgets and rate limits\n\nNone.\n"},
		{"leaves approvals out without a threshold",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\napprovals: { timeout: 1h }\n",
			"- Enabled.\n- Currencies and per-session limits: USD up to 5.00.\n- Customer email: required; any valid address.\n\n## create_checkout_session"},
		{"leaves approvals out when only a disabled tool has a threshold",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\ntools: { create_checkout_session: { enabled: false, currencies: { USD: { approve_above: 1 } } } }\n",
			"- Disabled by this server's policy: calls to it are refused.\n\n## Budgets"},
		{"says who approves by default",
			"version: 1\ncurrencies: { USD: { max_amount: 5, approve_above: 1 } }\n",
			"\n## Approvals\n\nA session above its currency's approval threshold waits for a person's approval before it is created: the user of your MCP client is asked when the client can ask, otherwise an operator of this server. A request nobody answers within 15m expires, and nothing is created.\n"},
		{"lists only per-customer rules when all rules are per customer",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\nbudgets: [ { currency: USD, window: 1h, max_amount: 10, per: customer } ]\n",
			"\n## Budgets and rate limits\n\nEach customer has an allowance of its own under these rules; a call must fit what is left of its customer's:\n\n- per customer: 10.00 USD per 1h\n\n## Duplicate calls"},
		{"says when duplicates are not detected",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\nduplicates: { window: 0 }\n",
			"\n## Duplicate calls\n\nNot detected: a call creates a session of its own unless it repeats an earlier call's idempotencyKey, which returns that call's result (see the create tools' idempotencyKey argument).\n"},
		{"says dashboard prices are accepted where they are",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\ntools: { create_checkout_session: { allow_dashboard_prices: true } }\n",
			"- priceId and productId are accepted.\n"},
		{"says redirect URLs are refused when no host is allowed",
			"version: 1\ncurrencies: { USD: { max_amount: 5 } }\nurls: { allow_hosts: [] }\n",
			"- Redirect URLs (successUrl, cancelUrl, returnUrl) are not accepted.\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			md := mustParse(t, tc.yaml).AgentMarkdown("", nil)
			if !strings.Contains(md, tc.want) {
				t.Errorf("AgentMarkdown =\n%s\nwant it to contain\n%s", md, tc.want)
			}
		})
	}
	t.Run("quotes the principal's name", func(t *testing.T) {
		md := mustParse(t, "version: 1\ncurrencies: { USD: { max_amount: 5 } }\n").AgentMarkdown("bot\n# injected", nil)
		if !strings.Contains(md, ` Figures are for principal "bot\n# injected".`) || strings.Contains(md, "\n# injected") {
			t.Errorf("AgentMarkdown =\n%s", md)
		}
	})
	t.Run("says no policy is loaded on a nil policy", func(t *testing.T) {
		var p *Policy
		if md := p.AgentMarkdown("", nil); !strings.Contains(md, "every payment call is refused") {
			t.Errorf("AgentMarkdown = %q", md)
		}
	})
}
