package statetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// forEach runs fn with a function that opens a handle on a fresh state.
func forEach(t *testing.T, f Factory, fn func(t *testing.T, open func(testing.TB) state.Store)) {
	fn(t, func(tb testing.TB) state.Store { return f(tb)() })
}

// day is 23:59 on the first day of the rolling-window examples.
var day = time.Date(2025, 3, 1, 23, 59, 0, 0, time.UTC)

func budget(key string, window time.Duration, maxAmount, add int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindBudget, Window: window, Max: maxAmount, Add: add}
}

func rate(key string, window time.Duration, maxCalls int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindRate, Window: window, Max: maxCalls, Add: 1}
}

// step is one Reserve and what it should answer.
type step struct {
	at     time.Time
	limits []policy.Limit
	want   *policy.Denied // nil: the call fits
}

func runSteps(t *testing.T, s state.Store, steps []step) {
	t.Helper()
	ctx := context.Background()
	for i, st := range steps {
		id, err := s.Reserve(ctx, st.at, st.limits)
		if st.want == nil {
			if err != nil {
				t.Fatalf("step %d at %v: Reserve: %v, want it to fit", i, st.at, err)
			}
			if id == "" {
				t.Fatalf("step %d: Reserve returned an empty ID", i)
			}
			continue
		}
		var d *policy.Denied
		if !errors.As(err, &d) {
			t.Fatalf("step %d at %v: Reserve = %q, %v; want a denial", i, st.at, id, err)
		}
		if diff := cmp.Diff(st.want, d); diff != "" {
			t.Fatalf("step %d at %v: denial (-want +got):\n%s", i, st.at, diff)
		}
	}
}

func testReserveRollingWindows(t *testing.T, f Factory) {
	const w24h = 24 * time.Hour
	b24 := func(add int64) []policy.Limit { return []policy.Limit{budget("budget|*|USD|24h|", w24h, 2000, add)} }
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "spends at 23:59 and 00:01 are still bounded by one 24h budget",
			steps: []step{
				{at: day, limits: b24(1500)},
				{at: day.Add(2 * time.Minute), limits: b24(600),
					want: &policy.Denied{Limit: 0, Used: 1500, RetryAt: day.Add(w24h)}},
				{at: day.Add(2 * time.Minute), limits: b24(500)},
				{at: day.Add(2 * time.Minute), limits: b24(1),
					want: &policy.Denied{Limit: 0, Used: 2000, RetryAt: day.Add(w24h)}},
				{at: day.Add(w24h - time.Nanosecond), limits: b24(1),
					want: &policy.Denied{Limit: 0, Used: 2000, RetryAt: day.Add(w24h)}},
				{at: day.Add(w24h), limits: b24(1500)},
				{at: day.Add(w24h), limits: b24(1),
					want: &policy.Denied{Limit: 0, Used: 2000, RetryAt: day.Add(2*time.Minute + w24h)}},
			},
		},
		{
			name: "capacity returns exactly when the window passes and not a nanosecond before",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 10)}},
				{at: day.Add(time.Minute - time.Nanosecond), limits: []policy.Limit{budget("b", time.Minute, 10, 1)},
					want: &policy.Denied{Limit: 0, Used: 10, RetryAt: day.Add(time.Minute)}},
				{at: day.Add(time.Minute), limits: []policy.Limit{budget("b", time.Minute, 10, 10)}},
			},
		},
		{
			name: "RetryAt waits for as many of the oldest entries as the call needs",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 3)}},
				{at: day.Add(10 * time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 3)}},
				{at: day.Add(20 * time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 3)}},
				{at: day.Add(30 * time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 5)},
					want: &policy.Denied{Limit: 0, Used: 9, RetryAt: day.Add(10*time.Second + time.Minute)}},
				{at: day.Add(69 * time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 5)},
					want: &policy.Denied{Limit: 0, Used: 6, RetryAt: day.Add(10*time.Second + time.Minute)}},
				{at: day.Add(10*time.Second + time.Minute), limits: []policy.Limit{budget("b", time.Minute, 10, 5)}},
			},
		},
		{
			name: "entries recorded at the same instant leave the window together",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 5)}},
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 5)}},
				{at: day.Add(time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 1)},
					want: &policy.Denied{Limit: 0, Used: 10, RetryAt: day.Add(time.Minute)}},
			},
		},
		{
			name: "a call larger than the maximum never fits and has no retry time",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Hour, 10, 11)},
					want: &policy.Denied{Limit: 0, Used: 0}},
				{at: day, limits: []policy.Limit{budget("b", time.Hour, 10, 10)}},
				{at: day, limits: []policy.Limit{budget("b", time.Hour, 10, 11)},
					want: &policy.Denied{Limit: 0, Used: 10}},
			},
		},
		{
			name: "a denial names the first limit exceeded and records nothing against the others",
			steps: []step{
				{at: day, limits: []policy.Limit{rate("r", time.Minute, 2)}},
				{at: day, limits: []policy.Limit{rate("r", time.Minute, 2)}},
				{at: day.Add(time.Second), limits: []policy.Limit{budget("b", time.Hour, 100, 60), rate("r", time.Minute, 2)},
					want: &policy.Denied{Limit: 1, Used: 2, RetryAt: day.Add(time.Minute)}},
				{at: day.Add(time.Second), limits: []policy.Limit{budget("b", time.Hour, 100, 100)}},
			},
		},
		{
			name: "counters with different keys do not share capacity",
			steps: []step{
				{at: day, limits: []policy.Limit{rate("rate|cust:a", time.Minute, 1)}},
				{at: day, limits: []policy.Limit{rate("rate|cust:b", time.Minute, 1)}},
				{at: day, limits: []policy.Limit{rate("rate|cust:a", time.Minute, 1)},
					want: &policy.Denied{Limit: 0, Used: 1, RetryAt: day.Add(time.Minute)}},
			},
		},
		{
			name: "a call stamped before recorded entries still counts them",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 10)}},
				{at: day.Add(-time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 1)},
					want: &policy.Denied{Limit: 0, Used: 10, RetryAt: day.Add(time.Minute)}},
			},
		},
		{
			name: "entries long past their window are pruned without changing the counts",
			steps: []step{
				{at: day, limits: []policy.Limit{budget("b", time.Minute, 10, 4)}},
				{at: day.Add(time.Hour), limits: []policy.Limit{budget("b", time.Minute, 10, 10)}},
				{at: day.Add(time.Hour + time.Second), limits: []policy.Limit{budget("b", time.Minute, 10, 1)},
					want: &policy.Denied{Limit: 0, Used: 10, RetryAt: day.Add(time.Hour + time.Minute)}},
			},
		},
	}
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { runSteps(t, open(t), tt.steps) })
		}
	})
}

