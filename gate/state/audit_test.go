package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clink-mcp/clink-mcp/policy"
)

func TestComputeHash(t *testing.T) {
	base := AuditRecord{
		Seq: 3, Time: time.Date(2025, 3, 1, 23, 59, 0, 123456789, time.UTC),
		Tool: "create_checkout_session", Decision: "created", Amount: "19.99", Currency: "USD",
		EmailMasked: "a***@example.com", EmailHash: "4f2a", SessionID: "sess_1",
		Duration: 1500 * time.Microsecond, PrevHash: "abc",
	}
	t.Run("the encoding is pinned, being part of the on-disk format", func(t *testing.T) {
		// Computed apart from this code, as SHA-256 over the netstrings
		// 18:clink-mcp/audit/v1,1:3,30:2025-03-01T23:59:00.123456789Z,…,3:abc,
		const want = "3ce8a9142eb061aaaa5a7c4cd495035b50b1568ef40b1f6e43ad21458db9c99d"
		if got := base.ComputeHash(); got != want {
			t.Errorf("ComputeHash = %s, want %s", got, want)
		}
	})
	t.Run("the encoding of format 2 is pinned too", func(t *testing.T) {
		// Computed apart from this code (Python's hashlib over the
		// netstrings 18:clink-mcp/audit/v2,1:7,…,3:abc,), with multi-byte
		// characters: lengths count bytes.
		r := AuditRecord{
			Seq: 7, Format: 2, Time: time.Date(2026, 12, 3, 10, 0, 0, 500000000, time.UTC),
			Kind: "outcome", Call: "call_1", Caller: "agent-a", Tool: "create_checkout_session",
			Decision: "created", Amount: "19.99", Currency: "EUR", Amounts: "EUR 19.99",
			EmailMasked: "é***@exämple.com", EmailHash: "4f2a", CustomerIDHash: "c1", ReferenceHash: "r1",
			Reservation: "res_1", SessionID: "sess_1", Duration: 1500 * time.Microsecond, PrevHash: "abc",
		}
		const want = "4b748a581a30bb0eaeaf0d20e5fd867aca4db4b254681fbc901375b74f513eab"
		if got := r.ComputeHash(); got != want {
			t.Errorf("ComputeHash = %s, want %s", got, want)
		}
	})
	t.Run("the hash ignores Hash and the time's zone", func(t *testing.T) {
		r := base
		r.Hash = "anything"
		r.Time = r.Time.In(time.FixedZone("X", -7*3600))
		if r.ComputeHash() != base.ComputeHash() {
			t.Error("hash changed")
		}
	})
	changes := []struct {
		name   string
		change func(*AuditRecord)
	}{
		{"seq", func(r *AuditRecord) { r.Seq++ }},
		{"time by a nanosecond", func(r *AuditRecord) { r.Time = r.Time.Add(time.Nanosecond) }},
		{"tool", func(r *AuditRecord) { r.Tool += "x" }},
		{"decision", func(r *AuditRecord) { r.Decision = "replayed" }},
		{"amount", func(r *AuditRecord) { r.Amount = "1999" }},
		{"currency", func(r *AuditRecord) { r.Currency = "" }},
		{"masked email", func(r *AuditRecord) { r.EmailMasked = "b***@example.com" }},
		{"email hash", func(r *AuditRecord) { r.EmailHash = "4f2b" }},
		{"session ID", func(r *AuditRecord) { r.SessionID = "sess_2" }},
		{"duration", func(r *AuditRecord) { r.Duration++ }},
		{"previous hash", func(r *AuditRecord) { r.PrevHash = "abd" }},
		{"bytes moved from one field to the next", func(r *AuditRecord) { r.Tool, r.Decision = "create_checkout_sessionc", "reated" }},
		{"amount and currency swapped", func(r *AuditRecord) { r.Amount, r.Currency = r.Currency, r.Amount }},
	}
	for _, c := range changes {
		t.Run("changing the "+c.name+" changes the hash", func(t *testing.T) {
			r := base
			c.change(&r)
			if r.ComputeHash() == base.ComputeHash() {
				t.Error("same hash")
			}
		})
	}
}

