package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"

	"github.com/clink-mcp/clink-mcp/service/auth"
	"github.com/clink-mcp/clink-mcp/tools"
)

// methodCancelled is the notification a client sends to cancel one of its
// requests, naming it by its JSON-RPC id (params.requestId).
const methodCancelled = "notifications/cancelled"

// errCancelledByClient is the cause a request ends with when its client
// cancels it.
var errCancelledByClient = errors.New("the client cancelled the request (notifications/cancelled)")

// inflight are the MCP requests /mcp is serving, by principal and JSON-RPC
// id, so that a cancellation ends only its sender's requests.
//
// mcp-go cancels a request by the session and id a notifications/cancelled
// names, but a stateless server's requests all have the session "": left to
// it, one principal could cancel another's calls by guessing their ids
// (clients number them 1, 2, 3...). So /mcp answers every cancellation
// itself (202, as for any notification) and never hands one to mcp-go: it
// cancels the request of the same principal with that id that this
// process is serving. When it serves two or more (clients sharing a
// principal, one token for a platform's agents, each number their requests
// alike), it cancels none: the cancellation is any one client's, and
// nothing tells which. It cannot tell either when one client's
// cancellation arrives after its own request ended and another client's
// request with that id is the one in flight: that one is cancelled
// (before Clink, or not at all: a call at Clink runs to its end). Clients
// that share a principal should number their requests apart. A request on
// another replica is not reached, as it
// would not be by mcp-go either; closing the request's connection cancels
// it wherever it runs, in every case.
type inflight struct {
	mu   sync.Mutex
	reqs map[inflightKey][]*inflightReq
}

// inflightKey names requests: the principal (its name, "" without a
// principals file) and the JSON-RPC id as sent, spaces trimmed.
type inflightKey struct{ principal, id string }

// keyOf is the key of the request id that r's principal makes.
func keyOf(r *http.Request, id json.RawMessage) inflightKey {
	return inflightKey{principalOf(r), string(bytes.TrimSpace(id))}
}

type inflightReq struct{ cancel context.CancelCauseFunc }

// principalOf is the name of r's authenticated principal, "" without a
// principals file.
func principalOf(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return p.Name
	}
	return ""
}

// serve serves r, whose body's envelope is e (tools.ReadMessage), with
// next: a request (a message with a method and an id) is tracked while next
// serves it; a cancellation is answered here and never reaches next.
func (f *inflight) serve(w http.ResponseWriter, r *http.Request, e tools.Envelope, next http.Handler) {
	switch {
	case e.Method == methodCancelled && isNull(e.ID):
		f.cancel(w, r, e.RequestID)
	case e.Method != "" && !isNull(e.ID):
		f.track(w, r, e.ID, next)
	default:
		next.ServeHTTP(w, r)
	}
}

// isNull reports whether id is absent or JSON null: mcp-go takes a
// message with either for a notification (its id decodes to nil), so a
// cancellation with "id": null must be answered here as one without.
func isNull(id json.RawMessage) bool {
	t := bytes.TrimSpace(id)
	return len(t) == 0 || string(t) == "null"
}

// track serves r, a request with id, with a context that cancel ends, and
// forgets it when next returns.
func (f *inflight) track(w http.ResponseWriter, r *http.Request, id json.RawMessage, next http.Handler) {
	k := keyOf(r, id)
	ctx, cancel := context.WithCancelCause(r.Context())
	req := &inflightReq{cancel: cancel}
	f.mu.Lock()
	if f.reqs == nil {
		f.reqs = make(map[inflightKey][]*inflightReq)
	}
	f.reqs[k] = append(f.reqs[k], req)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		rest := slices.DeleteFunc(f.reqs[k], func(q *inflightReq) bool { return q == req })
		if len(rest) == 0 {
			delete(f.reqs, k)
		} else {
			f.reqs[k] = rest
		}
		f.mu.Unlock()
		cancel(nil)
	}()
	next.ServeHTTP(w, r.WithContext(ctx))
}

// cancel ends the request with id that r's principal is making, unless it
// makes more than one (see inflight), and answers r, its cancellation,
// with 202 Accepted.
func (f *inflight) cancel(w http.ResponseWriter, r *http.Request, id json.RawMessage) {
	if k := keyOf(r, id); k.id != "" {
		f.mu.Lock()
		if reqs := f.reqs[k]; len(reqs) == 1 {
			reqs[0].cancel(errCancelledByClient)
		}
		f.mu.Unlock()
	}
	w.WriteHeader(http.StatusAccepted)
}
