package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
)

const approvalsUsage = "usage: clink-mcp approvals list [--all] [--limit N] | approve ID --by NAME | deny ID --by NAME  [--policy FILE]"

// approvalsCommand is "clink-mcp approvals": an operator lists the
// payments waiting for approval, and approves or denies one, on the
// server's own store (found as "audit" finds it: CLINK_DATABASE_URL, else
// the policy's store.path). The decision is recorded in the audit trail
// with who made it (--by); the agent's identical call then creates the
// session (approved, within the policy's approvals.timeout) or is refused.
func approvalsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(approvalsUsage)
	}
	sub, args := args[0], args[1:]
	var id, by string
	all, limit := false, 0 // 0: gate.ListApprovals's default
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--by" || a == "-by":
			if i+1 >= len(args) {
				return errors.New("approvals: --by needs a name")
			}
			by = args[i+1]
			i++
		case strings.HasPrefix(a, "--by=") || strings.HasPrefix(a, "-by="):
			_, by, _ = strings.Cut(a, "=")
		case a == "--all" || a == "-all":
			all = true
		case sub == "list" && (a == "--limit" || a == "-limit" || strings.HasPrefix(a, "--limit=") || strings.HasPrefix(a, "-limit=")):
			v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "limit=")
			if !ok {
				if i+1 >= len(args) {
					return errors.New("approvals list: --limit needs a number")
				}
				v = args[i+1]
				i++
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > gate.MaxApprovalsListed {
				return fmt.Errorf("approvals list: --limit %q is not a number from 1 to %d", v, gate.MaxApprovalsListed)
			}
			limit = n
		case !strings.HasPrefix(a, "-") && id == "" && sub != "list":
			id = a
		case takesValue(a) && i+1 < len(args):
			// A setting's value (--policy FILE) is never the approval's ID.
			rest = append(rest, a, args[i+1])
			i++
		default:
			rest = append(rest, a)
		}
	}
	switch sub {
	case "list":
	case "approve", "deny":
		if id == "" {
			return fmt.Errorf("approvals %s: which approval? (%s)", sub, approvalsUsage)
		}
		if strings.TrimSpace(by) == "" {
			return fmt.Errorf("approvals %s: say who decides with --by NAME: it is recorded in the audit trail", sub)
		}
	default:
		return fmt.Errorf("approvals: unknown subcommand %q (%s)", sub, approvalsUsage)
	}
	cfg, extra, err := parseConfig("clink-mcp approvals "+sub, rest, getenv, stdout, commandUsage["approvals"])
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		return fmt.Errorf("approvals %s: unexpected argument %q", sub, extra[0])
	}
	so, err := openServerStore(ctx, cfg, "approvals "+sub)
	if err != nil {
		return err
	}
	defer so.st.Close()
	st := so.st

	if sub == "list" {
		var states []string
		if !all {
			states = []string{state.ApprovalPending, state.ApprovalApproved}
		}
		list, more, err := gate.ListApprovals(ctx, st, states, limit)
		if err != nil {
			return fmt.Errorf("approvals list: %v", err)
		}
		if more {
			defer fmt.Fprintf(stdout, "(only the %d newest are shown; older ones, the first to expire, are left out: --limit N shows more)\n", len(list))
		}
		if len(list) == 0 {
			fmt.Fprintf(stdout, "no approvals waiting in %s\n", so.where)
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tTOOL\tAMOUNT\tCUSTOMER\tCALLER\tREQUESTED\tEXPIRES\tDECIDED BY")
		for _, a := range list {
			amount := strings.TrimSpace(a.Currency + " " + a.Amount)
			if a.Amounts != "" && a.Amounts != amount {
				amount += " (" + a.Amounts + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Tool, amount, orDash(a.EmailMasked), a.Caller,
				a.RequestedAt.UTC().Format(time.RFC3339), a.ExpiresAt.UTC().Format(time.RFC3339), orDash(a.DecidedBy))
		}
		return tw.Flush()
	}

	// The state before the decision tells an approval decided or expired
	// earlier (nothing changes) from a pending one whose deadline has
	// passed with no server sweeping it yet: deciding that one expires it,
	// which is recorded in the audit trail and gives its budgets back.
	before, err := st.Approval(ctx, id)
	var a *state.Approval
	if err == nil {
		a, err = gate.DecideApproval(ctx, st, id, sub == "approve", by)
	}
	notPending := errors.Is(err, state.ErrApprovalNotPending) && a != nil
	switch {
	case errors.Is(err, state.ErrNotFound):
		return fmt.Errorf("approvals %s: no approval %s in %s", sub, id, so.where)
	case notPending && a.State == state.ApprovalExpired && before.State == state.ApprovalPending:
		verb := map[string]string{"approve": "approved", "deny": "denied"}[sub]
		return fmt.Errorf("approvals %s: approval %s had expired at %s, so it was not %s: it is now recorded as expired "+
			"(in the audit trail), and its budgets are given back (its rate limits keep counting the call)", sub, id, a.ExpiresAt.UTC().Format(time.RFC3339), verb)
	case notPending:
		return fmt.Errorf("approvals %s: approval %s is %s, not pending: nothing changed", sub, id, a.State)
	case err != nil:
		return fmt.Errorf("approvals %s: %v", sub, err)
	}
	if a.State == state.ApprovalApproved {
		fmt.Fprintf(stdout, "approved %s (%s %s via %s, asked by %s); the agent's identical call creates it until %s\n",
			a.ID, a.Currency, a.Amount, a.Tool, a.Caller, a.ExpiresAt.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "denied %s (%s %s via %s, asked by %s); its budgets are given back (its rate limits keep counting the call)\n", a.ID, a.Currency, a.Amount, a.Tool, a.Caller)
	return nil
}

// orDash is s, or "-" for "".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// takesValue reports whether arg is a setting's flag written without "="
// whose value is the next argument (--policy FILE; not --sandbox).
func takesValue(arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if !strings.HasPrefix(arg, "-") || strings.Contains(name, "=") {
		return false
	}
	for _, s := range settings {
		if s.flag == name {
			return !s.boolean
		}
	}
	return false
}
