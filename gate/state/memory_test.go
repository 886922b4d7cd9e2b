package state

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/policy"
)

// memSizes is how much a Memory holds, map by map and slice by slice.
type memSizes struct {
	Counters, Entries, Buckets, Reservations, Claims, Intents, Owners int
	Audit, Sessions                                                   int
	Approvals, ApprovalList, Latest, LiveApprovals                    int
}

func (m *Memory) sizes() memSizes {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := memSizes{
		Counters: len(m.counters), Reservations: len(m.reservations), Claims: len(m.claims),
		Intents: len(m.intents), Owners: len(m.owners), Audit: len(m.audit), Sessions: len(m.sessions),
		Approvals: len(m.approvals), ApprovalList: len(m.approvalList), Latest: len(m.latest),
		LiveApprovals: len(m.liveApprovals),
	}
	for _, c := range m.counters {
		s.Entries += len(c.entries)
		s.Buckets += len(c.buckets)
	}
	return s
}

// within returns an error naming the first size of s over its bound.
func (s memSizes) within(bound memSizes) error {
	got := []int{s.Counters, s.Entries, s.Buckets, s.Reservations, s.Claims, s.Intents, s.Owners, s.Audit, s.Sessions,
		s.Approvals, s.ApprovalList, s.Latest, s.LiveApprovals}
	limit := []int{bound.Counters, bound.Entries, bound.Buckets, bound.Reservations, bound.Claims, bound.Intents, bound.Owners, bound.Audit, bound.Sessions,
		bound.Approvals, bound.ApprovalList, bound.Latest, bound.LiveApprovals}
	names := []string{"counters", "entries", "buckets", "reservations", "claims", "intents", "owners", "audit", "sessions",
		"approvals", "approvalList", "latest", "liveApprovals"}
	for i := range got {
		if got[i] > limit[i] {
			return fmt.Errorf("%s holds %d, over its bound %d", names[i], got[i], limit[i])
		}
	}
	return nil
}

// consistent returns an error naming the first of m's running accounts
// that disagrees with what it sums up: a counter's total with its buckets
// and entries, the finished claims linked with those kept.
func (m *Memory) consistent() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, c := range m.counters {
		var sum int64
		for k, b := range c.buckets {
			sum += b.amount
			if b.dead || b.last < b.start || b.last >= b.end || k > 0 && b.start < c.buckets[k-1].end {
				return fmt.Errorf("counter %s: bucket %d is %+v after %+v", key, k, *b, c.buckets[max(k-1, 0)])
			}
		}
		for _, e := range c.entries {
			sum += e.amount
		}
		if sum != c.total {
			return fmt.Errorf("counter %s: total %d, but its buckets and entries hold %d", key, c.total, sum)
		}
	}
	linked := 0
	for cl := m.finishedHead; cl != nil; cl = cl.next {
		if linked++; !cl.done || m.claims[cl.key] != cl {
			return fmt.Errorf("claim %s is linked as finished but is not a finished claim kept", cl.key)
		}
	}
	done := 0
	for _, cl := range m.claims {
		if cl.done {
			done++
		}
	}
	if linked != m.finished || done != m.finished {
		return fmt.Errorf("%d finished claims counted, %d linked, %d kept", m.finished, linked, done)
	}
	return nil
}

