// Package state keeps the state the policy needs across calls, processes and
// restarts: budget and rate-limit counters, the duplicate-call guard, the
// approvals of calls that wait for a person, and the hash-chained audit
// trail.
//
// It knows nothing of MCP, Clink or the policy file: it stores counters,
// claims and records under keys its callers choose. [Store] is the
// interface the server uses; [OpenSQLite] is the embedded, durable
// implementation, [OpenPostgres] the one that several replicas share, and
// [NewMemory] the in-memory one that tests, the demo and `serve --sandbox`
// use (bounded: it forgets its oldest records).
package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
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
	// Call is the ID of the call that claims; a [Completion] finishes the
	// claim only while this call still holds it.
	Call string
	// Fingerprint is a hash of the call's normalised arguments.
	Fingerprint string
	// At is the time of the call; the claim is live in [At, At+Window).
	At time.Time
	// Window is how long the claim stays live; it must be positive.
	Window time.Duration
}

// InFlightLease is how long a claim in flight holds its key at least,
// whatever its window: an identical call never overtakes a slow one, even
// when the duplicate window is shorter than the call. A call must finish
// (or drop its claim) within the lease; the Clink client's worst case, all
// attempts and backoff included, is well under it.
const InFlightLease = 10 * time.Minute

// claimLiveUntil is when a claim made at at, with its window ending at
// expires, stops holding its key: at the end of its window once done, and
// not before the end of the lease while in flight.
func claimLiveUntil(at, expires int64, done bool) int64 {
	if done {
		return expires
	}
	return max(expires, at+int64(InFlightLease))
}

// finishedClaimExpires is when a claim made at at, its window ending at
// expires, stops answering identical calls once finished by a completion
// whose record is rec: a window after the call ended, if that is later,
// so that a call slower than its window, or resolved as unknown by a later
// start, is still replayed for a whole window after its outcome is on
// record, never made again.
func finishedClaimExpires(at, expires int64, rec *AuditRecord) int64 {
	return max(expires, callEnded(rec)+(expires-at))
}

// callEnded is when the call of an outcome record ended, in Unix
// nanoseconds: its time (when it began) plus its duration; 0 for a record
// without a time.
func callEnded(rec *AuditRecord) int64 {
	if rec.Time.IsZero() {
		return 0
	}
	return rec.Time.Add(max(rec.Duration, 0)).UnixNano()
}

// claimPrior is what a live claim of fingerprint answers a claim of want:
// ClaimConflict for another fingerprint, else ClaimDone (with result)
// when the claim's call finished, or ClaimInFlight.
func claimPrior(fingerprint, want string, done bool, result []byte) Prior {
	switch {
	case fingerprint != want:
		return Prior{State: ClaimConflict}
	case done:
		return Prior{State: ClaimDone, Result: cloneBytes(result)}
	default:
		return Prior{State: ClaimInFlight}
	}
}

// Prior is the answer to a [Claim].
type Prior struct {
	State ClaimState
	// Result is the stored result, for ClaimDone.
	Result []byte
}

// Kinds of audit record. A call that may reach Clink leaves two: its
// intent, appended before Clink is called, and its outcome, appended when it
// ends (or when another process resolves it). Every other call leaves only
// its outcome. Records of the first format have no kind.
const (
	// KindIntent is a call about to be sent to Clink: what it will spend,
	// for whom, and the reservation holding its limits.
	KindIntent = "intent"
	// KindOutcome is how a call ended.
	KindOutcome = "outcome"
	// KindApproval is a record of an approval's life: its request and its
	// decision (or expiry). Its Call is the approval's ID, never a call's:
	// it neither opens nor closes an intent.
	KindApproval = "approval"
)

