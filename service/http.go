package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clink-mcp/clink-mcp/internal/loopback"
	"github.com/clink-mcp/clink-mcp/service/auth"
	"github.com/clink-mcp/clink-mcp/tools"
)

// MaxRequestBody is the largest MCP request body /mcp accepts, the same
// bound as a stdio line: a tool call's arguments are a few kilobytes.
const MaxRequestBody = 4 << 20

// readyTimeout bounds the store check behind /readyz.
const readyTimeout = 2 * time.Second

// HTTPOptions tune [Service.Handler].
type HTTPOptions struct {
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may call /mcp. A request with an Origin header is refused (403)
	// unless its origin is listed or is the server's own (the Host it was
	// sent to); requests without one, as from every non-browser client,
	// are not affected.
	AllowedOrigins []string
	// AllowedHosts are the names (host or host:port, compared as hostKey
	// has them: without case or a fully qualified name's trailing dot, IP
	// addresses in any spelling) that a request reaching a loopback
	// address may carry as its Host besides localhost and loopback IPs:
	// those a reverse proxy on the same host forwards with. Any other Host
	// on a loopback connection is refused (403), on every path: the
	// DNS-rebinding protection.
	AllowedHosts []string
}

// newStreamable serves one MCP server over streamable HTTP, stateless: no
// session is kept between requests, so any replica behind a load balancer
// can answer any request, with no sticky sessions. What that costs: the
// server cannot send a request or notification to a client outside the
// response to one of its requests (no GET stream, no list-changed or log
// notifications between calls).
func newStreamable(s *server.MCPServer, log *slog.Logger) *server.StreamableHTTPServer {
	return server.NewStreamableHTTPServer(s,
		server.WithStateLess(true),
		server.WithDisableStreaming(true),
		server.WithStreamableHTTPLogger(log),
		// Handler's checkHost does what mcp-go's check would, on every
		// path and with the operator's AllowedHosts.
		server.WithDisableLocalhostProtection(true),
	)
}

// Handler returns the HTTP face of the service:
//
//   - /mcp: MCP streamable HTTP (protocol 2025-11-25 and 2026-07-28), for
//     authenticated principals when there is a principals file;
//   - /healthz: 200 while the process is up;
//   - /readyz: 200 when calls can be taken, else 503 with a one-line
//     reason (draining, store unreachable);
//   - /metrics: Prometheus text format;
//   - /.well-known/oauth-protected-resource (and the form suffixed with
//     /mcp): the OAuth protected resource metadata (RFC 9728), when OAuth
//     is configured;
//   - /admin/approvals: the pending approvals, and their decisions, for
//     principals marked admin (see adminHandler), when there is a
//     principals file.
func (s *Service) Handler(opts HTTPOptions) http.Handler {
	mux := http.NewServeMux()
	// Outermost first: the origin, then who is calling, and only for an
	// authenticated caller the body is read and checked.
	var mcp http.Handler = checkBody(http.HandlerFunc(s.serveMCP), &s.inflight)
	if s.auth != nil {
		mcp = s.auth.Middleware(mcp)
	}
	mcp = checkOrigin(mcp, opts.AllowedOrigins, true)
	mux.Handle("/mcp", s.metrics.instrumentHTTP("/mcp", mcp))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+oneLine(err.Error()))
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	if s.auth != nil {
		for _, path := range s.auth.MetadataPaths() {
			mux.Handle(path, s.auth.MetadataHandler())
		}
		mux.Handle("/admin/", checkOrigin(s.adminHandler(), opts.AllowedOrigins, false))
	}
	return checkHost(mux, opts.AllowedHosts)
}

