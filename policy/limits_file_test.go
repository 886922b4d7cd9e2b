package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRefusesBadLimits(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n  JPY: { max_amount: 10000 }\n"
	cases := []struct{ name, yaml, want string }{
		// Budgets.
		{"refuses budgets that are not a list", head + "budgets: { currency: USD }\n",
			"f.yaml:5: budgets must be a list of entries like { currency: USD, window: 24h, max_amount: 500 }"},
		{"refuses a budget entry that is not a mapping", head + "budgets: [USD]\n",
			"f.yaml:5: budgets must be a mapping (key: value)"},
		{"refuses an unknown key in a budget", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 10, amount: 5 }\n",
			`f.yaml:6: budgets: unknown key "amount" (known keys: currency, window, max_amount, per)`},
		{"refuses a duplicate key in a budget", head + "budgets:\n  - { currency: USD, window: 24h, currency: JPY, max_amount: 10 }\n",
			`f.yaml:6: budgets: duplicate key "currency" (first at line 6)`},
		{"refuses a budget without a currency", head + "budgets:\n  - { window: 24h, max_amount: 10 }\n",
			"f.yaml:6: budgets: the entry has no currency"},
		{"refuses a budget without a window", head + "budgets:\n  - { currency: USD, max_amount: 10 }\n",
			"f.yaml:6: budgets: the entry has no window"},
		{"refuses a budget without a max_amount", head + "budgets:\n  - { currency: USD, window: 24h }\n",
			"f.yaml:6: budgets: the entry has no max_amount"},
		{"refuses a window that is not a duration", head + "budgets:\n  - { currency: USD, window: 24x, max_amount: 10 }\n",
			`f.yaml:6: budgets: window "24x" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a window without a unit", head + "budgets:\n  - { currency: USD, window: 86400, max_amount: 10 }\n",
			`f.yaml:6: budgets: window "86400" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a window of days and hours in one", head + "budgets:\n  - { currency: USD, window: 1d12h, max_amount: 10 }\n",
			`f.yaml:6: budgets: window "1d12h" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a fractional number of days", head + "budgets:\n  - { currency: USD, window: 1.5d, max_amount: 10 }\n",
			`f.yaml:6: budgets: window "1.5d" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a window given as a list", head + "budgets:\n  - { currency: USD, window: [24h], max_amount: 10 }\n",
			"f.yaml:6: budgets: window must be a duration like 30s, 10m, 24h or 7d"},
		{"refuses a boolean window", head + "budgets:\n  - { currency: USD, window: true, max_amount: 10 }\n",
			"f.yaml:6: budgets: window must be a duration like 30s, 10m, 24h or 7d, not bool"},
		{"refuses a zero window", head + "budgets:\n  - { currency: USD, window: 0s, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 0s must be greater than zero"},
		{"refuses a bare zero window", head + "budgets:\n  - { currency: USD, window: 0, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 0 must be greater than zero"},
		{"refuses a negative window", head + "budgets:\n  - { currency: USD, window: -1h, max_amount: 10 }\n",
			"f.yaml:6: budgets: window -1h must be greater than zero"},
		{"refuses a negative number of days", head + "budgets:\n  - { currency: USD, window: -2d, max_amount: 10 }\n",
			"f.yaml:6: budgets: window -2d must be greater than zero"},
		{"refuses a signed window", head + "budgets:\n  - { currency: USD, window: +1h, max_amount: 10 }\n",
			`f.yaml:6: budgets: window "+1h" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a negative zero window", head + "rate_limits:\n  - { window: -0s, max_calls: 1 }\n",
			"f.yaml:6: rate_limits: window -0s must be greater than zero"},
		{"refuses a window of part of a second", head + "budgets:\n  - { currency: USD, window: 500ms, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 500ms must be a whole number of seconds"},
		{"refuses a window that is not whole seconds", head + "budgets:\n  - { currency: USD, window: 1.5s, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 1.5s must be a whole number of seconds"},
		{"refuses a window longer than a year", head + "budgets:\n  - { currency: USD, window: 367d, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 367d is longer than the most allowed, 366d"},
		{"refuses an absurdly long window in hours", head + "budgets:\n  - { currency: USD, window: 8785h, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 8785h is longer than the most allowed, 366d"},
		{"refuses an absurd number of days without overflowing", head + "budgets:\n  - { currency: USD, window: 99999999999d, max_amount: 10 }\n",
			"f.yaml:6: budgets: window 99999999999d is longer than the most allowed, 366d"},
		{"refuses a zero max_amount", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 0 }\n",
			`f.yaml:6: budgets: USD max_amount: amount "0" must be greater than zero`},
		{"refuses a negative max_amount", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: -10 }\n",
			`f.yaml:6: budgets: USD max_amount: amount "-10" is negative; it must be greater than zero`},
		{"refuses a max_amount too precise for its currency", head + "budgets:\n  - { currency: JPY, window: 24h, max_amount: 100.5 }\n",
			`f.yaml:6: budgets: JPY max_amount: amount "100.5" has more decimals than JPY allows (0)`},
		{"refuses a quoted max_amount too precise for its currency", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: \"10.005\" }\n",
			`f.yaml:6: budgets: USD max_amount: amount "10.005" has more decimals than USD allows (2)`},
		{"refuses a budget in a currency not in the allowlist", head + "budgets:\n  - { currency: EUR, window: 24h, max_amount: 10 }\n",
			"f.yaml:6: budgets: EUR is not in the global currencies list; a budget needs a currency agents may use"},
		{"refuses a budget in a lower-case currency", head + "budgets:\n  - { currency: usd, window: 24h, max_amount: 10 }\n",
			`f.yaml:6: budgets: currency "usd" must be written in upper case`},
		{"refuses a budget in a currency that is not tender", head + "budgets:\n  - { currency: XAU, window: 24h, max_amount: 10 }\n",
			"f.yaml:6: budgets: currency XAU is not legal tender for payments (metals, special drawing rights, fund, testing and withdrawn codes are refused)"},
		{"refuses a numeric currency", head + "budgets:\n  - { currency: 840, window: 24h, max_amount: 10 }\n",
			"f.yaml:6: budgets: currency must be a currency code like USD"},
		{"refuses two budgets for the same currency, window and per", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 10 }\n  - { currency: USD, window: 1d, max_amount: 20 }\n",
			"f.yaml:7: budgets: a second budget for USD per 24h (first at line 6); give each currency, window and per one budget"},
		{"refuses two per-customer budgets for the same currency and window", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: customer }\n  - { currency: USD, window: 60m, max_amount: 20, per: customer }\n",
			"f.yaml:7: budgets: a second budget for USD per 1h per customer (first at line 6); give each currency, window and per one budget"},
		{"refuses two per-principal budgets for the same currency and window", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: principal }\n  - { currency: USD, window: 60m, max_amount: 20, per: principal }\n",
			"f.yaml:7: budgets: a second budget for USD per 1h per principal (first at line 6); give each currency, window and per one budget"},
		{"refuses a per in the wrong case", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: Principal }\n",
			"f.yaml:6: budgets: per must be customer or principal, or left out for one budget shared by all customers and principals"},
		{"refuses a per that names several things", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: [customer, principal] }\n",
			"f.yaml:6: budgets: per must be customer or principal, or left out for one budget shared by all customers and principals"},
		{"refuses a per other than customer", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: email }\n",
			"f.yaml:6: budgets: per must be customer or principal, or left out for one budget shared by all customers and principals"},
		{"refuses a per that is not a string", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 10, per: true }\n",
			"f.yaml:6: budgets: per must be customer or principal, or left out for one budget shared by all customers and principals"},
		{"reports every problem of one budget", head + "budgets:\n  - { currency: EUR, window: 0s, per: all }\n",
			"f.yaml:6: budgets: the entry has no max_amount\n" +
				"f.yaml:6: budgets: EUR is not in the global currencies list; a budget needs a currency agents may use\n" +
				"f.yaml:6: budgets: window 0s must be greater than zero\n" +
				"f.yaml:6: budgets: per must be customer or principal, or left out for one budget shared by all customers and principals"},

		// Tool budgets.
		{"refuses a tool budget wider than the global one", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 500 }\ntools:\n  create_checkout_session: { budgets: [ { currency: USD, window: 24h, max_amount: 500.01 } ] }\n",
			"f.yaml:8: tool create_checkout_session: budgets: USD 500.01 per 24h is above the global budget of USD 500.00 per 24h; a tool can only narrow the global rules"},
		{"refuses a per-customer tool budget wider than the global per-customer one", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 50, per: customer }\ntools:\n  create_agent_payment_session:\n    budgets:\n      - { currency: USD, window: 60m, max_amount: 60, per: customer }\n",
			"f.yaml:10: tool create_agent_payment_session: budgets: USD 60.00 per 1h per customer is above the global budget of USD 50.00 per 1h per customer; a tool can only narrow the global rules"},
		{"refuses a per-principal tool budget wider than the global per-principal one", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 500 }\n  - { currency: USD, window: 24h, max_amount: 50, per: principal }\ntools:\n  create_checkout_session:\n    budgets:\n      - { currency: USD, window: 1d, max_amount: 80, per: principal }\n",
			"f.yaml:11: tool create_checkout_session: budgets: USD 80.00 per 24h per principal is above the global budget of USD 50.00 per 24h per principal; a tool can only narrow the global rules"},
		{"refuses a tool budget in a currency not in the global list", head + "tools:\n  create_checkout_session: { budgets: [ { currency: EUR, window: 24h, max_amount: 5 } ] }\n",
			"f.yaml:6: tool create_checkout_session: budgets: EUR is not in the global currencies list; a budget needs a currency agents may use"},
		{"refuses a tool budget in a currency the tool does not allow", head + "tools:\n  create_checkout_session: { currencies: { USD: {} }, budgets: [ { currency: JPY, window: 24h, max_amount: 5 } ] }\n",
			"f.yaml:6: tool create_checkout_session: budgets: JPY is not allowed for this tool, so a budget in it would never apply"},
		{"refuses two budgets of one tool for the same currency, window and per", head + "tools:\n  create_checkout_session:\n    budgets:\n      - { currency: USD, window: 24h, max_amount: 5 }\n      - { currency: USD, window: 24h, max_amount: 6 }\n",
			"f.yaml:9: tool create_checkout_session: budgets: a second budget for USD per 24h (first at line 8); give each currency, window and per one budget"},
		{"refuses tool budgets that are not a list", head + "tools:\n  create_checkout_session: { budgets: 5 }\n",
			"f.yaml:6: tool create_checkout_session: budgets must be a list of entries like { currency: USD, window: 24h, max_amount: 500 }"},
		{"refuses rate limits on a tool", head + "tools:\n  create_checkout_session: { rate_limits: [] }\n",
			`f.yaml:6: tool create_checkout_session: unknown key "rate_limits" (known keys: enabled, currencies, budgets, allow_dashboard_prices)`},

		// Rate limits.
		{"refuses rate limits that are not a list", head + "rate_limits: { window: 1m, max_calls: 10 }\n",
			"f.yaml:5: rate_limits must be a list of entries like { window: 1m, max_calls: 10 }"},
		{"refuses an unknown key in a rate limit", head + "rate_limits:\n  - { window: 1m, max_calls: 10, burst: 5 }\n",
			`f.yaml:6: rate_limits: unknown key "burst" (known keys: window, max_calls, per)`},
		{"refuses a rate limit without max_calls", head + "rate_limits:\n  - { window: 1m }\n",
			"f.yaml:6: rate_limits: the entry has no max_calls"},
		{"refuses a rate limit without a window", head + "rate_limits:\n  - { max_calls: 10 }\n",
			"f.yaml:6: rate_limits: the entry has no window"},
		{"refuses zero max_calls", head + "rate_limits:\n  - { window: 1m, max_calls: 0 }\n",
			"f.yaml:6: rate_limits: max_calls 0 must be at least 1"},
		{"refuses negative max_calls", head + "rate_limits:\n  - { window: 1m, max_calls: -3 }\n",
			"f.yaml:6: rate_limits: max_calls -3 must be at least 1"},
		{"refuses fractional max_calls", head + "rate_limits:\n  - { window: 1m, max_calls: 1.5 }\n",
			"f.yaml:6: rate_limits: max_calls must be a whole number of calls, at least 1"},
		{"refuses quoted max_calls", head + "rate_limits:\n  - { window: 1m, max_calls: \"10\" }\n",
			"f.yaml:6: rate_limits: max_calls must be a whole number of calls, at least 1"},
		{"refuses max_calls tagged as a float", head + "rate_limits:\n  - { window: 1m, max_calls: !!float 5 }\n",
			"f.yaml:6: YAML tags (!!float) are not supported; write the value plainly"},
		{"refuses hexadecimal max_calls", head + "rate_limits:\n  - { window: 1m, max_calls: 0x10 }\n",
			"f.yaml:6: rate_limits: max_calls must be a whole number of calls, at least 1"},
		{"refuses max_calls beyond 64 bits", head + "rate_limits:\n  - { window: 1m, max_calls: 99999999999999999999 }\n",
			`f.yaml:6: rate_limits: max_calls "99999999999999999999" is too large`},
		{"refuses a rate-limit window that is not a duration", head + "rate_limits:\n  - { window: often, max_calls: 10 }\n",
			`f.yaml:6: rate_limits: window "often" is not a duration; write it like 30s, 10m, 24h or 7d`},
		{"refuses a zero rate-limit window", head + "rate_limits:\n  - { window: 0m, max_calls: 10 }\n",
			"f.yaml:6: rate_limits: window 0m must be greater than zero"},
		{"refuses two rate limits for the same window and per", head + "rate_limits:\n  - { window: 1m, max_calls: 10 }\n  - { window: 60s, max_calls: 20 }\n",
			"f.yaml:7: rate_limits: a second rate limit for 1m (first at line 6); give each window and per one rate limit"},
		{"refuses two per-principal rate limits for the same window", head + "rate_limits:\n  - { window: 1m, max_calls: 10, per: principal }\n  - { window: 60s, max_calls: 20, per: principal }\n",
			"f.yaml:7: rate_limits: a second rate limit for 1m per principal (first at line 6); give each window and per one rate limit"},
		{"refuses a rate limit per something other than customer", head + "rate_limits:\n  - { window: 1m, max_calls: 10, per: tool }\n",
			"f.yaml:6: rate_limits: per must be customer or principal, or left out for one rate limit shared by all customers and principals"},

		// Duplicates.
		{"refuses duplicates without a window", head + "duplicates: {}\n",
			"f.yaml:5: duplicates: window is missing; give one like 10m, or 0 to turn the guard off"},
		{"refuses duplicates given as a bare duration", head + "duplicates: 10m\n",
			"f.yaml:5: duplicates must be a mapping (key: value)"},
		{"refuses an unknown key under duplicates", head + "duplicates: { window: 10m, scope: tool }\n",
			`f.yaml:5: duplicates: unknown key "scope" (known keys: window)`},
		{"refuses a negative duplicates window", head + "duplicates: { window: -10m }\n",
			"f.yaml:5: duplicates: window -10m must be positive, or 0 to turn the guard off"},
		{"refuses a negative zero duplicates window, not taken for 0", head + "duplicates: { window: -0s }\n",
			"f.yaml:5: duplicates: window -0s must be positive, or 0 to turn the guard off"},
		{"refuses a duplicates window over a day", head + "duplicates: { window: 25h }\n",
			"f.yaml:5: duplicates: window 25h is longer than the most allowed, 24h"},
		{"refuses a duplicates window of part of a second", head + "duplicates: { window: 1500ms }\n",
			"f.yaml:5: duplicates: window 1500ms must be a whole number of seconds"},

		// Store.
		{"refuses an unknown key under store", head + "store: { path: /x/state.db, driver: sqlite }\n",
			`f.yaml:5: store: unknown key "driver" (known keys: path)`},
		{"refuses a store without a path", head + "store: {}\n",
			"f.yaml:5: store: path is missing; give the state file's path, or remove store to use the default"},
		{"refuses an empty store path", head + "store: { path: \"\" }\n",
			"f.yaml:5: store: path must be a file path like ~/.local/state/clink-mcp/state.db"},
		{"refuses a store path that is not a string", head + "store: { path: [a, b] }\n",
			"f.yaml:5: store: path must be a file path like ~/.local/state/clink-mcp/state.db"},
		{"refuses another user's home directory", head + "store: { path: ~root/state.db }\n",
			`f.yaml:5: store: path "~root/state.db": ~user paths are not supported; write ~/... or the full path`},
		{"refuses a variable, which is not expanded", head + "store: { path: $XDG_STATE_HOME/clink-mcp/state.db }\n",
			`f.yaml:5: store: path "$XDG_STATE_HOME/clink-mcp/state.db": environment variables are not expanded; write ~/... or the full path`},
		{"refuses a braced variable", head + "store: { path: \"/srv/${ENV}/state.db\" }\n",
			`f.yaml:5: store: path "/srv/${ENV}/state.db": environment variables are not expanded; write ~/... or the full path`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if p != nil || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Parse = %v, %v; want %q", p, err, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestParseReadsLimits(t *testing.T) {
	const head = "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n"
	cases := []struct {
		name      string
		yaml      string
		wantDup   time.Duration
		wantState bool
		wantInfo  string // a line Render must print
	}{
		{"defaults the duplicates window to ten minutes", head, 10 * time.Minute, true,
			"Duplicate calls: an identical call within 10m returns the first call's result instead of creating another session\n"},
		{"turns the duplicate guard off with a window of 0", head + "duplicates: { window: 0 }\n", 0, false,
			"Duplicate calls: not detected (duplicates window 0)\n"},
		{"turns the duplicate guard off with a window of 0s", head + "duplicates: { window: 0s }\n", 0, false,
			"Budgets: none\nRate limits: none\n"},
		{"reads a duplicates window of a day", head + "duplicates: { window: 24h }\n", 24 * time.Hour, true,
			"within 24h returns"},
		{"reads windows in days", head + "duplicates: { window: 0 }\nbudgets:\n  - { currency: USD, window: 7d, max_amount: 1000 }\n", 0, true,
			"  USD 1000.00 per 7d\n"},
		{"reads a window of a whole year in days", head + "budgets:\n  - { currency: USD, window: 366d, max_amount: 1000 }\n", 10 * time.Minute, true,
			"  USD 1000.00 per 366d\n"},
		{"reads compound Go durations", head + "rate_limits:\n  - { window: 1h30m, max_calls: 5 }\n  - { window: 90s, max_calls: 2, per: customer }\n", 10 * time.Minute, true,
			"  at most 5 calls per 1h30m\n  per customer: at most 2 calls per 1m30s\n"},
		{"says one call, not one calls", head + "rate_limits:\n  - { window: 1s, max_calls: 1 }\n", 10 * time.Minute, true,
			"  at most 1 call per 1s\n"},
		{"keeps a budget shared by everyone apart from a per-customer one of the same window", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 100 }\n  - { currency: USD, window: 1h, max_amount: 10, per: customer }\n", 10 * time.Minute, true,
			"  USD 100.00 per 1h\n  per customer: USD 10.00 per 1h\n"},
		{"keeps shared, per-customer and per-principal budgets of one currency and window apart", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 100 }\n  - { currency: USD, window: 1h, max_amount: 10, per: customer }\n  - { currency: USD, window: 1h, max_amount: 20, per: principal }\n", 10 * time.Minute, true,
			"  USD 100.00 per 1h\n  per customer: USD 10.00 per 1h\n  per principal: USD 20.00 per 1h\n"},
		{"lets a per-principal budget be wider than the shared one, which then binds first", head + "budgets:\n  - { currency: USD, window: 1h, max_amount: 100 }\n  - { currency: USD, window: 1h, max_amount: 500, per: principal }\n", 10 * time.Minute, true,
			"  USD 100.00 per 1h\n  per principal: USD 500.00 per 1h\n"},
		{"reads per-principal rate limits beside shared and per-customer ones of the same window", head + "rate_limits:\n  - { window: 1m, max_calls: 30 }\n  - { window: 1m, max_calls: 5, per: customer }\n  - { window: 1m, max_calls: 10, per: principal }\n", 10 * time.Minute, true,
			"  at most 30 calls per 1m\n  per customer: at most 5 calls per 1m\n  per principal: at most 10 calls per 1m\n"},
		{"reads a tool's per-principal budget, checked against the global per-principal one", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 50, per: principal }\ntools:\n  create_checkout_session: { budgets: [ { currency: USD, window: 24h, max_amount: 50, per: principal } ] }\n", 10 * time.Minute, true,
			"    own budget: per principal: USD 50.00 per 24h\n"},
		{"counts a tool budget alone as state", head + "duplicates: { window: 0 }\ntools:\n  create_checkout_session: { budgets: [ { currency: USD, window: 24h, max_amount: 50, per: customer } ] }\n", 0, true,
			"    own budget: per customer: USD 50.00 per 24h\n"},
		{"lets a tool budget equal the global one, or set one the global rules lack", head + "budgets:\n  - { currency: USD, window: 24h, max_amount: 500 }\ntools:\n  create_checkout_session:\n    budgets:\n      - { currency: USD, window: 24h, max_amount: 500 }\n      - { currency: USD, window: 1h, max_amount: 900 }\n", 10 * time.Minute, true,
			"    own budget: USD 500.00 per 24h\n    own budget: USD 900.00 per 1h\n"},
		{"counts an approval threshold alone as state", "version: 1\ncurrencies:\n  USD: { max_amount: 500, approve_above: 100 }\nduplicates: { window: 0 }\n", 0, true,
			"Approvals: "},
		{"counts a tool's approval threshold alone as state", "version: 1\ncurrencies:\n  USD: { max_amount: 500 }\nduplicates: { window: 0 }\ntools:\n  create_checkout_session: { currencies: { USD: { approve_above: 100 } } }\n", 0, true,
			"Approvals: "},
		{"accepts empty lists of budgets and rate limits", head + "budgets: []\nrate_limits: []\nduplicates: { window: 0 }\n", 0, false,
			"Budgets: none\nRate limits: none\n"},
		{"accepts budgets and rate limits in block style", head + "budgets:\n  - currency: USD\n    window: 24h\n    max_amount: \"250.50\"\nrate_limits:\n  - window: 1m\n    max_calls: 10\n", 10 * time.Minute, true,
			"  USD 250.50 per 24h\nRate limits (rolling windows, all tools together):\n  at most 10 calls per 1m\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse("f.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.DuplicatesWindow(); got != tc.wantDup {
				t.Errorf("DuplicatesWindow() = %v, want %v", got, tc.wantDup)
			}
			if got := p.HasState(); got != tc.wantState {
				t.Errorf("HasState() = %v, want %v", got, tc.wantState)
			}
			if r := p.Render(); !strings.Contains(r, tc.wantInfo) {
				t.Errorf("Render() =\n%s\nwant it to contain\n%s", r, tc.wantInfo)
			}
		})
	}
}

func TestStorePath(t *testing.T) {
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, home, xdg, file, store, want string
	}{
		{"expands ~ to the home directory", "/home/op", "", "/etc/clink/policy.yaml", "~", "/home/op"},
		{"expands ~/ against the home directory", "/home/op", "", "/etc/clink/policy.yaml", "~/state/clink.db", "/home/op/state/clink.db"},
		{"resolves a relative path against the policy file's directory", "/home/op", "", "/etc/clink/policy.yaml", "state.db", "/etc/clink/state.db"},
		{"resolves a path up from the policy file's directory", "/home/op", "", "/etc/clink/policy.yaml", "../../var/lib/clink/state.db", "/var/lib/clink/state.db"},
		{"resolves a relative path next to a relative policy file from the working directory", "/home/op", "", "conf/policy.yaml", "state.db", filepath.Join(wd, "conf", "state.db")},
		{"keeps an absolute path, cleaned", "/home/op", "", "/etc/clink/policy.yaml", "/var/lib//clink/./state.db", "/var/lib/clink/state.db"},
		{"defaults to the XDG state directory", "/home/op", "/xdg/state", "/etc/clink/policy.yaml", "", "/xdg/state/clink-mcp/state.db"},
		{"defaults to ~/.local/state without XDG_STATE_HOME", "/home/op", "", "/etc/clink/policy.yaml", "", "/home/op/.local/state/clink-mcp/state.db"},
		{"ignores a relative XDG_STATE_HOME, as the XDG spec says", "/home/op", "relative/state", "/etc/clink/policy.yaml", "", "/home/op/.local/state/clink-mcp/state.db"},
		{"needs no home directory for an absolute path", "", "", "/etc/clink/policy.yaml", "/srv/state.db", "/srv/state.db"},
		{"needs no home directory with XDG_STATE_HOME", "", "/xdg", "/etc/clink/policy.yaml", "", "/xdg/clink-mcp/state.db"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", tc.home)
			t.Setenv("XDG_STATE_HOME", tc.xdg)
			y := "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n"
			if tc.store != "" {
				y += "store: { path: \"" + tc.store + "\" }\n"
			}
			p, err := Parse(tc.file, []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.StoreFile()
			if err != nil || got != tc.want {
				t.Errorf("StoreFile() = %q, %v, want %q", got, err, tc.want)
			}
			if tc.store == "" {
				if p.StorePath() != "" || !strings.Contains(p.Render(), "\nStore: the default (") {
					t.Errorf("a file without store.path: StorePath() = %q, Render():\n%s", p.StorePath(), p.Render())
				}
			} else if p.StorePath() != tc.want || !strings.Contains(p.Render(), "\nStore: "+tc.want+"\n") {
				t.Errorf("StorePath() = %q; Render() does not show it:\n%s", p.StorePath(), p.Render())
			}
		})
	}

	t.Run("finds a relative path next to a loaded file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, "version: 1\ncurrencies:\n  USD: { max_amount: 100 }\nstore: { path: data/state.db }\n")
		p, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "data", "state.db"); p.StorePath() != want {
			t.Errorf("StorePath() = %q, want %q", p.StorePath(), want)
		}
	})
	t.Run("sets no store path in the demo policy", func(t *testing.T) {
		if got := Demo().StorePath(); got != "" {
			t.Errorf("Demo().StorePath() = %q, want \"\"", got)
		}
	})
	t.Run("refuses ~ when there is no home directory", func(t *testing.T) {
		t.Setenv("HOME", "")
		_, err := Parse("f.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 100 }\nstore: { path: ~/state.db }\n"))
		if want := `f.yaml:4: store: path "~/state.db": cannot expand ~: $HOME is not defined`; err == nil || err.Error() != want {
			t.Errorf("Parse = %v, want %q", err, want)
		}
	})
	t.Run("refuses a relative home directory", func(t *testing.T) {
		t.Setenv("HOME", "home")
		_, err := Parse("f.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 100 }\nstore: { path: ~/state.db }\n"))
		if want := `f.yaml:4: store: path "~/state.db": cannot expand ~: the home directory "home" is not an absolute path`; err == nil || err.Error() != want {
			t.Errorf("Parse = %v, want %q", err, want)
		}
	})
	t.Run("parses a file without store.path with no home directory, and says so when the store is wanted", func(t *testing.T) {
		t.Setenv("HOME", "")
		t.Setenv("XDG_STATE_HOME", "")
		p, err := Parse("f.yaml", []byte("version: 1\ncurrencies:\n  USD: { max_amount: 100 }\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.StoreFile()
		if want := "store.path is not set and its default location cannot be found ($HOME is not defined); set store.path in the policy file"; err == nil || err.Error() != want {
			t.Errorf("StoreFile = %v, want %q", err, want)
		}
	})
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
