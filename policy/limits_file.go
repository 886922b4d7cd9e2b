package policy

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// defaultDuplicatesWindow is the duplicate guard's window when the policy
// file has no duplicates key: long enough to cover an agent retrying after a
// timeout, short enough that a deliberate repeat later in the day is a new
// session.
const defaultDuplicatesWindow = 10 * time.Minute

const (
	// maxLimitWindow bounds budget and rate-limit windows: a year, leap
	// years included. Longer windows are almost surely a typo (8760d for
	// 876h) and would keep every call's entry for as long.
	maxLimitWindow = 366 * 24 * time.Hour
	// maxDuplicatesWindow bounds the duplicate guard: replaying a day-old
	// result as if it were fresh would surprise everyone.
	maxDuplicatesWindow = 24 * time.Hour
)

// budgets parses a list of budgets: the global ones when t is nil,
// otherwise tool t's own, which must be in currencies the tool allows and
// no wider than a global budget with the same currency, window and per.
//
// Budgets with the same currency and window but different per (none,
// customer, principal) are distinct budgets with distinct counters, and
// every one that applies must fit, so the tightest binds: a per-principal
// or per-customer budget beside a shared one is allowed whatever their
// amounts (one above the shared budget never binds, but is not wrong).
// Only a tool's budget is held to a global one, of the same per: a tool's
// per-principal budget can be no wider than the global per-principal one.
func (fp *fileParser) budgets(n *yaml.Node, p *Policy, t *toolRules) []budgetRule {
	what := "budgets"
	if t != nil {
		what = "tool " + t.name + ": budgets"
	}
	if n.Kind != yaml.SequenceNode {
		fp.errorf(n, "%s must be a list of entries like { currency: USD, window: 24h, max_amount: 500 }", what)
		return nil
	}
	var out []budgetRule
	lines := make([]int, 0, len(n.Content)) // where each of out was written
	for _, item := range n.Content {
		f := fp.fields(item, what, "currency", "window", "max_amount", "per")
		if f == nil {
			continue
		}
		ok := true
		for _, k := range []string{"currency", "window", "max_amount"} {
			if _, has := f[k]; !has {
				fp.errorf(item, "%s: the entry has no %s", what, k)
				ok = false
			}
		}
		var b budgetRule
		if t != nil {
			b.tool = t.name
		}
		var curOK bool
		if e, has := f["currency"]; has {
			b.max.cur, curOK = fp.budgetCurrency(e.val, what, p, t)
			ok = ok && curOK
		}
		if e, has := f["window"]; has {
			var good bool
			b.window, good = fp.window(e.val, what, maxLimitWindow, false)
			ok = ok && good
		}
		if e, has := f["max_amount"]; has && curOK {
			var good bool
			b.max, good = fp.amount(e.val, b.max.cur, what+": "+b.max.cur.code+" max_amount")
			ok = ok && good
		}
		if e, has := f["per"]; has {
			var good bool
			b.per, good = fp.per(e.val, what, "budget")
			ok = ok && good
		}
		if !ok {
			continue
		}
		if i := indexBudget(out, b); i >= 0 {
			fp.errorf(item, "%s: a second budget for %s (first at line %d); give each currency, window and per one budget", what, b.scope(), lines[i])
			continue
		}
		if t != nil {
			if i := indexBudget(p.budgets, b); i >= 0 && b.max.minor > p.budgets[i].max.minor {
				fp.errorf(f["max_amount"].val, "%s: %s is above the global budget of %s; a tool can only narrow the global rules",
					what, b.describe(), p.budgets[i].describe())
				continue
			}
		}
		b.key = b.keyPrefix()
		out = append(out, b)
		lines = append(lines, item.Line)
	}
	return out
}

// indexBudget returns the index of the budget in bs with the same
// currency, window and per as b, or -1.
func indexBudget(bs []budgetRule, b budgetRule) int {
	for i, o := range bs {
		if o.max.cur == b.max.cur && o.window == b.window && o.per == b.per {
			return i
		}
	}
	return -1
}

