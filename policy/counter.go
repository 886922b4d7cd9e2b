package policy

import (
	"fmt"
	"time"
)

// The ledger's vocabulary: [Policy.Limits] turns a request into the
// counters it is checked against, a ledger (gate/state) reserves them, and
// [Policy.LimitDecision] explains a [Denied] from it.

// Kind says what a counter counts and what settling does to it.
type Kind uint8

const (
	// KindBudget counts money in minor units. Its entry is removed when the
	// call is settled as [Released] (Clink definitely refused it).
	KindBudget Kind = iota + 1
	// KindRate counts allowed calls. Its entry stays whatever the outcome.
	KindRate
)

// Limit is one rolling-window counter a call is checked against.
//
// An entry recorded at time t counts for every check at a time in
// [t, t+Window): capacity returns exactly when the window has passed. An
// entry stamped later than the check (the clocks of processes sharing a
// store disagree) counts too: the store fails closed.
type Limit struct {
	// Key names the counter, e.g. "budget|*|USD|24h0m0s|" or
	// "rate|*|1m0s|c:4f2a…" (the forms [Policy.Limits] makes). Callers
	// choose keys; the store only compares them. Keys must not contain raw
	// customer emails.
	Key string
	// Kind is what the counter counts.
	Kind Kind
	// Window is the rolling window; it must be positive.
	Window time.Duration
	// Max is the most the counter may hold within any window.
	Max int64
	// Add is what this call adds: minor units for a budget, 1 for a rate.
	Add int64
}

// Denied is returned by a ledger's Reserve when a limit would be exceeded.
type Denied struct {
	// Limit is the index, in the slice given to Reserve, of the first limit
	// that would be exceeded.
	Limit int
	// Used is what that counter holds within its window at the time of the
	// check.
	Used int64
	// RetryAt is the earliest time at which enough of the window has passed
	// for this call to fit, assuming nothing else is recorded meanwhile. It
	// is the zero time when the call can never fit (Add > Max).
	RetryAt time.Time
}

// Error implements error.
func (d *Denied) Error() string {
	return fmt.Sprintf("limit %d would be exceeded (used %d)", d.Limit, d.Used)
}

// Settlement is how a reserved call ended, and so what becomes of its
// reservation.
type Settlement uint8

const (
	// Spent: the call succeeded; its entries keep counting until their
	// windows pass.
	Spent Settlement = iota + 1
	// Released: the call definitely did not happen (Clink refused it); its
	// budget entries are removed, its rate entries stay.
	Released
	// Unknown: the call may have happened; its entries keep counting, as if
	// spent, since the money may be committed.
	Unknown
)
