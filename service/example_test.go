package service_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"net/http"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
)

// An agent platform embeds clink-mcp in its own Go process: it builds a
// service from its policy, a Clink client and a store, then mounts the HTTP
// handler on its own mux, or calls the MCP server in process.
func Example() {
	ctx := context.Background()
	pol, err := policy.Parse("platform-policy.yaml", []byte(`version: 1
currencies:
  USD: { max_amount: 100 }
budgets:
  - { currency: USD, window: 24h, max_amount: 1000, per: principal }
`))
	if err != nil {
		log.Fatal(err)
	}
	// The built-in sandbox stands in for Clink here; a platform passes
	// clink.NewClient(apiKey) and its production base URL.
	sb := sandbox.New()
	baseURL, shutdown, err := sb.Listen()
	if err != nil {
		log.Fatal(err)
	}
	defer shutdown(ctx)
	payments, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(baseURL))
	if err != nil {
		log.Fatal(err)
	}
	secret := make([]byte, gate.MinSecretLen) // a platform keeps one (gate.LoadSecret)
	if _, err := rand.Read(secret); err != nil {
		log.Fatal(err)
	}
	store := state.NewMemory() // or state.OpenSQLite(path)
	defer store.Close()

	svc, err := service.New(service.Config{
		Policy:   pol,
		Payments: payments,
		Account:  gate.AccountID(baseURL, sandbox.DefaultAPIKey),
		Store:    store,
		Secret:   secret,
		Version:  "embedded",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close(ctx)

	// Mount MCP streamable HTTP, /healthz, /readyz and /metrics.
	mux := http.NewServeMux()
	mux.Handle("/payments/", http.StripPrefix("/payments", svc.Handler(service.HTTPOptions{})))

	// Or talk to the MCP server in process.
	c, err := client.NewInProcessClient(svc.MCPServer())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "platform", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		log.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "create_agent_payment_session"
	req.Params.Arguments = json.RawMessage(`{"customerEmail":"alice@example.com","amount":25.5,"currency":"USD"}`)
	res, err := c.CallTool(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	var out struct {
		Amount   json.Number `json:"amount"`
		Currency string      `json:"currency"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	_ = json.Unmarshal(b, &out)
	fmt.Println("error:", res.IsError)
	fmt.Println("session for", out.Amount, out.Currency)
	fmt.Println("Clink requests:", sb.Requests())
	// Output:
	// error: false
	// session for 25.5 USD
	// Clink requests: 1
}
