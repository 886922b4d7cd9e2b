package service_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/policy"
)

// issuer is an OAuth authorization server for the tests: RFC 8414
// metadata and a JWKS whose keys can rotate.
type issuer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey
	jwks atomic.Int32 // JWKS fetches
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{keys: map[string]*ecdsa.PrivateKey{}}
	is.addKey(t, "k1")
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys"})
		case "/keys":
			is.jwks.Add(1)
			is.mu.Lock()
			var set jose.JSONWebKeySet
			for kid, k := range is.keys {
				set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
			}
			is.mu.Unlock()
			_ = json.NewEncoder(w).Encode(set)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) addKey(t *testing.T, kid string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.keys[kid] = k
	is.mu.Unlock()
}

// token signs claims with the key kid.
func (is *issuer) token(t *testing.T, kid string, claims map[string]any) string {
	is.mu.Lock()
	k := is.keys[kid]
	is.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const oauthResource = "https://payments.example.com/mcp"

// claims are a valid access token's for client, with changes.
func (is *issuer) claims(client string, changes map[string]any) map[string]any {
	c := map[string]any{
		"iss": is.srv.URL, "aud": oauthResource, "client_id": client, "sub": "user-1",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	for k, v := range changes {
		c[k] = v
	}
	return c
}

func TestOAuthAccessTokensOverHTTP(t *testing.T) {
	is := newIssuer(t)
	f := newFixture(t, setup{principalsYAML: `oauth:
  issuer: ` + is.srv.URL + `
  resource: ` + oauthResource + `
  claim: client_id
  principals:
    agent-x:
`})
	mcpCall := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	post := func(token string) (int, http.Header, string) {
		h := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-11-25"}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		return f.get(http.MethodPost, "/mcp", strings.NewReader(mcpCall), h)
	}
	metadata := `Bearer resource_metadata="https://payments.example.com/.well-known/oauth-protected-resource/mcp"`

	t.Run("a valid token calls the tools as its principal", func(t *testing.T) {
		tok := is.token(t, "k1", is.claims("agent-x", nil))
		tr, err := transport.NewStreamableHTTP(f.srv.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
		if err != nil {
			t.Fatal(err)
		}
		c := client.NewClient(tr)
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Initialize(context.Background(), mcp.InitializeRequest{}); err != nil {
			t.Fatal(err)
		}
		if text, isErr := call(t, c, policy.ToolAgentPaymentSession, agentArgs); isErr {
			t.Fatalf("refused: %s", text)
		}
		if !strings.Contains(f.logs.String(), `"caller":"oauth:agent-x"`) {
			t.Errorf("no log line names the principal oauth:agent-x")
		}
	})
	t.Run("no token gets the metadata's address", func(t *testing.T) {
		status, h, _ := post("")
		if status != http.StatusUnauthorized || h.Get("WWW-Authenticate") != metadata {
			t.Errorf("%d %q", status, h.Get("WWW-Authenticate"))
		}
	})
	for name, changes := range map[string]map[string]any{
		"a token for another audience": {"aud": "https://other.example.com/mcp"},
		"an expired token":             {"exp": time.Now().Add(-time.Hour).Unix()},
		"a token not yet valid":        {"nbf": time.Now().Add(time.Hour).Unix()},
		"a token from another issuer":  {"iss": "https://evil.example.com"},
	} {
		t.Run(name+" is invalid", func(t *testing.T) {
			status, h, body := post(is.token(t, "k1", is.claims("agent-x", changes)))
			if status != http.StatusUnauthorized || h.Get("WWW-Authenticate") != metadata+`, error="invalid_token"` {
				t.Errorf("%d %q %s", status, h.Get("WWW-Authenticate"), body)
			}
		})
	}
	t.Run("an unlisted client is forbidden", func(t *testing.T) {
		if status, _, body := post(is.token(t, "k1", is.claims("agent-y", nil))); status != http.StatusForbidden {
			t.Errorf("%d %s", status, body)
		}
	})
	t.Run("a rotated key is fetched on its first use", func(t *testing.T) {
		before := is.jwks.Load()
		is.addKey(t, "k2")
		if status, _, body := post(is.token(t, "k2", is.claims("agent-x", nil))); status != http.StatusOK {
			t.Errorf("%d %s", status, body)
		}
		if got := is.jwks.Load() - before; got != 1 {
			t.Errorf("%d JWKS fetches for the new kid, want 1", got)
		}
	})
	t.Run("the protected resource metadata is served", func(t *testing.T) {
		for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
			status, _, body := f.get(http.MethodGet, path, nil, nil)
			var m struct {
				Resource             string   `json:"resource"`
				AuthorizationServers []string `json:"authorization_servers"`
			}
			if status != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil || m.Resource != oauthResource ||
				len(m.AuthorizationServers) != 1 || m.AuthorizationServers[0] != is.srv.URL {
				t.Errorf("%s: %d %s", path, status, body)
			}
		}
	})
	if f.sandbox.Requests() != 1 {
		t.Errorf("the sandbox got %d requests, want the 1 created", f.sandbox.Requests())
	}
	if strings.Contains(f.logs.String(), "eyJ") {
		t.Error("a JWT is in the logs")
	}
}