// AuditRecord is one entry of the append-only audit trail.
type AuditRecord struct {
	// Seq is the record's position, from 1, assigned by Append.
	Seq int64 `json:"seq"`
	// Format is the record's hash encoding, assigned by Append: 2 for
	// records written by this version, 1 for those of the first, which have
	// no Kind, Call, Caller, Amounts, CustomerIDHash, ReferenceHash or
	// Reservation.
	Format int `json:"format"`
	// Time is when the call started (UTC, kept to the nanosecond).
	Time time.Time `json:"time"`
	// Kind is [KindIntent], [KindOutcome] or [KindApproval].
	Kind string `json:"kind,omitempty"`
	// Call identifies the call: an intent and its outcome share it. For
	// a [KindApproval] record, it is the approval's ID.
	Call string `json:"call,omitempty"`
	// Caller is the principal that made the call. The gate names the local
	// one "local" (gate.LocalPrincipal); older records have "" for it.
	Caller string `json:"caller,omitempty"`
	// Tool is the tool's name.
	Tool string `json:"tool"`
	// Decision is the call's code, one of policy.Code's values: "created",
	// "replayed", "amount_over_cap", "outcome_unknown", ...; for an
	// intent, "allowed".
	Decision string `json:"decision"`
	// Amount is the exact decimal amount ("19.99"), or "" if there was none.
	Amount string `json:"amount,omitempty"`
	// Currency is the ISO 4217 code, or "".
	Currency string `json:"currency,omitempty"`
	// Amounts is what the call counts in every currency it involves, line
	// items included, e.g. "EUR 5.00, USD 19.99".
	Amounts string `json:"amounts,omitempty"`
	// EmailMasked is the customer email masked ("a***@example.com"), or "".
	EmailMasked string `json:"email_masked,omitempty"`
	// EmailHash is a keyed hash of the normalised customer email (hex), so
	// one customer's calls can be correlated without storing the address.
	EmailHash string `json:"email_hash,omitempty"`
	// CustomerIDHash is a keyed hash of the Clink customerId, or "".
	CustomerIDHash string `json:"customer_id_hash,omitempty"`
	// ReferenceHash is a keyed hash of the merchant's referenceCustomerId,
	// or "": it says one was given without storing it.
	ReferenceHash string `json:"reference_hash,omitempty"`
	// Reservation is the ledger reservation holding the call's limits.
	Reservation string `json:"reservation,omitempty"`
	// SessionID is Clink's session ID, when one was created or replayed.
	SessionID string `json:"session_id,omitempty"`
	// Duration is how long the call took.
	Duration time.Duration `json:"duration_ns"`
	// PrevHash is the Hash of the previous record ("" for the first).
	PrevHash string `json:"prev_hash"`
	// Hash is the hex SHA-256 over this record's other fields, PrevHash
	// included; see [AuditRecord.ComputeHash].
	Hash string `json:"hash"`
	// Open is set by [ExportAudit] on an intent whose call has no outcome
	// yet. It is not part of the record (nor of its hash).
	Open bool `json:"open,omitempty"`
}

// Ledger keeps the budgets' and rate limits' rolling-window counters, as
// running totals: a call's cost does not grow with the entries in a window.
type Ledger interface {
	// Check reports whether limits would fit at time at, recording nothing:
	// nil, or a *policy.Denied as Reserve would return.
	Check(ctx context.Context, at time.Time, limits []policy.Limit) error
	// Reserve checks every limit at time at and, only if none would be
	// exceeded, records the call against all of them in one atomic step,
	// returning the reservation's ID. When one would be exceeded it records
	// nothing and returns a *policy.Denied error.
	Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (id string, err error)
	// Clock publishes at as this handle's time and returns how far the
	// latest time another open handle has published is ahead of it
	// (negative: behind; 0 when there is no other). Windows and leases are
	// judged by the earliest time an open handle has published, so a clock
	// ahead of the others cannot prune what they still count; callers run
	// Clock every few seconds, and report a large skew.
	Clock(ctx context.Context, at time.Time) (ahead time.Duration, err error)
	// Usage returns, for each limit, what its counter holds within its
	// window at time at: exactly what Check compares with the limit's Max
	// (the same clock, bounded by the earliest time another open handle
	// has published). It records nothing.
	Usage(ctx context.Context, at time.Time, limits []policy.Limit) ([]int64, error)
	// Settle records how a reserved call ended. Settling an unknown ID is
	// an error ([ErrNotFound]); settling twice keeps the first outcome. A
	// reservation is remembered for at least an hour after its longest
	// window has passed.
	Settle(ctx context.Context, id string, outcome policy.Settlement) error
}

