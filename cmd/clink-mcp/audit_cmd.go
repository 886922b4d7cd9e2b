package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/clink-mcp/clink-mcp/gate/state"
)

// auditCommand is "clink-mcp audit verify" (check the hash chain; exit 1
// naming the first broken record) and "clink-mcp audit export" (JSON lines
// on stdout). They find the store exactly as the server does: the database
// of CLINK_DATABASE_URL, else the store.path of the policy file named by
// --policy or CLINK_POLICY.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		return errors.New("usage: clink-mcp audit verify|export [--policy FILE]")
	}
	sub, args := args[0], args[1:]
	cfg, rest, err := parseConfig("clink-mcp audit "+sub, args, getenv, stdout, commandUsage["audit"])
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("audit %s: unexpected argument %q", sub, rest[0])
	}
	so, err := openServerStore(ctx, cfg, "audit "+sub)
	if err != nil {
		return err
	}
	st, path := so.st, so.where
	defer st.Close()

	if sub == "export" {
		n, err := state.ExportAudit(ctx, st, stdout)
		if err != nil {
			return fmt.Errorf("audit export: %v", err)
		}
		fmt.Fprintf(stderr, "clink-mcp: exported %d audit records from %s\n", n, path)
		return nil
	}
	report, err := state.VerifyAudit(ctx, st)
	if err != nil {
		return fmt.Errorf("audit verify: %v", err)
	}
	if report.Broken != nil {
		fmt.Fprintf(stderr, "clink-mcp: audit trail %s is BROKEN at record %d: %s\n", path, report.Broken.Seq, report.Broken.Reason)
		return errFailed
	}
	fmt.Fprintf(stdout, "audit trail %s: %d records, hash chain intact\n", path, report.Records)
	if report.Open > 0 {
		intents, err := st.Intents(ctx)
		if err != nil {
			return fmt.Errorf("audit verify: %v", err)
		}
		orphaned := 0
		for _, in := range intents {
			if in.Orphaned {
				orphaned++
			}
		}
		fmt.Fprintf(stderr, "clink-mcp: %d calls have an intent and no outcome: %d still in flight, %d left by a server that stopped mid-call "+
			"(the next server to start records them as outcome_unknown; \"audit export\" shows them as \"open\")\n",
			report.Open, report.Open-int64(orphaned), orphaned)
		return errFailed
	}
	return nil
}