// budgetCurrency reads a budget's currency, which must be one agents may
// use: in the global list and, for a tool's budget, in the tool's list.
func (fp *fileParser) budgetCurrency(n *yaml.Node, what string, p *Policy, t *toolRules) (Currency, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		fp.errorf(n, "%s: currency must be a currency code like USD", what)
		return Currency{}, false
	}
	c, err := ParseCurrency(n.Value)
	if err != nil {
		fp.errorf(n, "%s: %v", what, err)
		return Currency{}, false
	}
	if _, listed := p.currencies.byCode[c.code]; !listed {
		if p.currencies.lacksUnreported(c.code) {
			fp.errorf(n, "%s: %s is not in the global currencies list; a budget needs a currency agents may use", what, c.code)
		}
		return Currency{}, false
	}
	if t != nil && t.narrowed {
		if _, listed := t.currencies.byCode[c.code]; !listed {
			if t.currencies.lacksUnreported(c.code) {
				fp.errorf(n, "%s: %s is not allowed for this tool, so a budget in it would never apply", what, c.code)
			}
			return Currency{}, false
		}
	}
	return c, true
}

// rateLimits parses the global list of rate limits.
func (fp *fileParser) rateLimits(n *yaml.Node) []rateRule {
	const what = "rate_limits"
	if n.Kind != yaml.SequenceNode {
		fp.errorf(n, "%s must be a list of entries like { window: 1m, max_calls: 10 }", what)
		return nil
	}
	var out []rateRule
	lines := make([]int, 0, len(n.Content))
	for _, item := range n.Content {
		f := fp.fields(item, what, "window", "max_calls", "per")
		if f == nil {
			continue
		}
		ok := true
		for _, k := range []string{"window", "max_calls"} {
			if _, has := f[k]; !has {
				fp.errorf(item, "%s: the entry has no %s", what, k)
				ok = false
			}
		}
		var r rateRule
		if e, has := f["window"]; has {
			var good bool
			r.window, good = fp.window(e.val, what, maxLimitWindow, false)
			ok = ok && good
		}
		if e, has := f["max_calls"]; has {
			var good bool
			r.max, good = fp.maxCalls(e.val, what)
			ok = ok && good
		}
		if e, has := f["per"]; has {
			var good bool
			r.per, good = fp.per(e.val, what, "rate limit")
			ok = ok && good
		}
		if !ok {
			continue
		}
		dup := -1
		for i, o := range out {
			if o.window == r.window && o.per == r.per {
				dup = i
				break
			}
		}
		if dup >= 0 {
			fp.errorf(item, "%s: a second rate limit for %s (first at line %d); give each window and per one rate limit", what, r.scope(), lines[dup])
			continue
		}
		r.key = r.keyPrefix()
		out = append(out, r)
		lines = append(lines, item.Line)
	}
	return out
}

// duplicates parses the duplicate guard's settings and returns its window.
func (fp *fileParser) duplicates(n *yaml.Node) time.Duration {
	f := fp.fields(n, "duplicates", "window")
	if f == nil {
		return defaultDuplicatesWindow
	}
	e, ok := f["window"]
	if !ok {
		fp.errorf(n, "duplicates: window is missing; give one like 10m, or 0 to turn the guard off")
		return defaultDuplicatesWindow
	}
	d, _ := fp.window(e.val, "duplicates", maxDuplicatesWindow, true)
	return d
}

// store parses the store settings (n is nil when the file has none) and
// returns the state file's absolute path, or "" when the file sets none.
func (fp *fileParser) store(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	f := fp.fields(n, "store", "path")
	if f == nil {
		return ""
	}
	e, ok := f["path"]
	if !ok {
		fp.errorf(n, "store: path is missing; give the state file's path, or remove store to use the default")
		return ""
	}
	if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!str" || strings.TrimSpace(e.val.Value) == "" {
		fp.errorf(e.val, "store: path must be a file path like ~/.local/state/clink-mcp/state.db")
		return ""
	}
	path, err := resolveStorePath(fp.file, e.val.Value)
	if err != nil {
		fp.errorf(e.val, "store: path %s: %v", quoteInput(e.val.Value), err)
	}
	return path
}

// window reads a rolling window: Go duration syntax (90s, 10m, 1h30m) or a
// whole number of days (7d); positive, whole seconds, at most max. With
// zeroOff, 0 is accepted and means "off".
func (fp *fileParser) window(n *yaml.Node, what string, max time.Duration, zeroOff bool) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode {
		fp.errorf(n, "%s: window must be a duration like 30s, 10m, 24h or 7d", what)
		return 0, false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		fp.errorf(n, "%s: window must be a duration like 30s, 10m, 24h or 7d, not %s", what, strings.TrimPrefix(n.ShortTag(), "!!"))
		return 0, false
	}
	d, err := parseWindow(n.Value)
	// A sign is no part of a window: "-0s" would turn the guard off as 0
	// does (parseWindow refuses "+").
	negative := strings.HasPrefix(n.Value, "-")
	switch {
	case err != nil:
		fp.errorf(n, "%s: window %s is not a duration; write it like 30s, 10m, 24h or 7d", what, quoteInput(n.Value))
	case d == 0 && zeroOff && !negative:
		return 0, true
	case (d < 0 || negative) && zeroOff:
		fp.errorf(n, "%s: window %s must be positive, or 0 to turn the guard off", what, n.Value)
	case d <= 0 || negative:
		fp.errorf(n, "%s: window %s must be greater than zero", what, n.Value)
	case d > max:
		fp.errorf(n, "%s: window %s is longer than the most allowed, %s", what, n.Value, formatWindow(max))
	case d%time.Second != 0:
		fp.errorf(n, "%s: window %s must be a whole number of seconds", what, n.Value)
	default:
		return d, true
	}
	return 0, false
}

