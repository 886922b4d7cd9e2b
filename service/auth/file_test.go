package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	hashA = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3" // sha256("123")
	hashB = "b3a8e0e1f9ab1bfe3a36f231f676f78bb30a519d2b21e6c530c0eee8ebb4a5d0" // sha256("456")
)

// writeFile writes content to dir/name, creating folders, and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReadsAValidFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "principals.yaml", `principals:
  - name: agent-a
    token_sha256: `+hashA+`
    policy: policies/a.yaml
  - name: agent.b_2
    token_sha256: `+hashB+`
oauth:
  issuer: https://auth.example.com
  resource: https://mcp.example.com/mcp
  claim: client_id
  scopes: [payments, "read:all"]
  principals:
    some-client: { policy: policies/x.yaml }
    "12345":
    other: {}
  allow_unlisted: true
`)
	var checked []string
	f, err := Load(path, func(p string) error { checked = append(checked, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Path: path,
		Principals: []TokenPrincipal{
			{Name: "agent-a", TokenSHA256: hashA, Policy: filepath.Join(dir, "policies/a.yaml"), Line: 2},
			{Name: "agent.b_2", TokenSHA256: hashB, Line: 5},
		},
		OAuth: &OAuth{
			Issuer:   "https://auth.example.com",
			Resource: "https://mcp.example.com/mcp",
			Claim:    "client_id",
			Scopes:   []string{"payments", "read:all"},
			Principals: map[string]OAuthPrincipal{
				"some-client": {Policy: filepath.Join(dir, "policies/x.yaml"), Line: 13},
				"12345":       {Line: 14},
				"other":       {Line: 15},
			},
			AllowUnlisted: true,
		},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "policies/a.yaml"), filepath.Join(dir, "policies/x.yaml")}, checked); diff != "" {
		t.Errorf("checkPolicy calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", filepath.Join(dir, "policies/a.yaml"), filepath.Join(dir, "policies/x.yaml")}, f.Policies()); diff != "" {
		t.Errorf("Policies() (-want +got):\n%s", diff)
	}
}

func TestLoadDefaultsTheClaimToSub(t *testing.T) {
	f, err := Parse("p.yaml", []byte(`oauth:
  issuer: http://127.0.0.1:8080
  resource: http://localhost:9000/mcp
  principals:
    alice:
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.OAuth.Claim != ClaimSubject {
		t.Errorf("Claim = %q, want sub", f.OAuth.Claim)
	}
	if got := f.Policies(); !cmp.Equal(got, []string{""}) {
		t.Errorf("Policies() = %q, want only the default", got)
	}
}