func testReserveRefusesBadInput(t *testing.T, f Factory) {
	tests := []struct {
		name   string
		at     time.Time
		limits []policy.Limit
		want   string
	}{
		{"an empty key is refused", day, []policy.Limit{{Kind: policy.KindRate, Window: time.Minute, Max: 1, Add: 1}}, "empty key"},
		{"an unknown kind is refused", day, []policy.Limit{{Key: "k", Window: time.Minute, Max: 1, Add: 1}}, "unknown kind"},
		{"a zero window is refused", day, []policy.Limit{{Key: "k", Kind: policy.KindRate, Max: 1, Add: 1}}, "non-positive window"},
		{"a negative add is refused", day, []policy.Limit{{Key: "k", Kind: policy.KindBudget, Window: time.Minute, Max: 1, Add: -1}}, "negative"},
		{"a key given twice is refused", day, []policy.Limit{rate("k", time.Minute, 5), rate("k", time.Minute, 5)}, "repeats the key"},
		{"a zero time is refused", time.Time{}, []policy.Limit{rate("k", time.Minute, 5)}, "out of range"},
	}
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		s := open(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Reserve(context.Background(), tt.at, tt.limits)
				var d *policy.Denied
				if err == nil || errors.As(err, &d) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Reserve = %v, want an error containing %q", err, tt.want)
				}
			})
		}
	})
}

