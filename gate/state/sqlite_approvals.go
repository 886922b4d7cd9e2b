package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// sqlApproval is an approval as stored, with its reservation's entries'
// time and counters.
type sqlApproval struct {
	Approval
	reservedAt int64
	keys       string // JSON array
}

// scanApproval reads approvalColumns.
func scanApproval(sc scanner) (*sqlApproval, error) {
	var (
		a                                  sqlApproval
		requested, expires, decided, resAt int64
	)
	err := sc.Scan(&a.ID, &a.Key, &a.Fingerprint, &a.Caller, &a.Tool, &a.Amount, &a.Currency, &a.Amounts, &a.EmailMasked,
		&a.Reservation, &resAt, &a.keys, &a.State, &requested, &expires, &a.DecidedBy, &decided)
	if err != nil {
		return nil, err
	}
	a.reservedAt = resAt
	a.RequestedAt, a.ExpiresAt, a.DecidedAt = fromUnix(requested), fromUnix(expires), fromUnix(decided)
	return &a, nil
}

// approval reads one approval with q (qApproval, qLatestApproval) inside
// the write transaction: ErrNotFound when there is none.
func (t *txn) approval(q string, arg string) (*sqlApproval, error) {
	a, err := scanApproval(t.row(q, arg))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: %w", err)
	}
	return a, nil
}

