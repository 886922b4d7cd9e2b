package state

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// sweepEvery is how many Reserve or Claim calls a [Memory] lets pass
// between sweeps of everything that has expired; in between it prunes only
// the keys a call touches.
const sweepEvery = 1024

// Bounds of what a [Memory] remembers, unless its options say otherwise.
const (
	// defaultAuditLimit is how many audit records a Memory keeps.
	defaultAuditLimit = 10_000
	// defaultApprovalLimit is how many finished approvals (denied,
	// expired or used) a Memory keeps.
	defaultApprovalLimit = 1_000
)

// Memory is a [Store] that keeps everything in memory, for tests, demos
// and the built-in sandbox. It behaves as [SQLite] does, except that it
// forgets old history so that its size stays bounded however many calls
// it serves: its audit trail keeps only the newest records (see
// [WithAuditLimit]; it reports where the kept part starts through
// [AuditStarter], so [VerifyAudit] still verifies it), [Memory.SessionCreated]
// knows only the sessions the kept records created, and finished approvals
// are forgotten once old or many (see [WithApprovalLimit]). Counters,
// claims and reservations are pruned as every store prunes them. Handles
// opened with [Memory.Open] share its state as processes share a file.
// The zero value is not usable; call [NewMemory].
type Memory struct {
	*memState
	owner string
}

// memState is what every handle of one Memory shares.
type memState struct {
	mu            sync.Mutex
	counters      map[string]*memCounter // by limit key
	reservations  map[string]*memReservation
	claims        map[string]*memClaim
	intents       map[string]*memIntent // by call
	owners        map[string]*memOwner  // open handles
	approvals     map[string]*memApproval
	approvalList  []*memApproval          // in the order they were requested
	latest        map[string]*memApproval // the newest approval of each call key
	liveApprovals map[string]*memApproval // the live ones: pending, or approved and not used
	approvalLimit int                     // finished approvals kept at most; <= 0: all
	approvalSeq   int                     // approvals requested so far
	remember      time.Duration           // the longest Remember asked for
	reserves      int
	claimCalls    int

	// The audit trail: the kept records, in a ring once it holds
	// auditLimit of them (oldest at auditFirst); a plain slice in Seq
	// order until then, or always when auditLimit <= 0.
	audit      []AuditRecord
	auditFirst int
	auditLimit int
	// forgotten is how many records have been dropped from the front of
	// the trail, forgottenHash the Hash of the last of them: the start the
	// kept records chain from, recorded apart from them as the head is.
	forgotten     int64
	forgottenHash string
	headSeq       int64
	headHash      string
	// sessions are the Clink sessions the kept records record as created,
	// each with the Seq of its record.
	sessions map[string]int64
}

// memCounter is one limit's running total and the entries that make it up,
// oldest first.
type memCounter struct {
	total   int64
	window  int64
	entries []memEntry
}

type memEntry struct {
	entry
	reservation string
	kind        policy.Kind
}

type memReservation struct {
	at      int64
	keys    []string
	expires int64
	outcome policy.Settlement // 0 until settled
}

type memClaim struct {
	call        string
	fingerprint string
	at          int64
	expires     int64
	done        bool
	result      []byte
}

// memOwner is an open handle's clock, as it last published it.
type memOwner struct{ published int64 }

type memIntent struct {
	owner       string
	claimKey    string
	reservation string
	record      AuditRecord     // kept here, as the trail may forget it while the call is open
	held        *memReservation // the reservation, settled by Complete only
}

// liveUntil is when the claim stops holding its key: see [InFlightLease].
func (cl *memClaim) liveUntil() int64 { return claimLiveUntil(cl.at, cl.expires, cl.done) }

var (
	_ Store        = (*Memory)(nil)
	_ AuditStarter = (*Memory)(nil)
)

// MemoryOption configures a [Memory]: see [NewMemory].
type MemoryOption func(*memState)

