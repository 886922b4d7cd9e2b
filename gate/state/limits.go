package state

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// Retention rules shared by the implementations, so that they prune alike.
const (
	// pruneGrace is how long counter entries and claims are kept after
	// their windows have passed: a tolerance for processes sharing a store
	// whose clocks disagree a little.
	pruneGrace = time.Minute
	// reservationRetention is how long a reservation is remembered after
	// its longest window has passed, so that a slow call can still be
	// settled.
	reservationRetention = time.Hour
)

// entry is one counted amount, in unix nanoseconds.
type entry struct {
	at     int64
	amount int64
}

// checkLimits refuses a time or limits no store can count correctly.
func checkLimits(at time.Time, limits []policy.Limit) error {
	if err := checkTime(at); err != nil {
		return err
	}
	for i, l := range limits {
		switch {
		case l.Key == "":
			return fmt.Errorf("store: limit %d has an empty key", i)
		case l.Kind != policy.KindBudget && l.Kind != policy.KindRate:
			return fmt.Errorf("store: limit %d (%s) has an unknown kind %d", i, l.Key, l.Kind)
		case l.Window <= 0:
			return fmt.Errorf("store: limit %d (%s) has a non-positive window %v", i, l.Key, l.Window)
		case l.Max < 0 || l.Add < 0:
			return fmt.Errorf("store: limit %d (%s) has a negative max or add", i, l.Key)
		}
		for j := range i {
			if limits[j].Key == l.Key {
				return fmt.Errorf("store: limit %d repeats the key of limit %d (%s)", i, j, l.Key)
			}
		}
	}
	return nil
}

// checkTime refuses a time outside what unix nanoseconds can hold, with
// room for a window on either side.
func checkTime(at time.Time) error {
	const margin = 100 * 365 * 24 * time.Hour
	lo, hi := time.Unix(0, math.MinInt64).Add(margin), time.Unix(0, math.MaxInt64).Add(-margin)
	if at.Before(lo) || at.After(hi) {
		return fmt.Errorf("store: time %v is out of range", at)
	}
	return nil
}

// windowStart returns the exclusive lower bound of the entries that count
// at now: an entry at t counts when t > now-window.
func windowStart(now int64, l policy.Limit) int64 { return now - int64(l.Window) }

// fits reports whether add more fits a counter holding used.
func fits(l policy.Limit, used int64) bool { return l.Add <= l.Max && used <= l.Max-l.Add }

// denial builds the *Denied for limit i, which holds used, from the entries
// that count towards it sorted oldest first.
func denial(i int, l policy.Limit, used int64, counting []entry) *policy.Denied {
	d := &policy.Denied{Limit: i, Used: used}
	if l.Add > l.Max {
		return d
	}
	sort.Slice(counting, func(a, b int) bool { return counting[a].at < counting[b].at })
	var freed int64
	for k, e := range counting {
		freed += e.amount
		if k+1 < len(counting) && counting[k+1].at == e.at {
			continue // entries at the same time leave the window together
		}
		if used-freed <= l.Max-l.Add {
			d.RetryAt = time.Unix(0, e.at+int64(l.Window)).UTC()
			return d
		}
	}
	// Unreachable while used is the sum of counting; fail safe regardless.
	return d
}

// expiry returns when the last of limits' windows, starting at now, passes.
func expiry(now int64, limits []policy.Limit) int64 {
	end := now
	for _, l := range limits {
		end = max(end, now+int64(l.Window))
	}
	return end
}

// newReservationID returns a random reservation ID.
func newReservationID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: reservation id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// checkOutcome refuses an outcome Settle does not know.
func checkOutcome(o policy.Settlement) error {
	if o != policy.Spent && o != policy.Released && o != policy.Unknown {
		return fmt.Errorf("store: unknown outcome %d", o)
	}
	return nil
}

// checkClaim refuses a claim no store can keep.
func checkClaim(c Claim) error {
	if c.Key == "" {
		return fmt.Errorf("store: claim has an empty key")
	}
	if c.Window <= 0 {
		return fmt.Errorf("store: claim %s has a non-positive window %v", c.Key, c.Window)
	}
	return checkTime(c.At)
}