func testSettle(t *testing.T, f Factory) {
	ctx := context.Background()
	call := []policy.Limit{budget("b", time.Hour, 100, 100), rate("r", time.Hour, 1)}
	tests := []struct {
		name     string
		outcomes []policy.Settlement
		// after settling, whether a budget-only and a rate-only call fit
		budgetFits, rateFits bool
	}{
		{"a released call frees its budget but not its rate", []policy.Settlement{policy.Released}, true, false},
		{"a spent call keeps its budget", []policy.Settlement{policy.Spent}, false, false},
		{"a call of unknown outcome keeps its budget", []policy.Settlement{policy.Unknown}, false, false},
		{"settling twice keeps the first outcome, spent", []policy.Settlement{policy.Spent, policy.Released}, false, false},
		{"settling twice keeps the first outcome, released", []policy.Settlement{policy.Released, policy.Spent}, true, false},
		{"settling twice keeps the first outcome, unknown", []policy.Settlement{policy.Unknown, policy.Released}, false, false},
	}
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := open(t)
				id, err := s.Reserve(ctx, day, call)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range tt.outcomes {
					if err := s.Settle(ctx, id, o); err != nil {
						t.Fatalf("Settle(%d): %v", o, err)
					}
				}
				later := day.Add(time.Minute)
				_, err = s.Reserve(ctx, later, call[:1])
				if got := err == nil; got != tt.budgetFits {
					t.Errorf("budget call fits = %v (%v), want %v", got, err, tt.budgetFits)
				}
				_, err = s.Reserve(ctx, later, call[1:])
				if got := err == nil; got != tt.rateFits {
					t.Errorf("rate call fits = %v (%v), want %v", got, err, tt.rateFits)
				}
			})
		}
		t.Run("settling an unknown reservation is state.ErrNotFound", func(t *testing.T) {
			if err := open(t).Settle(ctx, "0123456789abcdef", policy.Spent); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("Settle = %v, want state.ErrNotFound", err)
			}
		})
		t.Run("an unknown outcome is refused", func(t *testing.T) {
			s := open(t)
			id, err := s.Reserve(ctx, day, call)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Settle(ctx, id, policy.Settlement(9)); err == nil || errors.Is(err, state.ErrNotFound) {
				t.Fatalf("Settle = %v, want an invalid-outcome error", err)
			}
			if err := s.Settle(ctx, id, policy.Released); err != nil {
				t.Fatalf("Settle after a refused outcome: %v", err)
			}
		})
		t.Run("a reservation can be settled long after its window", func(t *testing.T) {
			s := open(t)
			id, err := s.Reserve(ctx, day, []policy.Limit{rate("r", time.Minute, 5)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Reserve(ctx, day.Add(30*time.Minute), []policy.Limit{rate("r", time.Minute, 5)}); err != nil {
				t.Fatal(err)
			}
			if err := s.Settle(ctx, id, policy.Spent); err != nil {
				t.Fatalf("Settle = %v", err)
			}
		})
		t.Run("each reservation gets its own ID", func(t *testing.T) {
			s := open(t)
			a, errA := s.Reserve(ctx, day, nil)
			b, errB := s.Reserve(ctx, day, nil)
			if errA != nil || errB != nil || a == b {
				t.Fatalf("Reserve = %q, %v and %q, %v; want two distinct IDs", a, errA, b, errB)
			}
			if err := s.Settle(ctx, a, policy.Spent); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func testClaim(t *testing.T, f Factory) {
	ctx := context.Background()
	const window = 10 * time.Minute
	claim := func(at time.Time, fingerprint string) state.Claim {
		return state.Claim{Key: "create_checkout_session|k1", Fingerprint: fingerprint, At: at, Window: window}
	}
	// op is one call on the store and what it should answer.
	type op struct {
		claim  *state.Claim
		want   state.Prior
		finish []byte // Finish with this result instead of claiming
		drop   bool   // Drop instead of claiming
	}
	fin := func(result string) op { return op{finish: []byte(result)} }
	clm := func(c state.Claim, want state.Prior) op { return op{claim: &c, want: want} }
	tests := []struct {
		name string
		ops  []op
	}{
		{"the first call gets a new claim", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
		}},
		{"an identical call while the first is in flight is told so", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			clm(claim(day.Add(time.Second), "f1"), state.Prior{State: state.ClaimInFlight}),
		}},
		{"an identical call after the first finished gets its result", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			fin(`{"session":"s_1"}`),
			clm(claim(day.Add(time.Second), "f1"), state.Prior{State: state.ClaimDone, Result: []byte(`{"session":"s_1"}`)}),
		}},
		{"the same key with other arguments is a conflict, in flight or done", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			clm(claim(day, "f2"), state.Prior{State: state.ClaimConflict}),
			fin("r"),
			clm(claim(day.Add(time.Second), "f2"), state.Prior{State: state.ClaimConflict}),
		}},
		{"a claim is live until exactly its window has passed", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			fin("r"),
			clm(claim(day.Add(window-time.Nanosecond), "f1"), state.Prior{State: state.ClaimDone, Result: []byte("r")}),
			clm(claim(day.Add(window), "f2"), state.Prior{State: state.ClaimNew}),
			clm(claim(day.Add(window), "f1"), state.Prior{State: state.ClaimConflict}),
		}},
		{"an expired claim left in flight is replaced", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			clm(claim(day.Add(time.Hour), "f1"), state.Prior{State: state.ClaimNew}),
			clm(claim(day.Add(time.Hour), "f1"), state.Prior{State: state.ClaimInFlight}),
		}},
		{"a claim in flight holds its key past a short window until the lease ends", []op{
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day, Window: 30 * time.Second}, state.Prior{State: state.ClaimNew}),
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day.Add(time.Minute), Window: 30 * time.Second}, state.Prior{State: state.ClaimInFlight}),
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day.Add(state.InFlightLease - time.Nanosecond), Window: 30 * time.Second}, state.Prior{State: state.ClaimInFlight}),
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day.Add(state.InFlightLease), Window: 30 * time.Second}, state.Prior{State: state.ClaimNew}),
		}},
		{"a finished claim with a short window ends with its window, not the lease", []op{
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day, Window: 30 * time.Second}, state.Prior{State: state.ClaimNew}),
			fin("r"),
			clm(state.Claim{Key: claim(day, "").Key, Fingerprint: "f1", At: day.Add(30 * time.Second), Window: 30 * time.Second}, state.Prior{State: state.ClaimNew}),
		}},
		{"a dropped claim can be taken again", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			{drop: true},
			clm(claim(day.Add(time.Second), "f1"), state.Prior{State: state.ClaimNew}),
		}},
		{"an empty result replays as nil", []op{
			clm(claim(day, "f1"), state.Prior{State: state.ClaimNew}),
			fin(""),
			clm(claim(day, "f1"), state.Prior{State: state.ClaimDone}),
		}},
	}
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := open(t)
				for i, o := range tt.ops {
					switch {
					case o.claim != nil:
						// LookClaim foretells the answer and takes nothing:
						// the claim that follows still answers as told.
						look, err := s.LookClaim(ctx, *o.claim)
						if err != nil {
							t.Fatalf("op %d: LookClaim: %v", i, err)
						}
						if diff := cmp.Diff(o.want, look); diff != "" {
							t.Fatalf("op %d: LookClaim (-want +got):\n%s", i, diff)
						}
						got, err := s.Claim(ctx, *o.claim)
						if err != nil {
							t.Fatalf("op %d: state.Claim: %v", i, err)
						}
						if diff := cmp.Diff(o.want, got); diff != "" {
							t.Fatalf("op %d: state.Claim (-want +got):\n%s", i, diff)
						}
					case o.drop:
						if err := s.Drop(ctx, claim(day, "").Key); err != nil {
							t.Fatalf("op %d: Drop: %v", i, err)
						}
					default:
						if err := s.Finish(ctx, claim(day, "").Key, o.finish); err != nil {
							t.Fatalf("op %d: Finish: %v", i, err)
						}
					}
				}
			})
		}
		t.Run("LookClaim judges by the clock Claim judges by", func(t *testing.T) {
			// Another handle behind (it published day): a claim whose
			// window has passed by this handle's clock still holds to both.
			open := f(t)
			a, b := open(), open()
			if _, err := b.Clock(ctx, day); err != nil {
				t.Fatal(err)
			}
			c := claim(day, "f1")
			if _, err := a.Claim(ctx, c); err != nil {
				t.Fatal(err)
			}
			if err := a.Finish(ctx, c.Key, []byte("r")); err != nil {
				t.Fatal(err)
			}
			c.At = day.Add(window)
			look, err := a.LookClaim(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Claim(ctx, c)
			if err != nil || got.State != state.ClaimDone || cmp.Diff(got, look) != "" {
				t.Fatalf("LookClaim = %+v, then Claim = %+v, %v; want both the finished claim", look, got, err)
			}
		})
		t.Run("finishing or dropping an unknown key is state.ErrNotFound", func(t *testing.T) {
			s := open(t)
			if err := s.Finish(ctx, "nope", []byte("r")); !errors.Is(err, state.ErrNotFound) {
				t.Errorf("Finish = %v, want state.ErrNotFound", err)
			}
			if err := s.Drop(ctx, "nope"); !errors.Is(err, state.ErrNotFound) {
				t.Errorf("Drop = %v, want state.ErrNotFound", err)
			}
		})
		t.Run("a claim without a window is refused", func(t *testing.T) {
			if _, err := open(t).Claim(ctx, state.Claim{Key: "k", Fingerprint: "f", At: day}); err == nil {
				t.Fatal("state.Claim succeeded, want an error")
			}
		})
		t.Run("the stored result is a copy", func(t *testing.T) {
			s := open(t)
			c := claim(day, "f1")
			if _, err := s.Claim(ctx, c); err != nil {
				t.Fatal(err)
			}
			res := []byte("abc")
			if err := s.Finish(ctx, c.Key, res); err != nil {
				t.Fatal(err)
			}
			res[0] = 'X'
			got, err := s.Claim(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			got.Result[1] = 'Y'
			again, err := s.Claim(ctx, c)
			if err != nil || string(again.Result) != "abc" {
				t.Fatalf("state.Claim = %q, %v; want the result as stored, abc", again.Result, err)
			}
		})
	})
}

