// Package loopback tells whether a host names the loopback interface only:
// the one rule the HTTP listener's safe default (cmd/clink-mcp), the
// DNS-rebinding check (service) and the production base URL's TLS rule
// (clink) share.
package loopback

import (
	"net"
	"net/netip"
	"strings"
)

// Host reports whether addr, a host ("localhost", "127.0.0.1", "::1",
// "[::1]") or a host:port, names only the loopback interface: localhost,
// in any case and fully qualified or not ("localhost."), or a loopback IP
// address. An empty host, like 0.0.0.0 and ::, means every interface and
// is not loopback.
func Host(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