func TestLoadReportsEveryProblemWithItsLine(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{
			"refuses an unknown key",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\n    polcy: x.yaml\n",
			[]string{`p.yaml:4: principal: unknown key "polcy" (known keys: name, token_sha256, policy, admin)`},
		},
		{
			"refuses an admin flag that is not a boolean",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\n    admin: \"yes\"\n",
			[]string{`p.yaml:4: principal a: admin must be true or false`},
		},
		{
			"refuses an unknown top-level key",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\noauht: {}\n",
			[]string{`p.yaml:4: the top level: unknown key "oauht" (known keys: principals, oauth)`},
		},
		{
			"refuses a duplicate key with the line of the first",
			"principals:\n  - name: a\n    name: b\n    token_sha256: " + hashA + "\n",
			[]string{`p.yaml:3: principal: duplicate key "name" (first at line 2)`},
		},
		{
			"refuses a hash that is not 64 lowercase hex digits",
			"principals:\n  - name: a\n    token_sha256: " + strings.ToUpper(hashA) + "\n  - name: b\n    token_sha256: abc\n",
			[]string{
				"p.yaml:3: principal a: token_sha256 must be 64 lowercase hex digits (the SHA-256 of the token, as `clink-mcp token new` prints it)",
				"p.yaml:5: principal b: token_sha256 must be 64 lowercase hex digits (the SHA-256 of the token, as `clink-mcp token new` prints it)",
			},
		},
		{
			"refuses a duplicate name",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\n  - name: a\n    token_sha256: " + hashB + "\n",
			[]string{`p.yaml:4: principal a is listed twice (first at line 2)`},
		},
		{
			"refuses a duplicate token hash",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\n  - name: b\n    token_sha256: " + hashA + "\n",
			[]string{`p.yaml:5: principal b has the same token_sha256 as the principal at line 2; each principal needs its own token`},
		},
		{
			"refuses a bad name",
			"principals:\n  - name: agent a\n    token_sha256: " + hashA + "\n  - name: " + strings.Repeat("x", 65) + "\n    token_sha256: " + hashB + "\n",
			[]string{
				`p.yaml:2: principal: name "agent a" is not valid: use 1 to 64 letters, digits, dots, underscores or hyphens`,
				`p.yaml:4: principal: name "` + strings.Repeat("x", 65) + `" is not valid: use 1 to 64 letters, digits, dots, underscores or hyphens`,
			},
		},
		{
			"refuses the local principal's name",
			"principals:\n  - name: Local\n    token_sha256: " + hashA + "\n",
			[]string{`p.yaml:2: principal: name "Local" is reserved for the local principal (stdio calls); choose another`},
		},
		{
			"refuses a name YAML reads as a number",
			"principals:\n  - name: 123\n    token_sha256: " + hashA + "\n",
			[]string{`p.yaml:2: principal: name must be a string, not int (quote it)`},
		},
		{
			"refuses a principal without name or hash",
			"principals:\n  - policy: x.yaml\n",
			[]string{
				`p.yaml:2: principal: name is missing`,
				"p.yaml:2: principal: token_sha256 is missing; `clink-mcp token new NAME` prints a token and its hash",
			},
		},
		{
			"refuses a file with neither section",
			"# nothing but a comment\n{}\n",
			[]string{`p.yaml:2: neither principals nor oauth is set; list principals with bearer tokens, configure oauth, or both`},
		},
		{
			"refuses an empty file",
			"",
			[]string{`p.yaml: the file is empty; it needs a principals list, an oauth section, or both`},
		},
		{
			"refuses an empty principals list",
			"principals: []\n",
			[]string{`p.yaml:1: principals lists no principal; list at least one, or remove it`},
		},
		{
			"refuses wrong types",
			"principals:\n  name: a\n",
			[]string{`p.yaml:2: principals must be a list of entries with name and token_sha256`},
		},
		{
			"refuses aliases",
			"principals:\n  - &p\n    name: a\n    token_sha256: " + hashA + "\n  - *p\n",
			[]string{`p.yaml:5: YAML aliases (*p) are not supported; write the value out`},
		},
		{
			"refuses a second document",
			"principals:\n  - name: a\n    token_sha256: " + hashA + "\n---\nprincipals: []\n",
			[]string{`p.yaml:4: a second YAML document; a principals file holds exactly one`},
		},
		{
			"reports invalid YAML with its line",
			"principals:\n  - name: a\n    token_sha256: x: y\n",
			[]string{`p.yaml:3: invalid YAML: mapping values are not allowed in this context`},
		},
		{
			"refuses an oauth section with bad URLs, claim, scopes and types",
			`oauth:
  issuer: http://auth.example.com
  resource: https://mcp.example.com/mcp#frag
  claim: email
  scopes: [payments, "a b", payments]
  allow_unlisted: "yes"
`,
			[]string{
				`p.yaml:2: oauth: issuer "http://auth.example.com" must use https (http is allowed only on a loopback host)`,
				`p.yaml:3: oauth: resource "https://mcp.example.com/mcp#frag" must not have a fragment`,
				`p.yaml:4: oauth: claim must be sub or client_id, not "email"`,
				`p.yaml:5: oauth: scopes: "a b" is not a valid scope name (printable ASCII without spaces, quotes or backslashes)`,
				`p.yaml:5: oauth: scopes: payments is listed twice`,
				`p.yaml:6: oauth: allow_unlisted must be true or false`,
			},
		},
		{
			"refuses a resource URL whose path no route can hold",
			"oauth:\n  issuer: https://auth.example.com\n  resource: https://mcp.example.com/{tenant}/mcp\n",
			[]string{
				`p.yaml:3: oauth: resource "https://mcp.example.com/{tenant}/mcp" has '{' in its path: use letters, digits, / and -._~!$&'()*+,;=:@ only (the protected resource metadata is served at a path built from it)`,
			},
		},
		{
			"refuses a resource URL with an escaped space in its path",
			"oauth:\n  issuer: https://auth.example.com\n  resource: https://mcp.example.com/a%20b\n",
			[]string{
				`p.yaml:3: oauth: resource "https://mcp.example.com/a%20b" has ' ' in its path: use letters, digits, / and -._~!$&'()*+,;=:@ only (the protected resource metadata is served at a path built from it)`,
			},
		},
		{
			"names a URL with credentials without them",
			"oauth:\n  issuer: https://svc:IdpPassw0rd@idp.example.com\n  resource: \"https://tok3n@mcp.example.com/mcp\"\n",
			[]string{
				`p.yaml:2: oauth: issuer "https://idp.example.com" must not contain credentials (they are not shown)`,
				`p.yaml:3: oauth: resource "https://mcp.example.com/mcp" must not contain credentials (they are not shown)`,
			},
		},
		{
			"does not repeat a URL with credentials that does not parse",
			"oauth:\n  issuer: \"https://svc:IdpPassw0rd@idp.example.com:port\"\n  resource: \"https:/alice:s3cret@mcp.example.com/mcp\"\n",
			[]string{
				`p.yaml:2: oauth: issuer is not an absolute URL (it is not shown: it may hold credentials)`,
				`p.yaml:3: oauth: resource is not an absolute URL (it is not shown: it may hold credentials)`,
			},
		},
		{
			"refuses an oauth section without issuer and resource",
			"oauth:\n  allow_unlisted: true\n",
			[]string{
				`p.yaml:2: oauth: issuer is missing: the authorization server's issuer URL`,
				`p.yaml:2: oauth: resource is missing: this server's URL, such as https://mcp.example.com/mcp, which tokens must name as their audience`,
			},
		},
		{
			"refuses an oauth section that admits nobody",
			"oauth:\n  issuer: https://auth.example.com\n  resource: https://mcp.example.com/mcp\n",
			[]string{`p.yaml:2: oauth: no principals are listed and allow_unlisted is false, so every OAuth caller would be refused; list principals or set allow_unlisted: true`},
		},
		{
			"refuses an unknown key and a numeric claim value under oauth principals",
			`oauth:
  issuer: https://auth.example.com
  resource: https://mcp.example.com/mcp
  principals:
    a: { polic: x.yaml }
    42: {}
`,
			[]string{
				`p.yaml:5: oauth: principal "a": unknown key "polic" (known keys: policy, admin)`,
				`p.yaml:6: oauth: principals: keys must be strings (quote "42")`,
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(c.yaml), nil)
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("err = %v, want an ErrInvalidFile", err)
			}
			if diff := cmp.Diff(c.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadReportsABadPolicyAtEveryLineThatUsesIt(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "principals.yaml", `principals:
  - name: a
    token_sha256: `+hashA+`
    policy: bad.yaml
  - name: b
    token_sha256: `+hashB+`
    policy: good.yaml
oauth:
  issuer: https://auth.example.com
  resource: https://mcp.example.com/mcp
  principals:
    c:
      policy: bad.yaml
`)
	calls := map[string]int{}
	_, err := Load(path, func(p string) error {
		calls[p]++
		if filepath.Base(p) == "bad.yaml" {
			return errors.New("bad.yaml:3: currencies is missing\nbad.yaml:7: version must be 1")
		}
		return nil
	})
	want := []string{
		path + ":4: principal a: policy bad.yaml: bad.yaml:3: currencies is missing",
		"  bad.yaml:7: version must be 1",
		path + ":13: oauth: principal \"c\": policy bad.yaml: bad.yaml:3: currencies is missing",
		"  bad.yaml:7: version must be 1",
	}
	if err == nil {
		t.Fatal("Load accepted a file whose policy does not load")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{filepath.Join(dir, "bad.yaml"): 1, filepath.Join(dir, "good.yaml"): 1}, calls); diff != "" {
		t.Errorf("checkPolicy is called once per file (-want +got):\n%s", diff)
	}
}

func TestLoadNamesAFileItCannotRead(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "principals file: open ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want a wrapped not-exist error naming the principals file", err)
	}
}

func TestLoadKeepsAbsolutePolicyPaths(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "abs.yaml")
	f, err := Parse("dir/p.yaml", []byte("principals:\n  - name: a\n    token_sha256: "+hashA+"\n    policy: "+abs+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Principals[0].Policy != abs {
		t.Errorf("Policy = %q, want %q", f.Principals[0].Policy, abs)
	}
}

func TestAdminsAreMarkedAndNoOneElse(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "p.yaml", "principals:\n  - name: a\n    token_sha256: "+hashA+"\n    admin: true\n"+
		"oauth:\n  issuer: https://issuer.example\n  resource: https://mcp.example/mcp\n  principals:\n    ops: { admin: true }\n    agent:\n")
	f, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Principals) != 1 || !f.Principals[0].Admin {
		t.Errorf("Principals = %+v, want a marked admin", f.Principals)
	}
	if !f.OAuth.Principals["ops"].Admin || f.OAuth.Principals["agent"].Admin {
		t.Errorf("OAuth principals = %+v, want ops alone an admin", f.OAuth.Principals)
	}
}