// Claims is the duplicate guard: one claim per call key, in flight until
// finished with the result that answers identical calls.
type Claims interface {
	// Claim takes the duplicate guard's slot for c.Key, or reports what
	// holds it. A finished claim whose window has passed is replaced; one
	// still in flight only after [InFlightLease] too.
	Claim(ctx context.Context, c Claim) (Prior, error)
	// LookClaim reports, writing nothing, what Claim would answer for c:
	// the live claim that holds c.Key (ClaimInFlight, ClaimDone with its
	// result, ClaimConflict for another fingerprint), or ClaimNew, judged
	// by the clock Claim judges by.
	LookClaim(ctx context.Context, c Claim) (Prior, error)
	// Finish stores the result of the claimed call for replays and ends
	// its flight.
	Finish(ctx context.Context, key string, result []byte) error
	// Drop forgets the claim: the call was definitely not made, so a retry
	// may make it.
	Drop(ctx context.Context, key string) error
}

// Journal is the hash-chained audit trail and the intents still open in it.
type Journal interface {
	// AppendAudit assigns rec's Seq, Format, PrevHash and Hash and appends
	// it.
	AppendAudit(ctx context.Context, rec *AuditRecord) error
	// ScanAudit calls fn for every audit record in Seq order, as stored
	// (nothing recomputed), stopping at fn's first error.
	ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error
	// AuditHead returns the Seq and Hash of the last record appended, as
	// recorded apart from the records themselves, so that deleting the last
	// records is detected too. It returns 0, "" for an empty trail.
	AuditHead(ctx context.Context) (seq int64, hash string, err error)
	// SessionTool returns the tool (the record's Tool) of the call by
	// caller (its Caller) whose outcome record (Kind [KindOutcome], Decision
	// "created") holds Clink session sessionID: the session this server
	// created for caller, and which kind of session it is. It returns ""
	// when the trail holds no such record, and for sessionID "". It looks
	// the session up by an index, never by a scan of the trail.
	SessionTool(ctx context.Context, sessionID, caller string) (string, error)
	// Intents returns every open intent, oldest first, each marked
	// Orphaned when the handle that holds it is gone (closed, or its
	// process ended).
	Intents(ctx context.Context) ([]Intent, error)
}

// Leaser is implemented by a store whose handle owns its open intents
// under a lease ([Postgres]): the handle renews it when Clock is called or
// it writes, and once it has passed without renewal other handles take
// the handle's process for dead and resolve its open intents. Whoever
// serves calls on the store must call Clock well within Lease, also while
// it waits for slow calls and makes no writes (the gate calls it every
// Lease/3, or more often).
type Leaser interface {
	// Lease returns how long the handle stays the live owner of its
	// intents after it last renewed its lease; 0 when it has none (a
	// wrapper of a store that has none).
	Lease() time.Duration
}

// AuditStarter is implemented by a [Journal] that forgets the oldest
// records of its trail and keeps only the newest ([Memory], past its audit
// limit): its trail starts at the oldest record it keeps rather than at
// record 1, and that record's link to the one before is checked against
// the start it records.
type AuditStarter interface {
	// AuditStart returns the Seq of the oldest record the trail keeps and
	// the Hash of the record before it, recorded apart from the records
	// when that one was forgotten: 1 and "" while none has been. It never
	// moves back.
	AuditStart(ctx context.Context) (seq int64, prevHash string, err error)
}

// Intent is a call that was held (its claim, reservation and intent record
// written) and has no outcome yet.
type Intent struct {
	// Call is the call's ID, shared by its records.
	Call string
	// Owner is the store handle that holds it.
	Owner string
	// Orphaned reports that Owner is gone: nobody will complete the call,
	// so it is to be resolved as an unknown outcome.
	Orphaned bool
	// ClaimKey is the call's duplicate-guard claim, or "".
	ClaimKey string
	// Reservation is the call's ledger reservation, or "".
	Reservation string
	// Record is the intent's audit record.
	Record AuditRecord
}

// Hold is what a call writes before Clink is called, in one transaction:
// its claim, its reservation and its intent record.
type Hold struct {
	// At is the call's time.
	At time.Time
	// Claim is the duplicate guard's claim, or nil when the guard is off.
	// Its Call must be Intent.Call.
	Claim *Claim
	// Limits are reserved at At.
	Limits []policy.Limit
	// Intent is the intent record to append (Kind KindIntent, Call set).
	Intent AuditRecord
	// Approval is the ID of an approved approval the call is held on, or
	// "". In the hold's transaction it must be approved and not expired at
	// At ([ErrApprovalNotPending] otherwise, [ErrNotFound] for an unknown
	// ID, and nothing is written); it becomes used, and the hold takes
	// over its reservation: the call is made at At, not when the approval
	// was requested, so the reservation's entries, budgets' and rate
	// limits', move to At, checked again against Limits (the call's, as
	// for any hold: a *policy.Denied names the first exceeded by its index
	// in Limits, and nothing is written). The call is counted once: where
	// a window still holds the request's entry, that entry is what moves.
	// When the claim is held by another call, the approval is left
	// approved.
	Approval string
	// ClaimOnly makes the hold only look at the claim: when another call
	// holds it, Held.Prior says so as usual; when none does, nothing is
	// written either (no claim, reservation or intent) and Held.Prior is
	// ClaimNew with no Reservation. Claim must be set.
	ClaimOnly bool
}

