package auth

import (
	"errors"
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