// TestMemoryStaysBounded runs 200,000 created calls through a Memory with
// its default bounds, every tenth refused by Clink and released, with an
// approval requested and denied every twentieth: whatever it has served,
// what it holds stays under fixed bounds, its counters count exactly what
// was reserved and not released, and the trail it keeps still verifies.
// It does so twice: with the calls 600ms apart and a Reserve and Settle
// every tenth call, so that most of what they count and claim expires on
// its own; and with them 1ms apart against a 24h budget, a 1h and a 1m
// rate limit, all 200 seconds of them within the windows but the last and
// within the duplicate window, so that only the store's own bounds hold.
func TestMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 calls")
	}
	approvals := budget("budget|*|USD|1h|approvals", time.Hour, 1<<40, 600)
	common := memSizes{Owners: 1, Audit: defaultAuditLimit, Sessions: defaultAuditLimit,
		Approvals: 2*defaultApprovalLimit + 1, ApprovalList: 2*defaultApprovalLimit + 1,
		Latest: 2*defaultApprovalLimit + 1}
	tests := []struct {
		name    string
		step    time.Duration
		limits  []policy.Limit
		reserve bool // a Reserve and Settle every tenth call
		bound   memSizes
	}{
		{
			name: "calls 600ms apart", step: 600 * time.Millisecond, limits: benchLimits, reserve: true,
			// Claims live 10 minutes (+ the grace) at 600ms a call, and a
			// sweep may come sweepEvery calls late; reservations live an
			// hour past their window at one every tenth call.
			bound: func(b memSizes) memSizes {
				b.Counters, b.Entries, b.Buckets = len(benchLimits)+1, 2*sweepEvery+700, 0
				b.Reservations, b.Claims = 700+sweepEvery/10+10, 1100+sweepEvery+10
				return b
			}(common),
		},
		{
			name: "calls 1ms apart within one window", step: time.Millisecond, limits: windowLimits,
			// Each counter keeps its newest entries exact and about
			// bucketsPerWindow buckets; claims, as many finished ones as
			// the limit keeps.
			bound: func(b memSizes) memSizes {
				b.Counters = len(windowLimits) + 1
				b.Entries = b.Counters * (exactEntries + coalesceBatch)
				b.Buckets = b.Counters * (bucketsPerWindow + 2)
				b.Claims = defaultClaimLimit
				return b
			}(common),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const calls = 200_000
			ctx := context.Background()
			m := NewMemory()
			appended, released := int64(0), int64(0)
			at := day
			for n := range calls {
				at = at.Add(tt.step)
				settlement := policy.Spent
				if n%10 == 5 {
					settlement = policy.Released
					released++
				}
				runCall(t, m, at, n, tt.limits, settlement)
				appended += 2
				if tt.reserve && n%10 == 0 {
					id, err := m.Reserve(ctx, at, tt.limits[2:])
					if err != nil {
						t.Fatal(err)
					}
					if err := m.Settle(ctx, id, policy.Spent); err != nil {
						t.Fatal(err)
					}
				}
				if n%20 == 0 {
					requestAndDeny(t, m, at, n, approvals)
					appended += 2
				}
				if n%1000 == 999 {
					if err := m.sizes().within(tt.bound); err != nil {
						t.Fatalf("after %d calls: %v", n+1, err)
					}
					if err := m.consistent(); err != nil {
						t.Fatalf("after %d calls: %v", n+1, err)
					}
				}
			}
			t.Logf("after %d calls: %+v", calls, m.sizes())

			// What is counted: the approvals' budget was all given back.
			used, err := m.Usage(ctx, at, append(tt.limits, approvals))
			if err != nil {
				t.Fatal(err)
			}
			if used[len(used)-1] != 0 {
				t.Errorf("the denied approvals' budget holds %d, want 0: every release gives back what it took", used[len(used)-1])
			}
			if tt.limits[0].Window == 24*time.Hour {
				// Nothing has left the 24h and 1h windows: their counts are
				// exact, bucketed or not. The 1m window holds the last
				// 60,000 calls, and may count a bucket's worth more.
				width := int64(time.Minute/bucketsPerWindow) + 1
				if want := (calls - released) * tt.limits[0].Add; used[0] != want {
					t.Errorf("the 24h budget holds %d, want %d: the calls less those released", used[0], want)
				}
				if used[1] != calls {
					t.Errorf("the 1h rate limit holds %d, want %d", used[1], calls)
				}
				if exact := int64(time.Minute / tt.step); used[2] < exact || used[2] > exact+width/int64(tt.step) {
					t.Errorf("the 1m rate limit holds %d, want %d to %d", used[2], exact, exact+width/int64(tt.step))
				}
			}

			rep, err := VerifyAudit(ctx, m)
			if err != nil || !rep.OK() || rep.Records != defaultAuditLimit {
				t.Fatalf("VerifyAudit = %+v, %v; want %d intact records, none open", rep, err, defaultAuditLimit)
			}
			if seq, _, err := m.AuditHead(ctx); err != nil || seq != appended {
				t.Fatalf("AuditHead = %d, %v; want %d, every record appended", seq, err, appended)
			}
			for id, want := range map[string]bool{fmt.Sprint("sess_", calls-1): true, "sess_0": false} {
				if got, err := m.SessionTool(ctx, id, ""); err != nil || (got != "") != want {
					t.Errorf("SessionTool(%s) = %q, %v; want a tool %v", id, got, err, want)
				}
			}
		})
	}
}

