package tools

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/gate"
)

// errStoreUnavailable answers a resource read when the store cannot: the
// client sees a JSON-RPC error with this text, never the store's.
var errStoreUnavailable = errors.New("the server cannot read its spending limits right now; try again in a moment")

// PolicyURI is the URI of the policy resource.
const PolicyURI = "clink://policy"

// PolicyResource returns the clink://policy resource: the agent's view of
// its limits, as Markdown (currencies and caps, budgets and rate limits
// with what is left of those that are not per customer, approval
// thresholds, redirect URL rules), for the principal reading it. It never
// lists the operator's customer emails.
func PolicyResource(d Deps) server.ServerResource {
	ts := newToolset(d)
	res := mcp.NewResource(PolicyURI, "policy",
		mcp.WithResourceDescription("This server's payment policy as it applies to you: allowed currencies and amounts, budgets and rate limits with what is left, approval thresholds, and redirect URL rules."),
		mcp.WithMIMEType("text/markdown"),
	)
	return server.ServerResource{Resource: res, Handler: func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		caller := ts.caller(ctx)
		standing, err := ts.gate.Standing(ctx, caller)
		if err != nil {
			ts.log.ErrorContext(ctx, "reading the policy resource: the store failed", "err", err)
			return nil, errStoreUnavailable
		}
		return []mcp.ResourceContents{mcp.TextResourceContents{
			URI: PolicyURI, MIMEType: "text/markdown",
			Text: ts.policy.AgentMarkdown(gate.Principal(caller), standing),
		}}, nil
	}}
}