// RequestApproval implements [Approvals], in one write transaction.
func (s *SQLite) RequestApproval(ctx context.Context, r *ApprovalRequest) (*Approval, bool, error) {
	if err := checkApprovalRequest(r); err != nil {
		return nil, false, err
	}
	var (
		out     *Approval
		created bool
	)
	rec := r.Record
	err := s.write(ctx, func(t *txn) error {
		now := r.At.UnixNano()
		clock, err := t.clock(now)
		if err != nil {
			return err
		}
		switch a, err := t.approval(qLatestApproval, r.Approval.Key); {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			if found, expire := a.answers(clock, r.Remember); found {
				if expire {
					if err := t.expireApproval(a, r.At); err != nil {
						return err
					}
				}
				out = &a.Approval
				return nil
			}
		}
		p, err := t.claim(Claim{Key: r.Approval.Key, Fingerprint: r.Approval.Fingerprint, At: r.At}, false)
		if err != nil {
			return err
		}
		if p.State != ClaimNew {
			return ErrClaimHeld
		}
		id, keysJSON, err := t.reserveEntries("", now, r.Limits, false)
		if err != nil {
			return err
		}
		a := r.Approval
		a.Reservation, a.State, a.RequestedAt = id, ApprovalPending, r.At.UTC()
		a.ExpiresAt = a.ExpiresAt.UTC()
		a.DecidedBy, a.DecidedAt = "", time.Time{}
		_, err = t.exec(qInsertApproval, a.ID, a.Key, a.Fingerprint, a.Caller, a.Tool, a.Amount, a.Currency, a.Amounts,
			a.EmailMasked, a.Reservation, now, keysJSON, a.State, now, a.ExpiresAt.UnixNano(), "", 0)
		if err != nil {
			return err
		}
		rec.Reservation = id
		if err := t.append(&rec); err != nil {
			return err
		}
		out, created = &a, true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if created {
		r.Record = rec
	}
	return out, created, nil
}

// expireApproval expires the live approval a at at, releasing its
// reservation and appending the record of its expiry.
func (t *txn) expireApproval(a *sqlApproval, at time.Time) error {
	a.State, a.DecidedBy, a.DecidedAt = ApprovalExpired, "", at.UTC()
	if _, err := t.exec(qDecideApproval, a.State, a.ExpiresAt.UnixNano(), "", at.UnixNano(), a.ID); err != nil {
		return err
	}
	if err := t.release(a.Reservation, a.reservedAt, a.keys); err != nil {
		return err
	}
	rec := approvalRecord(&a.Approval, decisionApprovalExpired, "", at)
	return t.append(&rec)
}

// Approval implements [Approvals].
func (s *SQLite) Approval(ctx context.Context, id string) (*Approval, error) {
	a, err := scanApproval(s.stmts[qApproval].QueryRowContext(ctx, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: %w", err)
	}
	return &a.Approval, nil
}

// CallApproval implements [Approvals]. It reads; it writes nothing.
func (s *SQLite) CallApproval(ctx context.Context, key string, at time.Time, remember time.Duration) (*Approval, error) {
	a, err := scanApproval(s.stmts[qLatestApproval].QueryRowContext(ctx, key))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: %w", err)
	}
	// Judged by the clock RequestApproval judges it by: at, bounded by the
	// earliest time another live handle has published.
	clock, err := s.bound(ctx, s.stmts[qOwners], at.UnixNano())
	if err != nil {
		return nil, err
	}
	return foundApproval(&a.Approval, at, clock, remember)
}

// ListApprovals implements [Approvals].
func (s *SQLite) ListApprovals(ctx context.Context, states []string, limit int) ([]Approval, error) {
	if err := checkApprovalStates(states); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultApprovalList
	}
	q := `SELECT ` + approvalColumns + ` FROM approvals`
	args := make([]any, 0, len(states)+1)
	if len(states) > 0 {
		q += ` WHERE state IN (` + placeholders(len(states), "?") + `)`
		for _, st := range states {
			args = append(args, st)
		}
	}
	q += ` ORDER BY requested_at DESC, seq DESC LIMIT ?`
	rows, err := s.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out = append(out, a.Approval)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return out, nil
}

// DecideApproval implements [Approvals], in one write transaction.
func (s *SQLite) DecideApproval(ctx context.Context, at time.Time, id string, approve bool, by string, useBy time.Time) (*Approval, error) {
	if err := checkTime(at); err != nil {
		return nil, err
	}
	if err := checkTime(useBy); err != nil {
		return nil, err
	}
	var (
		out        *Approval
		notPending bool
	)
	err := s.write(ctx, func(t *txn) error {
		a, err := t.approval(qApproval, id)
		if err != nil {
			return err
		}
		out = &a.Approval
		if a.State != ApprovalPending {
			notPending = true
			return nil
		}
		clock, err := t.clock(at.UnixNano())
		if err != nil {
			return err
		}
		if a.ExpiresAt.UnixNano() <= clock {
			notPending = true
			return t.expireApproval(a, at)
		}
		a.DecidedBy, a.DecidedAt = by, at.UTC()
		decision := decisionApprovalGranted
		if approve {
			a.State, a.ExpiresAt = ApprovalApproved, useBy.UTC()
		} else {
			a.State, decision = ApprovalDenied, decisionApprovalDenied
			if err := t.release(a.Reservation, a.reservedAt, a.keys); err != nil {
				return err
			}
		}
		if _, err := t.exec(qDecideApproval, a.State, a.ExpiresAt.UnixNano(), by, at.UnixNano(), id); err != nil {
			return err
		}
		rec := approvalRecord(&a.Approval, decision, by, at)
		return t.append(&rec)
	})
	if err != nil {
		return nil, err
	}
	if notPending {
		return out, ErrApprovalNotPending
	}
	return out, nil
}

// ExpireApprovals implements [Approvals], in one write transaction.
func (s *SQLite) ExpireApprovals(ctx context.Context, at time.Time) (int, error) {
	if err := checkTime(at); err != nil {
		return 0, err
	}
	n := 0
	err := s.write(ctx, func(t *txn) error {
		n = 0
		clock, err := t.clock(at.UnixNano())
		if err != nil {
			return err
		}
		rows, err := t.stmt(qDueApprovals).QueryContext(t.ctx, clock)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		var due []*sqlApproval
		for rows.Next() {
			a, err := scanApproval(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("store: %w", err)
			}
			due = append(due, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		for _, a := range due {
			if err := t.expireApproval(a, at); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
