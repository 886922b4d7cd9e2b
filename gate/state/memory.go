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
	// defaultClaimLimit is how many finished claims a Memory keeps.
	defaultClaimLimit = 10_000
)

// How a [Memory] coalesces the entries of a counter that holds many.
const (
	// exactEntries is how many of its newest entries a counter keeps
	// exact, each with its own time: the conformance suite fills a window
	// with 3,000 and expects capacity back to the nanosecond.
	exactEntries = 4096
	// coalesceBatch is how many of its oldest exact entries a counter
	// coalesces into buckets at once, when it holds exactEntries +
	// coalesceBatch: moving them in batches keeps the cost per call
	// constant.
	coalesceBatch = exactEntries / 4
	// bucketsPerWindow is how many buckets a window is cut into: a bucket
	// is window/bucketsPerWindow wide (at least 1ns), so a counter holds
	// at most about bucketsPerWindow buckets in a window, and a bucket
	// counts for at most 0.4% of its window longer than the oldest of its
	// entries would have.
	bucketsPerWindow = 256
)

// Memory is a [Store] that keeps everything in memory, for tests, demos
// and the built-in sandbox. It behaves as [SQLite] does, except that it
// forgets old history so that its size stays bounded however many calls
// it serves, even within one window:
//
//   - its audit trail keeps only the newest records (see [WithAuditLimit];
//     it reports where the kept part starts through [AuditStarter], so
//     [VerifyAudit] still verifies it), and [Memory.SessionTool] knows
//     only the sessions the kept records created;
//   - finished approvals are forgotten once old or many (see
//     [WithApprovalLimit]);
//   - finished claims are forgotten once many (see [WithClaimLimit]): an
//     identical call repeated within the duplicate window, after more
//     than the limit of newer calls have finished, is made again instead
//     of answered with the first one's result;
//   - a counter keeps its newest 4,096 entries exact, and coalesces older
//     ones into buckets a 256th of its window wide, each counting the sum
//     of its entries until the newest of them leaves the window. This
//     fails closed: a budget or rate limit never admits more than it
//     would exactly, but capacity may return, and [policy.Denied.RetryAt]
//     may name a time, up to a 256th of the window later than exact (a
//     24h budget: under 6 minutes). A released reservation gives back
//     exactly what it took, bucketed or not.
//
// Counters, claims and reservations are otherwise pruned as every store
// prunes them. [SQLite] and [Postgres] keep every claim for its window
// and every entry exact. Handles opened with [Memory.Open] share its state
// as processes share a file. The zero value is not usable; call
// [NewMemory].
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
	// each with the Seq and Caller of its record.
	sessions map[string]memSession

	// The finished claims, linked in the order they finished (oldest at
	// finishedHead), so that the oldest are forgotten past claimLimit.
	finishedHead, finishedTail *memClaim
	finished                   int // how many are linked
	claimLimit                 int // finished claims kept at most; <= 0: all
}

// memCounter is one limit's running total and what makes it up: buckets
// of coalesced entries and, newer as a rule, exact entries, each oldest
// first. An entry stamped earlier than others (clocks of callers disagree)
// may sit among the exact entries though older than a bucket: the two
// lists expire apart, each from its front.
type memCounter struct {
	total   int64
	window  int64
	buckets []*memBucket
	entries []memEntry
}

// memEntry is one exact entry; res is the reservation of a budget entry,
// or of a rate entry that may move (an approval's); nil for the rate
// entries of other calls, which are never released.
type memEntry struct {
	entry
	res *memReservation
}

// memBucket is the entries made at times in [start, end), coalesced: it
// counts amount until last, the newest of their times, leaves the window,
// so for no entry in it less long than the entry would, and for none
// more than end-start longer.
type memBucket struct {
	start, end int64
	last       int64
	amount     int64
	dead       bool // expired and dropped from its counter
}

type memReservation struct {
	at       int64
	adds     []memAdd // what its budget limits added, and its rate limits when it may move
	expires  int64
	outcome  policy.Settlement // 0 until settled
	released bool              // its budget entries are gone (and its rate entries, if it moved)
}

// memAdd is what a reservation added to a counter: an exact entry at the
// reservation's time until the counter coalesces it into bucket. A rate
// limit's (rate) stays when the reservation is released; it goes only
// when the reservation moves.
type memAdd struct {
	counter *memCounter
	bucket  *memBucket
	amount  int64
	rate    bool
}

