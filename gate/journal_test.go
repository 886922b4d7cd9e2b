package gate

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// cancelAfterHold cancels the caller's context as soon as a hold returns.
type cancelAfterHold struct {
	state.Store
	cancel context.CancelFunc
}

func (s *cancelAfterHold) Hold(ctx context.Context, h *state.Hold) (*state.Held, error) {
	held, err := s.Store.Hold(ctx, h)
	s.cancel()
	return held, err
}

// TestACancellationAfterTheHoldStillSettlesIt: a caller that cancels
// once its call is held gets the call run to its end, never a hold left
// in flight.
func TestACancellationAfterTheHoldStillSettlesIt(t *testing.T) {
	m := memory(t)
	ctx, cancel := context.WithCancel(context.Background())
	st := &cancelAfterHold{Store: m, cancel: cancel}
	f := newFixture(t, st, "acct")
	o := f.fake.order(t, "10", "a@example.com")
	o.IdempotencyKey = "key-123456"
	res := f.g.Create(ctx, "", o)
	intents, _ := m.Intents(context.Background())
	if res.Code != policy.CodeCreated {
		t.Errorf("result %s, want the held call created", res.Code)
	}
	st.cancel = func() {}
	cctx, c2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer c2()
	if again := f.g.Create(cctx, "", o); !again.Replayed {
		t.Errorf("identical retry = %s, want a replay", again.Code)
	}
	if len(intents) > 0 {
		t.Errorf("a call answered %q left an open intent in a live process", res.Code)
	}
}

// slowFlaky fails its first Completes, then lands them slowly, counting
// those that landed.
type slowFlaky struct {
	state.Store
	fail, landed atomic.Int64
}

func (s *slowFlaky) Complete(ctx context.Context, c *state.Completion) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("database is locked")
	}
	time.Sleep(30 * time.Millisecond) // a slow write, so that two flushers overlap
	if err := s.Store.Complete(ctx, c); err != nil {
		return err
	}
	s.landed.Add(1)
	return nil
}

// TestCloseNeverWritesACompletionTwice: Close and the retry goroutine
// never flush the same pending write at once.
func TestCloseNeverWritesACompletionTwice(t *testing.T) {
	dups := 0
	for i := 0; i < 20; i++ {
		m := state.NewMemory()
		st := &slowFlaky{Store: m}
		st.fail.Store(1)
		f := newFixture(t, st, "acct")
		if res := f.g.Create(context.Background(), "", f.fake.order(t, "10", "a@example.com")); res.Code != policy.CodeCreated {
			t.Fatal(res)
		}
		time.Sleep(time.Duration(40+i) * time.Millisecond)
		f.g.Close(context.Background())
		if st.landed.Load() > 1 {
			dups++
		}
	}
	if dups > 0 {
		t.Errorf("%d of 20 runs wrote the same completion twice", dups)
	}
}

// TestAReplayThatCannotBeSealedKeepsTheClaim: a created session whose
// structured content cannot be stored still answers identical calls.
func TestAReplayThatCannotBeSealedKeepsTheClaim(t *testing.T) {
	f := newFixture(t, memory(t), "acct")
	mk := func() *Order {
		o := f.fake.order(t, "10", "a@example.com")
		inner := o.Commit
		o.Commit = func(ctx context.Context) (*Created, error) {
			c, err := inner(ctx)
			if c != nil {
				c.Structured = []byte("sess not json")
			}
			return c, err
		}
		return o
	}
	r1 := f.g.Create(context.Background(), "", mk())
	r2 := f.g.Create(context.Background(), "", mk())
	if r1.Code != policy.CodeCreated || !r2.Replayed || r2.SessionID != r1.SessionID || f.fake.calls.Load() > 1 {
		t.Errorf("first %s %s, identical retry %s %s after %d commits", r1.Code, r1.SessionID, r2.Code, r2.SessionID, f.fake.calls.Load())
		t.Errorf("a created session's claim was dropped: the identical retry created a second session")
	}
}
