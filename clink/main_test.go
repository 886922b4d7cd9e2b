package clink_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKey is the key tests use; they check it never appears where it must not.
const testKey = sandbox.DefaultAPIKey

// fixedNow is the clock of tests that assert the exact X-Timestamp.
var fixedNow = time.UnixMilli(1767225600123)

// fastRetries keeps retry tests quick.
var fastRetries = clink.WithBackoff(time.Millisecond, 2*time.Millisecond)

// newClient builds a client for baseURL with fast retries, failing the test on error.
func newClient(t testing.TB, baseURL string, opts ...clink.Option) *clink.Client {
	t.Helper()
	opts = append([]clink.Option{clink.WithBaseURL(baseURL), fastRetries}, opts...)
	c, err := clink.NewClient(testKey, opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// noKeepAlive is an HTTP client that opens a connection per request, so Go's transport never
// replays a request on a reused connection and server-side counts equal client attempts.
func noKeepAlive() clink.Option {
	return clink.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}})
}

// startSandbox serves sb over httptest and returns its URL.
func startSandbox(t testing.TB, sb *sandbox.Server) string {
	t.Helper()
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return srv.URL
}

// tickingClock returns a clock that moves one second forward at every reading.
func tickingClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return fixedNow.Add(time.Duration(n.Add(1)) * time.Second) }
}

func mustAmount(t testing.TB, s string) clink.Amount {
	t.Helper()
	a, err := clink.ParseAmount(s)
	if err != nil {
		t.Fatalf("ParseAmount(%q): %v", s, err)
	}
	return a
}
