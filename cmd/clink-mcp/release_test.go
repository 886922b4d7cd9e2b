package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/tools"
)

// The release files, from this package's folder.
const (
	serverJSONPath     = "../../server.json"
	registrySchemaPath = "../../.ci/registry/server.schema.json"
	manifestPath       = "../../mcpb/manifest.json"
)

func TestVersionIsInjectedAtLinkTime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "clink-mcp")
	ldflags := "-X main.version=1.2.3-test -X main.commit=abc -X main.date=2026-12-03"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "clink-mcp 1.2.3-test (commit abc, built 2026-12-03)\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || string(out) != want {
			t.Errorf("clink-mcp %s: %v, printed %q; want %q", strings.Join(args, " "), err, out, want)
		}
	}
}

func TestResolveBuild(t *testing.T) {
	info := func(mod string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/clink-mcp/clink-mcp", Version: mod}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	noInfo := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name                  string
		version, commit, date string
		read                  func() (*debug.BuildInfo, bool)
		want                  string
	}{
		{name: "link-time values win over the build information",
			version: "1.2.3", commit: "abc1234", date: "2026-12-03T10:00:00Z",
			read: info("v9.9.9", "vcs.revision", "fff", "vcs.time", "2020-01-01T00:00:00Z"),
			want: "clink-mcp 1.2.3 (commit abc1234, built 2026-12-03T10:00:00Z)"},
		{name: "go install of a tagged version prints that version",
			read: info("v0.2.0"), want: "clink-mcp 0.2.0"},
		{name: "a build in a checkout is dev, with its module version, commit and commit time",
			read: info("v0.0.0-20261203080000-1ee6ed4abcde+dirty", "vcs.revision", "1ee6ed4abcdef", "vcs.time", "2026-12-03T08:00:00Z", "vcs.modified", "true"),
			want: "clink-mcp dev (module v0.0.0-20261203080000-1ee6ed4abcde+dirty, commit 1ee6ed4abcdef (modified), committed 2026-12-03T08:00:00Z)"},
		{name: "a build without version information is dev",
			read: info("(devel)"), want: "clink-mcp dev"},
		{name: "no build information at all is dev",
			read: noInfo, want: "clink-mcp dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveBuild(tt.version, tt.commit, tt.date, tt.read).String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestServerJSON validates server.json against the MCP Registry's schema
// (the copy in .ci/registry), and so does it every file named in
// $CLINK_SERVER_JSON (a list separated by the OS path separator): the
// release's, written by mcpb/server-json.mjs (.ci/release.sh).
func TestServerJSON(t *testing.T) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	schema, err := c.Compile(registrySchemaPath)
	if err != nil {
		t.Fatalf("the registry's schema: %v", err)
	}
	files := []string{serverJSONPath}
	if extra := os.Getenv("CLINK_SERVER_JSON"); extra != "" {
		files = append(files, filepath.SplitList(extra)...)
	}
	manifest := readManifest(t)
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			v := readJSON(t, file)
			if err := schema.Validate(v); err != nil {
				t.Fatalf("%s does not match the registry's schema: %v", file, err)
			}
			var s struct {
				Name     string `json:"name"`
				Version  string `json:"version"`
				Packages []struct {
					RegistryType         string `json:"registryType"`
					Identifier           string `json:"identifier"`
					FileSHA256           string `json:"fileSha256"`
					EnvironmentVariables []struct {
						Name string `json:"name"`
					} `json:"environmentVariables"`
				} `json:"packages"`
			}
			decodeJSON(t, file, &s)
			if s.Name != "io.github.clink-mcp/clink-mcp" {
				t.Errorf("name %q: the registry takes io.github.OWNER/NAME for a GitHub repository", s.Name)
			}
			if file == serverJSONPath && s.Version != manifest.Version {
				t.Errorf("version %q, mcpb/manifest.json's %q: the two are released together", s.Version, manifest.Version)
			}
			if len(s.Packages) == 0 {
				t.Fatal("no packages")
			}
			var wantEnv []string
			for name := range manifest.Server.MCPConfig.Env {
				wantEnv = append(wantEnv, name)
			}
			slices.Sort(wantEnv)
			for _, p := range s.Packages {
				// The registry's own rules for MCPB packages, beyond the schema.
				if p.RegistryType != "mcpb" || !strings.HasPrefix(p.Identifier, "https://github.com/clink-mcp/clink-mcp/releases/download/v"+s.Version+"/") || !strings.HasSuffix(p.Identifier, ".mcpb") {
					t.Errorf("package %s %s: want an MCPB bundle of release v%s", p.RegistryType, p.Identifier, s.Version)
				}
				if file != serverJSONPath && p.FileSHA256 == "" {
					t.Errorf("package %s has no fileSha256: the registry requires it for MCPB packages", p.Identifier)
				}
				var env []string
				for _, e := range p.EnvironmentVariables {
					env = append(env, e.Name)
				}
				slices.Sort(env)
				if diff := cmp.Diff(wantEnv, env); diff != "" {
					t.Errorf("package %s: environment variables differ from the bundle's (-manifest +server.json):\n%s", p.Identifier, diff)
				}
			}
		})
	}
}