// checkHost refuses (403) a request that reached a loopback address but
// names another host than a loopback one or one of allowed: a page whose
// name was rebound to 127.0.0.1 (DNS rebinding) would otherwise call /mcp
// or read /metrics, /readyz and the rest from the browser of someone
// running the server locally. It stands for mcp-go's own check of /mcp
// (disabled: it knows no allowed hosts), on every path. A request with no
// Host (HTTP/1.0, as some load balancers' health checks send) comes from
// no browser and passes. A request that reached any other address is not
// concerned: the names it may carry are the proxy's affair.
func checkHost(next http.Handler, allowed []string) http.Handler {
	set := map[string]bool{}
	for _, h := range allowed {
		set[hostKey(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if ok && local != nil && r.Host != "" && loopback.Host(local.String()) && !loopback.Host(r.Host) && !allowedHost(set, r.Host) {
			plain(w, http.StatusForbidden, "forbidden: a request to a loopback address must name a loopback host or one of --allowed-hosts")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHost reports whether host (a Host header) is in set, as given or
// without its port, names compared as hostKey has them.
func allowedHost(set map[string]bool, host string) bool {
	if set[hostKey(host)] {
		return true
	}
	name, _, err := net.SplitHostPort(host)
	return err == nil && set[hostKey(name)]
}

// hostKey is a host, or host:port, as allowedHost compares it: lower case,
// the name without the trailing dot of a fully qualified one
// ("MCP.example.com.:443" is "mcp.example.com:443"), an IP address in its
// canonical form and, without a port, an IPv6 address without its brackets
// ("[FD00:0::1]" is "fd00::1", "[fd00::1]:80" stays), so that "[fd00::1]"
// and "fd00::1" allow the same Hosts.
func hostKey(host string) string {
	if name, port, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(hostName(name), port)
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return hostName(host)
}

// hostName is a name or an IP address as hostKey has it.
func hostName(name string) string {
	if a, err := netip.ParseAddr(name); err == nil {
		return a.String()
	}
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// serveMCP hands an MCP request to the streamable HTTP server of the
// caller's policy file.
func (s *Service) serveMCP(w http.ResponseWriter, r *http.Request) {
	sc := s.scopes[0]
	if p, ok := auth.FromContext(r.Context()); ok {
		var found bool
		if sc, found = s.byPolicy[p.Policy]; !found {
			// New loaded every policy the principals file names; a
			// principal with another one is a wiring bug, and fails closed.
			s.log.ErrorContext(r.Context(), "principal's policy is not loaded", "principal", p.Name)
			plain(w, http.StatusForbidden, "forbidden: no policy for this principal")
			return
		}
	}
	sc.http.ServeHTTP(w, r)
}

// checkBody takes only POST (see notPost), bounds its body to
// MaxRequestBody and refuses, before mcp-go decodes it, a JSON-RPC batch
// and a message encoding/json would read one way and a reader of it
// another (duplicate keys, case variants: tools.CheckMessage), as the stdio
// transport does line by line. It hands what it accepts to requests, which
// tracks requests and answers cancellations (see inflight).
func checkBody(next http.Handler, requests *inflight) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			notPost(w, r.Method)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				plain(w, http.StatusRequestEntityTooLarge, "request body over 4 MiB")
				return
			}
			plain(w, http.StatusBadRequest, "cannot read the request body")
			return
		}
		env, err := tools.ReadMessage(body)
		if err == nil && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("[")) {
			// MCP dropped JSON-RPC batches (2025-06-18); mcp-go would call
			// one a parse error.
			err = errBatch
		}
		if err != nil {
			var me *tools.MessageError
			code := -32600
			if errors.As(err, &me) {
				code = me.Code()
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"jsonrpc": "2.0", "id": requestID(body),
				"error": map[string]any{"code": code, "message": err.Error()},
			})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		requests.serve(w, r, env, next)
	})
}

// errBatch refuses a JSON-RPC batch (code -32600, invalid request).
var errBatch = errors.New("JSON-RPC batches are not supported: send one message per request")

// notPost answers a request to /mcp with another method than POST: 405,
// saying why. The service is stateless (see newStreamable): it opens no
// event stream for a GET and keeps no MCP session for a DELETE to end.
func notPost(w http.ResponseWriter, method string) {
	w.Header().Set("Allow", http.MethodPost)
	why := "method not allowed: send each JSON-RPC message with POST"
	switch method {
	case http.MethodGet:
		why = "method not allowed: this server opens no event stream (it is stateless); send each JSON-RPC message with POST"
	case http.MethodDelete:
		why = "method not allowed: this server keeps no MCP session, so there is none to end"
	}
	plain(w, http.StatusMethodNotAllowed, why)
}

// requestID is the id of a JSON-RPC request body, or nil.
func requestID(body []byte) any {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &m) != nil || len(m.ID) == 0 {
		return nil
	}
	return m.ID
}

// checkOrigin refuses a request whose Origin header names neither an
// allowed origin nor the server's own: the DNS-rebinding and cross-site
// protection the MCP transport asks of servers. mcp-go adds its own check
// that a request reaching a loopback address names a loopback Host.
//
// With cors, a page of an allowed origin may call next from a browser
// (CORS): its preflight (OPTIONS with Access-Control-Request-Method) is
// answered here, before any credentials are asked for, which a preflight
// never carries; and every answer to that origin says it may read it, the
// challenge of a 401 and the session header included. Credentials travel
// in Authorization, never in cookies: no Access-Control-Allow-Credentials.
func checkOrigin(next http.Handler, allowed []string, cors bool) http.Handler {
	set := map[string]bool{}
	for _, o := range allowed {
		set[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		switch {
		case origin == "" || sameOrigin(origin, r.Host):
		case !set[strings.ToLower(origin)]:
			plain(w, http.StatusForbidden, "forbidden: origin not allowed")
			return
		case cors:
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
				h.Set("Access-Control-Allow-Methods", http.MethodPost)
				h.Set("Access-Control-Allow-Headers", corsRequestHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
		}
		next.ServeHTTP(w, r)
	})
}

// corsRequestHeaders are the headers a page may send to /mcp: its
// credentials, the body's type, and the MCP transport's own.
const corsRequestHeaders = "Authorization, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"

// sameOrigin reports whether origin names host, the one the request was
// sent to, a default port written or not on either side (a browser leaves
// it out of both; other clients may write it in the Host).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(withoutDefaultPort(u.Scheme, u.Host), withoutDefaultPort(u.Scheme, host))
}

// withoutDefaultPort returns hostport without scheme's default port, if it
// has it: "[::1]:443" is "[::1]" for https.
func withoutDefaultPort(scheme, hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		return hostport
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
