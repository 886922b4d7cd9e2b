package policy

import (
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/clink-mcp/clink-mcp/policy/yamlfile"
)

// Parse parses a policy file's content. filename is used in error messages
// and as the policy's [Policy.Source]. Every problem found is reported,
// each with its line, in one [*ParseError].
//
// The file is strict: unknown keys, duplicate keys, aliases, several YAML
// documents, wrongly typed values, currencies without max_amount, a
// min_amount above max_amount, an approve_above not below max_amount,
// amounts too precise for their currency, malformed email or host patterns,
// unknown tools, malformed or duplicate budgets and rate limits, malformed
// approvals settings, and tool rules wider than the global ones (a higher
// max_amount or approve_above, a lower min_amount) are all errors. Amounts
// are read exactly from their text, quoted or not.
//
// filename is also where a relative store.path is resolved from (its
// directory); see [Policy.StorePath].
func Parse(filename string, data []byte) (*Policy, error) {
	fp := &fileParser{file: filename}
	p := fp.parse(data)
	if err := fp.Err(filename); err != nil {
		return nil, (*ParseError)(err)
	}
	p.source = filename
	return p, nil
}

// fileParser reads a policy file; its methods parse the file's sections.
type fileParser struct {
	yamlfile.Parser
	file string
}

// errorf is [yamlfile.Parser.Errorf], in the spelling the sections use.
func (fp *fileParser) errorf(n *yaml.Node, format string, args ...any) {
	fp.Errorf(n, format, args...)
}

// entry is a key and its value in a mapping.
type entry struct{ key, val *yaml.Node }

// fields is [yamlfile.Parser.Fields], giving entries as the sections use
// them.
func (fp *fileParser) fields(n *yaml.Node, what string, known ...string) map[string]entry {
	f := fp.Fields(n, what, known...)
	if f == nil {
		return nil
	}
	m := make(map[string]entry, len(f))
	for k, e := range f {
		m[k] = entry{e.Key, e.Value}
	}
	return m
}

func (fp *fileParser) parse(data []byte) *Policy {
	root := fp.Decode(data, "policy file", "the file is empty; a policy needs at least version: 1 and currencies")
	if root == nil {
		return nil
	}

	p := &Policy{allowAnyEmail: true, tools: make(map[string]*toolRules, len(knownTools))}
	top := fp.fields(root, "the top level", topKeys...)
	if top == nil {
		return nil
	}

	if e, ok := top["version"]; !ok {
		fp.errorf(root, "version is missing; this format is version: 1")
	} else if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!int" || e.val.Value != "1" {
		fp.errorf(e.val, "version must be 1, the only version of this format")
	}

	if e, ok := top["currencies"]; !ok {
		fp.errorf(root, "currencies is missing: list the currencies agents may use, each with a max_amount")
	} else {
		p.currencies = fp.currencies(e.val, nil, "")
	}

	if e, ok := top["customers"]; ok {
		fp.customers(e.val, p)
	}
	if e, ok := top["urls"]; ok {
		fp.urls(e.val, p)
	}

	if e, ok := top["budgets"]; ok {
		p.budgets = fp.budgets(e.val, p, nil)
	}
	if e, ok := top["rate_limits"]; ok {
		p.rates = fp.rateLimits(e.val)
	}
	p.dupWindow = defaultDuplicatesWindow
	if e, ok := top["duplicates"]; ok {
		p.dupWindow = fp.duplicates(e.val)
	}
	var storeNode *yaml.Node
	if e, ok := top["store"]; ok {
		storeNode = e.val
	}
	p.storePath = fp.store(storeNode)
	p.approvalTimeout = defaultApprovalTimeout
	if e, ok := top["approvals"]; ok {
		fp.approvals(e.val, p)
	}

	var toolEntries map[string]entry
	if e, ok := top["tools"]; ok {
		toolEntries = fp.fields(e.val, "tools", knownTools...)
	}
	for _, name := range knownTools {
		t := &toolRules{name: name, enabled: true, currencies: p.currencies}
		if e, ok := toolEntries[name]; ok {
			fp.tool(e.val, t, p)
		}
		t.thresholds = t.currencies.thresholds()
		p.tools[name] = t
	}
	return p
}