// Held is the result of a [Store.Hold].
type Held struct {
	// Prior is what the claim found. Unless its State is ClaimNew (always
	// the case without a claim), nothing was written.
	Prior Prior
	// Reservation is the reservation's ID: the approval's, for a hold on
	// an approval.
	Reservation string
	// Intent is the intent record as appended.
	Intent AuditRecord
}

// Completion is what a call writes when it ends, in one transaction: the
// settlement of its reservation, its claim's result and its outcome record.
type Completion struct {
	// Call is the call's ID; its open intent, if any, is closed, and the
	// reservation that intent holds is settled. A late Complete, after
	// another process resolved the call, settles nothing: the first
	// settlement stands.
	Call string
	// Settlement is how the call ended: Released removes the reservation's
	// budget entries; Spent and Unknown keep them counting.
	Settlement policy.Settlement
	// ClaimKey is the call's claim, or "". It is finished with Replay, or
	// dropped when Replay is nil; a claim that another call has taken
	// since is left alone. A finished claim answers identical calls for a
	// whole window after the call ended (Record's Time plus its Duration),
	// if that is later than a window after it began.
	ClaimKey string
	// Replay is the result stored for identical calls.
	Replay []byte
	// Record is the outcome record to append (Kind KindOutcome).
	Record AuditRecord
	// OnlyIfOpen makes Complete do nothing and return [ErrNotFound] when
	// the call has no open intent: another process resolved it first.
	OnlyIfOpen bool
}

// Store is the state behind budgets, rate limits, the duplicate guard and
// the audit trail: its three jobs, and the two transactions a call runs.
// Implementations are safe for concurrent use, and every method that writes
// is atomic with respect to every other handle on the same underlying state
// (for a file store: other processes too).
type Store interface {
	Ledger
	Claims
	Journal
	Approvals
	// Hold takes h.Claim, reserves h.Limits and appends h.Intent, all or
	// nothing. When the claim is held by another call, it returns what it
	// found and writes nothing; when a limit would be exceeded, it writes
	// nothing and returns a *policy.Denied error. The reservation is kept
	// with the intent and settled by Complete, not by Ledger.Settle.
	Hold(ctx context.Context, h *Hold) (*Held, error)
	// Complete settles, finishes or drops the claim, closes the intent and
	// appends c.Record, all or nothing; see [Completion].
	Complete(ctx context.Context, c *Completion) error
	// Close releases the handle. Its open intents become orphaned.
	Close() error
}

// ErrNotFound is returned by Settle, Finish and Drop for an unknown ID or
// key, and by the approvals' methods for an unknown approval.
var ErrNotFound = errors.New("store: not found")

// Approval states.
const (
	ApprovalPending  = "pending"  // waiting for a decision
	ApprovalApproved = "approved" // approved; the call may be held with it once
	ApprovalDenied   = "denied"   // refused by whoever decided
	ApprovalExpired  = "expired"  // nobody decided (or used it) in time
	ApprovalUsed     = "used"     // approved, and its call was held
)

// The decisions of the audit records the store appends in an approval's
// life: policy's codes where it has one.
const (
	decisionApprovalGranted = "approval_granted"
	decisionApprovalDenied  = string(policy.CodeApprovalDenied)
	decisionApprovalExpired = string(policy.CodeApprovalExpired)
)