// requestAndDeny requests an approval at at, reserving l, and denies it,
// which releases l.
func requestAndDeny(t *testing.T, m *Memory, at time.Time, n int, l policy.Limit) {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprint("appr-", n)
	req := &ApprovalRequest{
		At:       at,
		Approval: Approval{ID: id, Key: fmt.Sprint("approval|", n), Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(time.Minute)},
		Limits:   []policy.Limit{l},
		Record:   AuditRecord{Time: at, Kind: KindApproval, Call: id, Tool: "t", Decision: "approval_required"},
		Remember: time.Minute,
	}
	if _, created, err := m.RequestApproval(ctx, req); err != nil || !created {
		t.Fatalf("RequestApproval = %v, %v", created, err)
	}
	if _, err := m.DecideApproval(ctx, at, id, false, "ops", at); err != nil {
		t.Fatal(err)
	}
}

// ring returns a Memory that keeps 5 records, after 12 were appended: it
// keeps records 8 to 12.
func ring(t *testing.T) *Memory {
	m := NewMemory(WithAuditLimit(5))
	appendAll(t, m, sampleRecords(12))
	return m
}

func TestMemoryAuditRing(t *testing.T) {
	ctx := context.Background()
	t.Run("the trail keeps the newest records, and verifies from the start", func(t *testing.T) {
		m := ring(t)
		var seqs []int64
		for _, r := range scanAll(t, m) {
			seqs = append(seqs, r.Seq)
		}
		if diff := cmp.Diff([]int64{8, 9, 10, 11, 12}, seqs); diff != "" {
			t.Fatalf("ScanAudit (-want +got):\n%s", diff)
		}
		if seq, prev, err := m.AuditStart(ctx); err != nil || seq != 8 || prev != m.trail()[0].PrevHash {
			t.Fatalf("AuditStart = %d, %q, %v; want 8 and record 7's hash", seq, prev, err)
		}
		rep, err := VerifyAudit(ctx, m)
		if err != nil || !rep.OK() || rep.Records != 5 {
			t.Fatalf("VerifyAudit = %+v, %v; want 5 intact records", rep, err)
		}
		if seq, _, _ := m.AuditHead(ctx); seq != 12 {
			t.Fatalf("AuditHead = %d, want 12", seq)
		}
	})
	t.Run("an unbounded trail keeps every record", func(t *testing.T) {
		m := NewMemory(WithAuditLimit(0))
		appendAll(t, m, sampleRecords(12))
		if got := len(scanAll(t, m)); got != 12 {
			t.Fatalf("ScanAudit gave %d records, want 12", got)
		}
		if seq, prev, _ := m.AuditStart(ctx); seq != 1 || prev != "" {
			t.Fatalf("AuditStart = %d, %q; want 1, \"\"", seq, prev)
		}
	})

	// setTrail replaces the kept records with recs, as a forger would.
	setTrail := func(m *Memory, recs []AuditRecord) { m.audit, m.auditFirst = recs, 0 }
	tests := []struct {
		name   string
		tamper func(recs []AuditRecord) []AuditRecord
		want   *BrokenRecord
	}{
		{"deleting the first kept record names it", func(recs []AuditRecord) []AuditRecord { return recs[1:] },
			&BrokenRecord{Seq: 8, Reason: "record 8 is missing (the next stored record is 9)"}},
		{"relinking the first kept record is caught through the start", func(recs []AuditRecord) []AuditRecord {
			recs[0].PrevHash = "forged"
			recs[0].Hash = recs[0].ComputeHash()
			for i := 1; i < len(recs); i++ {
				recs[i].PrevHash = recs[i-1].Hash
				recs[i].Hash = recs[i].ComputeHash()
			}
			return recs
		}, &BrokenRecord{Seq: 8, Reason: "record 8 does not follow record 7: its previous hash does not match (a record was altered or replaced)"}},
		{"an edited kept record names it", func(recs []AuditRecord) []AuditRecord { recs[2].Amount = "1.00"; return recs },
			&BrokenRecord{Seq: 10, Reason: "record 10 was altered: its hash does not match its content"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ring(t)
			setTrail(m, tt.tamper(m.trail()))
			rep, err := VerifyAudit(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.Broken); diff != "" {
				t.Fatalf("Broken (-want +got):\n%s", diff)
			}
		})
	}
}

// forgetBeforeScan makes its Memory forget records, by appending 3, or
// drops its first kept record, between VerifyAudit's AuditStart and its
// scan.
type forgetBeforeScan struct {
	*Memory
	drop bool
}

