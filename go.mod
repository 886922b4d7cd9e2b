module github.com/clink-mcp/clink-mcp

go 1.26.0