type memClaim struct {
	key         string
	call        string
	fingerprint string
	at          int64
	expires     int64
	done        bool
	result      []byte
	// prev and next link the finished claims, oldest first.
	prev, next *memClaim
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

// WithClaimLimit makes the store keep at most n finished claims, forgetting
// the one that finished first as another finishes: by default 10,000.
// n <= 0 keeps them all, each for its window, without bound. Claims in
// flight are never forgotten. An identical call that finds its claim
// forgotten is a new call: it is made again, not answered with the first
// one's result, so keep n above the calls a duplicate window sees where
// that matters, or use [SQLite].
func WithClaimLimit(n int) MemoryOption {
	return func(st *memState) { st.claimLimit = n }
}

// NewMemory returns an empty in-memory store, bounded as its options say.
func NewMemory(opts ...MemoryOption) *Memory {
	st := &memState{
		counters:      make(map[string]*memCounter),
		reservations:  make(map[string]*memReservation),
		claims:        make(map[string]*memClaim),
		intents:       make(map[string]*memIntent),
		owners:        make(map[string]*memOwner),
		sessions:      make(map[string]memSession),
		approvals:     make(map[string]*memApproval),
		latest:        make(map[string]*memApproval),
		liveApprovals: make(map[string]*memApproval),
		auditLimit:    defaultAuditLimit,
		approvalLimit: defaultApprovalLimit,
		claimLimit:    defaultClaimLimit,
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
		c := m.counters[l.Key]
		if c == nil {
			continue
		}
		from := windowStart(now, l)
		if used := c.used(from); !fits(l, used) {
			return denial(i, l, used, c.counting(from, nil))
		}
	}
	return nil
}

// used returns what c holds after from, the start of its window: its total
// less what has expired but is not dropped yet.
func (c *memCounter) used(from int64) int64 {
	used := c.total
	for _, b := range c.buckets {
		if b.last > from {
			break
		}
		used -= b.amount
	}
	for _, e := range c.entries {
		if e.at > from {
			break
		}
		used -= e.amount
	}
	return used
}

// counting returns what counts in c after from, oldest first, a bucket as
// one entry at its last time: what [denial] computes RetryAt from, never
// earlier than exact.
func (c *memCounter) counting(from int64, without *memReservation) []entry {
	if without != nil && without.released {
		without = nil
	}
	bs, es := c.buckets, c.entries
	for len(bs) > 0 && bs[0].last <= from {
		bs = bs[1:]
	}
	for len(es) > 0 && es[0].at <= from {
		es = es[1:]
	}
	out := make([]entry, 0, len(bs)+len(es))
	for len(bs) > 0 || len(es) > 0 {
		if len(es) == 0 || len(bs) > 0 && bs[0].last <= es[0].at {
			e := entry{at: bs[0].last, amount: bs[0].amount}
			if without != nil {
				for _, a := range without.adds {
					if a.bucket == bs[0] {
						e.amount -= a.amount
					}
				}
			}
			out = append(out, e)
			bs = bs[1:]
		} else {
			if without == nil || es[0].res != without {
				out = append(out, es[0].entry)
			}
			es = es[1:]
		}
	}
	return out
}

// heldBy is what c counts of r's entries (its budgets', and its rate
// limits' when it may move): nothing once r is released or its entries
// have expired.
func (c *memCounter) heldBy(r *memReservation) int64 {
	if r == nil || r.released {
		return 0
	}
	var n int64
	for _, a := range r.adds {
		switch {
		case a.counter != c:
		case a.bucket != nil:
			if !a.bucket.dead {
				n += a.amount
			}
		default:
			for _, e := range c.entries {
				if e.res == r {
					n += e.amount
					break
				}
			}
		}
	}
	return n
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
		if c := m.counters[l.Key]; c != nil {
			out[i] = c.used(windowStart(now, l))
		}
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
	id, r, err := m.reserve(at.UnixNano(), limits, nil, false)
	if err != nil {
		return "", err
	}
	m.reservations[id] = r
	return id, nil
}

// reserve is Reserve under m.mu, returning the reservation rather than
// keeping it: a hold keeps it in its intent. A reservation it replaces (an
// approval's, whose call is made now) moves: its entries, budgets' and
// rate limits', are removed if the new one fits, which it is checked as
// if they were removed already, and kept if it does not. A movable
// reservation (an approval's) links its rate entries too, so that it can.
func (m *Memory) reserve(now int64, limits []policy.Limit, replaces *memReservation, movable bool) (string, *memReservation, error) {
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
		from := windowStart(clock, l)
		c.expire(from)
		if used := c.total - c.heldBy(replaces); !fits(l, used) {
			return "", nil, denial(i, l, used, c.counting(from, replaces))
		}
	}
	remove(replaces, true)
	r := &memReservation{at: now, expires: expiry(now, limits)}
	for _, l := range limits {
		c := m.counters[l.Key]
		c.window = int64(l.Window)
		c.total += l.Add
		e := memEntry{entry: entry{at: now, amount: l.Add}}
		if l.Kind == policy.KindBudget || movable {
			e.res = r
			r.adds = append(r.adds, memAdd{counter: c, amount: l.Add, rate: l.Kind == policy.KindRate})
		}
		// Entries are kept oldest first; a call stamped earlier than the
		// newest (clocks of callers disagree) goes in its place.
		k := len(c.entries)
		for k > 0 && c.entries[k-1].at > now {
			k--
		}
		c.entries = slices.Insert(c.entries, k, e)
		if len(c.entries) >= exactEntries+coalesceBatch {
			c.coalesce(coalesceBatch)
		}
	}
	return id, r, nil
}

