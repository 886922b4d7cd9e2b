package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// approvalJSON is an approval as the admin endpoint shows it: what it is
// for (the customer's email masked), who asked, and its state.
type approvalJSON struct {
	ID          string     `json:"id"`
	State       string     `json:"state"`
	Tool        string     `json:"tool"`
	Amount      string     `json:"amount,omitempty"`
	Currency    string     `json:"currency,omitempty"`
	Amounts     string     `json:"amounts,omitempty"`
	Customer    string     `json:"customer,omitempty"`
	Caller      string     `json:"caller"`
	RequestedAt time.Time  `json:"requestedAt"`
	ExpiresAt   time.Time  `json:"expiresAt"`
	DecidedBy   string     `json:"decidedBy,omitempty"`
	DecidedAt   *time.Time `json:"decidedAt,omitempty"`
}

func approvalOf(a *state.Approval) approvalJSON {
	out := approvalJSON{ID: a.ID, State: a.State, Tool: a.Tool, Amount: a.Amount, Currency: a.Currency, Amounts: a.Amounts,
		Customer: a.EmailMasked, Caller: a.Caller, RequestedAt: a.RequestedAt.UTC(), ExpiresAt: a.ExpiresAt.UTC(), DecidedBy: a.DecidedBy}
	if !a.DecidedAt.IsZero() {
		t := a.DecidedAt.UTC()
		out.DecidedAt = &t
	}
	return out
}

// adminHandler serves the admin endpoint, for principals the principals
// file marks admin: true (403 for any other, 401 without credentials):
//
//   - GET /admin/approvals: the approvals waiting (pending, or approved and
//     not used yet); ?all=1 lists decided ones too, newest first;
//   - POST /admin/approvals/{id}/approve and /deny: decide one, recorded
//     in the audit trail as "operator:" + the admin's principal name. 409
//     when it is no longer pending (saying so when the decision came past
//     its deadline before a sweep, and so expired it), 404 when unknown,
//     403 when the admin's own calls asked for it, 503 when the store does
//     not answer (the four-eyes read too: it fails closed).
func (s *Service) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/approvals", func(w http.ResponseWriter, r *http.Request) {
		var states []string
		if r.URL.Query().Get("all") == "" {
			states = []string{state.ApprovalPending, state.ApprovalApproved}
		}
		limit := 0 // gate.ListApprovals's default
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > gate.MaxApprovalsListed {
				plain(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d", gate.MaxApprovalsListed))
				return
			}
			limit = n
		}
		list, more, err := gate.ListApprovals(r.Context(), s.store, states, limit)
		if err != nil {
			s.log.ErrorContext(r.Context(), "admin: listing approvals failed", "err", err)
			plain(w, http.StatusServiceUnavailable, "the store does not answer")
			return
		}
		out := make([]approvalJSON, 0, len(list))
		for i := range list {
			out = append(out, approvalOf(&list[i]))
		}
		writeJSON(w, http.StatusOK, map[string]any{"approvals": out, "more": more})
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p, _ := auth.FromContext(r.Context())
			id := r.PathValue("id")
			// Four eyes: a principal that is both an agent and an admin
			// never decides a payment it asked for itself. A store that
			// does not answer here refuses the decision: a read that
			// failed proves nothing about who asked.
			own, err := s.store.Approval(r.Context(), id)
			switch {
			case errors.Is(err, state.ErrNotFound):
				plain(w, http.StatusNotFound, "no such approval")
				return
			case err != nil:
				s.log.ErrorContext(r.Context(), "admin: reading an approval failed", "approval", id, "err", err)
				plain(w, http.StatusServiceUnavailable, "the store does not answer")
				return
			case own.Caller == p.Name:
				plain(w, http.StatusForbidden, "forbidden: an admin cannot decide an approval its own calls asked for")
				return
			}
			a, err := gate.DecideApproval(r.Context(), s.store, id, approve, p.Name)
			switch {
			case errors.Is(err, state.ErrNotFound):
				plain(w, http.StatusNotFound, "no such approval")
				return
			case errors.Is(err, state.ErrApprovalNotPending) && a != nil && own.State == state.ApprovalPending && a.State == state.ApprovalExpired:
				// Pending when read, past its deadline with no sweep yet:
				// deciding it expired it, which changed something.
				verb := map[bool]string{true: "approved", false: "denied"}[approve]
				writeJSON(w, http.StatusConflict, map[string]any{
					"error": fmt.Sprintf("the approval had expired at %s, so it was not %s: it is now recorded as expired (in the audit trail), and its budgets are given back (its rate limits keep counting the call)",
						a.ExpiresAt.UTC().Format(time.RFC3339), verb),
					"approval": approvalOf(a)})
				return
			case errors.Is(err, state.ErrApprovalNotPending) && a != nil:
				writeJSON(w, http.StatusConflict, map[string]any{"error": "the approval is no longer pending", "approval": approvalOf(a)})
				return
			case err != nil:
				s.log.ErrorContext(r.Context(), "admin: deciding an approval failed", "approval", id, "err", err)
				plain(w, http.StatusServiceUnavailable, "the store does not answer")
				return
			}
			s.log.InfoContext(r.Context(), "approval decided", "approval", a.ID, "state", a.State, "by", a.DecidedBy,
				"tool", a.Tool, "amount", a.Currency+" "+a.Amount, "caller", a.Caller)
			writeJSON(w, http.StatusOK, map[string]any{"approval": approvalOf(a)})
		}
	}
	mux.HandleFunc("POST /admin/approvals/{id}/approve", decide(true))
	mux.HandleFunc("POST /admin/approvals/{id}/deny", decide(false))
	admins := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := auth.FromContext(r.Context()); !ok || !p.Admin {
			plain(w, http.StatusForbidden, "forbidden: this principal is not an admin (admin: true in the principals file)")
			return
		}
		mux.ServeHTTP(w, r)
	})
	return s.auth.Middleware(admins)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
