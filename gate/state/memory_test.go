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
	Counters, Entries, Reservations, Claims, Intents, Owners int
	Audit, Sessions                                          int
	Approvals, ApprovalList, Latest, LiveApprovals           int
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
	}
	return s
}

// within returns an error naming the first size of s over its bound.
func (s memSizes) within(bound memSizes) error {
	got := []int{s.Counters, s.Entries, s.Reservations, s.Claims, s.Intents, s.Owners, s.Audit, s.Sessions,
		s.Approvals, s.ApprovalList, s.Latest, s.LiveApprovals}
	limit := []int{bound.Counters, bound.Entries, bound.Reservations, bound.Claims, bound.Intents, bound.Owners, bound.Audit, bound.Sessions,
		bound.Approvals, bound.ApprovalList, bound.Latest, bound.LiveApprovals}
	names := []string{"counters", "entries", "reservations", "claims", "intents", "owners", "audit", "sessions",
		"approvals", "approvalList", "latest", "liveApprovals"}
	for i := range got {
		if got[i] > limit[i] {
			return fmt.Errorf("%s holds %d, over its bound %d", names[i], got[i], limit[i])
		}
	}
	return nil
}

// TestMemoryStaysBounded runs 200,000 created calls through a Memory with
// its default bounds, with a Reserve and Settle every tenth call and an
// approval requested and denied every fiftieth, the clock moving 600ms a
// call: whatever it has served, what it holds stays under fixed bounds,
// and the trail it keeps still verifies.
func TestMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 calls")
	}
	const calls = 200_000
	ctx := context.Background()
	m := NewMemory()
	// Claims live 10 minutes (+ the grace) at 600ms a call, and a sweep
	// may come sweepEvery calls late; reservations live an hour past their
	// window at one every tenth call; approvals, twice their limit.
	bound := memSizes{
		Counters: len(benchLimits) + 2, Entries: 2*sweepEvery + 400, Reservations: 700 + sweepEvery/10 + 10,
		Claims: 1100 + sweepEvery + 10, Intents: 0, Owners: 1,
		Audit: defaultAuditLimit, Sessions: defaultAuditLimit,
		Approvals: 2*defaultApprovalLimit + 1, ApprovalList: 2*defaultApprovalLimit + 1,
		Latest: 2*defaultApprovalLimit + 1, LiveApprovals: 0,
	}
	approvalLimits := []policy.Limit{budget("budget|*|USD|1h|approvals", time.Hour, 1<<40, 600)}
	appended := int64(0)
	at := day
	for n := range calls {
		at = at.Add(600 * time.Millisecond)
		holdComplete(t, m, at, n, benchLimits)
		appended += 2
		if n%10 == 0 {
			id, err := m.Reserve(ctx, at, benchLimits[2:])
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Settle(ctx, id, policy.Spent); err != nil {
				t.Fatal(err)
			}
		}
		if n%50 == 0 {
			id := fmt.Sprint("appr-", n)
			req := &ApprovalRequest{
				At:       at,
				Approval: Approval{ID: id, Key: fmt.Sprint("approval|", n), Fingerprint: "f", Tool: "t", ExpiresAt: at.Add(time.Minute)},
				Limits:   approvalLimits,
				Record:   AuditRecord{Time: at, Kind: KindApproval, Call: id, Tool: "t", Decision: "approval_required"},
				Remember: time.Minute,
			}
			if _, created, err := m.RequestApproval(ctx, req); err != nil || !created {
				t.Fatalf("RequestApproval = %v, %v", created, err)
			}
			if _, err := m.DecideApproval(ctx, at, id, false, "ops", at); err != nil {
				t.Fatal(err)
			}
			appended += 2
		}
		if n%1000 == 999 {
			if err := m.sizes().within(bound); err != nil {
				t.Fatalf("after %d calls: %v", n+1, err)
			}
		}
	}
	t.Logf("after %d calls: %+v", calls, m.sizes())

	rep, err := VerifyAudit(ctx, m)
	if err != nil || !rep.OK() || rep.Records != defaultAuditLimit {
		t.Fatalf("VerifyAudit = %+v, %v; want %d intact records, none open", rep, err, defaultAuditLimit)
	}
	if seq, _, err := m.AuditHead(ctx); err != nil || seq != appended {
		t.Fatalf("AuditHead = %d, %v; want %d, every record appended", seq, err, appended)
	}
	for id, want := range map[string]bool{fmt.Sprint("sess_", calls-1): true, "sess_0": false} {
		if got, err := m.SessionCreated(ctx, id); err != nil || got != want {
			t.Errorf("SessionCreated(%s) = %v, %v; want %v", id, got, err, want)
		}
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
		if got, err := m.SessionCreated(ctx, id); err != nil || got != want {
			t.Errorf("SessionCreated(%s) = %v, %v; want %v", id, got, err, want)
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
