package tools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/internal/textcheck"
	"github.com/clink-mcp/clink-mcp/policy"
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
	if ctx.Value(cannotAskKey{}) != nil {
		return false // it declared it could, and the question failed (askUntilExpiry)
	}
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

// askedKey keys, in a call's context, where create notes the question the
// gate put (see askUntilExpiry).
type askedKey struct{}

// cannotAskKey marks, in a call's context, a call whose approval question
// could not be put to its client's user; its value says why (see
// askUntilExpiry).
type cannotAskKey struct{}

// maxAskFailure bounds, in runes, the reason a failed question gives in
// the call's result.
const maxAskFailure = 200

// askFailure is why the question failed, as err says it, fit to show the
// agent and to log: printable, on one line, its spaces collapsed, at most
// maxAskFailure runes (and an ellipsis when cut). It is the client's own
// reply, the transport's refusal of it, or mcp-go's failure to send the
// question: nothing secret.
func askFailure(err error) string {
	msg := strings.TrimPrefix(err.Error(), "multi round-trip: ")
	msg = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) || textcheck.Invisible(r) {
			return ' '
		}
		return r
	}, msg)
	msg = strings.Join(strings.Fields(msg), " ")
	if msg == "" {
		return "no reason given"
	}
	if utf8.RuneCountInString(msg) > maxAskFailure {
		return string([]rune(msg)[:maxAskFailure]) + "…"
	}
	return msg
}

// noteAskFailure adds to res, the pending approval's result of a call
// whose question could not be put to its client's user, why.
func noteAskFailure(ctx context.Context, res *gate.Result) *gate.Result {
	why, ok := ctx.Value(cannotAskKey{}).(string)
	if !ok || res.Code != policy.CodeApprovalRequired {
		return res
	}
	out := *res
	out.Text += " The question could not be put to the user through your MCP client (" + why + ")."
	return &out
}

// noteQuestion tells askUntilExpiry, when it runs the call, the question
// the gate asked.
func noteQuestion(ctx context.Context, q *gate.Question) {
	if p, ok := ctx.Value(askedKey{}).(**gate.Question); ok && q != nil {
		*p = q
	}
}

// maxAskRounds bounds how many times askUntilExpiry asks within one call,
// as mcp-go's own bridge does.
const maxAskRounds = 10

// askPoll is the longest askUntilExpiry waits before it looks at the
// gate's clock again.
const askPoll = time.Second

// askUntilExpiry puts the approval question to a client of a protocol
// before 2026-07-28 (elicitation/create), as mcp-go's bridge from input
// requests would, but stops waiting when the approval expires by the
// gate's clock. The bridge waits however long the user takes, and on
// stdio nothing else ends the wait while the client's input stays open,
// so an unanswered question kept the agent's call open past its approval.
// Then the call runs again without an answer, and the gate says the
// approval expired (or, if an operator decided it meanwhile, what they
// decided). A question that fails (the client answers it with an error:
// it declared elicitation, yet could not ask anyone; or the question could
// not be sent) is taken for a client that cannot ask: the call runs again
// and gets the pending approval's result, which says how an operator
// decides it and why the question failed (or, had an operator decided it
// meanwhile, their decision), rather than the error. A call cancelled
// meanwhile ends there. Clients of 2026-07-28 get the question as an
// input request and are not waited for; anything but the approval
// question is left to mcp-go.
func askUntilExpiry(g *gate.Gate, log *slog.Logger) server.ToolHandlerMiddleware {
	return func(next server.ToolHandlerFunc) server.ToolHandlerFunc {
		return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if mcp.IsModernProtocol(server.RequestProtocolVersion(ctx)) {
				return next(ctx, req)
			}
			srv := server.ServerFromContext(ctx)
			for round := 0; ; round++ {
				var q *gate.Question
				res, err := next(context.WithValue(ctx, askedKey{}, &q), req)
				if err != nil || res == nil || !res.NeedsInput() || q == nil || srv == nil || round == maxAskRounds {
					return res, err
				}
				in, ok := res.InputRequests[approvalInput]
				if !ok || len(res.InputRequests) != 1 || in.Method != mcp.MethodElicitationCreate || in.Elicitation == nil {
					return res, nil
				}
				answer, err := askBefore(ctx, srv, g, *in.Elicitation, q.ExpiresAt)
				if err != nil && ctx.Err() == nil {
					why := askFailure(err)
					log.WarnContext(ctx, "the approval question could not be put to the client's user; the approval stays pending",
						"tool", req.Params.Name, "approval", q.ApprovalID, "err", why)
					ctx = context.WithValue(ctx, cannotAskKey{}, why)
					req.Params.MultiRoundTripParams = mcp.MultiRoundTripParams{}
					continue
				}
				if err != nil {
					return nil, err
				}
				req.Params.MultiRoundTripParams = mcp.MultiRoundTripParams{RequestState: res.RequestState}
				if answer != nil {
					req.Params.InputResponses = mcp.InputResponses{approvalInput: mcp.NewElicitationInputResponse(*answer)}
				}
			}
		}
	}
}

// askBefore sends the question and waits for the client's answer until
// expires by g's clock: nil, nil once it has passed with no answer (the
// question's request is abandoned; a late answer finds nothing waiting).
// An error is the client's, or the call's context's.
func askBefore(ctx context.Context, srv *server.MCPServer, g *gate.Gate, params mcp.ElicitationParams, expires time.Time) (*mcp.ElicitationResult, error) {
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type reply struct {
		res *mcp.ElicitationResult
		err error
	}
	replies := make(chan reply, 1)
	go func() {
		res, err := srv.RequestElicitation(qctx, mcp.ElicitationRequest{
			Request: mcp.Request{Method: string(mcp.MethodElicitationCreate)},
			Params:  params,
		})
		replies <- reply{res, err}
	}()
	for {
		left := expires.Sub(g.Now())
		if left <= 0 {
			cancel()
			if r := <-replies; r.err == nil && r.res != nil {
				return r.res, nil // answered as it expired: the gate judges it
			}
			return nil, nil
		}
		timer := time.NewTimer(min(left, askPoll))
		select {
		case r := <-replies:
			timer.Stop()
			switch {
			case r.err != nil:
				return nil, fmt.Errorf("multi round-trip: %w", r.err)
			case r.res == nil:
				return nil, errors.New("multi round-trip: the session returned no elicitation result")
			}
			return r.res, nil
		case <-timer.C:
		}
	}
}
