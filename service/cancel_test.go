package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
)

// holdingStore makes every Hold wait until the test lets it go on, or its
// call is cancelled: a call is then in flight, before Clink.
type holdingStore struct {
	state.Store
	entered chan struct{}
	release chan struct{}
}

func (s *holdingStore) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Hold(ctx, h)
}

// postMCP posts one JSON-RPC message to /mcp as principal, in protocol
// version, and returns the status and body. A 2026-07-28 message carries
// the headers and _meta that version asks for; params is the message's
// params without the closing brace.
func (f *fixture) postMCP(principal, version, method, id, params string) (int, string) {
	f.t.Helper()
	headers := map[string]string{
		"Authorization":        "Bearer " + f.tokens[principal],
		"Content-Type":         "application/json",
		"Accept":               "application/json, text/event-stream",
		"Mcp-Protocol-Version": version,
	}
	if version == "2026-07-28" {
		headers["Mcp-Method"] = method
		if method == "tools/call" {
			headers["Mcp-Name"] = "create_agent_payment_session"
		}
		params += `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"cancel-test","version":"1"}}`
	}
	msg := `{"jsonrpc":"2.0",`
	if id != "" {
		msg += `"id":` + id + `,`
	}
	msg += `"method":"` + method + `","params":{` + params + `}}`
	code, _, body := f.get(http.MethodPost, "/mcp", strings.NewReader(msg), headers)
	return code, body
}

// A notifications/cancelled ends its sender's request with that id and
// no other principal's: over stateless HTTP every request's session is the
// same, so a cancellation keyed by id alone would let one principal end
// another's calls by guessing their ids.
func TestCancellationEndsOnlyTheSendersRequest(t *testing.T) {
	st := &holdingStore{Store: state.NewMemory(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	f := newFixture(t, setup{principals: map[string]string{"alice": "", "mallory": ""}, store: st})
	for i, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			// callHeld makes alice's call id in flight and returns where its
			// answer will come.
			calls := 0
			callHeld := func(id string) chan string {
				calls++
				n := calls
				done := make(chan string, 1)
				go func() {
					args := fmt.Sprintf(`{"customerEmail":"cancel-%d-%d@example.com","amount":30,"currency":"USD"}`, i, n)
					_, body := f.postMCP("alice", version, "tools/call", id, `"name":"create_agent_payment_session","arguments":`+args)
					done <- body
				}()
				select {
				case <-st.entered:
				case body := <-done:
					t.Fatalf("alice's call %s ended before its hold: %s", id, body)
				}
				return done
			}

			// mallory's cancellation without an id, then with "id": null
			// (which mcp-go takes for a notification too).
			for _, id := range []string{"", "null"} {
				done := callHeld("1")
				if code, body := f.postMCP("mallory", version, "notifications/cancelled", id, `"requestId":1`); code != http.StatusAccepted {
					t.Errorf("mallory's cancellation (id %q): HTTP %d %s, want 202", id, code, body)
				}
				time.Sleep(50 * time.Millisecond) // a cancellation that reached the call would have ended it by now
				select {
				case st.release <- struct{}{}:
				case body := <-done:
					t.Fatalf("mallory's cancellation (id %q) ended alice's call 1: %s", id, body)
				}
				if body := <-done; !strings.Contains(body, "Created agent payment session") {
					t.Errorf("mallory's cancellation (id %q) reached alice's call 1: %s", id, body)
				}
			}

			done := callHeld("2")
			if code, body := f.postMCP("alice", version, "notifications/cancelled", "", `"requestId":2`); code != http.StatusAccepted {
				t.Errorf("alice's cancellation: HTTP %d %s, want 202", code, body)
			}
			select {
			case body := <-done:
				if strings.Contains(body, "Created agent payment session") {
					t.Errorf("alice's call 2 was created after she cancelled it: %s", body)
				}
			case <-time.After(10 * time.Second):
				st.release <- struct{}{}
				t.Fatalf("alice's own cancellation did not end her call 2: %s", <-done)
			}
		})
	}
	if n := f.sandbox.SessionCount(); n != 4 {
		t.Errorf("Clink has %d sessions, want the 4 calls that were not cancelled", n)
	}
}

// Two agents of one platform share a principal (one token) and number
// their requests alike: when one cancels its request 1 while both have a
// request 1 in flight here, nothing tells whose it is, so neither is
// cancelled (the other agent's payment must not be dropped for it).
func TestACancellationThatCouldBeEitherOfTwoRequestsCancelsNeither(t *testing.T) {
	st := &holdingStore{Store: state.NewMemory(), entered: make(chan struct{}, 2), release: make(chan struct{})}
	f := newFixture(t, setup{principals: map[string]string{"platform": ""}, store: st})
	done := make(chan string, 2)
	for agent := range 2 {
		go func() {
			args := fmt.Sprintf(`{"customerEmail":"agent%d@example.com","amount":30,"currency":"USD"}`, agent)
			_, body := f.postMCP("platform", "2025-11-25", "tools/call", "1", `"name":"create_agent_payment_session","arguments":`+args)
			done <- body
		}()
	}
	<-st.entered
	<-st.entered
	if code, body := f.postMCP("platform", "2025-11-25", "notifications/cancelled", "", `"requestId":1`); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, body)
	}
	time.Sleep(100 * time.Millisecond) // time for a cancellation to land, were there one
	for range 2 {
		select {
		case st.release <- struct{}{}:
		case <-time.After(time.Second): // a call cancelled waits no more
		}
	}
	for range 2 {
		if body := <-done; !strings.Contains(body, "Created agent payment session") {
			t.Errorf("a call = %s, want created", body)
		}
	}
	if n := f.sandbox.SessionCount(); n != 2 {
		t.Errorf("Clink has %d sessions, want both agents' 2", n)
	}
}
