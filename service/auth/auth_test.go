package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewTokenIsRandomAndRecognisable(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if !strings.HasPrefix(a, "clk_") || len(a) != len("clk_")+43 {
		t.Errorf("token %q: want clk_ and 43 base64url characters (32 bytes)", a)
	}
	if h := HashToken("123"); h != hashA {
		t.Errorf("HashToken(123) = %s, want %s", h, hashA)
	}
}

func TestTokenLinesPrintsTheTokenAndTheEntryToPaste(t *testing.T) {
	got := TokenLines("agent-a", "clk_example")
	want := `Bearer token for agent-a (shown only this once; give it to the agent and keep it secret):
clk_example

Add this to the principals file, under principals:
  - name: agent-a
    token_sha256: ` + HashToken("clk_example") + `
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TokenLines mismatch (-want +got):\n%s", diff)
	}
}

// pastedEntry returns the YAML that TokenLines tells the operator to paste.
func pastedEntry(t *testing.T, out string) string {
	t.Helper()
	_, entry, ok := strings.Cut(out, "under principals:\n")
	if !ok {
		t.Fatalf("no entry to paste in:\n%s", out)
	}
	return entry
}

func TestNewTokenHashesToWhatTokenLinesPrints(t *testing.T) {
	for _, name := range []string{"agent-a", "123", "true", "null", "-", "1e3", ".inf"} {
		t.Run(name, func(t *testing.T) {
			token, err := NewToken()
			if err != nil {
				t.Fatal(err)
			}
			out := TokenLines(name, token)
			if strings.Count(out, token) != 1 {
				t.Errorf("the token should be printed exactly once:\n%s", out)
			}
			f, err := Parse("p.yaml", []byte("principals:\n"+pastedEntry(t, out)), nil)
			if err != nil {
				t.Fatalf("the pasted entry does not load: %v\n%s", err, out)
			}
			if p := f.Principals[0]; p.Name != name || p.TokenSHA256 != HashToken(token) {
				t.Errorf("loaded %+v, want name %q and the token's hash", p, name)
			}
			// And the token authenticates as that principal.
			a, err := New(f)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/mcp", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			if p, err := a.Authenticate(r); err != nil || p.Name != name {
				t.Errorf("Authenticate = %+v, %v; want %s", p, err, name)
			}
		})
	}
}

// echoPrincipal answers with the request's principal as JSON, and whether
// an Authorization header reached it.
var echoPrincipal = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := FromContext(r.Context())
	if !ok {
		http.Error(w, "no principal in context", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"name": p.Name, "policy": p.Policy, "method": p.Method,
		"authorization_seen": r.Header.Get("Authorization") != "",
	})
})

type response struct {
	status int
	www    string
	body   string
}

// call GETs url with the given Authorization header ("" for none).
func call(t *testing.T, url, authorization string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func tokenFile(t *testing.T) *File {
	t.Helper()
	f, err := Parse("/etc/clink/principals.yaml", []byte(`principals:
  - name: agent-a
    token_sha256: `+HashToken("secret-token-a")+`
    policy: policies/a.yaml
  - name: agent-b
    token_sha256: `+HashToken("secret-token-b")+`
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBearerTokensAuthenticateTheirPrincipal(t *testing.T) {
	a, err := New(tokenFile(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Middleware(echoPrincipal))
	defer srv.Close()

	cases := []struct{ authorization, want string }{
		{"Bearer secret-token-a", `{"authorization_seen":false,"method":"token","name":"agent-a","policy":"/etc/clink/policies/a.yaml"}`},
		{"Bearer secret-token-b", `{"authorization_seen":false,"method":"token","name":"agent-b","policy":""}`},
		{"bearer secret-token-b", `{"authorization_seen":false,"method":"token","name":"agent-b","policy":""}`},
	}
	for _, c := range cases {
		r := call(t, srv.URL, c.authorization)
		if r.status != 200 || strings.TrimSpace(r.body) != c.want {
			t.Errorf("%s: got %d %s, want 200 %s", c.authorization, r.status, r.body, c.want)
		}
	}
}

func TestRefusedBearerTokensGet401WithAChallenge(t *testing.T) {
	logs := &syncBuffer{}
	a, err := New(tokenFile(t), WithLogger(newLogger(logs)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Middleware(echoPrincipal))
	defer srv.Close()

	cases := []struct {
		name, authorization, www, body string
	}{
		{"no header", "", `Bearer realm="clink-mcp"`,
			`{"error":"unauthorized","error_description":"this server needs a bearer token in the Authorization header"}`},
		{"a wrong token", "Bearer secret-token-c", `Bearer realm="clink-mcp", error="invalid_token"`,
			`{"error":"invalid_token","error_description":"unknown bearer token"}`},
		{"a token differing in case", "Bearer SECRET-TOKEN-A", `Bearer realm="clink-mcp", error="invalid_token"`,
			`{"error":"invalid_token","error_description":"unknown bearer token"}`},
		{"another scheme", "Basic c2VjcmV0LXRva2VuLWE=", `Bearer realm="clink-mcp"`,
			`{"error":"unauthorized","error_description":"this server accepts only bearer tokens in the Authorization header"}`},
		{"an empty bearer", "Bearer ", `Bearer realm="clink-mcp"`,
			`{"error":"unauthorized","error_description":"the Authorization header has an empty bearer token"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, srv.URL, c.authorization)
			if r.status != http.StatusUnauthorized || r.www != c.www || strings.TrimSpace(r.body) != c.body {
				t.Errorf("got %d, WWW-Authenticate %q, body %s\nwant 401, %q, %s", r.status, r.www, r.body, c.www, c.body)
			}
		})
	}
	t.Run("a token in the query is ignored", func(t *testing.T) {
		r := call(t, srv.URL+"/mcp?access_token=secret-token-a", "")
		if r.status != http.StatusUnauthorized || r.www != `Bearer realm="clink-mcp"` {
			t.Errorf("got %d %q, want 401 without error", r.status, r.www)
		}
	})

	out := logs.String()
	if !strings.Contains(out, "auth: request refused") || !strings.Contains(out, "unknown bearer token") {
		t.Errorf("refusals are not logged with their reason:\n%s", out)
	}
	for _, secret := range []string{"secret-token", "SECRET-TOKEN", "c2VjcmV0LXRva2VuLWE", HashToken("secret-token-c")} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q:\n%s", secret, out)
		}
	}
}

func TestAuthenticateReturnsTypedErrors(t *testing.T) {
	a, err := New(tokenFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for authz, want := range map[string]error{"": ErrNoToken, "Bearer nope": ErrInvalidToken} {
		r := httptest.NewRequest("GET", "/mcp", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		_, err := a.Authenticate(r)
		var e *Error
		if !errors.Is(err, want) || !errors.As(err, &e) || e.Status() != http.StatusUnauthorized {
			t.Errorf("%q: err = %v, want %v with status 401", authz, err, want)
		}
		if strings.Contains(err.Error(), "nope") {
			t.Errorf("the error contains the token: %v", err)
		}
	}
	r := httptest.NewRequest("GET", "/mcp", nil)
	r.Header.Add("Authorization", "Bearer secret-token-a")
	r.Header.Add("Authorization", "Bearer secret-token-b")
	if _, err := a.Authenticate(r); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("two Authorization headers: err = %v, want ErrInvalidToken", err)
	}
}

func TestNewChecksAFileBuiltInCode(t *testing.T) {
	cases := []struct {
		name string
		f    *File
		want string
	}{
		{"nil", nil, "auth: no principals file"},
		{"empty", &File{}, "auth: the principals file has neither principals nor oauth"},
		{"bad hash", &File{Principals: []TokenPrincipal{{Name: "a", TokenSHA256: "x"}}}, "auth: principal a: token_sha256 must be 64 lowercase hex digits (the SHA-256 of the token, as `clink-mcp token new` prints it)"},
		{"duplicate hash", &File{Principals: []TokenPrincipal{{Name: "a", TokenSHA256: hashA}, {Name: "b", TokenSHA256: hashA}}}, "auth: principal b has the same token_sha256 as another"},
		{"bad issuer", &File{OAuth: &OAuth{Issuer: "ftp://x", Resource: "https://r"}}, `auth: oauth: issuer "ftp://x" must use https`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.f)
			if err == nil || err.Error() != c.want {
				t.Errorf("err = %v, want %s", err, c.want)
			}
		})
	}
	a, err := New(&File{Principals: []TokenPrincipal{{Name: "x", TokenSHA256: HashToken("t")}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Policies(); !cmp.Equal(got, []string{""}) {
		t.Errorf("Policies() = %q", got)
	}
	if a.OAuthEnabled() || a.MetadataURL() != "" || a.MetadataPaths() != nil {
		t.Error("OAuth looks configured without an oauth section")
	}
}

func TestContextCarriesThePrincipal(t *testing.T) {
	if _, ok := FromContext(t.Context()); ok {
		t.Error("an empty context has a principal")
	}
	p := Principal{Name: "a", Policy: "p.yaml", Method: MethodToken}
	got, ok := FromContext(NewContext(t.Context(), p))
	if !ok || got != p {
		t.Errorf("FromContext = %+v, %v", got, ok)
	}
}

func TestMatchTokenFindsTheRightPrincipalAmongMany(t *testing.T) {
	f := &File{}
	for i := range 50 {
		name := "agent-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		f.Principals = append(f.Principals, TokenPrincipal{Name: name, TokenSHA256: HashToken("tok-" + name)})
	}
	a, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Principals {
		got, ok := a.matchToken("tok-" + p.Name)
		if !ok || got.Name != p.Name {
			t.Errorf("matchToken(tok-%s) = %v, %v", p.Name, got.Name, ok)
		}
	}
	if _, ok := a.matchToken("tok-nobody"); ok {
		t.Error("an unknown token matched")
	}
}

// The example file in the package documentation is not a test fixture, but
// its shape must stay loadable.
func TestThePackageDocExampleLoads(t *testing.T) {
	doc := `principals:
  - name: agent-a
    token_sha256: ` + hashA + `
    policy: policies/agent-a.yaml
  - name: agent-b
    token_sha256: ` + hashB + `
oauth:
  issuer: https://auth.example.com
  resource: https://mcp.example.com/mcp
  claim: sub
  scopes: [payments]
  principals:
    some-client: { policy: policies/x.yaml }
    other-client:
  allow_unlisted: false
`
	if _, err := Parse("p.yaml", []byte(doc), nil); err != nil {
		t.Fatal(err)
	}
}