// Approval is a person's approval of one call (a large payment), asked
// for before the call is held. Its reservation holds the call's limits
// from its request on, so that approvals waiting together never exceed a
// budget; a denial or an expiry releases it, and the approved call is held
// on it ([Hold.Approval]).
type Approval struct {
	// ID is random, chosen by the caller.
	ID string
	// Key is the call key identical calls share (the duplicate guard's
	// claim key).
	Key string
	// Fingerprint is a hash of the call's normalised arguments.
	Fingerprint string
	// Caller is the principal that asked.
	Caller string
	// Tool is the tool's name.
	Tool string
	// Amount, Currency, Amounts and EmailMasked say what it is for, as in
	// an [AuditRecord] (never the raw email).
	Amount, Currency, Amounts, EmailMasked string
	// Reservation is the ledger reservation holding its limits, set by the
	// store.
	Reservation string
	// State is one of ApprovalPending, ApprovalApproved, ApprovalDenied,
	// ApprovalExpired and ApprovalUsed.
	State string
	// RequestedAt is when it was requested.
	RequestedAt time.Time
	// ExpiresAt is, while pending, the deadline for a decision; once
	// approved, the deadline to use it.
	ExpiresAt time.Time
	// DecidedBy names who decided ("" while pending, and for an expiry).
	DecidedBy string
	// DecidedAt is when it was decided or expired; zero while pending.
	DecidedAt time.Time
}

// ApprovalRequest asks for the approval of one call: see
// [Approvals.RequestApproval].
type ApprovalRequest struct {
	// At is the time of the request.
	At time.Time
	// Approval is the approval to create: ID, Key, Fingerprint, Caller,
	// Tool, the amounts and ExpiresAt set; State, Reservation, RequestedAt
	// and the decision's fields are the store's.
	Approval Approval
	// Limits are reserved at At when the approval is created.
	Limits []policy.Limit
	// Record is the request's audit record: Kind KindApproval, Call the
	// approval's ID, Decision "approval_required". The store sets its
	// Reservation.
	Record AuditRecord
	// Remember is how long a denied or expired approval keeps answering
	// identical calls after its decision.
	Remember time.Duration
}

// Approvals keeps the approvals of calls that wait for a person, and the
// reservations that hold their limits meanwhile. Every method that writes
// runs in one transaction, its audit records included, which go through
// the one hash chain.
type Approvals interface {
	// RequestApproval looks, in one transaction, for the approval
	// identical calls share (same Key): one pending or approved (not
	// used), or one denied or expired whose DecidedAt+Remember is after
	// At. A pending or approved one whose ExpiresAt <= At is expired first
	// (as ExpireApprovals does), then returned as expired. Found, it is
	// returned with created false and nothing else is written, even when
	// its Fingerprint differs (the caller compares). Not found, it
	// reserves Limits at At (a *policy.Denied error, and nothing written,
	// when one would be exceeded), inserts the approval pending with that
	// reservation, appends Record, and returns it with created true.
	// Before creating one, a live claim on Key (a call made on an earlier
	// approval, in flight or finished within its window) stops it: nothing
	// is written and the error is [ErrClaimHeld], for the caller to hold
	// with ClaimOnly and be answered by that call.
	RequestApproval(ctx context.Context, r *ApprovalRequest) (a *Approval, created bool, err error)
	// Approval returns the approval with id, or [ErrNotFound].
	Approval(ctx context.Context, id string) (*Approval, error)
	// CallApproval returns, writing nothing, the approval RequestApproval
	// at at (remembering decided ones for remember) would find for key:
	// the check of a call before it is made. One it would expire first is
	// returned expired (State ApprovalExpired, DecidedAt at) but left as it
	// is; ErrNotFound when it would find none. A store that keeps its
	// time judges by its own clock, as RequestApproval does.
	CallApproval(ctx context.Context, key string, at time.Time, remember time.Duration) (*Approval, error)
	// ListApprovals returns the approvals in the given states (every state
	// when none), newest request first, at most limit of them (100 when
	// limit <= 0).
	ListApprovals(ctx context.Context, states []string, limit int) ([]Approval, error)
	// DecideApproval moves the pending approval id to approved (ExpiresAt
	// becomes useBy) or denied (its reservation released as
	// policy.Released: budget entries removed, rate entries kept),
	// recording by and at as DecidedBy and DecidedAt, and appends the
	// decision's audit record (Kind KindApproval, Call id, Caller by,
	// Decision "approval_granted" or "approval_denied", Time at,
	// Tool, amounts and Reservation the approval's), all in one
	// transaction, and returns the approval as it now is. A pending one
	// whose ExpiresAt <= at is expired instead, and returned with
	// [ErrApprovalNotPending]. An approval that is not pending is returned
	// as it is, with ErrApprovalNotPending; an unknown id is ErrNotFound.
	// Of two decisions of one approval, exactly one wins.
	DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*Approval, error)
	// ExpireApprovals expires every pending or approved approval whose
	// ExpiresAt <= at: state expired, DecidedAt at, DecidedBy "", its
	// reservation released, and one audit record each (Decision
	// "approval_expired", Caller ""). It returns how many it expired.
	ExpireApprovals(ctx context.Context, at time.Time) (int, error)
}

