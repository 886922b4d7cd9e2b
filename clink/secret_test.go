package clink_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

const plantedToken = "tok_PLANTED_0123456789"

func TestTheTokenValueNeverPrints(t *testing.T) {
	sb := sandbox.New(sandbox.WithTokenGenerator(func() string { return plantedToken }))
	c := newClient(t, startSandbox(t, sb))
	created, err := c.CreateCheckoutSession(t.Context(), &clink.CheckoutSessionRequest{
		OriginalAmount: mustAmount(t, "10"), OriginalCurrency: "USD", CustomerEmail: "ada@example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox sends the token in its GET answer too; the client must not keep it.
	info, err := c.GetCheckoutSession(t.Context(), created.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if created.TokenValue.Reveal() != plantedToken {
		t.Fatalf("Reveal() = %q, want the planted token", created.TokenValue.Reveal())
	}
	for name, v := range map[string]any{
		"the created session":       created,
		"the created session value": *created,
		"the session info":          info,
		"the session info value":    *info,
		"the secret":                created.TokenValue,
	} {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			slog.New(slog.NewTextHandler(&logs, nil)).Info("session", "s", v)
			slog.New(slog.NewJSONHandler(&logs, nil)).Info("session", "s", v)
			j, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			outputs := map[string]string{"json": string(j), "slog": logs.String()}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
				outputs[verb] = fmt.Sprintf(verb, v)
			}
			if s, ok := v.(fmt.Stringer); ok {
				outputs["String"] = s.String()
			}
			for what, out := range outputs {
				if strings.Contains(out, "PLANTED") {
					t.Errorf("%s prints the token: %s", what, out)
				}
			}
			if _, isInfo := v.(*clink.CheckoutSessionInfo); isInfo {
				return
			}
			if _, isInfo := v.(clink.CheckoutSessionInfo); isInfo {
				return // it has no token to redact
			}
			if !strings.Contains(outputs["%+v"], "[REDACTED]") {
				t.Errorf("%%+v = %s, want [REDACTED] in place of the token", outputs["%+v"])
			}
		})
	}
}

func TestASecretDecodesFromAJSONString(t *testing.T) {
	var s clink.Secret
	if err := json.Unmarshal([]byte(`"tok_1"`), &s); err != nil || s.Reveal() != "tok_1" || s.IsZero() {
		t.Errorf("Unmarshal = %q, %v", s.Reveal(), err)
	}
	if err := json.Unmarshal([]byte(`123`), &s); err == nil {
		t.Error("Unmarshal(123) succeeded, want an error")
	}
	if !(clink.Secret{}).IsZero() {
		t.Error("the zero Secret is not IsZero")
	}
}