// WithAuditLimit makes the store keep only the newest n audit records,
// forgetting the oldest one as each new one is appended: by default
// 10,000. n <= 0 keeps every record, without bound. The record of an
// intent still open is kept for [Memory.Intents] however old it is, and
// [Memory.AuditHead] still reports the true head.
func WithAuditLimit(n int) MemoryOption {
	return func(st *memState) { st.auditLimit = n }
}

// WithApprovalLimit makes the store keep at most n approvals that are
// finished (denied, expired or used), forgetting the oldest requested
// first: by default 1,000. n <= 0 keeps them all, without bound.
// Whatever n, a finished approval is forgotten a day after its decision,
// or after the longest Remember any request asked for if that is longer;
// pending and approved ones are kept until they are used or expire. A
// forgotten approval is unknown to [Memory.Approval] and
// [Memory.ListApprovals], and no longer answers identical calls.
func WithApprovalLimit(n int) MemoryOption {
	return func(st *memState) { st.approvalLimit = n }
}

// NewMemory returns an empty in-memory store, bounded as its options say.
func NewMemory(opts ...MemoryOption) *Memory {
	st := &memState{
		counters:      make(map[string]*memCounter),
		reservations:  make(map[string]*memReservation),
		claims:        make(map[string]*memClaim),
		intents:       make(map[string]*memIntent),
		owners:        make(map[string]*memOwner),
		sessions:      make(map[string]int64),
		approvals:     make(map[string]*memApproval),
		latest:        make(map[string]*memApproval),
		liveApprovals: make(map[string]*memApproval),
		auditLimit:    defaultAuditLimit,
		approvalLimit: defaultApprovalLimit,
	}
	for _, opt := range opts {
		opt(st)
	}
	return st.open()
}

// Open returns another handle on m's state, as a second process opening the
// same file would get: its own owner of intents.
func (m *Memory) Open() *Memory { return m.memState.open() }

func (st *memState) open() *Memory {
	owner := newOwnerID()
	st.mu.Lock()
	st.owners[owner] = &memOwner{}
	st.mu.Unlock()
	return &Memory{memState: st, owner: owner}
}

// Check implements [Ledger].
func (m *Memory) Check(ctx context.Context, at time.Time, limits []policy.Limit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkLimits(at, limits); err != nil {
		return err
	}
	now := at.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	now = min(now, m.othersBound())
	for i, l := range limits {
		if used, counting := m.used(now, l); !fits(l, used) {
			return denial(i, l, used, entriesOf(counting))
		}
	}
	return nil
}

// used returns what l's counter holds within its window at now, and the
// entries that make it up. Under m.mu.
func (m *Memory) used(now int64, l policy.Limit) (int64, []memEntry) {
	c := m.counters[l.Key]
	if c == nil {
		return 0, nil
	}
	used := c.total
	from := windowStart(now, l)
	k := 0
	for ; k < len(c.entries) && c.entries[k].at <= from; k++ {
		used -= c.entries[k].amount
	}
	return used, c.entries[k:]
}

// Usage implements [Ledger].
func (m *Memory) Usage(ctx context.Context, at time.Time, limits []policy.Limit) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkLimits(at, limits); err != nil {
		return nil, err
	}
	now := at.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	now = min(now, m.othersBound())
	out := make([]int64, len(limits))
	for i, l := range limits {
		out[i], _ = m.used(now, l)
	}
	return out, nil
}

// Reserve implements [Ledger].
func (m *Memory) Reserve(ctx context.Context, at time.Time, limits []policy.Limit) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := checkLimits(at, limits); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, r, err := m.reserve(at.UnixNano(), limits)
	if err != nil {
		return "", err
	}
	m.reservations[id] = r
	return id, nil
}

