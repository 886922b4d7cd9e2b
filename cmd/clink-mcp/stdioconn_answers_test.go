package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The answers of a 2025-11-25 client to the server's approval question that
// mcp-go would not route as answers, and requests it cannot decode, found by
// this part's review of the stdio transport. Question ids count from 1, as
// most clients' request ids do, so a reply mcp-go wrongly sends with the
// question's id lands on the client's own call.

// responsesTo returns the responses (lines without a method) with id on
// p's stdout so far.
func responsesTo(p *mcpProcess, id string) []string {
	var rs []string
	for line := range strings.Lines(p.out.String()) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && string(m.ID) == id && m.Method == "" {
			rs = append(rs, strings.TrimSpace(line))
		}
	}
	return rs
}

// An error answer whose error member mcp-go cannot decode (a string code,
// null, a string) was taken by mcp-go for a request without a method and
// answered "Method not found" with the question's id, the client's call's:
// the call got that error while it went on waiting. Now it is a refused
// answer: the call that asked ends with its tool result (the approval
// pending, the question having failed), its only response.
func TestAMalformedAnswerToTheQuestionEndsTheCallThatAsked(t *testing.T) {
	for name, answer := range map[string]string{
		"a string code": `"error":{"code":"E_DENIED","message":"the user closed the dialog"}`,
		"null":          `"error":null`,
		"a string":      `"error":"denied"`,
	} {
		t.Run(name, func(t *testing.T) {
			clink := newGatedClink(t)
			clink.release()
			p := startServerWith(t, clink, approvalsPolicyFile(t), `{"elicitation":{}}`, "CLINK_LOG_LEVEL=debug")
			if q := question(t, p, 1); q != "1" {
				t.Fatalf("the question's id is %s: the test needs it to be the call's, 1", q)
			}
			p.send(`{"jsonrpc":"2.0","id":1,` + answer + `}`)
			p.reply(1, 10*time.Second)
			// A proper answer now finds nothing waiting and is dropped.
			p.send(`{"jsonrpc":"2.0","id":1,"result":{"action":"decline"}}`)
			time.Sleep(time.Second)
			rs := responsesTo(p, "1")
			if len(rs) != 1 || !strings.Contains(rs[0], `"result"`) || !strings.Contains(rs[0], "the client's response was refused") {
				t.Errorf("responses to the tools/call 1: %q, want one, its tool result saying why the question failed\n%s", rs, p.output())
			}
		})
	}
}

// A well-formed error answer to a question whose call was cancelled, while
// another call is still running: mcp-go no longer waits for it and answered
// it "Method not found" with the question's id, 1, which the client took
// for the answer to its payment call 1, whose real result then came as a
// second response. mcp-go's reply is dropped now.
func TestALateAnswerIsNotAnsweredOnAnotherCallsID(t *testing.T) {
	clink := newGatedClink(t) // closed: call 1 is held at Clink
	p := startServerWith(t, clink, approvalsPolicyFile(t), `{"elicitation":{}}`, "CLINK_LOG_LEVEL=debug")
	p.call(1, "12.5")
	clink.awaitPOSTs(t, 1, 15*time.Second)
	q := question(t, p, 7) // asked while calls 1 and 7 are pending
	if q != "1" {
		t.Fatalf("the question's id is %s: the test needs it to be the payment call's, 1", q)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"changed my mind"}}`)
	p.awaitLog(`"msg":"stdio: dropped the response to a cancelled request","id":"7"`, 20*time.Second)
	p.send(`{"jsonrpc":"2.0","id":` + q + `,"error":{"code":-32000,"message":"the user dismissed the dialog"}}`)
	p.awaitLog(`stdio: dropped mcp-go's answer to the client's answer to a withdrawn question`, 10*time.Second)
	clink.release()
	p.reply(1, 10*time.Second)
	time.Sleep(time.Second)
	if rs := responsesTo(p, "1"); len(rs) != 1 || !strings.Contains(rs[0], `"result"`) {
		t.Errorf("responses to payment call 1: %d, want 1, its result:\n%s\n%s", len(rs), strings.Join(rs, "\n"), p.output())
	}
}

// A request whose "jsonrpc" is not a string: mcp-go cannot decode it and
// answered a parse error with a null id, so the request stayed pending for
// good and the end of stdin waited out the whole grace with nothing in
// flight. It is refused with its own id now, and settles.
func TestARequestWithANonStringVersionIsRefusedWithItsID(t *testing.T) {
	h := startStdioConnServer(t)
	h.send(`{"jsonrpc":2,"id":5,"method":"ping"}`)
	stdioConnEventually(t, "the request is refused with its id", func() bool {
		return strings.Contains(h.out.String(), `{"jsonrpc":"2.0","id":5,"error":{"code":-32600,`)
	})
	if n := h.conn.Pending(); n != 0 {
		t.Errorf("Pending() = %d after the request was answered", n)
	}
	h.conn.SetDrainTimeout(3 * time.Second)
	start := time.Now()
	h.stdin.Close()
	h.wait()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Listen returned %v after the end of stdin, nothing in flight: the drain waited for its deadline", d.Round(time.Millisecond))
	}
}