// ErrApprovalNotPending is returned when an approval cannot be decided, or
// a call cannot be held on it, in the state it is in.
var ErrApprovalNotPending = errors.New("store: the approval is no longer pending")

// OldSchemaError is the error of opening, without migrating it, a store
// whose schema is older than this code's: see [SQLiteNoMigrate] and
// [PostgresNoMigrate]. Nothing was written to the store.
type OldSchemaError struct {
	// Version is the store's schema version.
	Version int
	// Current is the schema version of this code, which it would migrate
	// the store to.
	Current int
}

// Error says the versions and that the store was left as it was.
func (e *OldSchemaError) Error() string {
	return fmt.Sprintf("the store has schema version %d, older than this clink-mcp's (%d), and was not upgraded", e.Version, e.Current)
}

// ErrClaimHeld is returned by RequestApproval when a live claim holds the
// approval's key: an identical call made on an earlier approval answers.
var ErrClaimHeld = errors.New("store: an identical call holds the claim")

// auditHashDomain starts every audit hash input, so the digest cannot be
// confused with a hash of anything else and the format can be versioned.
const auditHashDomain = "clink-mcp/audit/v1"

// auditHashDomainV2 starts the hash input of records of format 2.
const auditHashDomainV2 = "clink-mcp/audit/v2"

// auditFormat is the format of the records this version appends.
const auditFormat = 2

// ComputeHash returns the hex SHA-256 of r's canonical encoding: every
// field except Hash and Open, PrevHash included, so each record commits to
// the one before it. It is part of the on-disk format: changing it breaks
// the verification of every stored trail.
//
// The encoding is a sequence of netstrings ("<decimal length>:<bytes>,"),
// one per value. Format 2: the domain tag "clink-mcp/audit/v2", Seq
// (decimal), Time (UTC, [time.RFC3339Nano]), Kind, Call, Caller, Tool,
// Decision, Amount, Currency, Amounts, EmailMasked, EmailHash,
// CustomerIDHash, ReferenceHash, Reservation, SessionID, Duration (decimal nanoseconds) and
// PrevHash. Format 1 (and 0, which it hashes alike but [VerifyAudit]
// refuses, no store having written it): the domain tag "clink-mcp/audit/v1",
// Seq, Time, Tool, Decision, Amount, Currency, EmailMasked, EmailHash,
// SessionID, Duration and PrevHash. Length prefixes make it unambiguous: no
// two different records encode alike, whatever bytes their strings hold.
func (r *AuditRecord) ComputeHash() string {
	head, body := r.hashInput()
	h := sha256.New()
	h.Write(head)
	h.Write(netstring(nil, strconv.FormatInt(r.Seq, 10)))
	h.Write(body)
	h.Write(netstring(nil, r.PrevHash))
	return hex.EncodeToString(h.Sum(nil))
}

// hashInput returns r's hash input but for the two values an append
// assigns, Seq and PrevHash: head is what comes before Seq, body what
// comes between Seq and PrevHash. The PostgreSQL store sends them with
// the record and computes the hash where it locks the audit head (see
// clink_append), so that the lock is held for no round trip.
func (r *AuditRecord) hashInput() (head, body []byte) {
	v2 := r.Format >= 2
	if v2 {
		head = netstring(nil, auditHashDomainV2)
	} else {
		head = netstring(nil, auditHashDomain)
	}
	body = netstring(nil, r.Time.UTC().Format(time.RFC3339Nano))
	if v2 {
		body = netstring(body, r.Kind)
		body = netstring(body, r.Call)
		body = netstring(body, r.Caller)
	}
	body = netstring(body, r.Tool)
	body = netstring(body, r.Decision)
	body = netstring(body, r.Amount)
	body = netstring(body, r.Currency)
	if v2 {
		body = netstring(body, r.Amounts)
	}
	body = netstring(body, r.EmailMasked)
	body = netstring(body, r.EmailHash)
	if v2 {
		body = netstring(body, r.CustomerIDHash)
		body = netstring(body, r.ReferenceHash)
		body = netstring(body, r.Reservation)
	}
	body = netstring(body, r.SessionID)
	body = netstring(body, strconv.FormatInt(int64(r.Duration), 10))
	return head, body
}

