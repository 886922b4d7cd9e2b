package state

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// approvalRetention is how long a [Memory] keeps a finished approval
// after its decision at least: longer when a request asked for it to be
// remembered longer.
const approvalRetention = 24 * time.Hour

// memApproval is an approval and the reservation it holds.
type memApproval struct {
	Approval
	seq  int             // its place in the order of requests
	held *memReservation // settled by Complete once used, released when denied or expired
}

// RequestApproval implements [Approvals].
func (m *Memory) RequestApproval(ctx context.Context, r *ApprovalRequest) (*Approval, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := checkApprovalRequest(r); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := r.At.UnixNano()
	clock := m.clock(now)
	if a := m.latest[r.Approval.Key]; a != nil {
		if found, expire := a.answers(clock, r.Remember); found {
			if expire {
				m.expireApproval(a, r.At)
			}
			return new(a.Approval), false, nil
		}
	}
	if c, ok := m.claims[r.Approval.Key]; ok && clock < c.liveUntil() {
		return nil, false, ErrClaimHeld
	}
	if _, dup := m.approvals[r.Approval.ID]; dup {
		return nil, false, fmt.Errorf("store: approval %s exists already", r.Approval.ID)
	}
	id, res, err := m.reserve(now, r.Limits, nil, true)
	if err != nil {
		return nil, false, err
	}
	m.approvalSeq++
	m.remember = max(m.remember, r.Remember)
	a := &memApproval{Approval: r.Approval, seq: m.approvalSeq, held: res}
	a.Reservation, a.State, a.RequestedAt = id, ApprovalPending, r.At.UTC()
	a.ExpiresAt = a.ExpiresAt.UTC()
	a.DecidedBy, a.DecidedAt = "", time.Time{}
	m.approvals[a.ID] = a
	m.approvalList = append(m.approvalList, a)
	m.latest[a.Key] = a
	m.liveApprovals[a.ID] = a
	r.Record.Reservation = id
	m.append(&r.Record)
	if finished := len(m.approvalList) - len(m.liveApprovals); m.approvalSeq%sweepEvery == 0 ||
		m.approvalLimit > 0 && finished > 2*m.approvalLimit {
		m.pruneApprovals(clock)
	}
	return new(a.Approval), true, nil
}

// pruneApprovals forgets the finished approvals past retention at now, and
// the oldest requested of the others past the approval limit. It runs
// every sweepEvery requests, and whenever twice the limit have finished,
// so that its cost per request stays constant. Under m.mu.
func (m *Memory) pruneApprovals(now int64) {
	excess := 0
	if m.approvalLimit > 0 {
		excess = len(m.approvalList) - len(m.liveApprovals) - m.approvalLimit
	}
	retention := int64(max(approvalRetention, m.remember))
	kept := m.approvalList[:0]
	for _, a := range m.approvalList {
		if !a.live() && (excess > 0 || a.DecidedAt.UnixNano() <= now-retention) {
			excess--
			delete(m.approvals, a.ID)
			if m.latest[a.Key] == a {
				delete(m.latest, a.Key)
			}
			continue
		}
		kept = append(kept, a)
	}
	clear(m.approvalList[len(kept):])
	m.approvalList = kept
}

// expireApproval expires the live approval a at at, releasing its
// reservation. Under m.mu.
func (m *Memory) expireApproval(a *memApproval, at time.Time) {
	a.State, a.DecidedBy, a.DecidedAt = ApprovalExpired, "", at.UTC()
	delete(m.liveApprovals, a.ID)
	release(a.held)
	rec := approvalRecord(&a.Approval, decisionApprovalExpired, "", at)
	m.append(&rec)
}

// Approval implements [Approvals].
func (m *Memory) Approval(ctx context.Context, id string) (*Approval, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.approvals[id]
	if !ok {
		return nil, ErrNotFound
	}
	return new(a.Approval), nil
}

// CallApproval implements [Approvals].
func (m *Memory) CallApproval(ctx context.Context, key string, at time.Time, remember time.Duration) (*Approval, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.latest[key]
	if a == nil {
		return nil, ErrNotFound
	}
	return foundApproval(&a.Approval, at, min(at.UnixNano(), m.othersBound()), remember)
}

// ListApprovals implements [Approvals].
func (m *Memory) ListApprovals(ctx context.Context, states []string, limit int) ([]Approval, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkApprovalStates(states); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultApprovalList
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Approval
	for _, a := range m.approvalList {
		if len(states) == 0 || slices.Contains(states, a.State) {
			out = append(out, a.Approval)
		}
	}
	// Newest request first; among requests made at one time, the last
	// made first.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b Approval) int { return b.RequestedAt.Compare(a.RequestedAt) })
	return out[:min(limit, len(out))], nil
}

// DecideApproval implements [Approvals].
func (m *Memory) DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*Approval, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTime(at); err != nil {
		return nil, err
	}
	if err := checkTime(useBy); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.approvals[id]
	if !ok {
		return nil, ErrNotFound
	}
	if a.State != ApprovalPending {
		return new(a.Approval), ErrApprovalNotPending
	}
	if a.ExpiresAt.UnixNano() <= m.clock(at.UnixNano()) {
		m.expireApproval(a, at)
		return new(a.Approval), ErrApprovalNotPending
	}
	a.DecidedBy, a.DecidedAt = by, at.UTC()
	decision := decisionApprovalGranted
	if approve {
		a.State, a.ExpiresAt = ApprovalApproved, useBy.UTC()
	} else {
		a.State, decision = ApprovalDenied, decisionApprovalDenied
		delete(m.liveApprovals, a.ID)
		release(a.held)
	}
	rec := approvalRecord(&a.Approval, decision, by, at)
	m.append(&rec)
	return new(a.Approval), nil
}

// ExpireApprovals implements [Approvals].
func (m *Memory) ExpireApprovals(ctx context.Context, at time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkTime(at); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clock := m.clock(at.UnixNano())
	var due []*memApproval
	for _, a := range m.liveApprovals {
		if a.ExpiresAt.UnixNano() <= clock {
			due = append(due, a)
		}
	}
	slices.SortFunc(due, func(a, b *memApproval) int { return a.seq - b.seq })
	for _, a := range due {
		m.expireApproval(a, at)
	}
	return len(due), nil
}