// reserve is Reserve under m.mu, returning the reservation rather than
// keeping it: a hold keeps it in its intent.
func (m *Memory) reserve(now int64, limits []policy.Limit) (string, *memReservation, error) {
	id, err := newReservationID()
	if err != nil {
		return "", nil, err
	}
	clock := m.clock(now)
	m.reserves++
	if m.reserves%sweepEvery == 0 {
		m.sweep(clock)
	}
	for i, l := range limits {
		c := m.counters[l.Key]
		if c == nil {
			c = &memCounter{window: int64(l.Window)}
			m.counters[l.Key] = c
		}
		c.expire(windowStart(clock, l))
		if !fits(l, c.total) {
			return "", nil, denial(i, l, c.total, entriesOf(c.entries))
		}
	}
	r := &memReservation{at: now, expires: expiry(now, limits)}
	for _, l := range limits {
		c := m.counters[l.Key]
		c.window = int64(l.Window)
		c.total += l.Add
		e := memEntry{entry: entry{at: now, amount: l.Add}, reservation: id, kind: l.Kind}
		// Entries are kept oldest first; a call stamped earlier than the
		// newest (clocks of callers disagree) goes in its place.
		k := len(c.entries)
		for k > 0 && c.entries[k-1].at > now {
			k--
		}
		c.entries = slices.Insert(c.entries, k, e)
		r.keys = append(r.keys, l.Key)
	}
	return id, r, nil
}

// expire drops the entries at or before from, which no longer count, from
// the front of c and its total: each entry is dropped once, so the cost is
// constant per call however many entries a window holds.
func (c *memCounter) expire(from int64) {
	k := 0
	for ; k < len(c.entries) && c.entries[k].at <= from; k++ {
		c.total -= c.entries[k].amount
	}
	if k > 0 {
		c.entries = slices.Delete(c.entries, 0, k)
	}
}

func entriesOf(es []memEntry) []entry {
	out := make([]entry, len(es))
	for i, e := range es {
		out[i] = e.entry
	}
	return out
}

// sweep forgets counters whose every entry has expired, claims and
// reservations past retention.
func (m *Memory) sweep(now int64) {
	for key, c := range m.counters {
		c.expire(now - c.window - int64(pruneGrace))
		if len(c.entries) == 0 {
			delete(m.counters, key)
		}
	}
	for id, r := range m.reservations {
		if r.expires <= now-int64(reservationRetention) {
			delete(m.reservations, id)
		}
	}
	for key, cl := range m.claims {
		if cl.liveUntil() <= now-int64(pruneGrace) {
			delete(m.claims, key)
		}
	}
}

// Settle implements [Ledger].
func (m *Memory) Settle(ctx context.Context, id string, outcome policy.Settlement) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOutcome(outcome); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settle(id, outcome)
}

// settle is Settle under m.mu.
func (m *Memory) settle(id string, outcome policy.Settlement) error {
	r, ok := m.reservations[id]
	if !ok {
		return ErrNotFound
	}
	if r.outcome != 0 {
		return nil
	}
	r.outcome = outcome
	if outcome == policy.Released {
		m.release(id, r)
	}
	return nil
}

// release removes reservation id's budget entries from their counters.
func (m *Memory) release(id string, r *memReservation) {
	for _, key := range r.keys {
		c := m.counters[key]
		if c == nil {
			continue
		}
		// The reservation's entries sit where their time puts them.
		k := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].at >= r.at })
		for ; k < len(c.entries) && c.entries[k].at == r.at; k++ {
			if e := c.entries[k]; e.reservation == id && e.kind == policy.KindBudget {
				c.total -= e.amount
				c.entries = slices.Delete(c.entries, k, k+1)
				break
			}
		}
	}
}

// Claim implements [Claims].
func (m *Memory) Claim(ctx context.Context, c Claim) (Prior, error) {
	if err := ctx.Err(); err != nil {
		return Prior{}, err
	}
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claim(c), nil
}

