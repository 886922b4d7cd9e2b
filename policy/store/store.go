// Package store keeps the state the policy needs across calls, processes and
// restarts: budget and rate-limit counters, the duplicate-call guard, and
// the hash-chained audit trail.
//
// It knows nothing of MCP, Clink or the policy file: it stores counters,
// claims and records under keys its callers choose. [Store] is the
// interface the server uses; [OpenSQLite] is the embedded, durable
// implementation and [NewMemory] the in-memory one for tests. A shared
// database for several replicas is a third implementation of the same
// interface.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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
// [t, t+Window): capacity returns exactly when the window has passed.
type Limit struct {
	// Key names the counter, e.g. "budget|*|USD|24h|" or
	// "rate|*|1m|cust:4f2a…". Callers choose keys; the store only compares
	// them. Keys must not contain raw customer emails.
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

// Denied is returned by [Store.Reserve] when a limit would be exceeded.
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
	return fmt.Sprintf("store: limit %d would be exceeded (used %d)", d.Limit, d.Used)
}

// Outcome is how a reserved call ended.
type Outcome uint8

const (
	// Spent: the call succeeded; its entries keep counting until their
	// windows pass.
	Spent Outcome = iota + 1
	// Released: the call definitely did not happen (Clink refused it); its
	// budget entries are removed, its rate entries stay.
	Released
	// Unknown: the call may have happened; its entries keep counting, as if
	// spent, since the money may be committed.
	Unknown
)

// ClaimState is what [Store.Claim] found.
type ClaimState uint8

const (
	// ClaimNew: no live claim had this key; the caller now owns a claim in
	// flight and must [Store.Finish] or [Store.Drop] it.
	ClaimNew ClaimState = iota + 1
	// ClaimInFlight: another call with this key and fingerprint is in
	// flight; ask again shortly.
	ClaimInFlight
	// ClaimDone: a call with this key and fingerprint finished within the
	// window; Prior.Result is what it stored.
	ClaimDone
	// ClaimConflict: a live claim has this key but another fingerprint
	// (an idempotency key reused with different arguments).
	ClaimConflict
)

// Claim asks for the duplicate guard's slot for one call.
type Claim struct {
	// Key identifies the call: the tool and an explicit idempotency key, or
	// the tool and the fingerprint.
	Key string
	// Fingerprint is a hash of the call's normalised arguments.
	Fingerprint string
	// At is the time of the call; the claim is live in [At, At+Window).
	At time.Time
	// Window is how long the claim stays live; it must be positive.
	Window time.Duration
}

// Prior is the answer to a [Claim].
type Prior struct {
	State ClaimState
	// Result is the stored result, for ClaimDone.
	Result []byte
}

// AuditRecord is one entry of the append-only audit trail: one per tool
// call, whatever its outcome.
type AuditRecord struct {
	// Seq is the record's position, from 1, assigned by Append.
	Seq int64 `json:"seq"`
	// Time is when the call started (UTC, kept to the nanosecond).
	Time time.Time `json:"time"`
	// Tool is the tool's name.
	Tool string `json:"tool"`
	// Decision is the call's outcome code: "created", "replayed", a policy
	// code such as "amount_over_cap", "invalid_arguments",
	// "upstream_refused", "outcome_unknown", ...
	Decision string `json:"decision"`
	// Amount is the exact decimal amount ("19.99"), or "" if there was none.
	Amount string `json:"amount,omitempty"`
	// Currency is the ISO 4217 code, or "".
	Currency string `json:"currency,omitempty"`
	// EmailMasked is the customer email masked ("a***@example.com"), or "".
	EmailMasked string `json:"email_masked,omitempty"`
	// EmailHash is a keyed hash of the normalised customer email (hex), so
	// one customer's calls can be correlated without storing the address.
	EmailHash string `json:"email_hash,omitempty"`
	// SessionID is Clink's session ID, when one was created or replayed.
	SessionID string `json:"session_id,omitempty"`
	// Duration is how long the call took.
	Duration time.Duration `json:"duration_ns"`
	// PrevHash is the Hash of the previous record ("" for the first).
	PrevHash string `json:"prev_hash"`
	// Hash is the hex SHA-256 over this record's other fields, PrevHash
	// included; see [AuditRecord.ComputeHash].
	Hash string `json:"hash"`
}

// Store is the state behind budgets, rate limits, the duplicate guard and
// the audit trail. Implementations are safe for concurrent use, and
// [Store.Reserve], [Store.Claim] and [Store.AppendAudit] are atomic with
// respect to every other handle on the same underlying state (for a file
// store: other processes too).
type Store interface {
	// Reserve checks every limit at time at and, only if none would be
	// exceeded, records the call against all of them in one atomic step,
	// returning the reservation's ID. When one would be exceeded it records
	// nothing and returns a *Denied error.
	Reserve(ctx context.Context, at time.Time, limits []Limit) (id string, err error)
	// Settle records how a reserved call ended. Settling an unknown ID is
	// an error; settling twice keeps the first outcome.
	Settle(ctx context.Context, id string, outcome Outcome) error

	// Claim takes the duplicate guard's slot for c.Key, or reports what
	// holds it. A claim whose window has passed is replaced.
	Claim(ctx context.Context, c Claim) (Prior, error)
	// Finish stores the result of the claimed call for replays and ends
	// its flight.
	Finish(ctx context.Context, key string, result []byte) error
	// Drop forgets the claim: the call was definitely not made, so a retry
	// may make it.
	Drop(ctx context.Context, key string) error

	// AppendAudit assigns rec's Seq, PrevHash and Hash and appends it.
	AppendAudit(ctx context.Context, rec *AuditRecord) error
	// ScanAudit calls fn for every audit record in Seq order, as stored
	// (nothing recomputed), stopping at fn's first error.
	ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error

	// AuditHead returns the Seq and Hash of the last record appended, as
	// recorded apart from the records themselves, so that deleting the last
	// records is detected too. It returns 0, "" for an empty trail.
	AuditHead(ctx context.Context) (seq int64, hash string, err error)

	// Close releases the store.
	Close() error
}

// ErrNotFound is returned by Settle, Finish and Drop for an unknown ID or key.
var ErrNotFound = errors.New("store: not found")