// topKeys are the keys of a policy file's top level, in the order the
// README documents them.
var topKeys = []string{"version", "currencies", "customers", "urls", "budgets", "rate_limits", "duplicates", "approvals", "store", "tools"}

// currencies parses a currencies mapping. With global nil it is the global
// allowlist, where max_amount is required; otherwise it is tool's list,
// which may only narrow global.
func (fp *fileParser) currencies(n *yaml.Node, global *currencyRules, tool string) currencyRules {
	what := "currencies"
	if global != nil {
		what = "tool " + tool + ": currencies"
	}
	r := currencyRules{byCode: map[string]limits{}, broken: map[string]bool{}}
	es, ok := fp.Entries(n, what)
	if !ok {
		return r
	}
	if len(n.Content) == 0 {
		if global == nil {
			fp.errorf(n, "currencies lists no currency; list the currencies agents may use, each with a max_amount")
		} else {
			fp.errorf(n, "%s lists no currency; remove it to use the global list, or set enabled: false", what)
		}
		return r
	}
	for _, e := range es {
		c, err := ParseCurrency(e.Key.Value)
		if err != nil {
			fp.errorf(e.Key, "%s: %v", what, err)
			continue
		}
		where := c.code
		if global != nil {
			where = "tool " + tool + ": " + c.code
		}
		// Every way out of this loop but the last has reported an error.
		r.broken[c.code] = true
		var base limits
		if global != nil {
			var listed bool
			if base, listed = global.byCode[c.code]; !listed {
				if global.lacksUnreported(c.code) {
					fp.errorf(e.Key, "%s is not in the global currencies list; a tool can only narrow the global rules", where)
				}
				continue
			}
		}
		f := fp.fields(e.Value, where, "max_amount", "min_amount", "approve_above")
		if f == nil {
			continue
		}
		lim := base
		okLim := true
		if m, ok := f["max_amount"]; ok {
			if lim.max, ok = fp.amount(m.val, c, where+" max_amount"); !ok {
				okLim = false
			}
		} else if global == nil {
			fp.errorf(e.Key, "%s has no max_amount; every currency needs a per-session cap", where)
			okLim = false
		}
		if m, ok := f["min_amount"]; ok {
			if lim.min, ok = fp.amount(m.val, c, where+" min_amount"); !ok {
				okLim = false
			}
		}
		approve, setsApprove := f["approve_above"]
		if setsApprove {
			if lim.approve, setsApprove = fp.amount(approve.val, c, where+" approve_above"); !setsApprove {
				okLim = false
			}
		}
		if !okLim {
			continue
		}
		if global != nil {
			if lim.max.minor > base.max.minor {
				fp.errorf(f["max_amount"].val, "%s max_amount %s is above the global max_amount %s; a tool can only narrow the global rules", where, lim.max.Amount(), base.max.Amount())
				okLim = false
			}
			if lim.min.minor < base.min.minor {
				fp.errorf(f["min_amount"].val, "%s min_amount %s is below the global min_amount %s; a tool can only narrow the global rules", where, lim.min.Amount(), base.min.Amount())
				okLim = false
			}
			if setsApprove && !base.approve.IsZero() && lim.approve.minor > base.approve.minor {
				fp.errorf(approve.val, "%s approve_above %s is above the global approve_above %s; a tool can only narrow the global rules", where, lim.approve.Amount(), base.approve.Amount())
				okLim = false
			}
			if !okLim {
				continue
			}
		}
		if !lim.min.IsZero() && lim.min.minor > lim.max.minor {
			at := e.Key
			if m, ok := f["min_amount"]; ok {
				at = m.val
			}
			fp.errorf(at, "%s min_amount %s is above max_amount %s", where, lim.min.Amount(), lim.max.Amount())
			continue
		}
		if !lim.approve.IsZero() && lim.approve.minor >= lim.max.minor {
			if setsApprove {
				fp.errorf(approve.val, "%s approve_above %s is not below max_amount %s, so no session could ever need approval; lower it or remove it", where, lim.approve.Amount(), lim.max.Amount())
				continue
			}
			// The global threshold, at or above this tool's narrower cap:
			// no session of the tool can exceed it, so it has no effect.
			lim.approve = Money{}
		}
		r.byCode[c.code] = lim
		r.codes = append(r.codes, c.code)
		delete(r.broken, c.code)
	}
	sort.Strings(r.codes)
	return r
}

