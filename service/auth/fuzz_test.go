package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// FuzzParse feeds hostile principals files to the parser: it must not
// panic, and what it refuses it refuses with an ErrInvalidFile.
func FuzzParse(f *testing.F) {
	f.Add("principals:\n  - name: a\n    token_sha256: " + hashA + "\n    policy: p.yaml\n")
	f.Add("oauth:\n  issuer: https://a.example\n  resource: https://r.example/mcp\n  scopes: [x]\n  principals:\n    c: {policy: p.yaml}\n")
	f.Add("principals: &a [*a]\n")
	f.Add("principals:\n  - {name: \"\\u0000\", token_sha256: 1}\n---\n")
	f.Fuzz(func(t *testing.T, data string) {
		file, err := Parse("p.yaml", []byte(data), func(string) error { return nil })
		if err != nil {
			if !errors.Is(err, ErrInvalidFile) || !strings.HasPrefix(err.Error(), "p.yaml") {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		if _, err := New(file); err != nil {
			t.Fatalf("Parse accepted a file New refuses: %v\n%s", err, data)
		}
	})
}

// FuzzMetadataPathsCanBeMounted feeds resource URLs to New: the metadata
// paths of any it accepts can be mounted on an http.ServeMux (whose pattern
// parsing panics on a space or a brace) beside the server's other routes,
// and serve the metadata there.
func FuzzMetadataPathsCanBeMounted(f *testing.F) {
	for _, s := range []string{
		"https://mcp.example.com/mcp",
		"https://mcp.example.com",
		"https://mcp.example.com/",
		"https://mcp.example.com/{tenant}/mcp",
		"https://mcp.example.com/{$}",
		"https://mcp.example.com/a}b",
		"https://mcp.example.com/a b",
		"https://mcp.example.com/a%20b",
		"https://mcp.example.com/a%09b",
		"https://mcp.example.com/%7Bx%7D",
		"https://mcp.example.com/a%25b",
		"https://mcp.example.com/caf%C3%A9",
		"https://mcp.example.com/mcp/v1;x=1/@me:~it's(ok)!$&*+,=",
		"https://mcp.example.com//mcp",
		"https://mcp.example.com//",
		"https://mcp.example.com/a/../mcp",
		"https://mcp.example.com/./mcp/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, resource string) {
		a, err := New(&File{OAuth: &OAuth{Issuer: "https://issuer.example", Resource: resource, AllowUnlisted: true}})
		if err != nil {
			return
		}
		mux := http.NewServeMux()
		err = func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			mux.Handle("/mcp", http.NotFoundHandler())
			mux.Handle("GET /healthz", http.NotFoundHandler())
			mux.Handle("/admin/", http.NotFoundHandler())
			for _, p := range a.MetadataPaths() {
				mux.Handle(p, a.MetadataHandler())
			}
			return nil
		}()
		if err != nil {
			t.Fatalf("New accepted the resource %q, whose metadata paths %q cannot be mounted: %v", resource, a.MetadataPaths(), err)
		}
		for _, p := range a.MetadataPaths() {
			r, _ := http.NewRequest(http.MethodGet, "http://mcp.example.com"+p, nil)
			if r == nil {
				t.Fatalf("the metadata path %q is not a request path", p)
			}
			if _, pattern := mux.Handler(r); pattern != p {
				t.Errorf("a request for %q reaches the pattern %q, not the metadata", p, pattern)
			}
		}
	})
}
