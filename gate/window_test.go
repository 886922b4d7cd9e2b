package gate

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// The duplicate guard answers an identical call for a whole window after
// the first call's outcome is on record, however long the call took or
// however late a restart resolved it (found by a fault-injection review:
// both tests fail when a finished claim keeps the end of the window its
// call began).

// A server dies with a call at Clink and starts again a quarter of an hour
// later, past the 10-minute window: Recover resolves the call as
// outcome_unknown, and an identical retry gets that outcome, not a second
// session.
func TestARetryAfterALateRecoveryIsReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	st1, err := state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	g1 := New(Config{Policy: parsePolicy(t), Store: st1, Secret: testSecret, Account: "acct", Clock: clock,
		Logger: slog.New(slog.DiscardHandler)})
	fake1 := &clinkFake{release: make(chan struct{}), started: make(chan struct{}, 1)}
	done := make(chan *Result, 1)
	go func() { done <- g1.Create(context.Background(), "", fake1.order(t, "100", "a@example.com")) }()
	<-fake1.started
	st1.Close() // the process dies with its call at Clink

	mu.Lock()
	now = now.Add(15 * time.Minute) // restarted a quarter of an hour later
	mu.Unlock()
	st2, err := state.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	g2 := New(Config{Policy: parsePolicy(t), Store: st2, Secret: testSecret, Account: "acct", Clock: clock,
		Logger: slog.New(slog.DiscardHandler)})
	defer g2.Close(context.Background())
	if _, err := g2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	fake2 := &clinkFake{}
	res := g2.Create(context.Background(), "", fake2.order(t, "100", "a@example.com"))

	close(fake1.release)
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	g1.Close(ctx)

	if fake2.calls.Load() != 0 || res.Code != policy.CodeReplayed || !strings.Contains(res.Text, "outcome unknown") {
		t.Fatalf("identical retry after the recovered unknown outcome = %s %q after %d Clink calls; want the unknown outcome replayed and no call",
			res.Code, res.SessionID, fake2.calls.Load())
	}
}

// A live call whose Clink answer (here an unknown outcome) comes after the
// duplicate window has run from the call's start: its claim is finished
// already expired, and the identical retry made right after the answer is
// sent to Clink again.
// A Clink call that ends in an unknown outcome after more than the
// window: the identical retry made at once is replayed, not sent.
func TestAnUnknownOutcomeSlowerThanTheWindowIsReplayed(t *testing.T) {
	p, err := policy.Parse("w.yaml", []byte(`
version: 1
currencies:
  USD: { max_amount: 500 }
duplicates: { window: 2s }
`))
	if err != nil {
		t.Fatal(err)
	}
	st := memory(t)
	g := New(Config{Policy: p, Store: st, Secret: testSecret, Account: "acct", Logger: slog.New(slog.DiscardHandler)})
	defer g.Close(context.Background())
	fake := &clinkFake{}
	o := fake.order(t, "10", "a@example.com")
	o.Commit = func(ctx context.Context) (*Created, error) {
		fake.calls.Add(1)
		time.Sleep(2500 * time.Millisecond) // a Clink that times out (the client's default timeout is 30s)
		return nil, clinkUnknown()
	}
	first := g.Create(context.Background(), "", o)
	if first.Code != policy.CodeOutcomeUnknown {
		t.Fatalf("first = %+v", first)
	}
	again := g.Create(context.Background(), "", fake.order(t, "10", "a@example.com"))
	if fake.calls.Load() != 1 {
		t.Fatalf("the identical retry made right after the unknown outcome was sent to Clink (%d calls): %s %s", fake.calls.Load(), again.Code, again.SessionID)
	}
}

func clinkUnknown() error { return fmt.Errorf("%w: timeout", clink.ErrOutcomeUnknown) }