// hammerReserve makes calls concurrent Reserve(Add=7) calls against a
// budget of 1000 spread over handles, and checks exactly 142 fit.
func hammerReserve(t *testing.T, handles []state.Store, calls int) {
	t.Helper()
	const maxAmount, add = 1000, 7
	ctx := context.Background()
	limits := []policy.Limit{budget("budget|*|USD|24h|", 24*time.Hour, maxAmount, add)}
	var (
		wg              sync.WaitGroup
		granted, denied atomic.Int64
		failures        = make(chan error, calls)
	)
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			_, err := handles[i%len(handles)].Reserve(ctx, day.Add(time.Duration(i)*time.Millisecond), limits)
			var d *policy.Denied
			switch {
			case err == nil:
				granted.Add(add)
			case errors.As(err, &d):
				denied.Add(1)
				if d.Used+add <= maxAmount {
					failures <- fmt.Errorf("denied while %d+%d fits in %d", d.Used, add, maxAmount)
				}
			default:
				failures <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if got, want := granted.Load(), int64(maxAmount/add*add); got != want {
		t.Errorf("granted %d in total, want %d (%d calls)", got, want, maxAmount/add)
	}
	if got, want := denied.Load(), int64(calls-maxAmount/add); got != want {
		t.Errorf("%d calls denied, want %d", got, want)
	}
	// The remaining 6 fit exactly, and then nothing more.
	rest := []policy.Limit{budget(limits[0].Key, 24*time.Hour, maxAmount, maxAmount-maxAmount/add*add)}
	if _, err := handles[0].Reserve(ctx, day.Add(time.Hour), rest); err != nil {
		t.Errorf("the remaining %d do not fit: %v", rest[0].Add, err)
	}
	rest[0].Add = 1
	var d *policy.Denied
	if _, err := handles[len(handles)-1].Reserve(ctx, day.Add(time.Hour), rest); !errors.As(err, &d) || d.Used != maxAmount {
		t.Errorf("Reserve past the full budget = %v, want a denial with Used %d", err, maxAmount)
	}
}

func testConcurrentReserveNeverExceedsTheBudget(t *testing.T, f Factory) {
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		hammerReserve(t, []state.Store{open(t)}, 300)
	})
}

