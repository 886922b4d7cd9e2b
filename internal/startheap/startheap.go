// Package startheap lets clink-mcp start without a garbage collection.
//
// A Go program's first collection comes when its heap reaches 4 MB. The
// packages clink-mcp links (mcp-go's JSON Schema compiler, validator,
// SQLite, Prometheus's client) allocate about that much while they
// initialise, so every start paid for a collection in the middle of it
// (some 3 ms of a 37 ms start to the first tools/list answer on the 2-core
// build machine: docs/performance.md). The command imports this package
// for its side effect, which raises the first collection's threshold to
// 16 MB and, once that collection has run, sets the collector back to
// its default: the idea of the Go compiler's own AdjustStartingHeap.
// From the first collection on, the process runs as any other.
//
// The package must be initialised before the heavy ones. Go initialises
// the packages whose imports are ready in the order of their import
// paths, so a package runs as soon as its own imports have: this one
// imports only os and the runtime's (and what they import), which are
// ready long before the heavy packages' imports are, so it runs before
// them although many packages whose paths sort after its own run first.
// TestStartRunsNoCollection in cmd/clink-mcp holds it to that.
//
// A GOGC in the environment, even an empty one, is the operator's choice
// and is left alone.
package startheap

import (
	"os"
	"runtime"
	"runtime/debug"
)

const (
	// startPercent is the GOGC of the start: the first collection comes at
	// 4 MB × startPercent / 100, 16 MB.
	startPercent = 400
	// runPercent is the GOGC from the first collection on, Go's default.
	runPercent = 100
)

// raised tells whether init raised the threshold (no GOGC in the
// environment); tests read it.
var raised bool

func init() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(startPercent)
	raised = true
	// The sentinel is unreachable from the start: the first collection
	// frees it and its cleanup restores the default. It is larger than
	// the allocator's tiny objects, which may share a slot with others and
	// keep their cleanup from running.
	runtime.AddCleanup(new([64]byte), func(struct{}) { debug.SetGCPercent(runPercent) }, struct{}{})
}
