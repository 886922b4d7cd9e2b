package state

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clink-mcp/clink-mcp/policy"
)

// The approvals' statements. Locks are taken in the order approval key,
// approval, counters (by key), audit head, after a hold's claim: the order
// of the file's other transactions, with approvals before counters.
const (
	pqEnsureApprovalKey = `INSERT INTO approval_keys (key) VALUES ($1) ON CONFLICT (key) DO NOTHING`
	pqLockApprovalKey   = `SELECT latest FROM approval_keys WHERE key = $1 FOR UPDATE`
	pqLockLatest        = `SELECT ` + approvalColumns + ` FROM approvals WHERE id = (SELECT latest FROM approval_keys WHERE key = $1) FOR UPDATE`
	pqSetLatest         = `UPDATE approval_keys SET latest = $2 WHERE key = $1`
	pqLockApproval      = `SELECT ` + approvalColumns + ` FROM approvals WHERE id = $1 FOR UPDATE`
	pqApproval          = `SELECT ` + approvalColumns + ` FROM approvals WHERE id = $1`
	pqLatestApproval    = `SELECT ` + approvalColumns + `, clink_now($2) FROM approvals WHERE id = (SELECT latest FROM approval_keys WHERE key = $1)`
	pqInsertApproval    = `INSERT INTO approvals (` + approvalColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`
	pqDecideApproval    = `UPDATE approvals SET state = $2, expires_at = $3, decided_by = $4, decided_at = $5 WHERE id = $1`
	pqExpireApprovals   = `UPDATE approvals SET state = 'expired', decided_by = '', decided_at = $2 WHERE id = ANY($1)`
	pqUseApproval       = `UPDATE approvals SET state = 'used' WHERE id = $1`
	pqDueApprovals      = `SELECT ` + approvalColumns + ` FROM approvals
WHERE state IN ('pending', 'approved') AND expires_at <= clink_now($1) ORDER BY id FOR UPDATE`
	pqListApprovals = `SELECT ` + approvalColumns + ` FROM approvals
WHERE cardinality($1::text[]) = 0 OR state = ANY($1) ORDER BY requested_at DESC, seq DESC LIMIT $2`
)

// pgApproval is an approval as stored, with its reservation's entries'
// time and counters.
type pgApproval struct {
	Approval
	reservedAt int64
	keys       []string
}

// scanPgApproval reads approvalColumns, then the row's further columns
// into more.
func scanPgApproval(row pgx.Row, more ...any) (*pgApproval, error) {
	var (
		a                           pgApproval
		requested, expires, decided int64
	)
	err := row.Scan(append([]any{&a.ID, &a.Key, &a.Fingerprint, &a.Caller, &a.Tool, &a.Amount, &a.Currency, &a.Amounts, &a.EmailMasked,
		&a.Reservation, &a.reservedAt, &a.keys, &a.State, &requested, &expires, &a.DecidedBy, &decided}, more...)...)
	if err != nil {
		return nil, err
	}
	a.RequestedAt, a.ExpiresAt, a.DecidedAt = fromUnix(requested), fromUnix(expires), fromUnix(decided)
	return &a, nil
}

// RequestApproval implements [Approvals], in one transaction: the first
// round trip locks the call key's row and its newest approval; a request
// that finds one it returns ends there (without writing), one that
// creates locks the counters and the audit head, and writes.
//
// The approval's times are the transaction's: RequestedAt its time, and
// ExpiresAt as far after it as r.Approval.ExpiresAt is after r.At.
func (p *Postgres) RequestApproval(ctx context.Context, r *ApprovalRequest) (*Approval, bool, error) {
	if err := checkApprovalRequest(r); err != nil {
		return nil, false, err
	}
	if err := p.renew(ctx, r.At.UnixNano(), false); err != nil {
		return nil, false, err
	}
	var (
		out     *Approval
		created bool
		rec     AuditRecord
	)
	err := p.write(ctx, true, r.At, func(t *pgTx) error {
		out, created, rec = nil, false, r.Record
		b := &pgx.Batch{}
		b.Queue(pqEnsureApprovalKey, r.Approval.Key)
		b.Queue(pqLockApprovalKey, r.Approval.Key)
		b.Queue(pqLockLatest, r.Approval.Key)
		clock := any(nil) // the transaction's time
		if t.p.cfg.clientClock {
			clock = min(r.At.UnixNano(), t.earliest)
		}
		b.Queue(pqClaimLive, r.Approval.Key, clock, int64(InFlightLease))
		var (
			latest    *pgApproval
			claimLive bool
		)
		err := t.send(b, false, func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return err
			}
			if err := br.QueryRow().Scan(new(string)); err != nil {
				return err
			}
			a, err := scanPgApproval(br.QueryRow())
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			latest = a
			if err := br.QueryRow().Scan(&claimLive); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		if a := latest; a != nil {
			if found, expire := a.answers(t.clock, r.Remember); found {
				out = &a.Approval
				if expire {
					return t.expireApprovals([]*pgApproval{a}, r.At)
				}
				t.rollback = true
				return nil
			}
		}
		if claimLive {
			t.rollback = true
			return ErrClaimHeld
		}
		b = &pgx.Batch{}
		lock := t.queueAdmit(b, r.Limits)
		var counters map[string]int64
		err = t.send(b, false, func(br pgx.BatchResults) (err error) {
			counters, err = lock.read(br)
			return err
		})
		if err != nil {
			return err
		}
		if err := t.admit(r.Limits, lock.keys, counters); err != nil {
			return err
		}
		id, err := newReservationID()
		if err != nil {
			return err
		}
		a := r.Approval
		a.Reservation, a.State, a.RequestedAt = id, ApprovalPending, fromUnix(t.now)
		a.ExpiresAt = fromUnix(t.now + int64(r.Approval.ExpiresAt.Sub(r.At)))
		a.DecidedBy, a.DecidedAt = "", time.Time{}
		rec.Reservation = id
		b = &pgx.Batch{}
		queueEntries(b, id, t.now, r.Limits, counters)
		b.Queue(pqInsertApproval, a.ID, a.Key, a.Fingerprint, a.Caller, a.Tool, a.Amount, a.Currency, a.Amounts,
			a.EmailMasked, a.Reservation, t.now, lock.keys, a.State, t.now, a.ExpiresAt.UnixNano(), "", int64(0))
		b.Queue(pqSetLatest, a.Key, a.ID)
		queueAppend(b, &rec)
		// Set before the commit: a commit whose answer is lost, found
		// committed, returns them.
		out, created = &a, true
		t.unseen = p.recover(ctx, &rec)
		return t.exec(b, true)
	})
	if err != nil {
		return nil, false, err
	}
	if created {
		r.Record = rec
	}
	return out, created, nil
}

// queueReleaseApprovals queues the statements that lock the counters of
// the reservations of as, all in key order, and remove their budget
// entries.
func queueReleaseApprovals(b *pgx.Batch, as []*pgApproval) {
	var keys []string
	for _, a := range as {
		keys = append(keys, a.keys...)
	}
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	b.Queue(pqLockKeys, slices.Compact(keys))
	for _, a := range as {
		if len(a.keys) > 0 {
			b.Queue(pqRelease, a.keys, a.reservedAt, a.Reservation, int16(policy.KindBudget))
		}
	}
}

// expireApprovals expires the live approvals as, which the transaction
// has locked, at its time, releasing their reservations and appending the
// records of their expiry (stamped at), and commits.
func (t *pgTx) expireApprovals(as []*pgApproval, at time.Time) error {
	b := &pgx.Batch{}
	queueReleaseApprovals(b, as)
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.ID
		a.State, a.DecidedBy, a.DecidedAt = ApprovalExpired, "", fromUnix(t.now)
	}
	b.Queue(pqExpireApprovals, ids, t.now)
	for _, a := range as {
		rec := approvalRecord(&a.Approval, decisionApprovalExpired, "", at)
		queueAppend(b, &rec)
	}
	return t.exec(b, true)
}

// Approval implements [Approvals].
func (p *Postgres) Approval(ctx context.Context, id string) (*Approval, error) {
	if p.closed.Load() {
		return nil, errClosed
	}
	var a *pgApproval
	err := p.read(ctx, func(c *pgxpool.Conn) (err error) {
		a, err = scanPgApproval(c.QueryRow(ctx, pqApproval, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &a.Approval, nil
}

// CallApproval implements [Approvals]. It reads, and judges by the
// database's clock as RequestApproval does; it writes nothing.
func (p *Postgres) CallApproval(ctx context.Context, key string, at time.Time, remember time.Duration) (*Approval, error) {
	if p.closed.Load() {
		return nil, errClosed
	}
	var (
		a   *pgApproval
		now int64
	)
	err := p.read(ctx, func(c *pgxpool.Conn) (err error) {
		clock, err := p.readClock(ctx, c, at)
		if err != nil {
			return err
		}
		a, err = scanPgApproval(c.QueryRow(ctx, pqLatestApproval, key, clock), &now)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return foundApproval(&a.Approval, fromUnix(now), now, remember)
}

// ListApprovals implements [Approvals].
func (p *Postgres) ListApprovals(ctx context.Context, states []string, limit int) ([]Approval, error) {
	if err := checkApprovalStates(states); err != nil {
		return nil, err
	}
	if p.closed.Load() {
		return nil, errClosed
	}
	if limit <= 0 {
		limit = defaultApprovalList
	}
	if states == nil {
		states = []string{}
	}
	var out []Approval
	err := p.read(ctx, func(c *pgxpool.Conn) error {
		out = nil
		rows, err := c.Query(ctx, pqListApprovals, states, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanPgApproval(rows)
			if err != nil {
				return err
			}
			out = append(out, a.Approval)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DecideApproval implements [Approvals], in one transaction that locks
// the approval, then (to deny) its counters, then the audit head. The
// decision's times are the transaction's: DecidedAt its time, and an
// approval's new ExpiresAt as far after it as useBy is after at.
func (p *Postgres) DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*Approval, error) {
	if err := checkTime(at); err != nil {
		return nil, err
	}
	if err := checkTime(useBy); err != nil {
		return nil, err
	}
	if err := p.renew(ctx, at.UnixNano(), false); err != nil {
		return nil, err
	}
	var (
		out        *Approval
		notPending bool
	)
	err := p.write(ctx, true, at, func(t *pgTx) error {
		out, notPending = nil, false
		b := &pgx.Batch{}
		b.Queue(pqLockApproval, id)
		var a *pgApproval
		err := t.send(b, false, func(br pgx.BatchResults) (err error) {
			a, err = scanPgApproval(br.QueryRow())
			return err
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out = &a.Approval
		switch {
		case a.State != ApprovalPending:
			notPending, t.rollback = true, true
			return nil
		case a.ExpiresAt.UnixNano() <= t.clock:
			notPending = true
			return t.expireApprovals([]*pgApproval{a}, at)
		}
		a.DecidedBy, a.DecidedAt = by, fromUnix(t.now)
		decision := decisionApprovalGranted
		b = &pgx.Batch{}
		if approve {
			a.State, a.ExpiresAt = ApprovalApproved, fromUnix(t.now+int64(useBy.Sub(at)))
		} else {
			a.State, decision = ApprovalDenied, decisionApprovalDenied
			queueReleaseApprovals(b, []*pgApproval{a})
		}
		b.Queue(pqDecideApproval, a.ID, a.State, a.ExpiresAt.UnixNano(), by, t.now)
		rec := approvalRecord(&a.Approval, decision, by, at)
		queueAppend(b, &rec)
		return t.exec(b, true)
	})
	if err != nil {
		return nil, err
	}
	if notPending {
		return out, ErrApprovalNotPending
	}
	return out, nil
}

// ExpireApprovals implements [Approvals], in one transaction that locks
// the approvals due (in ID order), then their counters, then the audit
// head. It is due by the transaction's time, which DecidedAt records.
func (p *Postgres) ExpireApprovals(ctx context.Context, at time.Time) (int, error) {
	if err := checkTime(at); err != nil {
		return 0, err
	}
	if err := p.renew(ctx, at.UnixNano(), false); err != nil {
		return 0, err
	}
	n := 0
	err := p.write(ctx, true, at, func(t *pgTx) error {
		n = 0
		b := &pgx.Batch{}
		b.Queue(pqDueApprovals, t.arg(t.clock))
		var due []*pgApproval
		err := t.send(b, false, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				a, err := scanPgApproval(rows)
				if err != nil {
					return err
				}
				due = append(due, a)
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		if len(due) == 0 {
			t.rollback = true
			return nil
		}
		n = len(due)
		return t.expireApprovals(due, at)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
