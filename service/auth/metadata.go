package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// MetadataPath is where the OAuth protected resource metadata (RFC 9728)
// is served: at this path and, for a resource URL with a path, at this
// path followed by the resource's path (see [Authenticator.MetadataPaths]).
const MetadataPath = "/.well-known/oauth-protected-resource"

// protectedResourceMetadata is the document of RFC 9728 §2.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
}

// metadataURL is the metadata URL of resource (RFC 9728 §3.1): the
// well-known path inserted between the host and the resource's path.
func metadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	c := *u
	c.Path, c.RawPath = MetadataPath+strings.TrimSuffix(u.Path, "/"), ""
	return c.String()
}

// MetadataURL returns the URL of this server's protected resource metadata,
// which 401 responses name in WWW-Authenticate (resource_metadata): for the
// resource https://mcp.example.com/mcp, it is
// https://mcp.example.com/.well-known/oauth-protected-resource/mcp. It is ""
// when OAuth is not configured.
func (a *Authenticator) MetadataURL() string {
	if a.oauth == nil {
		return ""
	}
	return a.oauth.metadataURL
}

// MetadataPaths returns the paths at which to mount
// [Authenticator.MetadataHandler]: [MetadataPath] and, when the resource URL
// has a path, the path of [Authenticator.MetadataURL] (for the resource
// https://mcp.example.com/mcp, /.well-known/oauth-protected-resource/mcp).
// It is nil when OAuth is not configured.
func (a *Authenticator) MetadataPaths() []string {
	if a.oauth == nil {
		return nil
	}
	paths := []string{MetadataPath}
	if u, err := url.Parse(a.oauth.metadataURL); err == nil && u.Path != MetadataPath {
		paths = append(paths, u.Path)
	}
	return paths
}

// MetadataHandler serves the protected resource metadata (RFC 9728) to GET
// and HEAD, without authentication:
//
//	{"resource": "<resource>", "authorization_servers": ["<issuer>"],
//	 "bearer_methods_supported": ["header"], "scopes_supported": [...]}
//
// (scopes_supported only when scopes are required). Mount it at
// [Authenticator.MetadataPaths]. Without OAuth it answers 404 to everything.
func (a *Authenticator) MetadataHandler() http.Handler {
	if a.oauth == nil {
		return http.NotFoundHandler()
	}
	body := append(append([]byte(nil), a.meta...), '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		// Public by design; browser-based MCP clients read it cross-origin.
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		_, _ = w.Write(body)
	})
}