// cloneBytes copies b, returning nil for an empty b so that every
// implementation answers alike.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// errClosed is returned by a handle used after Close.
var errClosed = errors.New("store: the handle is closed")

// newOwnerID returns a random ID for a store handle, the owner of the
// intents it holds.
func newOwnerID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("state: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}

// checkHold refuses a hold no store can keep.
func checkHold(h *Hold) error {
	if h.Intent.Call == "" {
		return errors.New("store: hold has no call ID")
	}
	if h.Claim != nil {
		if h.Claim.Call != h.Intent.Call {
			return errors.New("store: hold's claim is not its call's")
		}
		if err := checkClaim(*h.Claim); err != nil {
			return err
		}
	}
	return checkLimits(h.At, h.Limits)
}

// createdDecision is the Decision of the outcome record of a call that
// created a Clink session: [Journal.SessionTool] looks for it.
const createdDecision = string(policy.CodeCreated)

// CreatedSession reports whether r records that Clink created a session:
// an outcome record with Decision "created" and a session ID, what
// [Journal.SessionTool] looks for.
func (r *AuditRecord) CreatedSession() bool {
	return r.Kind == KindOutcome && r.Decision == createdDecision && r.SessionID != ""
}

// checkApprovalRequest refuses an approval request no store can keep.
func checkApprovalRequest(r *ApprovalRequest) error {
	a := &r.Approval
	switch {
	case a.ID == "":
		return errors.New("store: approval has no ID")
	case a.Key == "":
		return fmt.Errorf("store: approval %s has no key", a.ID)
	case r.Record.Kind != KindApproval || r.Record.Call != a.ID:
		return fmt.Errorf("store: approval %s's record is not an approval record naming it", a.ID)
	case r.Remember < 0:
		return fmt.Errorf("store: approval %s is remembered for a negative time", a.ID)
	}
	if err := checkTime(a.ExpiresAt); err != nil {
		return err
	}
	return checkLimits(r.At, r.Limits)
}

// checkApprovalStates refuses a state no approval can be in.
func checkApprovalStates(states []string) error {
	for _, st := range states {
		switch st {
		case ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalExpired, ApprovalUsed:
		default:
			return fmt.Errorf("store: %q is not an approval state", st)
		}
	}
	return nil
}

// defaultApprovalList is how many approvals ListApprovals returns when its
// limit is not positive.
const defaultApprovalList = 100

// live reports whether a is pending or approved: it holds its reservation
// and may still be decided or used.
func (a *Approval) live() bool { return a.State == ApprovalPending || a.State == ApprovalApproved }

// answers reports what RequestApproval at clock (unix ns), remembering
// decided approvals for remember, does with a, the latest approval of
// its key: answer with it (found), after expiring it when it is live and
// due (expire); neither when a call with that key is to get a new one.
func (a *Approval) answers(clock int64, remember time.Duration) (found, expire bool) {
	switch {
	case a.live() && a.ExpiresAt.UnixNano() <= clock:
		return true, true
	case a.live(), a.State != ApprovalUsed && a.DecidedAt.UnixNano()+int64(remember) > clock:
		return true, false
	}
	return false, false
}

// foundApproval is what CallApproval returns of a, the latest approval of
// a key at at: a copy, expired (unwritten) when RequestApproval would
// expire it; ErrNotFound when RequestApproval would make a new one.
func foundApproval(a *Approval, at time.Time, clock int64, remember time.Duration) (*Approval, error) {
	found, expire := a.answers(clock, remember)
	if !found {
		return nil, ErrNotFound
	}
	out := *a
	if expire {
		out.State, out.DecidedBy, out.DecidedAt = ApprovalExpired, "", at.UTC()
	}
	return &out, nil
}

// approvalRecord is the audit record of a's decision or expiry, decided
// by by at at.
func approvalRecord(a *Approval, decision, by string, at time.Time) AuditRecord {
	return AuditRecord{Time: at, Kind: KindApproval, Call: a.ID, Caller: by, Tool: a.Tool, Decision: decision,
		Amount: a.Amount, Currency: a.Currency, Amounts: a.Amounts, EmailMasked: a.EmailMasked, Reservation: a.Reservation}
}

// fromUnix is the time of unix ns, or the zero time for 0 (a decision not
// made yet).
func fromUnix(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
