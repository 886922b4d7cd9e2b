// Package state keeps the state the policy needs across calls, processes and
// restarts: budget and rate-limit counters, the duplicate-call guard, and
// the hash-chained audit trail.
//
// It knows nothing of MCP, Clink or the policy file: it stores counters,
// claims and records under keys its callers choose. [Store] is the
// interface the server uses; [OpenSQLite] is the embedded, durable
// implementation and [NewMemory] the in-memory one for tests. A shared
// database for several replicas is a third implementation of the same
// interface.
package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/clink-mcp/clink-mcp/policy"
	"io"
	"strconv"
	"time"
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
	Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (id string, err error)
	// Settle records how a reserved call ended. Settling an unknown ID is
	// an error ([ErrNotFound]); settling twice keeps the first outcome. A
	// reservation is remembered for at least an hour after its longest
	// window has passed.
	Settle(ctx context.Context, id string, outcome policy.Settlement) error

	// Claim takes the duplicate guard's slot for c.Key, or reports what
	// holds it. A finished claim whose window has passed is replaced; one
	// still in flight only after [InFlightLease] too.
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

// auditHashDomain starts every audit hash input, so the digest cannot be
// confused with a hash of anything else and the format can be versioned.
const auditHashDomain = "clink-mcp/audit/v1"

// ComputeHash returns the hex SHA-256 of r's canonical encoding: every
// field except Hash, PrevHash included, so each record commits to the one
// before it. It is part of the on-disk format: changing it breaks the
// verification of every stored trail.
//
// The encoding is a sequence of netstrings ("<decimal length>:<bytes>,"),
// one per value, in this order: the domain tag "clink-mcp/audit/v1", Seq
// (decimal), Time (UTC, [time.RFC3339Nano]), Tool, Decision, Amount,
// Currency, EmailMasked, EmailHash, SessionID, Duration (decimal
// nanoseconds) and PrevHash. Length prefixes make it unambiguous: no two
// different records encode alike, whatever bytes their strings hold.
func (r *AuditRecord) ComputeHash() string {
	h := sha256.New()
	var buf []byte
	put := func(s string) {
		buf = strconv.AppendInt(buf[:0], int64(len(s)), 10)
		buf = append(buf, ':')
		buf = append(buf, s...)
		buf = append(buf, ',')
		h.Write(buf)
	}
	put(auditHashDomain)
	put(strconv.FormatInt(r.Seq, 10))
	put(r.Time.UTC().Format(time.RFC3339Nano))
	put(r.Tool)
	put(r.Decision)
	put(r.Amount)
	put(r.Currency)
	put(r.EmailMasked)
	put(r.EmailHash)
	put(r.SessionID)
	put(strconv.FormatInt(int64(r.Duration), 10))
	put(r.PrevHash)
	return hex.EncodeToString(h.Sum(nil))
}

// AuditReport is what [VerifyAudit] found.
type AuditReport struct {
	// Records is how many records the trail holds.
	Records int64
	// Broken is the first broken record, or nil when the chain is intact.
	Broken *BrokenRecord
}

// OK reports whether the trail verified.
func (r *AuditReport) OK() bool { return r.Broken == nil }

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
// The chain is not keyed: it detects editing or deleting records, not a
// rewrite of the whole trail from the altered record on.
func VerifyAudit(ctx context.Context, s Store) (*AuditReport, error) {
	headSeq, headHash, err := s.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	rep := &AuditReport{}
	var (
		prevHash   string
		lastSeq    int64
		hashAtHead string
	)
	err = s.ScanAudit(ctx, func(r *AuditRecord) error {
		rep.Records++
		if rep.Broken != nil {
			return nil // keep counting
		}
		want := lastSeq + 1
		switch {
		case r.Seq > want:
			rep.Broken = &BrokenRecord{Seq: want, Reason: fmt.Sprintf(
				"record %d is missing (the next stored record is %d)", want, r.Seq)}
		case r.Seq < want:
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d is out of order: it comes after record %d", r.Seq, lastSeq)}
		case r.Hash != r.ComputeHash():
			rep.Broken = &BrokenRecord{Seq: r.Seq, Reason: fmt.Sprintf(
				"record %d was altered: its hash does not match its content", r.Seq)}
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
	if rep.Broken != nil {
		return rep, nil
	}
	switch {
	case lastSeq < headSeq:
		rep.Broken = &BrokenRecord{Seq: lastSeq + 1, Reason: fmt.Sprintf(
			"record %d is missing: the trail ends at record %d but %d records were appended (the last records were deleted)",
			lastSeq+1, lastSeq, headSeq)}
		return rep, nil
	case headSeq > 0 && hashAtHead != headHash:
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
// [AuditRecord] per line in Seq order, and returns how many it wrote.
func ExportAudit(ctx context.Context, s Store, w io.Writer) (int64, error) {
	enc := json.NewEncoder(w)
	var n int64
	err := s.ScanAudit(ctx, func(r *AuditRecord) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