func TestVerifyAuditNamesTheFirstBrokenRecord(t *testing.T) {
	ctx := context.Background()
	// rehash recomputes the hashes of recs[from:] and relinks them, as a
	// forger covering an edit would.
	rehash := func(recs []AuditRecord, from int) {
		for i := from; i < len(recs); i++ {
			if i > 0 {
				recs[i].PrevHash = recs[i-1].Hash
			}
			recs[i].Hash = recs[i].ComputeHash()
		}
	}
	tests := []struct {
		name   string
		tamper func(m *Memory)
		want   *BrokenRecord
	}{
		{"an edited field names the record", func(m *Memory) { m.audit[2].Amount = "9999.00" },
			&BrokenRecord{Seq: 3, Reason: "record 3 was altered: its hash does not match its content"}},
		{"a deleted record names it", func(m *Memory) { m.audit = append(m.audit[:2], m.audit[3:]...) },
			&BrokenRecord{Seq: 3, Reason: "record 3 is missing (the next stored record is 4)"}},
		{"a deleted first record names it", func(m *Memory) { m.audit = m.audit[1:] },
			&BrokenRecord{Seq: 1, Reason: "record 1 is missing (the next stored record is 2)"}},
		{"an edit with a recomputed hash breaks the link to the next record", func(m *Memory) {
			m.audit[2].Tool = "other"
			m.audit[2].Hash = m.audit[2].ComputeHash()
		}, &BrokenRecord{Seq: 4, Reason: "record 4 does not follow record 3: its previous hash does not match (a record was altered or replaced)"}},
		{"deleting the last records is caught through the head", func(m *Memory) { m.audit = m.audit[:3] },
			&BrokenRecord{Seq: 4, Reason: "record 4 is missing: the trail ends at record 3 but 5 records were appended (the last records were deleted)"}},
		{"deleting every record is caught through the head", func(m *Memory) { m.audit = nil },
			&BrokenRecord{Seq: 1, Reason: "record 1 is missing: the trail ends at record 0 but 5 records were appended (the last records were deleted)"}},
		{"a rewritten chain is caught through the head", func(m *Memory) {
			m.audit[3].Decision = "created"
			rehash(m.audit, 3)
		}, &BrokenRecord{Seq: 5, Reason: "record 5 was replaced: its hash does not match the one recorded when it was appended"}},
		{"a record added past the head is caught", func(m *Memory) {
			r := m.audit[4]
			r.Seq++
			m.audit = append(m.audit, r)
			rehash(m.audit, 5)
		}, &BrokenRecord{Seq: 6, Reason: "record 6 was not appended by the store: the store recorded only 5 records"}},
		{"a repeated record is out of order", func(m *Memory) { m.audit = append(m.audit[:3], m.audit[2:]...) },
			&BrokenRecord{Seq: 3, Reason: "record 3 is out of order: it comes after record 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			appendAll(t, m, sampleRecords(5))
			tt.tamper(m)
			rep, err := VerifyAudit(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.Broken); diff != "" || rep.OK() {
				t.Fatalf("Broken (-want +got):\n%s", diff)
			}
			if rep.Records != int64(len(m.audit)) {
				t.Errorf("Records = %d, want %d", rep.Records, len(m.audit))
			}
		})
	}
}