// expire drops the buckets and entries at or before from, which no longer
// count, from the front of c and its total: each is dropped once, so the
// cost is constant per call however many a window holds.
func (c *memCounter) expire(from int64) {
	k := 0
	for ; k < len(c.buckets) && c.buckets[k].last <= from; k++ {
		c.total -= c.buckets[k].amount
		c.buckets[k].dead = true
	}
	if k > 0 {
		clear(c.buckets[:k])
		c.buckets = c.buckets[k:]
	}
	k = 0
	for ; k < len(c.entries) && c.entries[k].at <= from; k++ {
		c.total -= c.entries[k].amount
	}
	if k > 0 {
		// Dropped from the front without moving the rest: append moves
		// them when it next grows the array, as a queue does.
		clear(c.entries[:k])
		c.entries = c.entries[k:]
	}
}

// coalesce moves c's n oldest exact entries into the buckets that hold
// their times, telling the reservations of budget entries which bucket
// now holds what they added.
func (c *memCounter) coalesce(n int) {
	width := max(1, c.window/bucketsPerWindow)
	for _, e := range c.entries[:n] {
		b := c.bucketAt(e.at, width)
		b.amount += e.amount
		b.last = max(b.last, e.at)
		if e.res == nil {
			continue
		}
		for i := range e.res.adds {
			if a := &e.res.adds[i]; a.counter == c {
				a.bucket = b
			}
		}
	}
	clear(c.entries[:n])
	c.entries = c.entries[n:]
}

// bucketAt returns c's bucket holding time at, making one width wide if
// there is none, clipped so that buckets never overlap (a window that
// changes changes the width).
func (c *memCounter) bucketAt(at, width int64) *memBucket {
	// Usually entries come in time order, and at is past every bucket.
	k := len(c.buckets)
	if k > 0 && at < c.buckets[k-1].end {
		k = sort.Search(len(c.buckets), func(i int) bool { return c.buckets[i].end > at })
		if c.buckets[k].start <= at {
			return c.buckets[k]
		}
	}
	start := at - ((at%width)+width)%width
	b := &memBucket{start: start, end: start + width, last: at}
	if k > 0 {
		b.start = max(b.start, c.buckets[k-1].end)
	}
	if k < len(c.buckets) {
		b.end = min(b.end, c.buckets[k].start)
	}
	c.buckets = slices.Insert(c.buckets, k, b)
	return b
}

