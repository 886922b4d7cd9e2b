package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/policy"
)

// implementation opens an empty store of one kind for a test.
type implementation struct {
	name string
	open func(t testing.TB) Store
}

func openSQLite(t testing.TB, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// day is 23:59 on the first day of the rolling-window examples.
var day = time.Date(2025, 3, 1, 23, 59, 0, 0, time.UTC)

func budget(key string, window time.Duration, maxAmount, add int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindBudget, Window: window, Max: maxAmount, Add: add}
}

func rate(key string, window time.Duration, maxCalls int64) policy.Limit {
	return policy.Limit{Key: key, Kind: policy.KindRate, Window: window, Max: maxCalls, Add: 1}
}

// sampleRecords returns n audit records as a caller would fill them.
func sampleRecords(n int) []AuditRecord {
	decisions := []string{"created", "amount_over_cap", "replayed", "upstream_refused", "outcome_unknown"}
	recs := make([]AuditRecord, n)
	for i := range recs {
		recs[i] = AuditRecord{
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
func appendAll(t testing.TB, s Store, recs []AuditRecord) {
	t.Helper()
	for i := range recs {
		if err := s.AppendAudit(context.Background(), &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func scanAll(t testing.TB, s Store) []AuditRecord {
	t.Helper()
	var got []AuditRecord
	err := s.ScanAudit(context.Background(), func(r *AuditRecord) error {
		got = append(got, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// implementations is every Store the package's own tests run against.
var implementations = []implementation{
	{"memory", func(testing.TB) Store { return NewMemory() }},
	{"sqlite", func(t testing.TB) Store { return openSQLite(t, t.TempDir()+"/state.db") }},
}

// forEach runs fn as a subtest against every implementation.
func forEach(t *testing.T, fn func(t *testing.T, open func(testing.TB) Store)) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) { fn(t, impl.open) })
	}
}
