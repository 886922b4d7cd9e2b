package yamlfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parse decodes data and reads its top level with known keys, as a file
// format built on this package would.
func parse(p *Parser, data string, known ...string) error {
	if root := p.Decode([]byte(data), "test file", "the file is empty"); root != nil {
		if f := p.Fields(root, "the top level", known...); f != nil {
			if e, ok := f["on"]; ok {
				p.Bool(e.Value, "on")
			}
		}
	}
	if err := p.Err("f.yaml"); err != nil {
		return err // only when not nil: a nil *Error is not a nil error
	}
	return nil
}

func TestParserReportsEveryProblemInLineOrder(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"refuses an empty file", "", []string{"f.yaml: the file is empty"}},
		{"refuses a file of comments only", "# nothing\n", []string{"f.yaml: the file is empty"}},
		{"refuses broken YAML with its line", "a: 1\nb: [\n", []string{"f.yaml:2: invalid YAML: did not find expected node content"}},
		{"refuses a second document after the first one's problems", "a: 1\nzz: 2\n---\na: 1\n", []string{
			`f.yaml:2: the top level: unknown key "zz" (known keys: a, on)`,
			"f.yaml:3: a second YAML document; a test file holds exactly one",
		}},
		{"refuses aliases and reads no further", "a: &x 1\nzz: *x\n", []string{"f.yaml:2: YAML aliases (*x) are not supported; write the value out"}},
		{"refuses explicit tags, which read as what a reviewer does not see", "a: !!float 5\non: !!bool \"true\"\n", []string{
			"f.yaml:1: YAML tags (!!float) are not supported; write the value plainly",
			"f.yaml:2: YAML tags (!!bool) are not supported; write the value plainly",
		}},
		{"refuses a top level that is not a mapping", "- a\n", []string{"f.yaml:1: the top level must be a mapping (key: value)"}},
		{"asks for a non-string key to be quoted", "a: 1\n42: 2\n", []string{`f.yaml:2: the top level: keys must be strings (quote "42")`}},
		{"names the first of duplicate keys", "a: 1\n\na: 2\n", []string{`f.yaml:3: the top level: duplicate key "a" (first at line 1)`}},
		{"refuses a boolean spelled yes", "on: yes\n", []string{"f.yaml:1: on must be true or false"}},
		{"sorts problems by line", "on: 1\nzz: 2\nzz: 3\n", []string{
			"f.yaml:1: on must be true or false",
			`f.yaml:2: the top level: unknown key "zz" (known keys: a, on)`,
			`f.yaml:3: the top level: duplicate key "zz" (first at line 2)`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(&Parser{}, tc.yaml, "a", "on")
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParserAcceptsAStrictFile(t *testing.T) {
	if err := parse(&Parser{}, "a: 1\non: true\n", "a", "on"); err != nil {
		t.Errorf("err = %v", err)
	}
}

func TestNonStringKeysAreAskedToBeQuoted(t *testing.T) {
	err := parse(&Parser{}, "42: 1\n", "a")
	if want := `f.yaml:1: the top level: keys must be strings (quote "42")`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("reads a file up to the limit", func(t *testing.T) {
		data, err := ReadFile(path, 5)
		if err != nil || string(data) != "a: 1\n" {
			t.Errorf("ReadFile = %q, %v", data, err)
		}
	})
	t.Run("refuses a file over the limit with an *Error naming it", func(t *testing.T) {
		_, err := ReadFile(path, 4)
		var e *Error
		if !errors.As(err, &e) || err.Error() != path+": the file is larger than 4 bytes" {
			t.Errorf("ReadFile = %v, want an *Error", err)
		}
	})
	t.Run("names a file that does not exist", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.yaml")
		_, err := ReadFile(missing, 5)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
			t.Errorf("ReadFile = %v, want a not-exist error naming the file", err)
		}
	})
}