// manifest is the part of an MCPB manifest.json the tests check.
type manifest struct {
	ManifestVersion string `json:"manifest_version"`
	Name            string `json:"name"`
	Version         string `json:"version"`
	Server          struct {
		Type       string `json:"type"`
		EntryPoint string `json:"entry_point"`
		MCPConfig  struct {
			Command           string            `json:"command"`
			Args              []string          `json:"args"`
			Env               map[string]string `json:"env"`
			PlatformOverrides map[string]struct {
				Command string `json:"command"`
			} `json:"platform_overrides"`
		} `json:"mcp_config"`
	} `json:"server"`
	Tools []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"tools"`
	UserConfig map[string]struct {
		Type      string `json:"type"`
		Title     string `json:"title"`
		Sensitive bool   `json:"sensitive"`
		Required  bool   `json:"required"`
		Default   any    `json:"default"`
	} `json:"user_config"`
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	var m manifest
	decodeJSON(t, manifestPath, &m)
	return m
}

// TestBundleManifest checks the shape of mcpb/manifest.json that CI's
// `mcpb validate` does not: a binary server started with serve, every
// setting mapped to the server's environment variable, the API key
// sensitive, and the tools the server has.
func TestBundleManifest(t *testing.T) {
	m := readManifest(t)
	if m.ManifestVersion != "0.3" || m.Name != "clink-mcp" || m.Server.Type != "binary" {
		t.Errorf("manifest_version %q, name %q, server type %q; want 0.3, clink-mcp, binary", m.ManifestVersion, m.Name, m.Server.Type)
	}
	// mcpb/pack.sh puts the binary at server/clink-mcp (server/clink-mcp.exe on Windows).
	cfg := m.Server.MCPConfig
	if m.Server.EntryPoint != "server/clink-mcp" || cfg.Command != "${__dirname}/server/clink-mcp" ||
		cfg.PlatformOverrides["win32"].Command != "${__dirname}/server/clink-mcp.exe" {
		t.Errorf("entry point %q, command %q, win32 command %q: want the binary at server/clink-mcp(.exe)",
			m.Server.EntryPoint, cfg.Command, cfg.PlatformOverrides["win32"].Command)
	}
	if !slices.Equal(cfg.Args, []string{"serve"}) {
		t.Errorf("args %q, want [serve]", cfg.Args)
	}
	wantEnv := map[string]string{
		"CLINK_API_KEY": "${user_config.api_key}",
		"CLINK_ENV":     "${user_config.environment}",
		"CLINK_POLICY":  "${user_config.policy}",
		"CLINK_SANDBOX": "${user_config.sandbox}",
	}
	if diff := cmp.Diff(wantEnv, cfg.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	for name, uc := range m.UserConfig {
		// An optional setting without a default reaches the server as the
		// literal "${user_config.NAME}".
		if !uc.Required && uc.Default == nil {
			t.Errorf("user_config.%s is optional without a default", name)
		}
		if _, used := wantEnv[envFor(wantEnv, name)]; !used {
			t.Errorf("user_config.%s is not passed to the server", name)
		}
	}
	if key := m.UserConfig["api_key"]; !key.Sensitive || key.Type != "string" {
		t.Errorf("user_config.api_key: type %q, sensitive %v; want a sensitive string", key.Type, key.Sensitive)
	}
	if p := m.UserConfig["policy"]; p.Type != "file" {
		t.Errorf("user_config.policy: type %q, want file", p.Type)
	}
	var names []string
	for _, tool := range m.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("tool %s has no description", tool.Name)
		}
	}
	want := []string{policy.ToolAgentPaymentSession, policy.ToolCheckoutSession, tools.ToolCheckPaymentPolicy,
		tools.ToolGetCheckoutSession, tools.ToolGetAgentPaymentSession}
	slices.Sort(names)
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("tools (-server +manifest):\n%s", diff)
	}
}

// envFor returns the environment variable env maps user_config.name to.
func envFor(env map[string]string, name string) string {
	for k, v := range env {
		if v == "${user_config."+name+"}" {
			return k
		}
	}
	return ""
}

func readJSON(t *testing.T, file string) any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

func decodeJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
