package service

import "testing"

// An Origin names the host a request was sent to whether the default port
// is written in it, in the Host, in both or in neither; an IPv6 host keeps
// its brackets once the port is gone.
func TestSameOriginWithOrWithoutTheDefaultPort(t *testing.T) {
	for _, tt := range []struct {
		origin, host string
		want         bool
	}{
		{"https://mcp.example.com", "mcp.example.com", true},
		{"https://MCP.example.com", "mcp.example.com", true},
		{"https://mcp.example.com:443", "mcp.example.com", true},
		{"https://mcp.example.com", "mcp.example.com:443", true},
		{"http://mcp.example.com", "mcp.example.com:80", true},
		{"http://mcp.example.com:8080", "mcp.example.com:8080", true},
		{"https://[::1]:443", "[::1]", true},
		{"https://[::1]", "[::1]:443", true},
		{"https://[fd00::1]:8443", "[fd00::1]:8443", true},
		{"https://mcp.example.com", "mcp.example.com:8443", false},
		{"http://mcp.example.com", "mcp.example.com:443", false},
		{"https://mcp.example.com:80", "mcp.example.com", false},
		{"https://[::1]", "::1", false},
		{"https://evil.example.com", "mcp.example.com", false},
		{"ftp://mcp.example.com", "mcp.example.com", false},
		{"null", "mcp.example.com", false},
	} {
		if got := sameOrigin(tt.origin, tt.host); got != tt.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}
