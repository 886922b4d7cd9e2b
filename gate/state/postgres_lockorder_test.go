//go:build postgres

package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// TestPostgresAHoldOnAnApprovalLocksCountersInKeyOrder: a hold on an
// approval locks its counters in key order, the approval's and the call's
// together, as every hold does. It once locked the approval's first: a
// key of the call's that sorts before them (a limit added to the policy
// since the request, or a counter swept since) was then locked out of
// order, and the hold deadlocked with one taking the same counters in
// order. The other transaction here takes them in order, and gives up at
// once on a deadlock (its deadlock_timeout is short), so that a deadlock
// fails it rather than the hold, which retries.
func TestPostgresAHoldOnAnApprovalLocksCountersInKeyOrder(t *testing.T) {
	for _, variant := range []string{"a limit added since the request", "a counter swept since the request"} {
		t.Run(variant, func(t *testing.T) {
			ctx := context.Background()
			u := freshDatabase(t)
			s := openPostgres(t, u)
			early := pgBudget("a-budget", time.Second, 1000, 10) // sorts before r-rate
			rate := pgRate("r-rate", time.Hour, 10)
			requested := []policy.Limit{rate}
			swept := variant == "a counter swept since the request"
			if swept {
				requested = []policy.Limit{early, rate}
			}
			now := time.Now()
			if _, _, err := s.RequestApproval(ctx, &state.ApprovalRequest{
				At:       now,
				Approval: state.Approval{ID: "apr_1", Key: "key-1", Fingerprint: "f", Tool: "t", ExpiresAt: now.Add(time.Hour)},
				Limits:   requested,
				Record:   state.AuditRecord{Time: now, Kind: state.KindApproval, Call: "apr_1", Tool: "t", Decision: "approval_required"},
				Remember: time.Hour,
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DecideApproval(ctx, time.Now(), "apr_1", true, "operator:ops", time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if swept {
				// The budget's window passed and a sweep forgot its counter.
				sqlExec(t, u, `DELETE FROM counter_entries WHERE key = 'a-budget'`)
				sqlExec(t, u, `DELETE FROM counters WHERE key = 'a-budget'`)
			} else if _, err := s.Hold(ctx, pgHold("c0", time.Now(), []policy.Limit{early})); err != nil {
				t.Fatal(err) // another call made a-budget's counter
			}
			other, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(ctx)
			for _, q := range []string{
				`SET deadlock_timeout = '10ms'`,
				`BEGIN`,
				`INSERT INTO counters (key, total, win, expires) VALUES ('a-budget', 0, 0, 0) ON CONFLICT (key) DO NOTHING`,
				`SELECT 1 FROM counters WHERE key = 'a-budget' FOR UPDATE`,
			} {
				if _, err := other.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			held := make(chan error, 1)
			go func() {
				h := pgHold("c1", time.Now(), []policy.Limit{early, rate})
				h.Approval = "apr_1"
				_, err := s.Hold(ctx, h)
				held <- err
			}()
			// Wait for the hold to wait for a-budget: had it locked r-rate
			// first, the next statement deadlocks.
			for waited := time.Now(); queryInt(t, u, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0; {
				if time.Since(waited) > 10*time.Second {
					t.Fatal("the hold on the approval never waited for the counter the other transaction holds")
				}
				time.Sleep(10 * time.Millisecond)
			}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, lockErr := other.Exec(lctx, `SELECT 1 FROM counters WHERE key = 'r-rate' FOR UPDATE`)
			if _, err := other.Exec(ctx, `ROLLBACK`); err != nil {
				t.Fatal(err)
			}
			var pgErr *pgconn.PgError
			switch {
			case errors.As(lockErr, &pgErr) && pgErr.Code == "40P01":
				t.Errorf("a transaction taking the counters in key order deadlocked with the hold on the approval: %v", lockErr)
			case lockErr != nil:
				t.Errorf("the other transaction: %v", lockErr)
			}
			if err := <-held; err != nil {
				t.Errorf("the hold on the approval: %v", err)
			}
		})
	}
}