// sweep forgets counters whose every entry has expired, claims and
// reservations past retention.
func (m *Memory) sweep(now int64) {
	for key, c := range m.counters {
		c.expire(now - c.window - int64(pruneGrace))
		if len(c.entries) == 0 && len(c.buckets) == 0 {
			delete(m.counters, key)
		}
	}
	for id, r := range m.reservations {
		if r.expires <= now-int64(reservationRetention) {
			delete(m.reservations, id)
		}
	}
	for _, cl := range m.claims {
		if cl.liveUntil() <= now-int64(pruneGrace) {
			m.dropClaim(cl)
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
		release(r)
	}
	return nil
}

// release takes r's budget entries out of their counters, once: its rate
// limits keep counting the call.
func release(r *memReservation) { remove(r, false) }

// remove takes r's budget entries, and with rates its rate entries too,
// out of their counters, once: an exact entry is removed, and the bucket
// an entry was coalesced into gives back exactly its amount. What has
// expired is gone already.
func remove(r *memReservation, rates bool) {
	if r == nil || r.released {
		return
	}
	r.released = true
	for _, a := range r.adds {
		if a.rate && !rates {
			continue
		}
		c := a.counter
		if a.bucket != nil {
			if !a.bucket.dead {
				a.bucket.amount -= a.amount
				c.total -= a.amount
			}
			continue
		}
		// The reservation's entry sits where its time puts it.
		k := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].at >= r.at })
		for ; k < len(c.entries) && c.entries[k].at == r.at; k++ {
			if c.entries[k].res == r {
				c.total -= c.entries[k].amount
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
	if p, live := m.liveClaim(c, now); live {
		return p
	}
	if old, ok := m.claims[c.Key]; ok {
		m.dropClaim(old)
	}
	m.claims[c.Key] = &memClaim{key: c.Key, call: c.Call, fingerprint: c.Fingerprint, at: at, expires: at + int64(c.Window)}
	return Prior{State: ClaimNew}
}

// LookClaim implements [Claims].
func (m *Memory) LookClaim(ctx context.Context, c Claim) (Prior, error) {
	if err := ctx.Err(); err != nil {
		return Prior{}, err
	}
	if err := checkClaim(c); err != nil {
		return Prior{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Claim's clock, without publishing c.At as this handle's time.
	p, _ := m.liveClaim(c, min(c.At.UnixNano(), m.othersBound()))
	return p, nil
}

// liveClaim returns what the claim holding c.Key answers c at now, and
// whether one still does (else ClaimNew). Under m.mu.
func (m *Memory) liveClaim(c Claim, now int64) (Prior, bool) {
	if cl, ok := m.claims[c.Key]; ok && now < cl.liveUntil() {
		return claimPrior(cl.fingerprint, c.Fingerprint, cl.done, cl.result), true
	}
	return Prior{State: ClaimNew}, false
}

// finishClaim records cl's result, making it the newest finished claim,
// and forgets the oldest finished ones past the claim limit. Under m.mu.
func (m *Memory) finishClaim(cl *memClaim, result []byte) {
	if cl.done {
		m.unlinkFinished(cl)
	}
	cl.done, cl.result = true, cloneBytes(result)
	cl.prev, cl.next = m.finishedTail, nil
	if m.finishedTail != nil {
		m.finishedTail.next = cl
	} else {
		m.finishedHead = cl
	}
	m.finishedTail = cl
	m.finished++
	for m.claimLimit > 0 && m.finished > m.claimLimit {
		m.dropClaim(m.finishedHead)
	}
}

// dropClaim forgets cl. Under m.mu.
func (m *Memory) dropClaim(cl *memClaim) {
	if m.claims[cl.key] == cl {
		delete(m.claims, cl.key)
	}
	if cl.done {
		m.unlinkFinished(cl)
	}
}

// unlinkFinished takes the finished claim cl out of the order claims
// finished in. Under m.mu.
func (m *Memory) unlinkFinished(cl *memClaim) {
	if cl.prev != nil {
		cl.prev.next = cl.next
	} else {
		m.finishedHead = cl.next
	}
	if cl.next != nil {
		cl.next.prev = cl.prev
	} else {
		m.finishedTail = cl.prev
	}
	cl.prev, cl.next = nil, nil
	m.finished--
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
	m.finishClaim(cl, result)
	return nil
}

// Drop implements [Claims].
func (m *Memory) Drop(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cl, ok := m.claims[key]
	if !ok {
		return ErrNotFound
	}
	m.dropClaim(cl)
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
	if r.CreatedSession() {
		m.sessions[r.SessionID] = memSession{seq: r.Seq, caller: r.Caller, tool: r.Tool}
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
	if r.CreatedSession() && m.sessions[r.SessionID].seq == r.Seq {
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

// memSession is a Clink session a kept record records as created.
type memSession struct {
	seq    int64 // the record's
	caller string
	tool   string
}

// SessionTool implements [Journal], for the sessions whose records the
// store still keeps: one created longer ago than its audit limit reaches
// is reported as not created.
func (m *Memory) SessionTool(ctx context.Context, sessionID, caller string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, created := m.sessions[sessionID]
	if sessionID == "" || !created || s.caller != caller {
		return "", nil
	}
	return s.tool, nil
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
		// The approval's limits were reserved when it was requested; the
		// call is made now. Its entries, budgets' and rate limits', move
		// to now, checked again against the limits: the request's may
		// have left a window since, and other calls used what it left.
		// Refused, the approval keeps its reservation, as a store that
		// rolls back does.
		if _, r, err = m.reserve(now, h.Limits, a.held, false); err != nil {
			return nil, err
		}
		id = a.Reservation
		a.State = ApprovalUsed
		delete(m.liveApprovals, a.ID)
	} else if id, r, err = m.reserve(now, h.Limits, nil, false); err != nil {
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
		release(in.held)
	}
	if cl, ok := m.claims[c.ClaimKey]; ok && c.ClaimKey != "" && cl.call == c.Call {
		if c.Replay == nil {
			m.dropClaim(cl)
		} else {
			m.finishClaim(cl, c.Replay)
			cl.expires = finishedClaimExpires(cl.at, cl.expires, &c.Record)
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