func TestVerifyAuditToleratesAppendsWhileItRuns(t *testing.T) {
	ctx := context.Background()
	forEach(t, func(t *testing.T, open func(testing.TB) Store) {
		s := open(t)
		appendAll(t, s, sampleRecords(3))
		rep, err := VerifyAudit(ctx, &appendDuringScan{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Records != 3 {
			t.Fatalf("VerifyAudit = %+v, want 3 records, intact", rep)
		}
		if seq, _, _ := s.AuditHead(ctx); seq != 4 {
			t.Fatalf("head = %d, want 4: the append did not happen", seq)
		}
		if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK() || rep.Records != 4 {
			t.Fatalf("VerifyAudit afterwards = %+v, %v; want 4 records, intact", rep, err)
		}
	})
}

// appendDuringScan appends a record, through the store being scanned, once
// its scan has read the first record.
type appendDuringScan struct{ Store }

func (a *appendDuringScan) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	first := true
	return a.Store.ScanAudit(ctx, func(r *AuditRecord) error {
		if first {
			first = false
			rec := AuditRecord{Time: day, Tool: "t", Decision: "created"}
			if err := a.Store.AppendAudit(ctx, &rec); err != nil {
				return err
			}
		}
		return fn(r)
	})
}

func TestExportAuditReportsWriteErrors(t *testing.T) {
	m := NewMemory()
	appendAll(t, m, sampleRecords(2))
	n, err := ExportAudit(context.Background(), m, failingWriter{})
	if !errors.Is(err, errDiskFull) || n != 0 {
		t.Fatalf("ExportAudit = %d, %v; want 0 and the write error", n, err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

var errDiskFull = errors.New("disk full")

// scanHook runs hook before the scan numbered at (1 for the first).
type scanHook struct {
	Store
	at    int
	scans int
	hook  func()
}

func (s *scanHook) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	if s.scans++; s.scans == s.at {
		s.hook()
	}
	return s.Store.ScanAudit(ctx, fn)
}

// An exported intent is marked open exactly when its call's outcome is not
// in the export, whatever calls open and close while it runs: the records
// and the marks come from one reading of the trail.
func TestExportMarksOpenIntentsAsTheTrailItExportsHasThem(t *testing.T) {
	ctx := context.Background()
	hold := func(t *testing.T, s Store, call string) {
		h := &Hold{At: day, Limits: []policy.Limit{budget("b", time.Hour, 100, 10)},
			Intent: AuditRecord{Time: day, Kind: KindIntent, Call: call, Tool: "t", Decision: "allowed"}}
		if _, err := s.Hold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	for _, store := range []string{"memory", "sqlite"} {
		for _, at := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s, calls open and close before scan %d", store, at), func(t *testing.T) {
				var s Store = NewMemory()
				if store == "sqlite" {
					s = openSQLite(t, filepath.Join(t.TempDir(), "state.db"))
				}
				hold(t, s, "c0")
				w := &scanHook{Store: s, at: at, hook: func() {
					err := s.Complete(ctx, &Completion{Call: "c0", Settlement: policy.Spent,
						Record: AuditRecord{Time: day, Kind: KindOutcome, Call: "c0", Tool: "t", Decision: "created"}})
					if err != nil {
						t.Fatal(err)
					}
					hold(t, s, "c1")
				}}
				var buf bytes.Buffer
				n, err := ExportAudit(ctx, w, &buf)
				if err != nil {
					t.Fatal(err)
				}
				var recs []AuditRecord
				outcome := map[string]bool{}
				for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
					var r AuditRecord
					if err := json.Unmarshal([]byte(line), &r); err != nil {
						t.Fatal(err)
					}
					recs = append(recs, r)
					outcome[r.Call] = outcome[r.Call] || r.Kind == KindOutcome
				}
				if int64(len(recs)) != n {
					t.Fatalf("ExportAudit says %d records, wrote %d", n, len(recs))
				}
				for _, r := range recs {
					if r.Kind == KindIntent && r.Open == outcome[r.Call] {
						t.Errorf("the intent of %s: open %v, its outcome exported %v", r.Call, r.Open, outcome[r.Call])
					}
				}
				// Before the first scan, the export has all three records;
				// before the second, the one the first scan saw.
				if want := map[int]int{1: 3, 2: 1}[at]; len(recs) != want {
					t.Errorf("%d records exported, want %d", len(recs), want)
				}
			})
		}
	}
}

// formatAt rewrites the format of one record as scans read it.
type formatAt struct {
	Store
	seq    int64
	format int
}

func (s *formatAt) ScanAudit(ctx context.Context, fn func(*AuditRecord) error) error {
	return s.Store.ScanAudit(ctx, func(r *AuditRecord) error {
		if r.Seq == s.seq {
			r.Format = s.format
		}
		return fn(r)
	})
}

// The hash covers a record's format family, not its number: a format this
// version never wrote breaks the trail at that record.
func TestVerifyRefusesAFormatItDoesNotKnow(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	appendAll(t, m, sampleRecords(3))
	for _, format := range []int{7, auditFormat + 1, 0, -1} {
		rep, err := VerifyAudit(ctx, &formatAt{Store: m, seq: 2, format: format})
		if err != nil || rep.Broken == nil || rep.Broken.Seq != 2 || !strings.Contains(rep.Broken.Reason, "does not know") {
			t.Errorf("format %d: VerifyAudit = %+v, %v; want record 2 broken", format, rep, err)
		}
	}
	if rep, err := VerifyAudit(ctx, &formatAt{Store: m, seq: 2, format: auditFormat}); err != nil || !rep.OK() {
		t.Errorf("the format it wrote: VerifyAudit = %+v, %v; want OK", rep, err)
	}
}
