package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// commandUsage is each command's help, printed to stdout by "clink-mcp
// help COMMAND", "clink-mcp COMMAND --help" (or -h, or help).
var commandUsage = map[string]func(io.Writer){
	"serve": printUsage,
	"help":  printUsage,
	"demo": usageText(`Usage: clink-mcp demo

Runs the server against the built-in Clink sandbox, in process, through a real
MCP client, and prints a transcript: sessions created, refusals by the
policy's rules and by validation, duplicates, a rate limit, a budget,
approvals put to a scripted user, status lookups and the clink://policy
resource, with every policy it runs under.
Nothing is charged and nothing is written to disk. It exits 1 if a step does
not behave as the transcript says.
`),
	"policy": usageText(`Usage: clink-mcp policy check FILE

Validates the policy file FILE and prints the effective policy, or exits 1
with every problem as FILE:LINE: problem.
`),
	"audit": usageText(`Usage: clink-mcp audit verify|export [--policy FILE]

  verify   check the audit trail's hash chain: exit 1 names the first broken
           record, or the calls with an intent and no outcome
  export   write the audit trail to stdout as JSON lines

The store is found as the server finds it: the database of CLINK_DATABASE_URL,
else the SQLite file at the store.path of the policy file (--policy,
CLINK_POLICY), else the default path. The server's other flags are accepted
too (see clink-mcp help).
`),
	"approvals": usageText(`Usage: clink-mcp approvals list [--all] [--limit N] | approve ID --by NAME | deny ID --by NAME  [--policy FILE]

  list [--all]            the payments waiting for a person's approval
                          (--all: decided ones too), newest first, the
                          100 newest unless --limit N (up to 10000)
  approve ID --by NAME    approve one: the agent's identical call then
                          creates it, within the policy's approvals.timeout
  deny ID --by NAME       deny one: its budgets are given back

Who decides (--by) is recorded in the audit trail. The store is found as
"clink-mcp audit" finds it (CLINK_DATABASE_URL, else the policy's store.path).
`),
	"token": usageText(`Usage: clink-mcp token new NAME

Prints a fresh bearer token for the principal NAME, once, and the lines to
paste into the principals file (which keeps only the token's SHA-256).
`),
	"version": usageText(`Usage: clink-mcp version (or clink-mcp --version)

Prints the version, and the commit and build date when known: release builds
set them at link time; a build from source prints "dev" and what Go recorded.
`),
}

// usageText is a usage function that prints s.
func usageText(s string) func(io.Writer) {
	return func(w io.Writer) { fmt.Fprint(w, s) }
}

// wantsHelp reports whether a command's arguments ask for its help: -h,
// -help or --help anywhere before "--", or "help" first.
func wantsHelp(args []string) bool {
	if len(args) > 0 && args[0] == "help" {
		return true
	}
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// isVersionFlag reports whether a is --version or -version.
func isVersionFlag(a string) bool { return a == "--version" || a == "-version" }

// helpCommand is "clink-mcp help [COMMAND]": the whole help, or one
// command's.
func helpCommand(args []string, stdout io.Writer) error {
	switch len(args) {
	case 0:
		printUsage(stdout)
		return nil
	case 1:
		if usage, ok := commandUsage[args[0]]; ok {
			usage(stdout)
			return nil
		}
		return fmt.Errorf("help: unknown command %q; the commands are %s", args[0], commandNames())
	}
	return fmt.Errorf("help takes at most one command, got %q", args)
}

// commandNames lists the commands, sorted, for messages.
func commandNames() string {
	return strings.Join(slices.Sorted(maps.Keys(commandUsage)), ", ")
}
