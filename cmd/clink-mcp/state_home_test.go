package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain points the default store ($XDG_STATE_HOME/clink-mcp/state.db)
// at a directory of this run's own, so that no test reads or writes the
// state of the machine's user, nor another run's: a remembered approval
// there answered an identical call of a later run (a test's sandbox can
// get a port, hence an account, that an earlier run had).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clink-mcp-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
