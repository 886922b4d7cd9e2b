package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink"
	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/internal/loadbench"
	"github.com/clink-mcp/clink-mcp/policy"
	"github.com/clink-mcp/clink-mcp/service"
)

// BenchmarkHTTPLoad measures the server under load over real HTTP: N
// clients (1, 16, 64) each make tools/call requests one after another, as
// fast as the server answers, against a loopback Clink that answers after
// 50 ms, with the memory and the SQLite store. Each call is distinct (no
// replays). It reports calls/s and the p50 and p99 latency of a call as
// the client sees it.
//
//	go test -run '^$' -bench HTTPLoad -benchtime 2000x ./service/
func BenchmarkHTTPLoad(b *testing.B) {
	for _, storeName := range []string{"memory", "sqlite"} {
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", storeName, clients), func(b *testing.B) {
				benchLoad(b, storeName, clients)
			})
		}
	}
}

func benchLoad(b *testing.B, storeName string, clients int) {
	pol, err := policy.Parse("load.yaml", []byte(loadbench.Policy))
	if err != nil {
		b.Fatal(err)
	}
	sb := sandbox.New()
	sb.SetFault(sandbox.Fault{Latency: 50 * time.Millisecond})
	url, shutdown, err := sb.Listen()
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(context.Background())
	cl, err := clink.NewClient(sandbox.DefaultAPIKey, clink.WithBaseURL(url))
	if err != nil {
		b.Fatal(err)
	}
	var st state.Store = state.NewMemory()
	if storeName == "sqlite" {
		if st, err = state.OpenSQLite(filepath.Join(b.TempDir(), "state.db")); err != nil {
			b.Fatal(err)
		}
	}
	defer st.Close()
	svc, err := service.New(service.Config{
		Policy: pol, Payments: cl, Account: "bench", Store: st,
		Secret: bytes.Repeat([]byte{9}, gate.MinSecretLen), Version: "bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close(context.Background())
	srv := httptest.NewServer(svc.Handler(service.HTTPOptions{}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}

	latencies, elapsed := loadbench.Run(b, clients, func(i int64) (time.Duration, error) {
		return timedCall(hc, srv.URL+"/mcp", i)
	})
	loadbench.Report(b, latencies, elapsed)
}

// timedCall makes distinct checkout call i over HTTP at url and returns
// how long the client waited for its answer; an answer that is not a
// created session is an error.
func timedCall(hc *http.Client, url string, i int64) (time.Duration, error) {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_checkout_session",`+
		`"arguments":{"amount":12,"currency":"USD","customerEmail":"c%d@example.com"}}}`, i, i)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if res.StatusCode != http.StatusOK || !bytes.Contains(out, []byte("Created checkout session")) {
		return 0, fmt.Errorf("call %d: %d %s", i, res.StatusCode, out)
	}
	return d, nil
}
