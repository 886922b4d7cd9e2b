package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The documentation tests keep README.md and docs/*.md true: links resolve, the code that
// docs/architecture.md and docs/security.md name exists, every clink-mcp command line is one the
// binary accepts, and every sample marked as output is the command's real output.
//
// Markers, each an HTML comment on the line before a fenced block:
//
//	<!-- output: clink-mcp policy check docs/examples/policy.yaml -->
//	<!-- output exit=1: clink-mcp policy check docs/examples/bad.yaml -->
//	<!-- file: docs/examples/policy.yaml -->
//
// output runs the command from the repository root and compares stdout then stderr with the
// block (a console block's first line "$ COMMAND" is the command itself, not output); file
// compares the block with the file. A third marker, <!-- sample: NAME -->, is checked by
// docs_samples_test.go: configuration loaded by the code that reads it, and transcripts,
// messages and responses produced by the binary or the server in process.
//
// TestDocsEveryBlockIsChecked fails on a block that is none of these and not a list of
// commands that TestDocsCommandsAreAccepted checks, unless unmarkedBlocks names it.

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = "../.."

// docFile is one Markdown file of the documentation, parsed.
type docFile struct {
	path    string // relative to the repository root
	lines   []string
	blocks  []fence
	anchors map[string]bool
}

// fence is one fenced code block.
type fence struct {
	info   string // the info string: sh, console, yaml, ...
	start  int    // the line of the opening fence (0-based)
	body   []string
	marker string // the HTML comment just before it, without <!-- and -->, or ""
}

func readDocs(t *testing.T) []*docFile {
	t.Helper()
	paths := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		rel, _ := filepath.Rel(repoRoot, m)
		paths = append(paths, filepath.ToSlash(rel))
	}
	var docs []*docFile
	for _, p := range paths {
		docs = append(docs, parseDoc(t, p))
	}
	return docs
}

var markerRE = regexp.MustCompile(`^<!--\s*(.*?)\s*-->$`)

func parseDoc(t *testing.T, path string) *docFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	d := &docFile{path: path, lines: strings.Split(string(data), "\n"), anchors: map[string]bool{}}
	seen := map[string]int{}
	var cur *fence
	for i, line := range d.lines {
		trimmed := strings.TrimSpace(line)
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") {
				d.blocks = append(d.blocks, *cur)
				cur = nil
				continue
			}
			cur.body = append(cur.body, line)
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			cur = &fence{info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), start: i}
			if i > 0 {
				if m := markerRE.FindStringSubmatch(strings.TrimSpace(d.lines[i-1])); m != nil {
					cur.marker = m[1]
				}
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			text := strings.TrimSpace(strings.TrimLeft(line, "#"))
			slug := slugify(text)
			if n := seen[slug]; n > 0 {
				d.anchors[fmt.Sprintf("%s-%d", slug, n)] = true
			} else {
				d.anchors[slug] = true
			}
			seen[slug]++
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a fenced block is never closed", path, cur.start+1)
	}
	return d
}

// slugify makes a heading's anchor as GitHub does: lower case, spaces to hyphens, and every
// character but letters, digits, hyphens and underscores dropped.
func slugify(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// prose returns the lines outside fenced blocks, with their line numbers (0-based).
func (d *docFile) prose() map[int]string {
	out := map[int]string{}
	in := false
	for i, line := range d.lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			out[i] = line
		}
	}
	return out
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestDocsLinksResolve(t *testing.T) {
	docs := readDocs(t)
	byPath := map[string]*docFile{}
	for _, d := range docs {
		byPath[d.path] = d
	}
	for _, d := range docs {
		prose := d.prose()
		for i := range len(d.lines) {
			line, ok := prose[i]
			if !ok {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				resolved := d.path
				if file != "" {
					resolved = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(d.path), file)))
					if _, err := os.Stat(filepath.Join(repoRoot, resolved)); err != nil {
						t.Errorf("%s:%d: link %s: %s does not exist", d.path, i+1, target, resolved)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				to, ok := byPath[resolved]
				if !ok && strings.HasSuffix(resolved, ".md") {
					to = parseDoc(t, resolved)
					byPath[resolved] = to
				}
				if to != nil && !to.anchors[anchor] {
					t.Errorf("%s:%d: link %s: %s has no heading with the anchor #%s", d.path, i+1, target, resolved, anchor)
				}
			}
		}
	}
}

var (
	codeSpanRE = regexp.MustCompile("`([^`]+)`")
	identRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	qualRE     = regexp.MustCompile(`^([a-z][a-z0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)$`)
	testNameRE = regexp.MustCompile(`^(Test|Fuzz|Benchmark)[A-Z0-9][A-Za-z0-9_]*$`)
	pathRE     = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$`)
)

// TestDocsNameCodeThatExists checks what docs/architecture.md and docs/security.md say about
// the code, and the test names and pkg.Name the other pages give. In each paragraph, list item
// or table row: a backticked path (a .go file, a directory, a testdata file) must exist; a bare file name is looked up in the directory named
// before it; an identifier after a file or directory must be declared there; pkg.Name must be
// declared in that package; and a TestX, FuzzX or BenchmarkX must be a test function somewhere.
func TestDocsNameCodeThatExists(t *testing.T) {
	pkgDirs := packageDirs(t)
	tests := testFunctions(t)
	// The other pages name code in passing, among commands, settings and
	// outputs: there only test names and pkg.Name are checked.
	names := []string{"docs/architecture.md", "docs/security.md",
		"README.md", "docs/approvals.md", "docs/install.md", "docs/operations.md", "docs/performance.md", "docs/policy.md", "docs/tools.md"}
	for i, name := range names {
		strict := i < 2
		d := parseDoc(t, name)
		for _, it := range items(d) {
			var ctx []string // the files or directories an identifier is looked up in
			for _, m := range codeSpanRE.FindAllStringSubmatch(it.text, -1) {
				tok := m[1]
				where := fmt.Sprintf("%s:%d: `%s`", d.path, it.line+1, tok)
				switch {
				case !strict && !testNameRE.MatchString(tok) && !(qualRE.MatchString(tok) && pkgDirs[qualRE.FindStringSubmatch(tok)[1]] != ""):
				case testNameRE.MatchString(tok):
					if !tests[tok] {
						t.Errorf("%s: no such test function", where)
					}
				case qualRE.MatchString(tok) && pkgDirs[qualRE.FindStringSubmatch(tok)[1]] != "":
					sm := qualRE.FindStringSubmatch(tok)
					dir := pkgDirs[sm[1]]
					ctx = []string{dir}
					if !declared(t, dir, sm[2]) {
						t.Errorf("%s: %s is not declared in %s", where, sm[2], dir)
					}
				case strings.HasSuffix(tok, ".go") && !strings.Contains(tok, "/"):
					dir := ""
					for _, c := range ctx {
						if isDir(c) {
							dir = c
						}
					}
					if dir == "" {
						t.Errorf("%s: a file name with no directory named before it", where)
						continue
					}
					p := filepath.Join(dir, tok)
					if !exists(p) {
						t.Errorf("%s: %s does not exist", where, filepath.ToSlash(p))
						continue
					}
					ctx = append(ctx, p)
				case strings.Contains(tok, "/") && pathRE.MatchString(tok) && !strings.HasPrefix(tok, "/"):
					p := filepath.Join(repoRoot, strings.TrimSuffix(tok, "/"))
					if !exists(p) {
						if strings.HasSuffix(tok, ".go") || strings.HasSuffix(tok, "/") || strings.Contains(filepath.Base(tok), ".") {
							t.Errorf("%s: no such file or directory", where)
						}
						continue
					}
					if strings.HasSuffix(tok, ".go") || isDir(p) {
						ctx = []string{p}
					}
				case identRE.MatchString(tok) && len(ctx) > 0:
					if !slices.ContainsFunc(ctx, func(c string) bool { return declared(t, c, tok) }) {
						t.Errorf("%s: not declared in %s", where, strings.Join(relAll(ctx), " or "))
					}
				}
			}
		}
	}
}

// item is a paragraph, list item or table row, with the line it starts on.
type item struct {
	line int
	text string
}

var itemStartRE = regexp.MustCompile(`^\s*(- |\d+\. |\|)`)

func items(d *docFile) []item {
	var out []item
	var cur *item
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	prose := d.prose()
	for i := range d.lines {
		l, ok := prose[i]
		if !ok || strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			flush()
			continue
		}
		if itemStartRE.MatchString(l) {
			flush()
		}
		if cur == nil {
			cur = &item{line: i}
		}
		cur.text += " " + l
	}
	flush()
	return out
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func isDir(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }

func relAll(ps []string) []string {
	var out []string
	for _, p := range ps {
		r, _ := filepath.Rel(repoRoot, p)
		out = append(out, filepath.ToSlash(r))
	}
	return out
}

// declared reports whether name is declared in the Go file p, or in a non-test Go file of the
// directory p: as a function, method, type, constant, variable or struct field.
func declared(t *testing.T, p, name string) bool {
	t.Helper()
	files := []string{p}
	if isDir(p) {
		files, _ = filepath.Glob(filepath.Join(p, "*.go"))
		files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
	}
	q := regexp.QuoteMeta(name)
	re := regexp.MustCompile(`(?m)^(func (\([^)]*\) )?` + q + `[\[(]|type ` + q + `\b|(const|var) ` + q + `\b|\s+` + q + `(\s+\S|\s*=))`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if re.Match(data) {
			return true
		}
	}
	return false
}

// packageDirs maps each Go package name of the module to its directory.
func packageDirs(t *testing.T) map[string]string {
	t.Helper()
	dirs := map[string]string{}
	err := filepath.WalkDir(repoRoot, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == "testdata" || strings.HasPrefix(e.Name(), ".") && p != repoRoot) {
			return filepath.SkipDir
		}
		if !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			dirs[filepath.Base(filepath.Dir(p))] = filepath.Dir(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// testFunctions returns the names of every Test, Fuzz and Benchmark function of the module.
func testFunctions(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w+)\(`)
	names := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && p != repoRoot {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllSubmatch(data, -1) {
				names[string(m[1])] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// command is one command line found in the docs.
type command struct {
	where  string   // file:line
	words  []string // without environment assignments
	inline bool     // from a code span, not a block
	marked bool     // the block is an output sample with a marker that runs it
}

// shellWords splits a line as a POSIX shell would for plain words: quotes group, an unquoted #
// after a space starts a comment. It does not expand anything.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return words
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

var envAssignRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

func commandsOf(docs []*docFile) []command {
	var out []command
	add := func(where, line string, inline, marked bool) {
		words := shellWords(line)
		for len(words) > 0 && envAssignRE.MatchString(words[0]) {
			words = words[1:]
		}
		if len(words) > 0 {
			out = append(out, command{where: where, words: words, inline: inline, marked: marked})
		}
	}
	for _, d := range docs {
		for _, b := range d.blocks {
			if b.info != "sh" && b.info != "console" && b.info != "bash" {
				continue
			}
			marked := strings.HasPrefix(b.marker, "output")
			for i := 0; i < len(b.body); i++ {
				line, at := b.body[i], b.start+2+i
				for strings.HasSuffix(line, "\\") && i+1 < len(b.body) {
					i++
					line = strings.TrimSuffix(line, "\\") + " " + b.body[i]
				}
				if b.info == "console" {
					cmd, ok := strings.CutPrefix(line, "$ ")
					if !ok {
						continue
					}
					line = cmd
				}
				add(fmt.Sprintf("%s:%d", d.path, at), line, false, marked)
			}
		}
		prose := d.prose()
		for i := range len(d.lines) {
			for _, m := range codeSpanRE.FindAllStringSubmatch(prose[i], -1) {
				if strings.HasPrefix(m[1], "go test ") {
					add(fmt.Sprintf("%s:%d", d.path, i+1), m[1], true, false)
				}
			}
		}
	}
	return out
}

// binaryArgs returns the arguments of a clink-mcp command line (clink-mcp ARGS, or
// go run ./cmd/clink-mcp ARGS), or false.
func binaryArgs(words []string) ([]string, bool) {
	switch {
	case words[0] == "clink-mcp":
		return words[1:], true
	case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/clink-mcp":
		return words[3:], true
	}
	return nil, false
}

// modulePath is this module's path, as go install names its commands.
const modulePath = "github.com/clink-mcp/clink-mcp"

// goBuildTarget returns the directory of the command a go build or go install line of this
// module builds (./cmd/clink-mcp, or modulePath/cmd/clink-mcp@VERSION), or false.
func goBuildTarget(words []string) (string, bool) {
	if len(words) < 3 || words[0] != "go" || words[1] != "build" && words[1] != "install" {
		return "", false
	}
	last, _, _ := strings.Cut(words[len(words)-1], "@")
	switch {
	case strings.HasPrefix(last, "./"):
		return last, true
	case strings.HasPrefix(last, modulePath+"/"):
		return strings.TrimPrefix(last, modulePath+"/"), true
	}
	return "", false
}

// subcommandsOf are the commands that take a subcommand word.
var subcommandsOf = map[string]bool{"token": true, "policy": true, "audit": true, "approvals": true}

// runClink runs the built binary in the repository root under a fixed environment: no CLINK_
// variable of the caller's, a fixed home directory, no colour.
func runClink(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLINK_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME=/home/alice", "NO_COLOR=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// TestDocsCommandsAreAccepted checks every command line in the docs' sh, bash and console
// blocks, and every go test command in a code span. A clink-mcp command: its command's --help
// exits 0 and lists every flag it uses; version, help and token new are run for real, and
// policy check FILE too when FILE is in the repository and no output marker runs it already. A
// go test command: its packages exist, and its -run and -bench patterns match functions there.
func TestDocsCommandsAreAccepted(t *testing.T) {
	cmds := commandsOf(readDocs(t))
	_, mainHelp, _ := runClink(t, "help")
	helps := map[string]string{}
	checked := 0
	for _, c := range cmds {
		if c.words[0] == "go" && len(c.words) > 1 && c.words[1] == "test" {
			checkGoTest(t, c)
			checked++
			continue
		}
		if dir, ok := goBuildTarget(c.words); ok {
			checked++
			if !declared(t, filepath.Join(repoRoot, dir), "main") {
				t.Errorf("%s: %s is not a command of this module", c.where, dir)
			}
			continue
		}
		if c.words[0] == "bash" && len(c.words) > 1 && !exists(filepath.Join(repoRoot, c.words[1])) {
			t.Errorf("%s: %s does not exist", c.where, c.words[1])
		}
		args, ok := binaryArgs(c.words)
		if !ok {
			continue
		}
		checked++
		name := "serve"
		rest := args
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			name, rest = args[0], args[1:]
		}
		helpArgs := []string{name}
		if subcommandsOf[name] && len(rest) > 0 {
			helpArgs = append(helpArgs, rest[0])
		}
		key := strings.Join(helpArgs, " ")
		help, ok := helps[key]
		if !ok {
			code, stdout, stderr := runClink(t, append(helpArgs, "--help")...)
			if code != 0 {
				t.Errorf("%s: clink-mcp %s --help exits %d: %s", c.where, key, code, stderr)
			}
			help = stdout
			helps[key] = help
		}
		for _, a := range rest {
			flag, _, _ := strings.Cut(a, "=")
			if strings.HasPrefix(flag, "--") && !strings.Contains(help, flag) && !strings.Contains(mainHelp, flag+" ") {
				t.Errorf("%s: clink-mcp %s: flag %s is in neither its help nor clink-mcp help", c.where, key, flag)
			}
		}
		switch {
		case name == "version" || name == "help":
			if code, _, stderr := runClink(t, args...); code != 0 {
				t.Errorf("%s: clink-mcp %s exits %d: %s", c.where, strings.Join(args, " "), code, stderr)
			}
		case name == "token" && len(rest) == 2 && rest[0] == "new":
			code, stdout, stderr := runClink(t, args...)
			if code != 0 || !strings.Contains(stdout, "token_sha256: ") || !strings.Contains(stdout, "name: "+rest[1]) {
				t.Errorf("%s: clink-mcp %s exits %d and prints no principals entry: %s%s", c.where, strings.Join(args, " "), code, stdout, stderr)
			}
		case name == "policy" && len(rest) == 2 && !c.marked && exists(filepath.Join(repoRoot, rest[1])):
			if code, _, stderr := runClink(t, args...); code != 0 {
				t.Errorf("%s: clink-mcp %s exits %d: %s", c.where, strings.Join(args, " "), code, stderr)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d command lines found in the docs; the parser has lost them", checked)
	}
}

// checkGoTest checks one go test command line: its package directories, and its -run and
// -bench patterns against the test functions there (build tags are not told apart: a
// function in any _test.go file counts).
func checkGoTest(t *testing.T, c command) {
	t.Helper()
	var run, bench string
	var pkgs []string
	for i := 2; i < len(c.words); i++ {
		w := c.words[i]
		switch {
		case w == "-run" || w == "-bench" || w == "-benchtime" || w == "-tags" || w == "-count" || w == "-p":
			if i+1 < len(c.words) {
				switch w {
				case "-run":
					run = c.words[i+1]
				case "-bench":
					bench = c.words[i+1]
				}
				i++
			}
		case strings.HasPrefix(w, "./"):
			pkgs = append(pkgs, w)
		}
	}
	if len(pkgs) == 0 {
		t.Errorf("%s: go test with no package", c.where)
		return
	}
	for _, p := range pkgs {
		if p == "./..." {
			continue
		}
		dir := filepath.Join(repoRoot, strings.TrimSuffix(p, "/"))
		if !isDir(dir) {
			t.Errorf("%s: go test %s: no such package directory", c.where, p)
			continue
		}
		for _, pat := range []struct{ flag, re, prefix string }{{"-run", run, "Test"}, {"-bench", bench, "Benchmark"}} {
			if pat.re == "" || pat.re == "^$" || pat.re == "." {
				continue
			}
			top, _, _ := strings.Cut(pat.re, "/")
			re, err := regexp.Compile(top)
			if err != nil {
				t.Errorf("%s: %s %q: %v", c.where, pat.flag, pat.re, err)
				continue
			}
			if !matchesFunc(t, dir, pat.prefix, re) {
				t.Errorf("%s: %s %q matches no %s function in %s", c.where, pat.flag, pat.re, pat.prefix, p)
			}
		}
	}
}

func matchesFunc(t *testing.T, dir, prefix string, re *regexp.Regexp) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	fn := regexp.MustCompile(`(?m)^func (` + prefix + `\w*)\(`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fn.FindAllSubmatch(data, -1) {
			if re.Match(m[1]) {
				return true
			}
		}
	}
	return false
}

var (
	outputMarkerRE = regexp.MustCompile(`^output(?: exit=(\d+))?:\s*(.+)$`)
	fileMarkerRE   = regexp.MustCompile(`^file:\s*(\S+)$`)
	versionRE      = regexp.MustCompile(`clink-mcp (dev|v?\d+\.\d+\.\d+\S*?)(:|\s|$)`)
)

// normalize keeps what may differ between the docs and a run out of a comparison: the version,
// trailing spaces and trailing blank lines.
func normalize(s string) string {
	s = versionRE.ReplaceAllString(s, "clink-mcp VERSION$2")
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " \t")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

// TestDocsOutputSamplesAreTrue runs the command of every output marker and compares its
// output with the block; it compares every file marker's block with the file.
func TestDocsOutputSamplesAreTrue(t *testing.T) {
	outputs := 0
	for _, d := range readDocs(t) {
		for _, b := range d.blocks {
			if b.marker == "" {
				continue
			}
			where := fmt.Sprintf("%s:%d", d.path, b.start)
			if m := fileMarkerRE.FindStringSubmatch(b.marker); m != nil {
				data, err := os.ReadFile(filepath.Join(repoRoot, m[1]))
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if got, want := strings.Join(b.body, "\n"), strings.TrimRight(string(data), "\n"); got != want {
					t.Errorf("%s: the block differs from %s:\n%s", where, m[1], lineDiff(got, want))
				}
				continue
			}
			m := outputMarkerRE.FindStringSubmatch(b.marker)
			if m == nil {
				continue
			}
			outputs++
			wantCode := 0
			if m[1] != "" {
				fmt.Sscan(m[1], &wantCode)
			}
			words := shellWords(m[2])
			args, ok := binaryArgs(words)
			if !ok {
				t.Errorf("%s: output marker %q: only clink-mcp commands are run", where, m[2])
				continue
			}
			body := b.body
			if b.info == "console" && len(body) > 0 && strings.HasPrefix(body[0], "$ ") {
				if strings.TrimPrefix(body[0], "$ ") != m[2] {
					t.Errorf("%s: the block shows %q, the marker runs %q", where, body[0], m[2])
				}
				body = body[1:]
			}
			code, stdout, stderr := runClink(t, args...)
			if code != wantCode {
				t.Errorf("%s: %s exits %d, the docs say %d: %s", where, m[2], code, wantCode, stderr)
			}
			got, want := normalize(stdout+stderr), normalize(strings.Join(body, "\n"))
			if got != want {
				t.Errorf("%s: the output of %s is not what the docs show (- docs, + real):\n%s", where, m[2], lineDiff(want, got))
			}
		}
	}
	if outputs < 2 {
		t.Errorf("only %d output samples are marked; README's policy check and clink-mcp help at least", outputs)
	}
}

// lineDiff shows the lines of a and b that differ, by position: enough to see what changed.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "line %d:\n- %s\n+ %s\n", i+1, x, y)
		}
	}
	return out.String()
}

// unmarkedBlocks are the fenced blocks that need no marker: command recipes whose commands no
// test runs, each with why it may stay unchecked. A block is named by its file and first line.
var unmarkedBlocks = []struct{ path, first, why string }{
	{"docs/install.md", "go install github.com/goreleaser/goreleaser/v2@v2.17.0",
		"the release build: .ci/release.sh (run by .ci/run) installs that goreleaser and runs that build"},
	{"docs/performance.md", "export GOCACHE=$(mktemp -d); /usr/bin/time -v go build -o /tmp/clink-mcp ./cmd/clink-mcp",
		"a measurement recipe: it times the build every binary test makes"},
}

// TestDocsEveryBlockIsChecked keeps every fenced block under a check: an output, file or
// sample marker; or, for an sh or bash block, a command line that TestDocsCommandsAreAccepted
// checks and no output in its comments; or an entry in unmarkedBlocks.
func TestDocsEveryBlockIsChecked(t *testing.T) {
	known := func(marker string) bool {
		if m := sampleMarkerRE.FindStringSubmatch(marker); m != nil {
			return configSamples[m[1]] != nil || slices.Contains(storySamples, m[1])
		}
		return outputMarkerRE.MatchString(marker) || fileMarkerRE.MatchString(marker)
	}
	used := map[int]bool{}
	for _, d := range readDocs(t) {
		for _, b := range d.blocks {
			where := fmt.Sprintf("%s:%d", d.path, b.start+1)
			if b.marker != "" {
				if !known(b.marker) {
					t.Errorf("%s: <!-- %s --> is no marker a test checks", where, b.marker)
				}
				continue
			}
			first := ""
			if len(b.body) > 0 {
				first = b.body[0]
			}
			if i := slices.IndexFunc(unmarkedBlocks, func(u struct{ path, first, why string }) bool {
				return u.path == d.path && u.first == first
			}); i >= 0 {
				used[i] = true
				continue
			}
			if b.info == "sh" || b.info == "bash" {
				single := &docFile{path: d.path, blocks: []fence{b}}
				checked := slices.ContainsFunc(commandsOf([]*docFile{single}), func(c command) bool {
					_, bin := binaryArgs(c.words)
					_, build := goBuildTarget(c.words)
					return bin || build || len(c.words) > 1 && (c.words[0] == "go" && c.words[1] == "test" || c.words[0] == "bash")
				})
				output := slices.ContainsFunc(b.body, func(l string) bool {
					l = strings.TrimSpace(l)
					return strings.HasPrefix(l, "# {") || strings.HasPrefix(l, "# [") || strings.HasPrefix(l, "# $")
				})
				if checked && !output {
					continue
				}
			}
			t.Errorf("%s: a %q block that no test checks: mark it <!-- output: … -->, <!-- file: … --> or <!-- sample: … --> (see docs_samples_test.go)", where, b.info)
		}
	}
	for i, u := range unmarkedBlocks {
		if !used[i] {
			t.Errorf("unmarkedBlocks: %s has no block starting %q; remove the entry", u.path, u.first)
		}
	}
}

// TestDocsInlineConfigFragments checks the configuration quoted in running text: a code span
// "args": [...] is a client entry's arguments (JSON; serve and real flags).
func TestDocsInlineConfigFragments(t *testing.T) {
	n := 0
	for _, d := range readDocs(t) {
		prose := d.prose()
		for i := range len(d.lines) {
			for _, m := range codeSpanRE.FindAllStringSubmatch(prose[i], -1) {
				if !strings.HasPrefix(m[1], `"args":`) {
					continue
				}
				n++
				where := fmt.Sprintf("%s:%d", d.path, i+1)
				var e struct {
					Args []string `json:"args"`
				}
				if err := json.Unmarshal([]byte("{"+m[1]+"}"), &e); err != nil {
					t.Errorf("%s: `%s` is not JSON: %v", where, m[1], err)
					continue
				}
				checkServeArgs(t, where, e.Args)
			}
		}
	}
	if n == 0 {
		t.Error("no inline \"args\" fragment found; docs/install.md quotes one")
	}
}

// TestDocsNameSettingsAndMetricsThatExist checks the names the running text gives in code
// spans, which no sample marker covers: a flag (`--policy`, `--limit N`) is one of the
// command's settings or a subcommand's own flags, an environment variable (`CLINK_ENV`,
// `CLINK_POLICY=FILE`) is one the code reads, and a metric (`clink_mcp_tool_calls_total`,
// `clink_mcp_approvals_total{event}`) is one service/metrics.go registers.
func TestDocsNameSettingsAndMetricsThatExist(t *testing.T) {
	flags := map[string]bool{"--help": true, "--version": true, "--all": true, "--limit": true, "--by": true}
	for _, s := range settings {
		flags["--"+s.flag] = true
	}
	envs := map[string]bool{}
	envRE := regexp.MustCompile(`"(CLINK_[A-Z0-9_]+)"`)
	err := filepath.WalkDir(repoRoot, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && p != repoRoot {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range envRE.FindAllSubmatch(data, -1) {
				envs[string(m[1])] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]bool{}
	src, err := os.ReadFile(filepath.Join(repoRoot, "service", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Namespace: namespace, Name: "([a-z_]+)"`).FindAllSubmatch(src, -1) {
		metrics["clink_mcp_"+string(m[1])] = true
	}
	if len(metrics) == 0 || !envs["CLINK_API_KEY"] {
		t.Fatalf("found %d metrics and env names %v in the code: the scan has lost them", len(metrics), envs)
	}
	var (
		flagRE   = regexp.MustCompile(`^(--[a-z][a-z-]*)(?:[ =]|$)`)
		envSpan  = regexp.MustCompile(`^(CLINK_[A-Z0-9_]+)(?:[ =]|$)`)
		metricRE = regexp.MustCompile(`^(clink_mcp_[a-z_]+)(?:\{|$)`)
	)
	checked := 0
	for _, d := range readDocs(t) {
		prose := d.prose()
		for i := range len(d.lines) {
			for _, m := range codeSpanRE.FindAllStringSubmatch(prose[i], -1) {
				where := fmt.Sprintf("%s:%d: `%s`", d.path, i+1, m[1])
				switch {
				case flagRE.MatchString(m[1]):
					checked++
					if f := flagRE.FindStringSubmatch(m[1])[1]; !flags[f] {
						t.Errorf("%s: clink-mcp has no flag %s", where, f)
					}
				case envSpan.MatchString(m[1]):
					checked++
					if v := envSpan.FindStringSubmatch(m[1])[1]; !envs[v] {
						t.Errorf("%s: no code reads %s", where, v)
					}
				case metricRE.MatchString(m[1]):
					checked++
					if n := metricRE.FindStringSubmatch(m[1])[1]; !metrics[n] {
						t.Errorf("%s: service/metrics.go registers no metric %s", where, n)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d flags, variables and metrics found in the docs' running text; the parser has lost them", checked)
	}
}
