//go:build floorlinked

// Built with the floorlinked tag, the floor (main.go) links, besides, every
// package clink-mcp's command imports, unused: their package
// initialisation runs, nothing else of them does. Started against the
// floor and clink-mcp (BenchmarkFloorLinkedStartup), it splits clink-mcp's
// start-up into what linking those packages costs before main runs and
// what clink-mcp's own main then costs. TestFloorLinkedLinksWhatTheCommandLinks
// keeps the two lists of packages the same.
package main

import (
	_ "flag"
	_ "text/tabwriter"

	_ "github.com/clink-mcp/clink-mcp/clink"
	_ "github.com/clink-mcp/clink-mcp/clink/sandbox"
	_ "github.com/clink-mcp/clink-mcp/gate"
	_ "github.com/clink-mcp/clink-mcp/gate/state"
	_ "github.com/clink-mcp/clink-mcp/internal/loopback"
	_ "github.com/clink-mcp/clink-mcp/internal/startheap"
	_ "github.com/clink-mcp/clink-mcp/policy"
	_ "github.com/clink-mcp/clink-mcp/service"
	_ "github.com/clink-mcp/clink-mcp/service/auth"
	_ "github.com/clink-mcp/clink-mcp/tools"
	_ "github.com/lmittmann/tint"
	_ "github.com/mark3labs/mcp-go/client"
)