// hammerClaim makes calls concurrent identical claims and checks that
// exactly one is new.
func hammerClaim(t *testing.T, handles []state.Store, calls int) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		states   = make([]atomic.Int64, state.ClaimConflict+1)
		failures = make(chan error, calls)
	)
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			p, err := handles[i%len(handles)].Claim(context.Background(),
				state.Claim{Key: "tool|idem-1", Fingerprint: "f", At: day.Add(time.Duration(i) * time.Millisecond), Window: time.Hour})
			if err != nil {
				failures <- err
				return
			}
			states[p.State].Add(1)
		})
	}
	close(start)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if n, m := states[state.ClaimNew].Load(), states[state.ClaimInFlight].Load(); n != 1 || m != int64(calls-1) {
		t.Errorf("%d new and %d in-flight answers, want 1 and %d", n, m, calls-1)
	}
}

func testConcurrentIdenticalClaimsMakeOneNewClaim(t *testing.T, f Factory) {
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		hammerClaim(t, []state.Store{open(t)}, 50)
	})
}

// sampleRecords returns n audit records as a caller would fill them.
func sampleRecords(n int) []state.AuditRecord {
	decisions := []string{"created", "amount_over_cap", "replayed", "upstream_refused", "outcome_unknown"}
	recs := make([]state.AuditRecord, n)
	for i := range recs {
		recs[i] = state.AuditRecord{
			Time:     day.Add(time.Duration(i)*time.Second + 123456789).In(time.FixedZone("CET", 3600)),
			Tool:     "create_checkout_session",
			Decision: decisions[i%len(decisions)],
			Duration: time.Duration(i+1) * 1500 * time.Microsecond,
		}
		if i%2 == 0 {
			recs[i].Amount, recs[i].Currency = fmt.Sprintf("%d.99", i+10), "USD"
			recs[i].EmailMasked, recs[i].EmailHash = "a***@example.com", "4f2a9c"
			recs[i].SessionID = fmt.Sprintf("sess_%d", i)
		}
	}
	return recs
}

