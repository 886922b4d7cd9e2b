package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// When mcp-go's tool call queue is full it runs the next tools/call on the
// loop that reads stdin; one that asks the client a question (approval,
// 2025-11-25) then waits for an answer only that loop could read, and
// nothing more is read until the approval expires (found by this part's
// review of the stdio transport: with one worker, the eighteenth call in
// flight). The conn refuses a request beyond the queue's size in flight
// instead, with an error the client can act on, and the queue never fills.
func TestARequestBeyondTheQueueIsRefusedNotRunOnTheReadLoop(t *testing.T) {
	clink := newGatedClink(t)
	clink.release()
	p := startServerWith(t, clink, approvalsPolicyFile(t), `{"elicitation":{}}`, "CLINK_STDIO_WORKERS=1")
	q1 := question(t, p, 1)       // the one worker waits for its answer
	for id := 2; id <= 16; id++ { // queued behind it: 16 in flight, the queue's size
		p.call(id, fmt.Sprint(10+id))
	}
	for id := 17; id <= 18; id++ { // each would ask, on the read loop
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session","arguments":{"amount":160,"currency":"USD","customerEmail":"ann@example.com"}}}`, id))
	}
	for _, id := range []string{"17", "18"} {
		line := p.awaitLine(`{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32000,`, 10*time.Second)
		if !strings.Contains(line, "too many requests in flight on this connection (16)") {
			t.Errorf("request %s: %s", id, line)
		}
	}
	p.send(`{"jsonrpc":"2.0","id":` + q1 + `,"result":{"action":"decline"}}`)
	for id := 1; id <= 16; id++ {
		p.reply(id, 10*time.Second)
	}
	p.send(`{"jsonrpc":"2.0","id":99,"method":"ping"}`)
	p.reply(99, 10*time.Second)
	if strings.Contains(p.output(), "queue full") {
		t.Errorf("mcp-go found its queue full:\n%s", p.output())
	}
}
