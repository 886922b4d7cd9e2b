package clink_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
)

func TestNewClientRefusesKeysAndOptionsThatCannotWork(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		opts    []clink.Option
		wantErr string // "" means NewClient succeeds
	}{
		{name: "an empty key is refused", key: "", wantErr: "empty API key"},
		{name: "a key with a newline is refused", key: "sk_test_abc\n", wantErr: "spaces, control or non-ASCII"},
		{name: "a key with a space is refused", key: "sk_test_ abc", wantErr: "spaces, control or non-ASCII"},
		{name: "a sandbox key against production is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithEnvironment(clink.Production)}, wantErr: "sandbox key (sk_test_) but the environment is production"},
		{name: "a production key against the default sandbox is refused", key: "sk_prod_abc",
			wantErr: "production key (sk_prod_) but the environment is sandbox"},
		{name: "a production key against production is accepted", key: "sk_prod_abc",
			opts: []clink.Option{clink.WithEnvironment(clink.Production)}},
		{name: "a key with neither prefix is accepted", key: "proxy-key-123"},
		{name: "an empty base URL keeps the environment's", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("")}},
		{name: "an unknown environment is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithEnvironment("staging")}, wantErr: `unknown environment "staging"`},
		{name: "a base URL that is not http is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("ftp://clink.example/")}, wantErr: "must use http or https"},
		{name: "a relative base URL is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("/api/")}, wantErr: "must use http or https"},
		{name: "a base URL without a host is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("https:///api/")}, wantErr: "has no host"},
		{name: "a base URL with user info is refused without showing the password", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("ftp://u:hunter2@clink.example/")}, wantErr: `"ftp://u:xxxxx@clink.example/" must not contain user info`},
		{name: "a plain http base URL is refused in production", key: "sk_prod_abc",
			opts:    []clink.Option{clink.WithEnvironment(clink.Production), clink.WithBaseURL("http://egress.internal:8080/api/")},
			wantErr: `base URL "http://egress.internal:8080/api/" must use https in production`},
		{name: "a plain http base URL to a loopback proxy is accepted in production", key: "sk_prod_abc",
			opts: []clink.Option{clink.WithEnvironment(clink.Production), clink.WithBaseURL("http://127.0.0.1:8080/api/")}},
		{name: "a plain http base URL is accepted against the sandbox", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("http://clink-uat.internal/api/")}},
		{name: "a base URL with a query is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBaseURL("https://clink.example/api?x=1")}, wantErr: "query or fragment"},
		{name: "a zero timeout is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithTimeout(0)}, wantErr: "timeout must be positive"},
		{name: "a negative timeout is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithTimeout(-time.Second)}, wantErr: "timeout must be positive"},
		{name: "zero attempts are refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithMaxAttempts(0)}, wantErr: "at least 1 attempt"},
		{name: "a nil HTTP client is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithHTTPClient(nil)}, wantErr: "nil *http.Client"},
		{name: "a nil clock is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithClock(nil)}, wantErr: "nil clock"},
		{name: "an empty user agent is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithUserAgent("")}, wantErr: "user agent"},
		{name: "a backoff whose cap is below its base is refused", key: "sk_test_abc",
			opts: []clink.Option{clink.WithBackoff(time.Second, time.Millisecond)}, wantErr: "0 < base <= max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := clink.NewClient(tt.key, tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewClient: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewClient succeeded (%v), want an error containing %q", c, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.key != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.key)) {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestTheBaseURLFollowsTheEnvironmentUnlessOverridden(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		opts    []clink.Option
		wantEnv clink.Environment
		wantURL string
	}{
		{"the default is Clink's sandbox", "sk_test_a", nil, clink.Sandbox, "https://uat-api.clinkbill.com/api/"},
		{"production uses Clink's production API", "sk_prod_a", []clink.Option{clink.WithEnvironment(clink.Production)},
			clink.Production, "https://api.clinkbill.com/api/"},
		{"an override gains a trailing slash", "sk_test_a", []clink.Option{clink.WithBaseURL("http://127.0.0.1:8080/api")},
			clink.Sandbox, "http://127.0.0.1:8080/api/"},
		{"an override without a path gets the root", "sk_test_a", []clink.Option{clink.WithBaseURL("https://clink.example")},
			clink.Sandbox, "https://clink.example/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := clink.NewClient(tt.key, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if c.Environment() != tt.wantEnv || c.BaseURL() != tt.wantURL {
				t.Errorf("Environment, BaseURL = %s, %s; want %s, %s", c.Environment(), c.BaseURL(), tt.wantEnv, tt.wantURL)
			}
		})
	}
}

func TestParseEnvironmentAcceptsOnlyTheTwoNames(t *testing.T) {
	for _, s := range []string{"sandbox", "production"} {
		if env, err := clink.ParseEnvironment(s); err != nil || string(env) != s {
			t.Errorf("ParseEnvironment(%q) = %q, %v", s, env, err)
		}
	}
	for _, s := range []string{"", "Sandbox", "prod", "uat", "sandbox "} {
		if env, err := clink.ParseEnvironment(s); err == nil {
			t.Errorf("ParseEnvironment(%q) = %q, want an error", s, env)
		}
	}
}

func TestAClientNeverPrintsItsAPIKey(t *testing.T) {
	c, err := clink.NewClient(testKey, clink.WithHTTPClient(&http.Client{}))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("client", "c", c)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("client", "c", c)
	outputs := map[string]string{
		"String": c.String(), "%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c),
		"%#v": fmt.Sprintf("%#v", c), "%s": fmt.Sprintf("%s", c), "%x": fmt.Sprintf("%x", c),
		"%v of the value": fmt.Sprintf("%+v", *c), "slog": logs.String(),
	}
	for what, out := range outputs {
		if strings.Contains(out, "sandbox_0000") {
			t.Errorf("%s prints the key: %s", what, out)
		}
	}
	if !strings.Contains(c.String(), "uat-api.clinkbill.com") {
		t.Errorf("String() = %q, want it to name the base URL", c.String())
	}
}
