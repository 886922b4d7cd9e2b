package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/gate"
)

// approvalInput names the approval question among a call's input requests
// (MCP multi-round-trip requests, protocol 2026-07-28); the client answers
// under the same name.
const approvalInput = "approve_payment"

// approvalSchema is the form the approval question asks: one yes/no.
var approvalSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"approve": map[string]any{
			"type":        "boolean",
			"title":       "Approve this payment",
			"description": "Tick to let the agent create this payment request; leave unticked, or decline, to refuse it.",
		},
	},
	"required": []string{"approve"},
}

// canAsk reports whether the client making req can put a question to its
// user: a client of protocol 2026-07-28 that declares elicitation in the
// request's capabilities (the question goes back as an input request), or
// an earlier client that declared it when it initialised a session that
// can carry server requests (mcp-go then sends it elicitation/create).
func canAsk(ctx context.Context, req mcp.CallToolRequest) bool {
	if mcp.IsModernProtocol(server.RequestProtocolVersion(ctx)) {
		// Capabilities come with each request; mcp-go checks them against
		// what the request may ask of the client.
		caps := req.Params.Meta.ClientCapabilities()
		return caps != nil && formElicitation(caps.Elicitation)
	}
	// An earlier client declared its capabilities when it initialised the
	// session; a request's _meta is not the client's word for them, and
	// the question would go out as elicitation/create on a session that
	// may not carry it (the stateless HTTP service).
	session := server.ClientSessionFromContext(ctx)
	if _, ok := session.(server.SessionWithElicitation); !ok {
		return false
	}
	info, ok := session.(server.SessionWithClientInfo)
	return ok && formElicitation(info.GetClientCapabilities().Elicitation)
}

// formElicitation reports whether a client that declared e can answer the
// approval question, a form: it declared form mode, or elicitation with no
// mode at all (which means form alone). A client of URL mode alone cannot,
// and is not asked: the approval goes to the operator.
func formElicitation(e *mcp.ElicitationCapability) bool {
	return e != nil && (e.Form != nil || e.URL == nil)
}

// answerOf returns the user's answer to the approval question that an
// earlier round of this call asked, or nil when the call brings none.
// Declining, cancelling or leaving "approve" unticked is a refusal. A
// requestState without a response to the question, or with one that is
// not an elicitation result, is no answer (the user's word is not
// guessed): the call asks again.
func answerOf(req mcp.CallToolRequest) *gate.Answer {
	if req.Params.RequestState == "" {
		return nil
	}
	res := server.ElicitationResponse(req.Params.InputResponses, approvalInput)
	if res == nil {
		return nil
	}
	ans := &gate.Answer{State: req.Params.RequestState}
	if res.Action != mcp.ElicitationResponseActionAccept {
		return ans
	}
	content, _ := res.Content.(map[string]any)
	approve, _ := content["approve"].(bool)
	ans.Accept = approve
	return ans
}

// asking renders a result that puts the gate's question to the user: an
// input request, which mcp-go turns into elicitation/create for clients
// before protocol 2026-07-28.
func asking(q *gate.Question) *mcp.CallToolResult {
	return server.NewInputRequestBuilder(q.State).
		Elicit(approvalInput, mcp.ElicitationParams{
			Mode:            mcp.ElicitationModeForm,
			Message:         q.Message,
			RequestedSchema: approvalSchema,
		}).
		ToolResult()
}