// claim is Claim under m.mu.
func (m *Memory) claim(c Claim) Prior {
	at := c.At.UnixNano()
	now := m.clock(at)
	m.claimCalls++
	if m.claimCalls%sweepEvery == 0 {
		m.sweep(now)
	}
	if cl, ok := m.claims[c.Key]; ok && now < cl.liveUntil() {
		switch {
		case cl.fingerprint != c.Fingerprint:
			return Prior{State: ClaimConflict}
		case cl.done:
			return Prior{State: ClaimDone, Result: cloneBytes(cl.result)}
		default:
			return Prior{State: ClaimInFlight}
		}
	}
	m.claims[c.Key] = &memClaim{call: c.Call, fingerprint: c.Fingerprint, at: at, expires: at + int64(c.Window)}
	return Prior{State: ClaimNew}
}

// Finish implements [Claims].
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

// Drop implements [Claims].
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

// AppendAudit implements [Journal].
func (m *Memory) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.append(rec)
	return nil
}

// append is AppendAudit under m.mu.
func (m *Memory) append(rec *AuditRecord) {
	r := *rec
	r.Time = r.Time.UTC()
	r.Open = false
	r.Seq, r.Format, r.PrevHash = m.headSeq+1, auditFormat, m.headHash
	r.Hash = r.ComputeHash()
	if m.auditLimit > 0 && len(m.audit) >= m.auditLimit {
		// The ring is full: r takes the place of the oldest record.
		old := &m.audit[m.auditFirst]
		m.forget(old)
		*old = r
		m.auditFirst = (m.auditFirst + 1) % len(m.audit)
	} else {
		m.audit = append(m.audit, r)
	}
	if countsAsCreated(&r) {
		m.sessions[r.SessionID] = r.Seq
	}
	m.headSeq, m.headHash = r.Seq, r.Hash
	*rec = r
}

// forget drops r, the oldest kept record, from the trail's account: the
// trail now starts after it, and the session it created, unless a newer
// record created it again, is no longer known. Under m.mu.
func (m *Memory) forget(r *AuditRecord) {
	m.forgotten++
	m.forgottenHash = r.Hash
	if countsAsCreated(r) && m.sessions[r.SessionID] == r.Seq {
		delete(m.sessions, r.SessionID)
	}
}

// trail returns a copy of the kept records in Seq order. Under m.mu.
func (m *Memory) trail() []AuditRecord {
	out := make([]AuditRecord, 0, len(m.audit))
	out = append(out, m.audit[m.auditFirst:]...)
	return append(out, m.audit[:m.auditFirst]...)
}

