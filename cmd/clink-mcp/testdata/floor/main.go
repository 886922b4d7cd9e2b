// Command floor is the performance floor clink-mcp is measured against
// (cmd/clink-mcp/perf_test.go): a one-tool mcp-go stdio server whose tool
// echoes its argument. It lives under testdata so that `go build ./...`
// and the module's packages leave it out; the benchmarks build it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
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
