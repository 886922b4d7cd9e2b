// Package yamlfile reads strict YAML configuration files, such as policy
// and principals files: exactly one document, no aliases, string keys
// without duplicates, and every problem reported with its line, so that a
// file's author can fix them all in one pass.
//
// A [Parser] collects problems instead of stopping at the first; [Parser.Err]
// returns them all, in line order, as one [*Error]. The package does no I/O
// beyond [ReadFile].
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Problem is one problem in a file. Line is 1-based; 0 means the problem is
// with the file as a whole.
type Problem struct {
	Line    int
	Message string
}

// Error lists every problem found in one file. Its message has one line per
// problem, "FILE:LINE: problem", in the order of Problems.
type Error struct {
	File     string
	Problems []Problem
}

// Error returns one "FILE:LINE: problem" line per problem ("FILE: problem"
// for a problem with the file as a whole).
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Message)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.File, p.Message)
		}
	}
	return b.String()
}

// ReadFile reads the file at path. A file larger than limit bytes is
// refused with an [*Error] naming it, read no further than that; other
// errors are the os package's, which name the path.
func ReadFile(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, &Error{File: path, Problems: []Problem{{Message: fmt.Sprintf("the file is larger than %d bytes", limit)}}}
	}
	return data, nil
}

// Parser collects the problems found in one file. The zero value is ready
// to use; a Parser is not safe for concurrent use.
type Parser struct {
	problems []Problem
}

// Errorf records a problem at n's line (the file as a whole when n is nil).
func (p *Parser) Errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

// Err returns every problem recorded so far, in line order (problems on one
// line in the order found), as an [*Error] naming file; nil if there are
// none.
func (p *Parser) Err(file string) *Error {
	if len(p.problems) == 0 {
		return nil
	}
	sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
	return &Error{File: file, Problems: p.problems}
}

// Decode parses data, which must hold exactly one YAML document, and returns
// the document's root node. noun names the kind of file ("policy file") in
// the problem reported for a second document; empty is the problem reported
// for a file with no content.
//
// It returns nil, having recorded why, for a syntax error, an empty file, or
// a document with aliases or merge keys (they make a file harder to review
// and are a classic way to blow up a parser's memory) or explicit tags
// (`!!float 5` would read as the number a reviewer does not see). A second document is
// reported, but the first is still returned so that its problems are found
// too.
func (p *Parser) Decode(data []byte, noun, empty string) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.Errorf(nil, "%s", empty)
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.Errorf(&next, "a second YAML document; a %s holds exactly one", noun)
	case !errors.Is(err, io.EOF):
		p.yamlError(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.Errorf(&doc, "%s", empty)
		return nil
	}
	root := doc.Content[0]
	if p.unsupported(root) {
		return nil
	}
	return root
}

// yamlLineError matches a YAML syntax error that names its line. It is
// compiled on first use: most runs never see one.
var yamlLineError = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// yamlError records a YAML syntax error, at its line when it names one.
func (p *Parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineError().FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.problems = append(p.problems, Problem{Line: line, Message: "invalid YAML: " + m[2]})
		return
	}
	p.problems = append(p.problems, Problem{Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")})
}

// unsupported reports, and records, every alias and every explicit tag
// under n.
func (p *Parser) unsupported(n *yaml.Node) bool {
	found := false
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode {
			p.Errorf(n, "YAML aliases (*%s) are not supported; write the value out", n.Value)
			found = true
			return
		}
		if n.Style&yaml.TaggedStyle != 0 {
			p.Errorf(n, "YAML tags (%s) are not supported; write the value plainly", n.Tag)
			found = true
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return found
}

// Entry is one key and its value in a mapping.
type Entry struct {
	Key, Value *yaml.Node
}

// Entries returns the entries of the mapping n, in file order. It records a
// key that is not a string and a duplicate key (with the line of the
// first), and leaves both out. what names n in problems ("the top level").
// If n is not a mapping, it records that and returns false.
func (p *Parser) Entries(n *yaml.Node, what string) ([]Entry, bool) {
	if n.Kind != yaml.MappingNode {
		p.Errorf(n, "%s must be a mapping (key: value)", what)
		return nil, false
	}
	out := make([]Entry, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.Errorf(k, "%s: keys must be strings (quote %q)", what, k.Value)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.Errorf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, Entry{k, v})
	}
	return out, true
}

// Fields returns the entries of the mapping n by key, like [Parser.Entries],
// and records every key not among known. It returns nil if n is not a
// mapping.
func (p *Parser) Fields(n *yaml.Node, what string, known ...string) map[string]Entry {
	es, ok := p.Entries(n, what)
	if !ok {
		return nil
	}
	m := make(map[string]Entry, len(es))
	for _, e := range es {
		if !slices.Contains(known, e.Key.Value) {
			p.Errorf(e.Key, "%s: unknown key %q (known keys: %s)", what, e.Key.Value, strings.Join(known, ", "))
			continue
		}
		m[e.Key.Value] = e
	}
	return m
}

// Bool reads a boolean scalar, true or false (YAML 1.2: not yes or no). what
// names the value in the problem recorded otherwise.
func (p *Parser) Bool(n *yaml.Node, what string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.Errorf(n, "%s must be true or false", what)
		return false, false
	}
	return b, true
}