// netstring appends s to buf as a netstring: its length in bytes in
// decimal, ':', its bytes, ','.
func netstring(buf []byte, s string) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	buf = append(buf, s...)
	return append(buf, ',')
}

// AuditReport is what [VerifyAudit] found.
type AuditReport struct {
	// Records is how many records the trail holds.
	Records int64
	// Broken is the first broken record, or nil when the chain is intact.
	Broken *BrokenRecord
	// Open is how many intents have no outcome record: calls in flight, or
	// left by a process that ended before it could record how they ended
	// and not yet resolved (the next server to start resolves them).
	Open int64
}

// OK reports whether the trail verified and every intent has its outcome.
func (r *AuditReport) OK() bool { return r.Broken == nil && r.Open == 0 }

// BrokenRecord names the first place where an audit trail fails to verify.
type BrokenRecord struct {
	// Seq is the record that is missing, altered or out of place.
	Seq int64
	// Reason says what is wrong, for the operator, e.g. "record 3 was
	// altered: its hash does not match its content".
	Reason string
}

// VerifyAudit checks s's audit trail: Seq runs 1, 2, 3, … without gaps,
// each record's Hash is its [AuditRecord.ComputeHash], and each PrevHash
// is the previous record's Hash ("" for the first). It also checks the
// trail against [Store.AuditHead], read before and after the scan, so that
// deleting the last records, or adding records past the head, is caught
// too; records appended while it runs do not make it fail.
//
// A broken trail is reported in the [AuditReport], naming the first broken
// record, with a nil error; the error is for failures to read the store.
//
// The trail of an [AuditStarter] runs from its start on: its first
// record must have the start's Seq and follow the start's hash; Records
// counts the records it keeps, and Open counts too the open intents
// ([Journal.Intents]) whose records it has forgotten. Records it forgets
// while VerifyAudit runs do not make it fail.
//
// The chain is not keyed: it detects editing or deleting records, not a
// rewrite of the whole trail from the altered record on.
func VerifyAudit(ctx context.Context, s Journal) (*AuditReport, error) {
	headSeq, headHash, err := s.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	rep := &AuditReport{}
	open := make(map[string]bool) // intents seen without an outcome yet
	var (
		prevHash   string
		lastSeq    int64
		hashAtHead string
		// For an AuditStarter: the start it reported, and the first
		// record when the scan began later (the records between were
		// forgotten meanwhile, which the start must confirm after it).
		start int64
		late  *AuditRecord
		// first is the first record scanned.
		first int64
	)
	starter, forgets := s.(AuditStarter)
	if forgets {
		start, prevHash, err = starter.AuditStart(ctx)
		if err != nil {
			return nil, err
		}
		lastSeq = start - 1
		intents, err := s.Intents(ctx)
		if err != nil {
			return nil, err
		}
		for _, in := range intents {
			open[in.Call] = true
		}
	}
	err = s.ScanAudit(ctx, func(r *AuditRecord) error {
		rep.Records++
		if rep.Records == 1 {
			first = r.Seq
		}
		// Only an intent opens a call, and only an outcome closes one: an
		// approval's records name the approval, never a call.
		switch r.Kind {
		case KindIntent:
			open[r.Call] = true
		case KindOutcome:
			delete(open, r.Call)
		}
		if rep.Broken != nil {
			return nil // keep counting
		}
		want := lastSeq + 1
		if forgets && rep.Records == 1 && r.Seq > want {
			late = new(*r)
			lastSeq, prevHash, want = r.Seq-1, r.PrevHash, r.Seq
		}
		switch {
		case r.Seq > want:
			rep.Broken = &BrokenRecord{Seq: want, Reason: fmt.Sprintf(
				"record %d is missing (the next stored record is %d)", want, r.Seq)}
		case r.Seq < want:
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d is out of order: it comes after record %d", r.Seq, lastSeq)}
		case r.Format < 1 || r.Format > auditFormat:
			// The hash covers the format's family (first or later), not
			// its number: a number this version never wrote is refused.
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d has format %d, which this clink-mcp does not know (a newer version wrote it, or it was altered)", r.Seq, r.Format)}
		case r.Hash != r.ComputeHash():
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d was altered: its hash does not match its content", r.Seq)}
		case r.Format < 2 && (r.Kind != "" || r.Call != "" || r.Caller != "" || r.Amounts != "" ||
			r.CustomerIDHash != "" || r.ReferenceHash != "" || r.Reservation != ""):
			// The first format's hash does not cover these fields, which
			// its records never had: one holding any was altered.
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d was altered: a record of the first format holds fields it never had", r.Seq)}
		case r.PrevHash != prevHash:
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d does not follow record %d: its previous hash does not match (a record was altered or replaced)",
				r.Seq, lastSeq)}
		}
		if rep.Broken != nil {
			return nil
		}
		prevHash, lastSeq = r.Hash, r.Seq
		if r.Seq == headSeq {
			hashAtHead = r.Hash
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if late != nil {
		// The store must have forgotten, by now, the records before the
		// first one scanned. A problem of the first record comes before
		// any other.
		startAfter, hashAfter, err := starter.AuditStart(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case startAfter < late.Seq:
			rep.Broken = &BrokenRecord{Seq: start, Reason: fmt.Sprintf(
				"record %d is missing (the next stored record is %d)", start, late.Seq)}
		case startAfter == late.Seq && hashAfter != late.PrevHash:
			rep.Broken = &BrokenRecord{Seq: late.Seq, Reason: fmt.Sprintf(
				"record %d does not follow record %d: its previous hash does not match (a record was altered or replaced)",
				late.Seq, late.Seq-1)}
		}
	}
	rep.Open = int64(len(open))
	if rep.Broken != nil {
		return rep, nil
	}
	switch {
	case lastSeq < headSeq:
		rep.Broken = &BrokenRecord{Seq: lastSeq + 1, Reason: fmt.Sprintf(
			"record %d is missing: the trail ends at record %d but %d records were appended (the last records were deleted)",
			lastSeq+1, lastSeq, headSeq)}
		return rep, nil
	case headSeq > 0 && hashAtHead != headHash && !(forgets && headSeq < first):
		// (A store that forgets may have forgotten the head record
		// before the scan reached it: there is then nothing to compare.)
		rep.Broken = &BrokenRecord{Seq: headSeq, Reason: fmt.Sprintf(
			"record %d was replaced: its hash does not match the one recorded when it was appended", headSeq)}
		return rep, nil
	}
	afterSeq, _, err := s.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	if lastSeq > afterSeq {
		rep.Broken = &BrokenRecord{Seq: afterSeq + 1, Reason: fmt.Sprintf(
			"record %d was not appended by the store: the store recorded only %d records", afterSeq+1, afterSeq)}
	}
	return rep, nil
}

// ExportAudit writes s's audit trail to w as JSON lines, one
// [AuditRecord] per line in Seq order, and returns how many it wrote. An
// intent still open is marked "open": true.
//
// Which intents are open is read from the trail itself, in a first pass:
// those with no outcome up to its last record. (The store's open intents,
// read apart from the records, would be judged at another moment: a call
// opened or closed in between would be marked wrongly.) The second pass
// writes the records up to that last one; any appended since are left to
// the next export.
func ExportAudit(ctx context.Context, s Journal, w io.Writer) (int64, error) {
	open := map[string]bool{}
	last := int64(-1)
	err := s.ScanAudit(ctx, func(r *AuditRecord) error {
		switch r.Kind {
		case KindIntent:
			open[r.Call] = true
		case KindOutcome:
			delete(open, r.Call)
		}
		last = r.Seq
		return nil
	})
	if err != nil || last < 0 {
		return 0, err
	}
	enc := json.NewEncoder(w)
	var n int64
	err = s.ScanAudit(ctx, func(r *AuditRecord) error {
		if r.Seq > last {
			return errExported
		}
		r.Open = r.Kind == KindIntent && open[r.Call]
		if err := enc.Encode(r); err != nil {
			return err
		}
		n++
		return nil
	})
	if errors.Is(err, errExported) {
		err = nil
	}
	return n, err
}

// errExported ends ExportAudit's second pass at the first pass's last
// record.
var errExported = errors.New("state: the export reached its last record")