// lacksUnreported tells whether code's absence from r is a problem not
// reported yet, for what refers to it elsewhere in the file: not when
// code's entry in r had an error, nor when r has no entry at all (the list
// had its own error).
func (r *currencyRules) lacksUnreported(code string) bool {
	return len(r.byCode) > 0 && !r.broken[code]
}

// amount reads an amount literal exactly from its text, quoted or not.
func (fp *fileParser) amount(n *yaml.Node, c Currency, what string) (Money, bool) {
	if n.Kind != yaml.ScalarNode {
		fp.errorf(n, "%s must be a number", what)
		return Money{}, false
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!str":
	default:
		fp.errorf(n, "%s must be a number, not %s", what, strings.TrimPrefix(n.ShortTag(), "!!"))
		return Money{}, false
	}
	text := n.Value
	switch strings.ToLower(strings.TrimLeft(text, "+-")) {
	case ".inf":
		text = "Infinity" // YAML's spelling, so the error says what it is
	case ".nan":
		text = "NaN"
	}
	minor, err := parseMinor(text, c)
	if err != nil {
		fp.errorf(n, "%s: %v", what, err)
		return Money{}, false
	}
	return Money{minor: minor, cur: c}, true
}

func (fp *fileParser) customers(n *yaml.Node, p *Policy) {
	f := fp.fields(n, "customers", "allow_emails", "deny_emails", "allow_without_email")
	if e, ok := f["allow_emails"]; ok {
		p.allowAnyEmail = false
		fp.emailList(e.val, "allow_emails", &p.allow)
	}
	if e, ok := f["deny_emails"]; ok {
		fp.emailList(e.val, "deny_emails", &p.deny)
	}
	if e, ok := f["allow_without_email"]; ok {
		p.allowWithoutEmail, _ = fp.Bool(e.val, "customers: allow_without_email")
	}
}

func (fp *fileParser) emailList(n *yaml.Node, what string, set *emailSet) {
	if n.Kind != yaml.SequenceNode {
		if what == "allow_emails" {
			fp.errorf(n, "customers: allow_emails must be a list of addresses or patterns; remove it to allow any email")
		} else {
			fp.errorf(n, "customers: %s must be a list of addresses or patterns", what)
		}
		return
	}
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || item.ShortTag() != "!!str" {
			fp.errorf(item, "customers: %s: each entry must be an address or a pattern like *@example.com", what)
			continue
		}
		pat, err := parseEmailPattern(item.Value)
		if err != nil {
			fp.errorf(item, "customers: %s: %v", what, err)
			continue
		}
		if !set.add(pat) {
			fp.errorf(item, "customers: %s: %s is listed twice", what, pat)
		}
	}
}

func (fp *fileParser) tool(n *yaml.Node, t *toolRules, p *Policy) {
	where := "tool " + t.name
	f := fp.fields(n, where, "enabled", "currencies", "budgets", "allow_dashboard_prices")
	if f == nil {
		return
	}
	if e, ok := f["allow_dashboard_prices"]; ok {
		if t.name != ToolCheckoutSession {
			fp.errorf(e.key, "%s: allow_dashboard_prices applies only to %s", where, ToolCheckoutSession)
		} else if b, ok := fp.Bool(e.val, where+": allow_dashboard_prices"); ok {
			t.allowDashboardPrices = b
		}
	}
	if e, ok := f["enabled"]; ok {
		if b, ok := fp.Bool(e.val, where+": enabled"); ok {
			t.enabled = b
		} else {
			t.enabled = false
		}
	}
	if e, ok := f["currencies"]; ok {
		t.narrowed = true
		t.currencies = fp.currencies(e.val, &p.currencies, t.name)
	}
	// After currencies: a tool's budget must be in a currency it allows.
	if e, ok := f["budgets"]; ok {
		t.budgets = fp.budgets(e.val, p, t)
	}
}
