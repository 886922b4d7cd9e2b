package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
)

// Retry pacing of journal writes that failed: the first retry after
// retryFirst, doubling up to retryMax.
const (
	retryFirst = 50 * time.Millisecond
	retryMax   = 5 * time.Second
	// finalAttempt bounds close's last try of the pending writes once its
	// context is done.
	finalAttempt = 2 * time.Second
)

// journal lands the writes that failed the first time (the store was
// locked by another process past its busy timeout, the disk was full, ...):
// each is kept in memory and retried with backoff until it lands or the
// process ends. While one waits, the replay it carries answers identical
// calls of this process.
type journal struct {
	store state.Store
	log   *slog.Logger

	mu       sync.Mutex
	pending  []*pendingWrite
	stopping bool          // close has begun: no new retry goroutine
	closed   bool          // close has ended: a write that fails now is lost
	stop     chan struct{} // closed by close: the retries stop
	running  bool          // a retry goroutine is running
	retrying sync.WaitGroup
}

// pendingWrite is one journal write still to land.
type pendingWrite struct {
	completion *state.Completion // or nil
	// orAppend appends record on its own when completion finds no open
	// intent (only with completion.OnlyIfOpen).
	orAppend bool
	record   *state.AuditRecord
	replay   *Result // what identical calls get meanwhile, or nil
	attempts int
	// panicked says an attempt panicked, perhaps after its write landed.
	panicked bool
}

// write tries w once. A store that panics (a bug in it or its driver) has
// failed this write: the write is kept and retried like any other, never
// lost with the goroutine that made it. The panic may have come after the
// write landed (a store wrapper's bug), so a completion is retried only
// if its intent is still open. Once it is closed: a session's creation is
// looked up by its session, and appended only if it is not on record; a
// completion of an intent this process held is taken to have landed (only
// its write closes it while the process lives: another resolves it only
// once its owner is gone); a resolution (orAppend), whose intent may never
// have been committed, is appended, at worst twice (as a lone record's
// retry may be), never lost.
func (j *journal) write(ctx context.Context, w *pendingWrite) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.panicked = true
			j.log.ErrorContext(ctx, "panic in the store's journal write", "call", w.record.Call, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("gate: the store panicked: %v", r)
		}
	}()
	if w.completion == nil {
		return j.store.AppendAudit(ctx, w.record)
	}
	c := w.completion
	if w.panicked && !c.OnlyIfOpen {
		only := *c
		only.OnlyIfOpen = true
		c = &only
	}
	err = j.store.Complete(ctx, c)
	switch {
	case !errors.Is(err, state.ErrNotFound) || !c.OnlyIfOpen:
		return err
	case w.panicked && w.record.CreatedSession():
		tool, err := j.store.SessionTool(ctx, w.record.SessionID, w.record.Caller)
		if err != nil || tool != "" {
			return err // on record already, or not known yet
		}
		return j.store.AppendAudit(ctx, w.record)
	case w.panicked && !w.orAppend:
		return nil
	case w.orAppend:
		return j.store.AppendAudit(ctx, w.record)
	}
	return err
}

func newJournal(s state.Store, log *slog.Logger) *journal {
	return &journal{store: s, log: log, stop: make(chan struct{})}
}

// complete writes c, or keeps it for retries. replay answers identical
// calls while it waits.
func (j *journal) complete(ctx context.Context, c *state.Completion, replay *Result) {
	w := &pendingWrite{completion: c, record: &c.Record, replay: replay, attempts: 1}
	if err := j.write(context.WithoutCancel(ctx), w); err != nil {
		j.defer_(ctx, w, err)
	}
}

// resolve writes c (which must be OnlyIfOpen) if its intent is open, else
// appends c's record on its own; or keeps it for retries.
func (j *journal) resolve(ctx context.Context, c *state.Completion) {
	w := &pendingWrite{completion: c, orAppend: true, record: &c.Record, attempts: 1}
	if err := j.write(context.WithoutCancel(ctx), w); err != nil {
		j.defer_(ctx, w, err)
	}
}

