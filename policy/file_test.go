package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadReadsTheExampleFile(t *testing.T) {
	t.Setenv("HOME", "/home/operator")
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source() != "testdata/example.yaml" {
		t.Errorf("Source() = %q", p.Source())
	}
	want := `Policy: testdata/example.yaml
Currencies and per-session limits:
  EUR up to 400.00
  JPY up to 50000
  USD 1.00–500.00
Approvals: none (no approve_above)
Customer emails:
  allowed: alice@example.com, *@example.org, *@*.example.net
  denied (wins over allowed): ceo@example.org
  checkout without an email: refused
Redirect URLs (successUrl, cancelUrl, returnUrl): any host
Budgets (rolling windows, all tools together):
  USD 2000.00 per 24h
  per customer: USD 300.00 per 1h
Rate limits (rolling windows, all tools together):
  at most 10 calls per 1m
  per customer: at most 20 calls per 1h
Duplicate calls: an identical call within 10m returns the first call's result instead of creating another session
Tools:
  create_agent_payment_session: USD 1.00–50.00
  create_checkout_session: EUR up to 400.00, JPY up to 50000, USD 1.00–500.00 (the global limits)
    own budget: USD 500.00 per 24h
Store: /home/operator/.local/state/clink-mcp/state.db
`
	if diff := cmp.Diff(want, p.Render()); diff != "" {
		t.Errorf("Render() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadReportsEveryProblemWithFileAndLine(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{
			"reports duplicate keys with the line of the first",
			"duplicate-keys.yaml",
			[]string{
				`4: currencies: duplicate key "USD" (first at line 3)`,
				`7: customers: duplicate key "allow_without_email" (first at line 6)`,
			},
		},
		{
			"reports every problem of a file at once",
			"many-problems.yaml",
			[]string{
				`3: USD max_amount: amount "10.005" has more decimals than USD allows (2)`,
				`4: EUR has no max_amount; every currency needs a per-session cap`,
				`5: currencies: currency "usd" must be written in upper case`,
				`6: GBP min_amount 20.00 is above max_amount 10.00`,
				`7: currencies: currency XAU is not legal tender for payments (metals, special drawing rights, fund, testing and withdrawn codes are refused)`,
				`9: customers: allow_emails: email pattern "a*@example.com" is malformed: use an exact address, *@domain or *@*.domain`,
				`9: customers: allow_emails: email pattern "*@*" is malformed: use an exact address, *@domain or *@*.domain`,
				`9: customers: allow_emails: email pattern "*" is malformed: use an exact address, *@domain or *@*.domain`,
				`11: tools: unknown key "create_refund" (known keys: create_agent_payment_session, create_checkout_session)`,
			},
		},
		{
			"reports tool rules that widen the global ones",
			"tool-widens.yaml",
			[]string{
				`7: tool create_agent_payment_session: USD max_amount 150.00 is above the global max_amount 100.00; a tool can only narrow the global rules`,
				`7: tool create_agent_payment_session: USD min_amount 0.50 is below the global min_amount 1.00; a tool can only narrow the global rules`,
				`8: tool create_agent_payment_session: EUR is not in the global currencies list; a tool can only narrow the global rules`,
				`9: tool create_checkout_session: unknown key "colour" (known keys: enabled, currencies, budgets, allow_dashboard_prices)`,
				`9: tool create_checkout_session: enabled must be true or false`,
			},
		},
		{
			// What refers to a currency whose entry had an error says
			// nothing more: "EUR is not in the global currencies list"
			// would send the operator to mend the wrong line.
			"reports a broken currency entry once, not again where it is used",
			"broken-entry.yaml",
			[]string{
				`4: EUR max_amount: amount "10.005" has more decimals than EUR allows (2)`,
				`11: tool create_checkout_session: GBP is not in the global currencies list; a tool can only narrow the global rules`,
				`12: tool create_checkout_session: USD max_amount: amount "50.001" has more decimals than USD allows (2)`,
				`15: tool create_checkout_session: budgets: GBP is not in the global currencies list; a budget needs a currency agents may use`,
			},
		},
		{
			"reports an unsupported version and keys this version does not know",
			"unknown-key.yaml",
			[]string{
				`1: version must be 1, the only version of this format`,
				`4: the top level: unknown key "spend_limits" (known keys: version, currencies, customers, urls, budgets, rate_limits, duplicates, approvals, store, tools)`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", tc.file)
			p, err := Load(path)
			if p != nil || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Load(%q) = %v, %v; want an ErrInvalidPolicy", path, p, err)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = path + ":" + w
			}
			if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100, min_amount: 1 }\n"
	cases := []struct{ name, yaml, want string }{
		{"refuses an empty file", "", "f.yaml: the file is empty; a policy needs at least version: 1 and currencies"},
		{"refuses a file of comments only", "# nothing\n", "f.yaml: the file is empty; a policy needs at least version: 1 and currencies"},
		{"refuses broken YAML with its line", "version: 1\ncurrencies: [\n", "f.yaml:2: invalid YAML: did not find expected node content"},
		{"refuses a second YAML document", head + "---\nversion: 1\n", "f.yaml:4: a second YAML document; a policy file holds exactly one"},
		{"refuses a top level that is not a mapping", "- version: 1\n", "f.yaml:1: the top level must be a mapping (key: value)"},
		{"refuses a file without version", "currencies:\n  USD: { max_amount: 1 }\n", "f.yaml:1: version is missing; this format is version: 1"},
		{"refuses version 2", "version: 2\ncurrencies:\n  USD: { max_amount: 1 }\n", "f.yaml:1: version must be 1, the only version of this format"},
		{"refuses a quoted version", "version: \"1\"\ncurrencies:\n  USD: { max_amount: 1 }\n", "f.yaml:1: version must be 1, the only version of this format"},
		{"refuses a file without currencies", "version: 1\n", "f.yaml:1: currencies is missing: list the currencies agents may use, each with a max_amount"},
		{"refuses an empty currencies list", "version: 1\ncurrencies: {}\n", "f.yaml:2: currencies lists no currency; list the currencies agents may use, each with a max_amount"},
		{"refuses currencies given as a list", "version: 1\ncurrencies: [USD]\n", "f.yaml:2: currencies must be a mapping (key: value)"},
		{"refuses a currency with no max_amount", "version: 1\ncurrencies:\n  USD: { min_amount: 1 }\n", "f.yaml:3: USD has no max_amount; every currency needs a per-session cap"},
		{"refuses a currency with no settings", "version: 1\ncurrencies:\n  USD:\n", "f.yaml:3: USD must be a mapping (key: value)"},
		{"refuses a min_amount above max_amount", "version: 1\ncurrencies:\n  USD: { max_amount: 10, min_amount: 10.01 }\n", "f.yaml:3: USD min_amount 10.01 is above max_amount 10.00"},
		{"refuses an amount too precise for its currency", "version: 1\ncurrencies:\n  JPY: { max_amount: 100.5 }\n", `f.yaml:3: JPY max_amount: amount "100.5" has more decimals than JPY allows (0)`},
		{"refuses a quoted amount too precise for its currency", "version: 1\ncurrencies:\n  KWD: { max_amount: \"1.2345\" }\n", `f.yaml:3: KWD max_amount: amount "1.2345" has more decimals than KWD allows (3)`},
		{"refuses a zero cap", "version: 1\ncurrencies:\n  USD: { max_amount: 0 }\n", `f.yaml:3: USD max_amount: amount "0" must be greater than zero`},
		{"refuses a negative cap", "version: 1\ncurrencies:\n  USD: { max_amount: -5 }\n", `f.yaml:3: USD max_amount: amount "-5" is negative; it must be greater than zero`},
		{"refuses an infinite cap in YAML spelling", "version: 1\ncurrencies:\n  USD: { max_amount: .inf }\n", `f.yaml:3: USD max_amount: amount "Infinity" is infinite`},
		{"refuses a NaN cap in YAML spelling", "version: 1\ncurrencies:\n  USD: { max_amount: .NaN }\n", `f.yaml:3: USD max_amount: amount "NaN" is not a number`},
		{"refuses an octal-looking cap", "version: 1\ncurrencies:\n  USD: { max_amount: 0500 }\n", `f.yaml:3: USD max_amount: amount "0500" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a hexadecimal cap", "version: 1\ncurrencies:\n  USD: { max_amount: 0x10 }\n", `f.yaml:3: USD max_amount: amount "0x10" is not a plain decimal number (write it like 19.99 or 1e3)`},
		{"refuses a boolean cap", "version: 1\ncurrencies:\n  USD: { max_amount: true }\n", "f.yaml:3: USD max_amount must be a number, not bool"},
		{"refuses a cap given as a list", "version: 1\ncurrencies:\n  USD: { max_amount: [1] }\n", "f.yaml:3: USD max_amount must be a number"},
		{"refuses an absurd cap", "version: 1\ncurrencies:\n  USD: { max_amount: 1e20 }\n", `f.yaml:3: USD max_amount: amount "1e20" is too large (at most 10000000000000.00 USD)`},
		{"refuses an unknown key in a currency", "version: 1\ncurrencies:\n  USD: { max_amount: 1, max: 2 }\n", `f.yaml:3: USD: unknown key "max" (known keys: max_amount, min_amount, approve_above)`},
		{"refuses a lower-case currency", "version: 1\ncurrencies:\n  usd: { max_amount: 1 }\n", `f.yaml:3: currencies: currency "usd" must be written in upper case`},
		{"refuses an unknown currency", "version: 1\ncurrencies:\n  ABC: { max_amount: 1 }\n", `f.yaml:3: currencies: currency "ABC" is not an ISO 4217 currency code`},
		{"refuses a testing currency", "version: 1\ncurrencies:\n  XTS: { max_amount: 1 }\n", "f.yaml:3: currencies: currency XTS is not legal tender for payments (metals, special drawing rights, fund, testing and withdrawn codes are refused)"},
		{"refuses a numeric key", "version: 1\ncurrencies:\n  840: { max_amount: 1 }\n", `f.yaml:3: currencies: keys must be strings (quote "840")`},
		{"refuses a YAML alias", "version: 1\ncurrencies:\n  USD: &cap { max_amount: 1 }\n  EUR: *cap\n", "f.yaml:4: YAML aliases (*cap) are not supported; write the value out"},
		{"refuses a YAML merge key", "version: 1\ncurrencies:\n  USD: &cap { max_amount: 1 }\n  EUR: { <<: *cap }\n", "f.yaml:4: YAML aliases (*cap) are not supported; write the value out"},
		{"refuses an unknown key under customers", head + "customers:\n  allow: [a@example.com]\n", `f.yaml:5: customers: unknown key "allow" (known keys: allow_emails, deny_emails, allow_without_email)`},
		{"refuses allow_emails left empty", head + "customers:\n  allow_emails:\n", "f.yaml:5: customers: allow_emails must be a list of addresses or patterns; remove it to allow any email"},
		{"refuses deny_emails given as one string", head + "customers:\n  deny_emails: ceo@example.org\n", "f.yaml:5: customers: deny_emails must be a list of addresses or patterns"},
		{"refuses a malformed email pattern", head + "customers:\n  deny_emails: [\"a*@x.com\"]\n", `f.yaml:5: customers: deny_emails: email pattern "a*@x.com" is malformed: use an exact address, *@domain or *@*.domain`},
		{"refuses a pattern that is not a string", head + "customers:\n  deny_emails: [{a: b}]\n", "f.yaml:5: customers: deny_emails: each entry must be an address or a pattern like *@example.com"},
		{"refuses an address listed twice after normalisation", head + "customers:\n  allow_emails: [alice@example.com, Alice@EXAMPLE.com]\n", "f.yaml:5: customers: allow_emails: alice@example.com is listed twice"},
		{"refuses allow_without_email that is not a boolean", head + "customers:\n  allow_without_email: yes\n", "f.yaml:5: customers: allow_without_email must be true or false"},
		{"refuses an unknown tool", head + "tools:\n  refund_payment: { enabled: true }\n", `f.yaml:5: tools: unknown key "refund_payment" (known keys: create_agent_payment_session, create_checkout_session)`},
		{"refuses a tool entry that is not a mapping", head + "tools:\n  create_checkout_session: true\n", "f.yaml:5: tool create_checkout_session must be a mapping (key: value)"},
		{"refuses a tool currency not in the global list", head + "tools:\n  create_checkout_session: { currencies: { EUR: { max_amount: 1 } } }\n", "f.yaml:5: tool create_checkout_session: EUR is not in the global currencies list; a tool can only narrow the global rules"},
		{"refuses a tool cap above the global cap", head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 100.01 } } }\n", "f.yaml:5: tool create_checkout_session: USD max_amount 100.01 is above the global max_amount 100.00; a tool can only narrow the global rules"},
		{"refuses a tool minimum below the global minimum", head + "tools:\n  create_checkout_session: { currencies: { USD: { min_amount: 0.99 } } }\n", "f.yaml:5: tool create_checkout_session: USD min_amount 0.99 is below the global min_amount 1.00; a tool can only narrow the global rules"},
		{"refuses a tool minimum above the tool cap", head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 5, min_amount: 6 } } }\n", "f.yaml:5: tool create_checkout_session: USD min_amount 6.00 is above max_amount 5.00"},
		{"refuses a tool minimum above the inherited global cap", head + "tools:\n  create_checkout_session: { currencies: { USD: { min_amount: 101 } } }\n", "f.yaml:5: tool create_checkout_session: USD min_amount 101.00 is above max_amount 100.00"},
		{"refuses a tool with an empty currencies list", head + "tools:\n  create_checkout_session: { currencies: {} }\n", "f.yaml:5: tool create_checkout_session: currencies lists no currency; remove it to use the global list, or set enabled: false"},
		{"refuses a tool amount too precise for its currency", head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 9.999 } } }\n", `f.yaml:5: tool create_checkout_session: USD max_amount: amount "9.999" has more decimals than USD allows (2)`},
		{"refuses an unknown key under a tool", head + "tools:\n  create_checkout_session: { enable: false }\n", `f.yaml:5: tool create_checkout_session: unknown key "enable" (known keys: enabled, currencies, budgets, allow_dashboard_prices)`},
		{"refuses dashboard prices on the agent tool, which takes none", head + "tools:\n  create_agent_payment_session: { allow_dashboard_prices: true }\n", `f.yaml:5: tool create_agent_payment_session: allow_dashboard_prices applies only to create_checkout_session`},
		{"refuses a dashboard price switch that is not a boolean", head + "tools:\n  create_checkout_session: { allow_dashboard_prices: yes }\n", `f.yaml:5: tool create_checkout_session: allow_dashboard_prices must be true or false`},
		{"refuses a top-level key this version does not have", head + "limits: []\n", `f.yaml:4: the top level: unknown key "limits" (known keys: version, currencies, customers, urls, budgets, rate_limits, duplicates, approvals, store, tools)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if p != nil || err == nil {
				t.Fatalf("Parse succeeded; want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100, min_amount: 1 }\n  EUR: { max_amount: 50 }\n"
	cases := []struct{ name, yaml, want string }{
		{
			"reads quoted and unquoted amounts exactly, with exponents",
			"version: 1\ncurrencies:\n  USD: { max_amount: \"100.10\", min_amount: 1e-2 }\n  JPY: { max_amount: 1.5e4 }\n",
			"Currencies and per-session limits:\n  JPY up to 15000\n  USD 0.01–100.10\n",
		},
		{
			"lets a tool narrow the minimum and keep the global cap",
			head + "tools:\n  create_checkout_session: { currencies: { USD: { min_amount: 5 } } }\n",
			"  create_checkout_session: USD 5.00–100.00\n",
		},
		{
			"lets a tool list a currency with no settings to inherit its global limits",
			head + "tools:\n  create_checkout_session:\n    currencies: { EUR: {} }\n",
			"  create_checkout_session: EUR up to 50.00\n",
		},
		{
			"lets a tool set a cap equal to the global cap",
			head + "tools:\n  create_checkout_session: { currencies: { USD: { max_amount: 100.00 } } }\n",
			"  create_checkout_session: USD 1.00–100.00\n",
		},
		{
			"disables a tool",
			head + "tools:\n  create_agent_payment_session: { enabled: false }\n",
			"  create_agent_payment_session: disabled\n",
		},
		{
			"enables a tool left out of tools with the global limits",
			head + "tools:\n  create_agent_payment_session: { enabled: false }\n",
			"  create_checkout_session: EUR up to 50.00, USD 1.00–100.00 (the global limits)\n",
		},
		{
			"treats an empty allow_emails list as allowing no address",
			head + "customers:\n  allow_emails: []\n  allow_without_email: true\n",
			"  allowed: none\n",
		},
		{
			"notes that the email lists do not bind checkouts by customer ID",
			head + "customers:\n  allow_emails: [\"*@example.com\"]\n  allow_without_email: true\n",
			"  checkout without an email: allowed when customerId or referenceCustomerId is given\n" +
				"  note: the email lists do not bind a checkout without an email, nor one naming a customerId\n",
		},
		{
			"notes it for a deny list alone too",
			head + "customers:\n  deny_emails: [\"*@example.com\"]\n  allow_without_email: true\n",
			"  note: the email lists do not bind",
		},
		{
			"notes nothing when no email list restricts customers",
			head + "customers:\n  allow_without_email: true\n",
			"  checkout without an email: allowed when customerId or referenceCustomerId is given\nRedirect URLs",
		},
		{
			"allows any email when customers is absent",
			head,
			"  allowed: any valid address\n  checkout without an email: refused\n",
		},
		{
			"normalises patterns as it reads them",
			head + "customers:\n  allow_emails: [\" Alice@Example.COM \", \"*@BÜCHER.example\", \"*@*.Example.NET\"]\n",
			"  allowed: alice@example.com, *@xn--bcher-kva.example, *@*.example.net\n",
		},
		{
			"accepts a min_amount equal to max_amount",
			"version: 1\ncurrencies:\n  USD: { max_amount: 10, min_amount: 10 }\n",
			"  USD 10.00–10.00\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if r := p.Render(); !strings.Contains(r, tc.want) {
				t.Errorf("Render() = \n%s\nwant it to contain\n%s", r, tc.want)
			}
		})
	}
}

func TestLoadRefusesFilesItCannotRead(t *testing.T) {
	t.Run("names a file that does not exist", func(t *testing.T) {
		_, err := Load("testdata/no-such-file.yaml")
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "testdata/no-such-file.yaml") {
			t.Errorf("Load = %v; want a not-exist error naming the file", err)
		}
	})
	t.Run("refuses a file over a mebibyte", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big.yaml")
		data := []byte("version: 1\n# " + strings.Repeat("x", maxFileSize) + "\n")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if want := path + ": the file is larger than 1048576 bytes"; err == nil || err.Error() != want {
			t.Errorf("Load = %v; want %q", err, want)
		}
	})
}

func TestDemo(t *testing.T) {
	p := Demo()
	if p.Source() != DemoSource {
		t.Errorf("Source() = %q", p.Source())
	}
	again, err := Parse("demo.yaml", DemoYAML())
	if err != nil {
		t.Fatal(err)
	}
	// Only the source differs.
	want := strings.ReplaceAll(p.Render(), DemoSource, "demo.yaml")
	if diff := cmp.Diff(want, again.Render()); diff != "" {
		t.Errorf("DemoYAML() is not the demo policy (-want +got):\n%s", diff)
	}
	want = `Policy: built-in demo policy
Currencies and per-session limits:
  EUR up to 100.00
  JPY up to 10000
  USD 0.50–100.00, approval above 75.00
Approvals: sessions above approve_above wait for the agent's user, asked through the MCP client when it can, else an operator; unanswered after 15m, the call is refused
Customer emails:
  allowed: any valid address
  denied (wins over allowed): blocked@example.com
  checkout without an email: allowed when customerId or referenceCustomerId is given
  note: the email lists do not bind a checkout without an email, nor one naming a customerId
    (Clink charges that customer whatever the email); allow_without_email: false makes them hold for every call
Redirect URLs (successUrl, cancelUrl, returnUrl): any host
Budgets (rolling windows, all tools together):
  USD 500.00 per 24h
Rate limits (rolling windows, all tools together):
  at most 30 calls per 1m
Duplicate calls: an identical call within 10m returns the first call's result instead of creating another session
Tools:
  create_agent_payment_session: USD 0.50–50.00
  create_checkout_session: EUR up to 100.00, JPY up to 10000, USD 0.50–100.00 (the global limits)
    approval above: USD 75.00
Store: the default ($XDG_STATE_HOME/clink-mcp/state.db, else ~/.local/state/clink-mcp/state.db)
`
	if diff := cmp.Diff(want, p.Render()); diff != "" {
		t.Errorf("Render() mismatch (-want +got):\n%s", diff)
	}
}
