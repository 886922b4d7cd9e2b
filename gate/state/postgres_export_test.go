package state

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// PostgresWaiters returns how many WaitClaim calls are waiting on p's
// LISTEN connection, so that a test can end a claim once its waiter is
// listening rather than after a guessed pause.
func PostgresWaiters(p *Postgres) int {
	l := p.listen
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, w := range l.waiters {
		n += w.n
	}
	return n
}

// PostgresListening reports whether p's LISTEN connection is up as p sees
// it (connected, LISTEN sent): only then does a WaitClaim wait for a
// notification rather than a short pause.
func PostgresListening(p *Postgres) bool {
	l := p.listen
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

// PostgresSessionToolQuery is the statement SessionTool runs, for a
// test of its plan.
const PostgresSessionToolQuery = pqSessionTool

// PostgresCommitStatus is p.commitStatus: how the write transaction that
// recorded token ended, for a test of commit tokens.
func PostgresCommitStatus(ctx context.Context, p *Postgres, token string) string {
	status, _ := p.commitStatus(ctx, token)
	return status
}

// PostgresClaimHash is the payload that announces the end of the claim on
// key.
func PostgresClaimHash(key string) string { return claimHash(key) }

// PostgresTracer makes OpenPostgres's connections report every statement
// they send to tr.
func PostgresTracer(tr pgx.QueryTracer) PostgresOption {
	return func(c *postgresConfig) { c.tracer = tr }
}