// appendAll appends recs to s, filling in what AppendAudit assigns.
func appendAll(t testing.TB, s state.Store, recs []state.AuditRecord) {
	t.Helper()
	for i := range recs {
		if err := s.AppendAudit(context.Background(), &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func scanAll(t testing.TB, s state.Store) []state.AuditRecord {
	t.Helper()
	var got []state.AuditRecord
	err := s.ScanAudit(context.Background(), func(r *state.AuditRecord) error {
		got = append(got, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func testAuditTrail(t *testing.T, f Factory) {
	ctx := context.Background()
	forEach(t, f, func(t *testing.T, open func(testing.TB) state.Store) {
		t.Run("an empty trail verifies with no records", func(t *testing.T) {
			s := open(t)
			seq, hash, err := s.AuditHead(ctx)
			if err != nil || seq != 0 || hash != "" {
				t.Fatalf("AuditHead = %d, %q, %v; want 0, \"\"", seq, hash, err)
			}
			rep, err := state.VerifyAudit(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&state.AuditReport{}, rep); diff != "" {
				t.Fatalf("state.VerifyAudit (-want +got):\n%s", diff)
			}
		})
		t.Run("appended records are chained, stored exactly and verify", func(t *testing.T) {
			s := open(t)
			recs := sampleRecords(7)
			appendAll(t, s, recs)
			prev := ""
			for i, r := range recs {
				if r.Seq != int64(i+1) || r.PrevHash != prev || r.Hash != r.ComputeHash() || r.Time.Location() != time.UTC {
					t.Fatalf("record %d after AppendAudit: %+v", i+1, r)
				}
				prev = r.Hash
			}
			if diff := cmp.Diff(recs, scanAll(t, s)); diff != "" {
				t.Fatalf("ScanAudit (-appended +scanned):\n%s", diff)
			}
			seq, hash, err := s.AuditHead(ctx)
			if err != nil || seq != 7 || hash != recs[6].Hash {
				t.Fatalf("AuditHead = %d, %q, %v; want 7, %q", seq, hash, err, recs[6].Hash)
			}
			rep, err := state.VerifyAudit(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&state.AuditReport{Records: 7}, rep); diff != "" || !rep.OK() {
				t.Fatalf("state.VerifyAudit (-want +got):\n%s", diff)
			}
		})
		t.Run("export writes one JSON line per record that decodes back to it", func(t *testing.T) {
			s := open(t)
			recs := sampleRecords(5)
			appendAll(t, s, recs)
			var buf bytes.Buffer
			n, err := state.ExportAudit(ctx, s, &buf)
			if err != nil || n != 5 {
				t.Fatalf("state.ExportAudit = %d, %v; want 5", n, err)
			}
			var got []state.AuditRecord
			sc := bufio.NewScanner(&buf)
			for sc.Scan() {
				var r state.AuditRecord
				dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, r)
			}
			if diff := cmp.Diff(recs, got); diff != "" {
				t.Fatalf("exported records (-appended +decoded):\n%s", diff)
			}
		})
		t.Run("a scan stops at the first error of its callback", func(t *testing.T) {
			s := open(t)
			appendAll(t, s, sampleRecords(3))
			stop := errors.New("stop")
			calls := 0
			err := s.ScanAudit(ctx, func(*state.AuditRecord) error { calls++; return stop })
			if !errors.Is(err, stop) || calls != 1 {
				t.Fatalf("ScanAudit = %v after %d calls, want stop after 1", err, calls)
			}
		})
		t.Run("concurrent appends keep one unbroken chain", func(t *testing.T) {
			s := open(t)
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Go(func() {
					r := state.AuditRecord{Time: day, Tool: "t", Decision: fmt.Sprint(i)}
					if err := s.AppendAudit(ctx, &r); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			rep, err := state.VerifyAudit(ctx, s)
			if err != nil || !rep.OK() || rep.Records != 40 {
				t.Fatalf("state.VerifyAudit = %+v, %v; want 40 records, intact", rep, err)
			}
		})
	})
}
