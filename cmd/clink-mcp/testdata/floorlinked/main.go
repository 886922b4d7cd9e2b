// Command floorlinked is the floor (../floor) linking, besides, every
// package clink-mcp's command imports, unused: their package
// initialisation runs, nothing else of them does. Started against the
// floor and clink-mcp (BenchmarkFloorLinkedStartup), it splits clink-mcp's
// start-up into what linking those packages costs before main runs and
// what clink-mcp's own main then costs. It lives under testdata so that
// `go build ./...` leaves it out; the benchmark builds it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

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

func main() {
	s := server.NewMCPServer("floor", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Echoes its argument."),
		mcp.WithString("text", mcp.Required(), mcp.Description("What to echo.")),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	if err := server.ServeStdio(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
