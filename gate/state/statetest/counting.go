package statetest

import (
	"context"
	"sync/atomic"

	"github.com/clink-mcp/clink-mcp/gate/state"
)

// Counting wraps a store and counts its write transactions: Hold,
// Complete and AppendAudit each run in one (as do Reserve, Settle, Claim,
// Finish and Drop, which the core does not call). Tests and benchmarks
// use it to prove how many transactions a call costs.
type Counting struct {
	state.Store
	writes atomic.Int64
}

// Writes returns how many write transactions have run.
func (c *Counting) Writes() int64 { return c.writes.Load() }

// Hold implements [state.Store].
func (c *Counting) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	c.writes.Add(1)
	return c.Store.Hold(ctx, h)
}

// Complete implements [state.Store].
func (c *Counting) Complete(ctx context.Context, comp *state.Completion) error {
	c.writes.Add(1)
	return c.Store.Complete(ctx, comp)
}

// AppendAudit implements [state.Journal].
func (c *Counting) AppendAudit(ctx context.Context, r *state.AuditRecord) error {
	c.writes.Add(1)
	return c.Store.AppendAudit(ctx, r)
}
