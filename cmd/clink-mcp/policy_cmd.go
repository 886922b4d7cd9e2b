package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/clink-mcp/clink-mcp/policy"
)

// policyCommand is "clink-mcp policy check FILE": validate a policy file and
// print the effective policy, or every problem with its file and line.
func policyCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: clink-mcp policy check FILE")
	}
	p, err := policy.Load(args[1])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errFailed
	}
	fmt.Fprintf(stdout, "%s: valid\n\n%s", args[1], p.Render())
	return nil
}