// AuditStart implements [AuditStarter]: the trail starts after the
// records the audit limit made it forget.
func (m *Memory) AuditStart(ctx context.Context) (int64, string, error) {
	if err := ctx.Err(); err != nil {
		return 0, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forgotten + 1, m.forgottenHash, nil
}

// ScanAudit implements [Journal]: it calls fn for the records the store
// keeps (see [WithAuditLimit]). It works on a snapshot taken when it is
// called, so fn may call m.
func (m *Memory) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	m.mu.Lock()
	recs := m.trail()
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

// AuditHead implements [Journal].
func (m *Memory) AuditHead(ctx context.Context) (int64, string, error) {
	if err := ctx.Err(); err != nil {
		return 0, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.headSeq, m.headHash, nil
}

// SessionCreated implements [Journal], for the sessions whose records
// the store still keeps: one created longer ago than its audit limit
// reaches is reported as not created.
func (m *Memory) SessionCreated(ctx context.Context, sessionID string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, created := m.sessions[sessionID]
	return sessionID != "" && created, nil
}

// Intents implements [Journal].
func (m *Memory) Intents(ctx context.Context) ([]Intent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Intent, 0, len(m.intents))
	for call, in := range m.intents {
		out = append(out, Intent{Call: call, Owner: in.owner, Orphaned: m.owners[in.owner] == nil,
			ClaimKey: in.claimKey, Reservation: in.reservation, Record: in.record})
	}
	slices.SortFunc(out, func(a, b Intent) int { return int(a.Record.Seq - b.Record.Seq) })
	return out, nil
}

// Hold implements [Store].
func (m *Memory) Hold(ctx context.Context, h *Hold) (*Held, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkHold(h); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owners[m.owner] == nil {
		return nil, errClosed
	}
	if _, dup := m.intents[h.Intent.Call]; dup {
		return nil, fmt.Errorf("store: call %s already holds an open intent", h.Intent.Call)
	}
	now := h.At.UnixNano()
	held := &Held{Prior: Prior{State: ClaimNew}}
	if h.Claim != nil {
		if prior, ok := m.claims[h.Claim.Key]; ok && m.clock(now) < prior.liveUntil() {
			held.Prior = m.claim(*h.Claim)
			return held, nil
		}
	}
	if h.ClaimOnly {
		return held, nil
	}
	var (
		id  string
		r   *memReservation
		err error
	)
	if h.Approval != "" {
		a, ok := m.approvals[h.Approval]
		switch {
		case !ok:
			return nil, ErrNotFound
		case a.State != ApprovalApproved || a.ExpiresAt.UnixNano() <= m.clock(now):
			return nil, ErrApprovalNotPending
		}
		a.State = ApprovalUsed
		delete(m.liveApprovals, a.ID)
		id, r = a.Reservation, a.held
	} else if id, r, err = m.reserve(now, h.Limits); err != nil {
		return nil, err
	}
	held.Reservation = id
	if h.Claim != nil {
		m.claim(*h.Claim)
	}
	held.Intent = h.Intent
	held.Intent.Reservation = held.Reservation
	m.append(&held.Intent)
	key := ""
	if h.Claim != nil {
		key = h.Claim.Key
	}
	m.intents[h.Intent.Call] = &memIntent{owner: m.owner, claimKey: key, reservation: id, record: held.Intent, held: r}
	return held, nil
}

// Complete implements [Store].
func (m *Memory) Complete(ctx context.Context, c *Completion) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkOutcome(c.Settlement); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, open := m.intents[c.Call]
	if !open && c.OnlyIfOpen {
		return ErrNotFound
	}
	delete(m.intents, c.Call)
	if open && c.Settlement == policy.Released {
		m.release(in.reservation, in.held)
	}
	if cl, ok := m.claims[c.ClaimKey]; ok && c.ClaimKey != "" && cl.call == c.Call {
		if c.Replay == nil {
			delete(m.claims, c.ClaimKey)
		} else {
			cl.done, cl.result = true, cloneBytes(c.Replay)
		}
	}
	m.append(&c.Record)
	return nil
}

// clock publishes now as this handle's time and returns the time windows
// and leases are judged by, as [SQLite] does: now, or the earliest time
// another open handle has published, if that is earlier. Under m.mu.
func (m *Memory) clock(now int64) int64 {
	if o := m.owners[m.owner]; o != nil {
		o.published = max(o.published, now)
	}
	return min(now, m.othersBound())
}

// othersBound is the earliest time another open handle has published, or
// math.MaxInt64. Under m.mu.
func (m *Memory) othersBound() int64 {
	bound := int64(math.MaxInt64)
	for id, o := range m.owners {
		if id != m.owner && o.published != 0 {
			bound = min(bound, o.published)
		}
	}
	return bound
}

// Clock implements [Ledger].
func (m *Memory) Clock(ctx context.Context, at time.Time) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := at.UnixNano()
	m.clock(now)
	var latest int64
	for id, o := range m.owners {
		if id != m.owner {
			latest = max(latest, o.published)
		}
	}
	if latest == 0 {
		return 0, nil
	}
	return time.Duration(latest - now), nil
}

// Close implements [Store]: the handle's open intents become orphaned. The
// state stays, for the other handles.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.owners, m.owner)
	return nil
}
