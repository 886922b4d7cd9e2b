package state

import (
	"context"
	"github.com/clink-mcp/clink-mcp/policy"
	"slices"
	"sync"
	"time"
)

// sweepEvery is how many Reserve or Claim calls a [Memory] lets pass
// between sweeps of everything that has expired; in between it prunes only
// the keys a call touches.
const sweepEvery = 1024

// Memory is a [Store] that keeps everything in memory, for tests and
// demos. It behaves exactly as [SQLite] does, one process at a time.
// The zero value is not usable; call [NewMemory].
type Memory struct {
	mu           sync.Mutex
	entries      map[string][]memEntry // by limit key
	reservations map[string]*memReservation
	claims       map[string]*memClaim
	audit        []AuditRecord
	headSeq      int64
	headHash     string
	reserves     int
	claimCalls   int
}

type memEntry struct {
	entry
	reservation string
	kind        policy.Kind
	expires     int64
}

type memReservation struct {
	keys    []string
	expires int64
	outcome policy.Settlement // 0 until settled
}

type memClaim struct {
	fingerprint string
	at          int64
	expires     int64
	done        bool
	result      []byte
}

// liveUntil is when the claim stops holding its key: see [InFlightLease].
func (cl *memClaim) liveUntil() int64 { return claimLiveUntil(cl.at, cl.expires, cl.done) }

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		entries:      make(map[string][]memEntry),
		reservations: make(map[string]*memReservation),
		claims:       make(map[string]*memClaim),
	}
}

// Reserve implements [Store].
func (m *Memory) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := checkLimits(at, limits); err != nil {
		return "", err
	}
	now := at.UnixNano()
	id, err := newReservationID()
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserves++
	if m.reserves%sweepEvery == 0 {
		m.sweepEntries(now)
	}
	for i, l := range limits {
		m.pruneKey(l.Key, now)
		var used int64
		from := windowStart(now, l)
		for _, e := range m.entries[l.Key] {
			if e.at > from {
				used += e.amount
			}
		}
		if !fits(l, used) {
			var counting []entry
			for _, e := range m.entries[l.Key] {
				if e.at > from {
					counting = append(counting, e.entry)
				}
			}
			return "", denial(i, l, used, counting)
		}
	}
	r := &memReservation{expires: expiry(now, limits)}
	for _, l := range limits {
		m.entries[l.Key] = append(m.entries[l.Key], memEntry{
			entry:       entry{at: now, amount: l.Add},
			reservation: id,
			kind:        l.Kind,
			expires:     now + int64(l.Window),
		})
		r.keys = append(r.keys, l.Key)
	}
	m.reservations[id] = r
	return id, nil
}

// pruneKey drops key's entries whose windows passed more than pruneGrace
// before now.
func (m *Memory) pruneKey(key string, now int64) {
	es := m.entries[key]
	kept := slices.DeleteFunc(es, func(e memEntry) bool { return e.expires <= now-int64(pruneGrace) })
	if len(kept) == 0 {
		delete(m.entries, key)
		return
	}
	m.entries[key] = kept
}

// sweepEntries prunes every key and forgets reservations past retention.
func (m *Memory) sweepEntries(now int64) {
	for key := range m.entries {
		m.pruneKey(key, now)
	}
	for id, r := range m.reservations {
		if r.expires <= now-int64(reservationRetention) {
			delete(m.reservations, id)
		}
	}
}

// Settle implements [Store].
func (m *Memory) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOutcome(outcome); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reservations[id]
	if !ok {
		return ErrNotFound
	}
	if r.outcome != 0 {
		return nil
	}
	r.outcome = outcome
	if outcome == policy.Released {
		for _, key := range r.keys {
			kept := slices.DeleteFunc(m.entries[key], func(e memEntry) bool {
				return e.reservation == id && e.kind == policy.KindBudget
			})
			if len(kept) == 0 {
				delete(m.entries, key)
			} else {
				m.entries[key] = kept
			}
		}
	}
	return nil
}

// Claim implements [Store].
func (m *Memory) Claim(ctx context.Context, c Claim) (Prior, error) {
	if err := ctx.Err(); err != nil {
		return Prior{}, err
	}
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	now := c.At.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claimCalls++
	if m.claimCalls%sweepEvery == 0 {
		for key, cl := range m.claims {
			if cl.liveUntil() <= now-int64(pruneGrace) {
				delete(m.claims, key)
			}
		}
	}
	if cl, ok := m.claims[c.Key]; ok && now < cl.liveUntil() {
		switch {
		case cl.fingerprint != c.Fingerprint:
			return Prior{State: ClaimConflict}, nil
		case cl.done:
			return Prior{State: ClaimDone, Result: cloneBytes(cl.result)}, nil
		default:
			return Prior{State: ClaimInFlight}, nil
		}
	}
	m.claims[c.Key] = &memClaim{fingerprint: c.Fingerprint, at: now, expires: now + int64(c.Window)}
	return Prior{State: ClaimNew}, nil
}

// Finish implements [Store].
func (m *Memory) Finish(ctx context.Context, key string, result []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cl, ok := m.claims[key]
	if !ok {
		return ErrNotFound
	}
	cl.done, cl.result = true, cloneBytes(result)
	return nil
}

// Drop implements [Store].
func (m *Memory) Drop(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.claims[key]; !ok {
		return ErrNotFound
	}
	delete(m.claims, key)
	return nil
}

// AppendAudit implements [Store].
func (m *Memory) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := *rec
	r.Time = r.Time.UTC()
	r.Seq, r.PrevHash = m.headSeq+1, m.headHash
	r.Hash = r.ComputeHash()
	m.audit = append(m.audit, r)
	m.headSeq, m.headHash = r.Seq, r.Hash
	*rec = r
	return nil
}

// ScanAudit implements [Store]. It works on a snapshot taken when it is
// called, so fn may call m.
func (m *Memory) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	m.mu.Lock()
	recs := slices.Clone(m.audit)
	m.mu.Unlock()
	for i := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// AuditHead implements [Store].
func (m *Memory) AuditHead(ctx context.Context) (int64, string, error) {
	if err := ctx.Err(); err != nil {
		return 0, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.headSeq, m.headHash, nil
}

// Close implements [Store]. It does nothing: a Memory stays usable.
func (m *Memory) Close() error { return nil }