func (f *forgetBeforeScan) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	if f.drop {
		f.mu.Lock()
		f.audit, f.auditFirst = f.trail()[1:], 0
		f.mu.Unlock()
	} else {
		for range 3 {
			rec := AuditRecord{Time: day, Tool: "t", Decision: "created"}
			if err := f.AppendAudit(ctx, &rec); err != nil {
				return err
			}
		}
	}
	return f.Memory.ScanAudit(ctx, fn)
}

func TestVerifyAuditOfATrailThatForgetsWhileItRuns(t *testing.T) {
	ctx := context.Background()
	t.Run("records the store forgets meanwhile are not missing", func(t *testing.T) {
		rep, err := VerifyAudit(ctx, &forgetBeforeScan{Memory: ring(t)})
		if err != nil || !rep.OK() || rep.Records != 5 {
			t.Fatalf("VerifyAudit = %+v, %v; want 5 intact records", rep, err)
		}
	})
	t.Run("a record deleted meanwhile is missing", func(t *testing.T) {
		rep, err := VerifyAudit(ctx, &forgetBeforeScan{Memory: ring(t), drop: true})
		want := &BrokenRecord{Seq: 8, Reason: "record 8 is missing (the next stored record is 9)"}
		if err != nil || !cmp.Equal(want, rep.Broken) {
			t.Fatalf("VerifyAudit = %+v, %v; want %+v", rep, err, want)
		}
	})
}