// append appends rec, or keeps it for retries.
func (j *journal) append(ctx context.Context, rec *state.AuditRecord) {
	w := &pendingWrite{record: rec, attempts: 1}
	if err := j.write(context.WithoutCancel(ctx), w); err != nil {
		j.defer_(ctx, w, err)
	}
}

// defer_ keeps w to retry. It logs before it queues: should the log's
// handler panic, w is not queued, and Create's recover writes the call's
// completion itself, once.
func (j *journal) defer_(ctx context.Context, w *pendingWrite, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		j.lost(w, err)
		return
	}
	j.log.WarnContext(ctx, "journal write failed; keeping it to retry", "call", w.record.Call,
		"decision", w.record.Decision, "session_id", w.record.SessionID, "err", err)
	j.pending = append(j.pending, w)
	if !j.running && !j.stopping {
		j.running = true
		j.retrying.Add(1)
		go j.retry()
	}
}

// replayFor returns the result a pending completion of claim key holds,
// and when its call was made, if there is one.
func (j *journal) replayFor(key string) (*Result, time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, w := range j.pending {
		if w.completion != nil && w.completion.ClaimKey == key && w.replay != nil {
			return w.replay, w.record.Time
		}
	}
	return nil, time.Time{}
}

// retry lands pending writes, with backoff, until none is left or the
// journal is closed.
func (j *journal) retry() {
	defer j.retrying.Done()
	wait := retryFirst
	for {
		select {
		case <-j.stop:
			return
		case <-time.After(wait):
		}
		j.flush(context.Background())
		j.mu.Lock()
		if len(j.pending) == 0 {
			j.running = false
			j.mu.Unlock()
			return
		}
		j.mu.Unlock()
		wait = min(2*wait, retryMax)
	}
}

// flush tries every pending write once and returns how many are left. Only
// one goroutine flushes at a time: the retry goroutine, or close once that
// has stopped.
func (j *journal) flush(ctx context.Context) int {
	j.mu.Lock()
	todo := append([]*pendingWrite(nil), j.pending...)
	j.mu.Unlock()
	for _, w := range todo {
		err := j.write(ctx, w)
		j.mu.Lock()
		w.attempts++
		if err == nil {
			for i, p := range j.pending {
				if p == w {
					j.pending = append(j.pending[:i], j.pending[i+1:]...)
					break
				}
			}
			j.log.Info("journal write landed after retrying", "call", w.record.Call, "attempts", w.attempts)
		} else if w.attempts%20 == 0 {
			j.log.Warn("journal write still failing", "call", w.record.Call, "attempts", w.attempts, "err", err)
		}
		j.mu.Unlock()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// close stops the retries, then tries until ctx is done to land what is
// pending (at least once, whatever ctx). Writes that never landed are
// logged in full and reported.
func (j *journal) close(ctx context.Context) error {
	j.mu.Lock()
	if j.stopping {
		j.mu.Unlock()
		return nil
	}
	j.stopping = true
	close(j.stop)
	j.mu.Unlock()
	j.retrying.Wait() // one flusher at a time
	// One attempt even when ctx is already done (a drain used it up), bounded
	// on its own.
	last, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalAttempt)
	left := j.flush(last)
	cancel()
	for left > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-time.After(retryFirst):
		}
		left = j.flush(ctx)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	lost := j.pending
	j.pending = nil
	for _, w := range lost {
		j.lost(w, ctx.Err())
	}
	if len(lost) > 0 {
		return ErrClosed
	}
	return nil
}

// lost logs a write that will never land, with what it held, so that the
// operator has it: the intent stays open in the store and is resolved as
// unknown by the next server, and this line says what really happened.
func (j *journal) lost(w *pendingWrite, err error) {
	r := w.record
	j.log.Error("journal write lost: record it by hand", "call", r.Call, "tool", r.Tool, "caller", r.Caller,
		"decision", r.Decision, "session_id", r.SessionID, "amount", r.Amount+" "+r.Currency, "err", err)
}