// parseWindow parses Go duration syntax, plus whole days ("7d").
func parseWindow(s string) (time.Duration, error) {
	if strings.HasPrefix(s, "+") {
		return 0, errors.New("a duration has no + sign") // "+1h" is 1h written another way
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		unsigned, neg := strings.CutPrefix(days, "-")
		if unsigned != "" && strings.Trim(unsigned, "0123456789") == "" {
			if len(unsigned) > 5 {
				return math.MaxInt64, nil // far beyond any bound; not an overflow
			}
			n, _ := strconv.Atoi(unsigned)
			d := time.Duration(n) * 24 * time.Hour
			if neg {
				d = -d
			}
			return d, nil
		}
	}
	return time.ParseDuration(s)
}

// maxCalls reads a rate limit's max_calls: a plain positive integer.
func (fp *fileParser) maxCalls(n *yaml.Node, what string) (int64, bool) {
	bad := func() (int64, bool) {
		fp.errorf(n, "%s: max_calls must be a whole number of calls, at least 1", what)
		return 0, false
	}
	// YAML reads digits too long for 64 bits as a float: let the digit
	// check below tell those from real fractions.
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		return bad()
	}
	digits, neg := strings.CutPrefix(n.Value, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" || (len(digits) > 1 && digits[0] == '0') {
		return bad() // 0x10, 0o17, +5, 010: one spelling per number
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	switch {
	case err != nil:
		fp.errorf(n, "%s: max_calls %s is too large", what, quoteInput(n.Value))
		return 0, false
	case neg || v < 1:
		fp.errorf(n, "%s: max_calls %s must be at least 1", what, n.Value)
		return 0, false
	}
	return v, true
}

// per reads a per key: customer or principal.
func (fp *fileParser) per(n *yaml.Node, what, noun string) (perKind, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		for _, k := range []perKind{perCustomer, perPrincipal} {
			if n.Value == k.String() {
				return k, true
			}
		}
	}
	fp.errorf(n, "%s: per must be customer or principal, or left out for one %s shared by all customers and principals", what, noun)
	return perAll, false
}

// resolveStorePath expands a store path from a policy file: "~" and "~/"
// against the home directory, a relative path against the file's
// directory; the result is absolute and clean. Nothing else is expanded:
// a $ is refused rather than taken as part of a directory's name, which
// would put the state (budgets, audit trail, secret) somewhere unexpected
// with no word said.
func resolveStorePath(file, path string) (string, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return "", errors.New("contains a NUL byte")
	}
	if strings.Contains(path, "$") {
		return "", errors.New("environment variables are not expanded; write ~/... or the full path")
	}
	switch {
	case path == "~" || strings.HasPrefix(path, "~/") || strings.HasPrefix(path, "~"+string(filepath.Separator)):
		home, err := homeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~: %v", err)
		}
		path = filepath.Join(home, path[1:])
	case strings.HasPrefix(path, "~"):
		return "", errors.New("~user paths are not supported; write ~/... or the full path")
	case !filepath.IsAbs(path):
		path = filepath.Join(filepath.Dir(file), path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// DefaultStorePath is where the state file lives when the policy does not
// say: $XDG_STATE_HOME/clink-mcp/state.db, or
// ~/.local/state/clink-mcp/state.db when XDG_STATE_HOME is unset or not
// absolute (the XDG spec says to ignore a relative one). The server uses it
// too for the built-in demo policy outside the built-in sandbox.
func DefaultStorePath() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "clink-mcp", "state.db"), nil
	}
	home, err := homeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state", "clink-mcp", "state.db"), nil
}

// homeDir is os.UserHomeDir, refusing a relative answer (HOME=.), which
// would put the state wherever the server happens to start.
func homeDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(home) {
		return "", fmt.Errorf("the home directory %s is not an absolute path", quoteInput(home))
	}
	return home, nil
}