func TestMemoryKeepsTheRecordsOfOpenIntents(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(WithAuditLimit(4))
	at := day
	h := &Hold{At: at, Intent: AuditRecord{Time: at, Kind: KindIntent, Call: "call-1", Tool: "t", Decision: "allowed"}}
	held, err := m.Hold(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, m, sampleRecords(10)) // the intent's record leaves the trail
	intents, err := m.Intents(ctx)
	if err != nil || len(intents) != 1 {
		t.Fatalf("Intents = %+v, %v; want the one open", intents, err)
	}
	if diff := cmp.Diff(held.Intent, intents[0].Record); diff != "" {
		t.Fatalf("the intent's record (-held +Intents):\n%s", diff)
	}
	if rep, err := VerifyAudit(ctx, m); err != nil || rep.Broken != nil || rep.Open != 1 || rep.Records != 4 {
		t.Fatalf("VerifyAudit = %+v, %v; want 4 intact records, 1 open", rep, err)
	}
	err = m.Complete(ctx, &Completion{Call: "call-1", Settlement: policy.Spent,
		Record: AuditRecord{Time: at, Kind: KindOutcome, Call: "call-1", Tool: "t", Decision: "created"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyAudit(ctx, m); err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit after Complete = %+v, %v; want OK", rep, err)
	}
}

func TestMemoryForgetsTheSessionsOfForgottenRecords(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(WithAuditLimit(3))
	created := func(session string) {
		rec := AuditRecord{Time: day, Kind: KindOutcome, Call: session, Tool: "t", Decision: "created", SessionID: session}
		if err := m.AppendAudit(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	created("sess_1")
	created("sess_2")
	created("sess_1") // a record created sess_1 again
	created("sess_3") // the first record is forgotten
	created("sess_4") // and the second
	for id, want := range map[string]bool{"sess_1": true, "sess_2": false, "sess_3": true, "sess_4": true} {
		if got, err := m.SessionTool(ctx, id, ""); err != nil || (got != "") != want {
			t.Errorf("SessionTool(%s) = %q, %v; want a tool %v", id, got, err, want)
		}
	}
	if n := m.sizes().Sessions; n != 3 {
		t.Errorf("%d sessions kept, want 3", n)
	}
}

func TestMemoryPrunesFinishedApprovals(t *testing.T) {
	ctx := context.Background()
	limits := []policy.Limit{budget("budget|approvals", time.Hour, 1<<40, 600)}
	request := func(m *Memory, n int, at time.Time, remember time.Duration) string {
		t.Helper()
		id := fmt.Sprint("appr-", n)
		req := &ApprovalRequest{At: at, Limits: limits, Remember: remember,
			Approval: Approval{ID: id, Key: fmt.Sprint("key-", n), Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(time.Hour)},
			Record:   AuditRecord{Time: at, Kind: KindApproval, Call: id, Tool: "t", Decision: "approval_required"}}
		if _, created, err := m.RequestApproval(ctx, req); err != nil || !created {
			t.Fatalf("RequestApproval(%s) = %v, %v", id, created, err)
		}
		return id
	}
	known := func(m *Memory, id string) bool {
		_, err := m.Approval(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	t.Run("past the limit, the oldest finished go first; pending ones stay", func(t *testing.T) {
		m := NewMemory(WithApprovalLimit(3))
		pending := request(m, 0, day, time.Minute)
		for n := 1; n <= 20; n++ {
			id := request(m, n, day, time.Minute)
			if _, err := m.DecideApproval(ctx, day, id, false, "ops", day); err != nil {
				t.Fatal(err)
			}
			if s := m.sizes(); s.Approvals > 2*3+2 || s.ApprovalList != s.Approvals || s.Latest > s.Approvals {
				t.Fatalf("after %d approvals: %+v", n, s)
			}
		}
		if !known(m, pending) || known(m, "appr-1") || !known(m, "appr-20") {
			t.Fatalf("pending kept %v, oldest kept %v, newest kept %v; want true, false, true",
				known(m, pending), known(m, "appr-1"), known(m, "appr-20"))
		}
		list, err := m.ListApprovals(ctx, nil, 0)
		if err != nil || len(list) != m.sizes().Approvals {
			t.Fatalf("ListApprovals = %d approvals, %v; want the %d kept", len(list), err, m.sizes().Approvals)
		}
	})
	t.Run("finished ones are forgotten a day after, or after the longest Remember", func(t *testing.T) {
		m := NewMemory()
		short := request(m, 1, day, time.Minute)
		if _, err := m.DecideApproval(ctx, day, short, false, "ops", day); err != nil {
			t.Fatal(err)
		}
		m.pruneApprovals(day.Add(approvalRetention - time.Second).UnixNano())
		if !known(m, short) {
			t.Fatal("forgotten within a day of its decision")
		}
		m.pruneApprovals(day.Add(approvalRetention).UnixNano())
		if known(m, short) {
			t.Fatal("kept a day after its decision")
		}
		long := request(m, 2, day, 48*time.Hour)
		if _, err := m.DecideApproval(ctx, day, long, false, "ops", day); err != nil {
			t.Fatal(err)
		}
		m.pruneApprovals(day.Add(47 * time.Hour).UnixNano())
		if !known(m, long) {
			t.Fatal("forgotten within its Remember")
		}
	})
}

// reserveOrDeny reserves l at at and returns the reservation, or the
// denial.
func reserveOrDeny(t *testing.T, m *Memory, at time.Time, l policy.Limit) (string, *policy.Denied) {
	t.Helper()
	id, err := m.Reserve(context.Background(), at, []policy.Limit{l})
	var d *policy.Denied
	if errors.As(err, &d) {
		return "", d
	}
	if err != nil {
		t.Fatal(err)
	}
	return id, nil
}

// TestMemoryBucketsFailClosed fills a budget with entries enough for most
// to be coalesced into buckets: it still refuses exactly at its maximum,
// and capacity returns no earlier than exact, at most a bucket's width
// later, exactly when RetryAt says.
func TestMemoryBucketsFailClosed(t *testing.T) {
	const (
		n      = 3 * exactEntries // entries of 10, 100ms apart: most end up in buckets
		window = time.Hour
		width  = window / bucketsPerWindow
	)
	l := func(add int64) policy.Limit { return budget("budget|*|USD|1h|", window, n*10, add) }
	m := NewMemory()
	for i := range n - 1 {
		if _, d := reserveOrDeny(t, m, day.Add(time.Duration(i)*100*time.Millisecond), l(10)); d != nil {
			t.Fatalf("entry %d: %+v", i, d)
		}
	}
	if s := m.sizes(); s.Buckets == 0 || s.Entries > exactEntries+coalesceBatch {
		t.Fatalf("the counter holds %d buckets and %d entries; want its oldest entries in buckets", s.Buckets, s.Entries)
	}
	last := day.Add((n - 1) * 100 * time.Millisecond)

	t.Run("a budget refuses exactly at its maximum", func(t *testing.T) {
		if _, d := reserveOrDeny(t, m, last, l(11)); d == nil || d.Used != (n-1)*10 {
			t.Fatalf("a call 1 over the maximum: %+v, want a denial with Used %d", d, (n-1)*10)
		}
		if _, d := reserveOrDeny(t, m, last, l(10)); d != nil {
			t.Fatalf("a call up to the maximum: %+v, want it to fit", d)
		}
	})
	t.Run("capacity returns no earlier than exact, at most a bucket's width later", func(t *testing.T) {
		_, d := reserveOrDeny(t, m, last, l(1))
		if d == nil || d.Used != n*10 {
			t.Fatalf("a call on a full budget: %+v, want a denial with Used %d", d, n*10)
		}
		exact := day.Add(window) // when the first entry leaves
		if d.RetryAt.Before(exact) || !d.RetryAt.Before(exact.Add(width)) {
			t.Fatalf("RetryAt = %v, want from %v to before %v", d.RetryAt, exact, exact.Add(width))
		}
		if err := m.Check(context.Background(), d.RetryAt.Add(-time.Nanosecond), []policy.Limit{l(1)}); err == nil {
			t.Fatal("Check a nanosecond before RetryAt fits, want a denial")
		}
		if _, d2 := reserveOrDeny(t, m, d.RetryAt.Add(-time.Nanosecond), l(1)); d2 == nil || !d2.RetryAt.Equal(d.RetryAt) {
			t.Fatalf("a call a nanosecond before RetryAt: %+v, want the same denial", d2)
		}
		if _, d2 := reserveOrDeny(t, m, d.RetryAt, l(1)); d2 != nil {
			t.Fatalf("a call at RetryAt: %+v, want it to fit", d2)
		}
		if err := m.consistent(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMemoryReleasesGiveBackExactlyWhatTheyTook releases a reservation
// whose budget entry was coalesced into a bucket, and one whose entry is
// still exact: each gives back its amount, once, and no rate entry.
func TestMemoryReleasesGiveBackExactlyWhatTheyTook(t *testing.T) {
	ctx := context.Background()
	b := budget("budget|*|USD|1h|", time.Hour, 1<<40, 10)
	r := rate("rate|*|1h|", time.Hour, 1<<40)
	limits := func(add int64) []policy.Limit { l := b; l.Add = add; return []policy.Limit{l, r} }
	m := NewMemory()
	used := func(at time.Time) []int64 {
		t.Helper()
		u, err := m.Usage(ctx, at, []policy.Limit{b, r})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	first, err := m.Reserve(ctx, day, limits(7))
	if err != nil {
		t.Fatal(err)
	}
	const n = exactEntries + coalesceBatch // enough to coalesce the first
	at := day
	var newest string
	for range n {
		at = at.Add(time.Millisecond)
		if newest, err = m.Reserve(ctx, at, limits(10)); err != nil {
			t.Fatal(err)
		}
	}
	if a := m.reservations[first].adds; len(a) != 1 || a[0].bucket == nil {
		t.Fatalf("the first reservation's budget entry is not in a bucket: %+v", a)
	}
	before := used(at)
	for _, rel := range []struct {
		id     string
		amount int64
	}{{first, 7}, {newest, 10}} {
		for range 2 { // a second release gives back nothing more
			if err := m.Settle(ctx, rel.id, policy.Released); err != nil {
				t.Fatal(err)
			}
		}
		before[0] -= rel.amount
		if diff := cmp.Diff(before, used(at)); diff != "" {
			t.Fatalf("after releasing %d (-want +got), the rate limit unchanged:\n%s", rel.amount, diff)
		}
	}
	if err := m.consistent(); err != nil {
		t.Fatal(err)
	}
}

// A hold on an approval whose budget refuses it keeps the approval's
// reservation even once its entry was coalesced into a bucket, and the
// refusal counts the budget without it, as the stores that roll back do.
func TestMemoryRefusedApprovalHoldKeepsACoalescedReservation(t *testing.T) {
	ctx := context.Background()
	const key = "budget|*|USD|24h|"
	limits := func(maxAmount, add int64) []policy.Limit {
		return []policy.Limit{budget(key, 24*time.Hour, maxAmount, add)}
	}
	m := NewMemory()
	req := &ApprovalRequest{At: day, Limits: limits(1<<40, 600), Remember: time.Hour,
		Approval: Approval{ID: "apr_1", Key: "key-1", Fingerprint: "f", Tool: "t", ExpiresAt: day.Add(time.Hour)},
		Record:   AuditRecord{Time: day, Kind: KindApproval, Call: "apr_1", Tool: "t", Decision: "approval_required"}}
	_, _, err := m.RequestApproval(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	at := day
	for range exactEntries + coalesceBatch { // enough to coalesce the approval's entry
		at = at.Add(time.Millisecond)
		if _, err := m.Reserve(ctx, at, limits(1<<40, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if adds := m.approvals["apr_1"].held.adds; len(adds) != 1 || adds[0].bucket == nil {
		t.Fatalf("the approval's budget entry is not in a bucket: %+v", adds)
	}
	if _, err := m.DecideApproval(ctx, at, "apr_1", true, "operator:ops", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	others := int64(exactEntries + coalesceBatch)
	hold := func(maxAmount int64) (*Held, error) {
		at = at.Add(time.Second)
		return m.Hold(ctx, &Hold{At: at, Approval: "apr_1", Limits: limits(maxAmount, 600),
			Intent: AuditRecord{Time: at, Kind: KindIntent, Call: "call-approved", Tool: "t", Decision: "allowed"}})
	}
	// Lowered so that 1,100 of the others must leave the window first:
	// the 600 coalesced with the first of them is not counted as freeing
	// room, so the retry waits for the 1,100th other entry's day to end
	// (its bucket's, which is at most a batch later).
	var d *policy.Denied
	if _, err := hold(others - 500); !errors.As(err, &d) || d.Used != others {
		t.Fatalf("Hold under a budget of %d = %v; want a *policy.Denied using %d", others-500, err, others)
	}
	exact := day.Add(24*time.Hour + 1100*time.Millisecond)
	if d.RetryAt.Before(exact) || d.RetryAt.After(exact.Add(coalesceBatch*time.Millisecond)) {
		t.Errorf("RetryAt = %v, want from %v to a batch later", d.RetryAt, exact)
	}
	u, err := m.Usage(ctx, at, limits(1<<40, 0))
	if err != nil || u[0] != others+600 {
		t.Fatalf("Usage after the refused hold = %v, %v; want %d (the approval's 600 kept)", u, err, others+600)
	}
	if _, err := hold(others + 600); err != nil {
		t.Fatalf("Hold under a budget with room for it: %v", err)
	}
	if u, err = m.Usage(ctx, at, limits(1<<40, 0)); err != nil || u[0] != others+600 {
		t.Fatalf("Usage after the hold = %v, %v; want %d (the 600 counted once)", u, err, others+600)
	}
	if err := m.consistent(); err != nil {
		t.Fatal(err)
	}
}

// An approval's rate entry moves to its hold even once it was coalesced
// into a bucket, counted once; a denied approval's rate entry stays where
// it is, coalesced or not: the call was made, and asked.
func TestMemoryApprovalRateEntriesMoveFromABucket(t *testing.T) {
	ctx := context.Background()
	l := []policy.Limit{rate("rate|*|24h|", 24*time.Hour, 1<<40)}
	m := NewMemory()
	for _, id := range []string{"apr_1", "apr_2"} {
		req := &ApprovalRequest{At: day, Limits: l, Remember: time.Hour,
			Approval: Approval{ID: id, Key: "key-" + id, Fingerprint: "f", Tool: "t", ExpiresAt: day.Add(time.Hour)},
			Record:   AuditRecord{Time: day, Kind: KindApproval, Call: id, Tool: "t", Decision: "approval_required"}}
		if _, _, err := m.RequestApproval(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	at := day
	for range exactEntries + coalesceBatch { // enough to coalesce the approvals' entries
		at = at.Add(time.Millisecond)
		if _, err := m.Reserve(ctx, at, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"apr_1", "apr_2"} {
		if adds := m.approvals[id].held.adds; len(adds) != 1 || !adds[0].rate || adds[0].bucket == nil {
			t.Fatalf("%s's rate entry is not in a bucket: %+v", id, adds)
		}
	}
	calls := int64(exactEntries+coalesceBatch) + 2
	used := func(what string, at time.Time, want int64) {
		t.Helper()
		if u, err := m.Usage(ctx, at, l); err != nil || u[0] != want {
			t.Fatalf("Usage %s = %v, %v; want %d", what, u, err, want)
		}
		if err := m.consistent(); err != nil {
			t.Fatal(err)
		}
	}
	used("before the decisions", at, calls)
	if _, err := m.DecideApproval(ctx, at, "apr_2", false, "operator:ops", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	used("after a denial", at, calls)
	if _, err := m.DecideApproval(ctx, at, "apr_1", true, "operator:ops", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Second)
	if _, err := m.Hold(ctx, &Hold{At: at, Approval: "apr_1", Limits: l,
		Intent: AuditRecord{Time: at, Kind: KindIntent, Call: "call-approved", Tool: "t", Decision: "allowed"}}); err != nil {
		t.Fatal(err)
	}
	used("after the hold", at, calls)
	// A day after the others, only the moved entry still counts.
	used("a day after the hold", at.Add(24*time.Hour-time.Nanosecond), 1)
}

func TestMemoryForgetsTheOldestFinishedClaims(t *testing.T) {
	ctx := context.Background()
	claim := func(m *Memory, key string) Prior {
		t.Helper()
		p, err := m.Claim(ctx, Claim{Key: key, Call: "call-" + key, Fingerprint: "f", At: day, Window: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	finished := func(m *Memory, keys ...string) {
		t.Helper()
		for _, key := range keys {
			if p := claim(m, key); p.State != ClaimNew {
				t.Fatalf("Claim(%s) = %+v, want new", key, p)
			}
			if err := m.Finish(ctx, key, []byte("result "+key)); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("past the limit, the oldest finished go first; those in flight stay", func(t *testing.T) {
		m := NewMemory(WithClaimLimit(3))
		if p := claim(m, "in-flight"); p.State != ClaimNew {
			t.Fatalf("Claim = %+v, want new", p)
		}
		finished(m, "k1", "k2", "k3", "k4") // k1 is forgotten
		finished(m, "k1")                   // so made again: now the newest, and k2 is forgotten
		finished(m, "k5")                   // and k3
		for _, key := range []string{"k1", "k4", "k5"} {
			if p := claim(m, key); p.State != ClaimDone || string(p.Result) != "result "+key {
				t.Errorf("Claim(%s) = %+v, want its result", key, p)
			}
		}
		if p := claim(m, "in-flight"); p.State != ClaimInFlight {
			t.Errorf("Claim(in-flight) = %+v, want in flight", p)
		}
		for _, key := range []string{"k2", "k3"} {
			if p := claim(m, key); p.State != ClaimNew {
				t.Errorf("Claim(%s) = %+v, want new: forgotten", key, p)
			}
		}
		if err := m.consistent(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a limit of 0 keeps every claim", func(t *testing.T) {
		m := NewMemory(WithClaimLimit(0))
		finished(m, "k1", "k2", "k3", "k4", "k5")
		if p := claim(m, "k1"); p.State != ClaimDone {
			t.Errorf("Claim(k1) = %+v, want its result", p)
		}
		if err := m.consistent(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a dropped or completed claim leaves the order", func(t *testing.T) {
		m := NewMemory(WithClaimLimit(2))
		finished(m, "k1", "k2")
		if err := m.Drop(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
		finished(m, "k3")
		if p := claim(m, "k2"); p.State != ClaimDone {
			t.Errorf("Claim(k2) = %+v, want its result: the dropped claim made room", p)
		}
		runCall(t, m, day, 1, nil, policy.Spent)
		runCall(t, m, day, 2, nil, policy.Released)
		if err := m.consistent(); err != nil {
			t.Fatal(err)
		}
		if s := m.sizes(); s.Claims != 2 {
			t.Errorf("%d claims kept, want 2", s.Claims)
		}
	})
}

// busyMemory appends n records as each scan of its trail begins, as a
// busy server does while the trail is verified.
type busyMemory struct {
	*Memory
	n int
}

func (b *busyMemory) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	for range b.n {
		r := AuditRecord{Time: day, Kind: KindOutcome, Call: "c", Tool: "t", Decision: "rate_limited"}
		if err := b.Memory.AppendAudit(ctx, &r); err != nil {
			return err
		}
	}
	return b.Memory.ScanAudit(ctx, fn)
}

// TestMemoryVerifiesWhileTheRingForgetsTheHead: records forgotten while
// VerifyAudit runs, the head it read among them, do not make it fail.
func TestMemoryVerifiesWhileTheRingForgetsTheHead(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(WithAuditLimit(4))
	for range 6 {
		r := AuditRecord{Time: day, Kind: KindOutcome, Call: "c", Tool: "t", Decision: "rate_limited"}
		if err := m.AppendAudit(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyAudit(ctx, &busyMemory{Memory: m, n: 4})
	if err != nil || !rep.OK() {
		t.Fatalf("VerifyAudit of an intact trail while 4 records are appended = %+v (broken %+v), %v; want intact", rep, rep.Broken, err)
	}
}
