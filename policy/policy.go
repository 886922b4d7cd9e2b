package policy

import (
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clink-mcp/clink-mcp/policy/yamlfile"
)

// Tool names, as the policy knows them.
const (
	// ToolAgentPaymentSession creates a Clink agent payment session.
	ToolAgentPaymentSession = "create_agent_payment_session"
	// ToolCheckoutSession creates a Clink checkout session.
	ToolCheckoutSession = "create_checkout_session"
)

// knownTools is every tool a policy can govern, in rendering order.
var knownTools = []string{ToolAgentPaymentSession, ToolCheckoutSession}

// KnownTools returns the names of the tools a policy governs.
func KnownTools() []string { return append([]string(nil), knownTools...) }

// DemoSource is what [Policy.Source] returns for the [Demo] policy.
const DemoSource = "built-in demo policy"

// Policy is a loaded, validated policy. It is immutable: every method is
// safe for concurrent use.
type Policy struct {
	source string

	currencies currencyRules // the global allowlist and limits

	allowAnyEmail     bool // allow_emails absent
	allow             emailSet
	deny              emailSet
	allowWithoutEmail bool

	restrictHosts bool    // urls.allow_hosts present
	hosts         hostSet // the redirect hosts allowed when restrictHosts

	tools map[string]*toolRules // every known tool, with effective rules

	budgets   []budgetRule  // global budgets, in file order
	rates     []rateRule    // global rate limits, in file order
	dupWindow time.Duration // 0: the duplicate guard is off
	storePath string        // absolute; "" for an in-memory store (the demo)

	approvalTimeout     time.Duration // how long a pending approval waits
	approvalsByOperator bool          // approvals.by: operator
}

// limits are the per-session limits for one currency.
type limits struct {
	max     Money
	min     Money // the zero Money when there is no minimum
	approve Money // approve_above; the zero Money when there is no threshold
}

// currencyRules is an allowlist of currencies with their limits.
type currencyRules struct {
	byCode map[string]limits
	codes  []string // sorted
	// broken are the codes listed whose entry had an error, already
	// reported: what refers to them says nothing more (the file is refused
	// anyway, and "not in the list" would be untrue).
	broken map[string]bool
}

// toolRules are the effective rules of one tool: the global ones, narrowed
// by the tool's own entry.
type toolRules struct {
	name       string
	enabled    bool
	narrowed   bool // has its own currencies list
	currencies currencyRules
	budgets    []budgetRule // the tool's own budgets, on top of the global ones
	thresholds []Money      // the approval thresholds in effect, by currency code

	allowDashboardPrices bool // priceId / productId accepted (checkout only)
}

// Source returns where the policy came from: the file path given to [Load]
// or [Parse], or [DemoSource].
func (p *Policy) Source() string { return p.source }

// maxFileSize bounds a policy file; a real one is a few hundred bytes.
const maxFileSize = 1 << 20

// Load reads and parses the policy file at path. Errors name the file and,
// for problems in its content, the line (see [ParseError]).
func Load(path string) (*Policy, error) {
	data, err := yamlfile.ReadFile(path, maxFileSize)
	var tooLarge *yamlfile.Error
	if errors.As(err, &tooLarge) {
		return nil, (*ParseError)(tooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	return Parse(path, data)
}

// ErrInvalidPolicy is matched (with errors.Is) by every [ParseError].
var ErrInvalidPolicy = errors.New("invalid policy file")

// ParseError lists every problem found in a policy file. Its message has
// one line per problem, "FILE:LINE: problem", in line order.
type ParseError yamlfile.Error

// Problem is one problem in a policy file. Line is 1-based; 0 means the
// problem is with the file as a whole.
type Problem = yamlfile.Problem

// Error returns one "FILE:LINE: problem" line per problem.
func (e *ParseError) Error() string { return (*yamlfile.Error)(e).Error() }

// Unwrap returns [ErrInvalidPolicy].
func (e *ParseError) Unwrap() error { return ErrInvalidPolicy }

//go:embed demo.yaml
var demoYAML []byte

// demo parses the built-in demo policy on first use: only the sandbox and
// the demo need it, and parsing it cost every start some 0.4 ms.
var demo = sync.OnceValue(func() *Policy {
	p, err := Parse(DemoSource, demoYAML)
	if err != nil {
		panic("policy: the built-in demo policy does not parse: " + err.Error())
	}
	return p
})

// DemoYAML returns the text of the built-in demo policy, a valid policy file.
func DemoYAML() []byte { return append([]byte(nil), demoYAML...) }

// Demo returns the built-in demo policy for the sandbox: USD 0.50–100.00,
// EUR up to 100.00 and JPY up to 10000 per session, USD sessions above
// 75.00 approved by the client's user (else an operator) within 15 minutes;
// agent payment sessions in USD only, up to 50.00 (so never above the
// threshold); any customer email except blocked@example.com;
// checkouts without an email allowed when a customer ID is given; at most
// 500.00 USD per rolling 24h and 30 calls per rolling minute; identical calls
// within 10 minutes replayed. Its text is [DemoYAML]; it sets no
// store.path. Production must not run on it.
func Demo() *Policy { return demo() }
