//go:build postgres

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/gate/state"
)

// replicaDatabase creates a fresh database on the server of
// CLINK_TEST_DATABASE_URL and returns its URL; it is dropped when the test
// ends. Without the variable the test fails: built with the postgres tag,
// it never skips.
func replicaDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("CLINK_TEST_DATABASE_URL")
	if admin == "" {
		t.Fatal("CLINK_TEST_DATABASE_URL is not set: the tests built with the postgres tag need a PostgreSQL server (.ci/postgres.sh start DIR prints its URL)")
	}
	name := fmt.Sprintf("clink_replicas_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	sql := func(sql string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Fatal("connecting to the test database server failed")
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", strings.Fields(sql)[0], err)
		}
	}
	sql("CREATE DATABASE " + name)
	t.Cleanup(func() { sql("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal("CLINK_TEST_DATABASE_URL is not a URL")
	}
	u.Path = "/" + name
	return u.String()
}

// replicaEnv writes policy and a fresh state secret to a directory of the
// test's and returns the environment of a replica serving that policy on
// the database dbURL against the Clink at clinkURL, with the policy file's
// path. Every replica of a test shares the secret, as in production.
func replicaEnv(t testing.TB, policy, dbURL, clinkURL string) (env []string, policyFile string) {
	t.Helper()
	dir := t.TempDir()
	policyFile = filepath.Join(dir, "policy.yaml")
	secretFile := filepath.Join(dir, "state.secret")
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"CLINK_API_KEY=" + sandbox.DefaultAPIKey, "CLINK_ENV=sandbox", "CLINK_BASE_URL=" + clinkURL,
		"CLINK_POLICY=" + policyFile, "CLINK_DATABASE_URL=" + dbURL, "CLINK_STATE_SECRET_FILE=" + secretFile,
	}, policyFile
}

// replicaClink is a fake Clink shared by the replicas: the sandbox, counting
// creates, able to hold the next ones until released.
type replicaClink struct {
	sb    *sandbox.Server
	posts atomic.Int64
	hold  atomic.Int64 // creates still to hold
	held  chan struct{}
	free  chan struct{}
}

func newReplicaClink(t *testing.T) (*replicaClink, string) {
	c := &replicaClink{sb: sandbox.New(), held: make(chan struct{}, 16), free: make(chan struct{})}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(c.free) })
	return c, srv.URL + "/"
}

func (c *replicaClink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		c.posts.Add(1)
		if c.hold.Add(-1) >= 0 {
			c.held <- struct{}{}
			select {
			case <-c.free:
			case <-r.Context().Done():
				return
			}
		}
	}
	c.sb.ServeHTTP(w, r)
}

// replicaPolicy: USD for the load (a 1,000.00 budget), EUR for the
// idempotency key, GBP for the kill (a 100.00 budget).
const replicaPolicy = `version: 1
currencies:
  USD: { max_amount: 500 }
  EUR: { max_amount: 100 }
  GBP: { max_amount: 100 }
budgets:
  - { currency: USD, window: 24h, max_amount: 1000 }
  - { currency: GBP, window: 24h, max_amount: 100 }
duplicates: { window: 10m }
`

// postTool posts one create_agent_payment_session call to a replica and
// returns its result's text and whether it is an error.
func postTool(t *testing.T, mcpURL, args string) (string, bool) {
	return postToolWith(http.DefaultClient, mcpURL, args)
}

// postToolWith is postTool with the HTTP client hc.
func postToolWith(hc *http.Client, mcpURL, args string) (string, bool) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_agent_payment_session","arguments":` + args + `}}`
	req, _ := http.NewRequest(http.MethodPost, mcpURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	res, err := hc.Do(req)
	if err != nil {
		return "transport: " + err.Error(), true
	}
	defer res.Body.Close()
	var out struct {
		Result struct {
			Content []struct{ Text string } `json:"content"`
			IsError bool                    `json:"isError"`
		} `json:"result"`
	}
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &out); err != nil || len(out.Result.Content) == 0 {
		return fmt.Sprintf("HTTP %d: %s", res.StatusCode, b), true
	}
	return out.Result.Content[0].Text, out.Result.IsError
}

// TestReplicasShareOneDatabase runs three servers on one PostgreSQL
// database behind no balancer but the test's round robin: a budget holds
// across them exactly, an idempotency key sent to all three creates one
// session, and a replica killed with a call at Clink leaves no overspend and
// has its call resolved as unknown by the others.
func TestReplicasShareOneDatabase(t *testing.T) {
	dbURL := replicaDatabase(t)
	clinkFake, clinkURL := newReplicaClink(t)
	env, policyFile := replicaEnv(t, replicaPolicy, dbURL, clinkURL)
	var replicas []*httpProcess
	for range 3 {
		replicas = append(replicas, startHTTP(t, env))
	}
	audit := map[string]string{"CLINK_DATABASE_URL": dbURL, "CLINK_POLICY": policyFile}

	t.Run("300 calls over three replicas fit the budget exactly", func(t *testing.T) {
		var created, refused, other atomic.Int64
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 48 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > 300 {
						return
					}
					text, isErr := postTool(t, replicas[i%3].url, fmt.Sprintf(`{"customerEmail":"load-%d@example.com","amount":10,"currency":"USD"}`, i))
					switch {
					case !isErr:
						created.Add(1)
					case strings.Contains(text, "budget_exceeded"):
						refused.Add(1)
					default:
						other.Add(1)
						t.Errorf("call %d: %s", i, text)
					}
				}
			})
		}
		wg.Wait()
		if created.Load() != 100 || refused.Load() != 200 {
			t.Errorf("created %d, refused %d (other %d): want exactly 100 of the 10.00 calls under the 1,000.00 budget", created.Load(), refused.Load(), other.Load())
		}
		if n := clinkFake.posts.Load(); n != 100 {
			t.Errorf("Clink received %d creates, want the 100 created", n)
		}
	})

	t.Run("one idempotency key sent to every replica creates one session", func(t *testing.T) {
		before := clinkFake.posts.Load()
		args := `{"customerEmail":"key@example.com","amount":50,"currency":"EUR","idempotencyKey":"order-7c9e6679-replicas"}`
		var created, replayed atomic.Int64
		var wg sync.WaitGroup
		for i := range 9 {
			wg.Go(func() {
				text, isErr := postTool(t, replicas[i%3].url, args)
				switch {
				case isErr:
					t.Errorf("replica %d: %s", i%3, text)
				case strings.HasPrefix(text, "Replay: "):
					replayed.Add(1)
				default:
					created.Add(1)
				}
			})
		}
		wg.Wait()
		if created.Load() != 1 || replayed.Load() != 8 {
			t.Errorf("created %d, replayed %d: want 1 and 8", created.Load(), replayed.Load())
		}
		if n := clinkFake.posts.Load() - before; n != 1 {
			t.Errorf("Clink received %d creates for one key, want 1", n)
		}
	})

	t.Run("a replica killed with a call at Clink overspends nothing and its call is resolved", func(t *testing.T) {
		victim := replicas[2]
		clinkFake.hold.Store(1)
		go postTool(t, victim.url, `{"customerEmail":"kill@example.com","amount":60,"currency":"GBP"}`)
		select {
		case <-clinkFake.held:
		case <-time.After(20 * time.Second):
			t.Fatal("the victim's call never reached Clink")
		}
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.exited
		// Its 60.00 may have been spent: 60.00 more does not fit 100.00.
		if text, isErr := postTool(t, replicas[0].url, `{"customerEmail":"after@example.com","amount":60,"currency":"GBP"}`); !isErr || !strings.Contains(text, "budget_exceeded") {
			t.Errorf("a call that would overspend after the kill: %v %s", isErr, text)
		}
		// The survivors resolve it once the dead replica's lease has passed.
		deadline := time.Now().Add(60 * time.Second)
		for {
			unknown := only(auditExportEnv(t, audit), "outcome", "outcome_unknown")
			if len(unknown) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d outcome_unknown records 60 s after the kill, want the dead replica's call", len(unknown))
			}
			time.Sleep(time.Second)
		}
		if code, out, errOut := runCmd(t, audit, "audit", "verify"); code != 0 || !strings.Contains(out, "hash chain intact") {
			t.Errorf("audit verify: exit %d %s%s", code, out, errOut)
		}
	})
	for _, r := range replicas {
		if strings.Contains(r.stderr.String(), dbURL) || strings.Contains(r.stderr.String(), passwordOf(dbURL)) {
			t.Error("a replica logged the database URL or its password")
		}
		// It logs where its state is all the same, by the setting's name.
		if !strings.Contains(r.stderr.String(), `"msg":"store","where":"the database (CLINK_DATABASE_URL)"`) {
			t.Errorf("a replica did not log its store as the database:\n%s", r.stderr.String())
		}
	}
}

// auditExportEnv runs "clink-mcp audit export" with vars.
func auditExportEnv(t *testing.T, vars map[string]string) []auditLine {
	t.Helper()
	code, out, errOut := runCmd(t, vars, "audit", "export")
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	var lines []auditLine
	for line := range strings.Lines(out) {
		var l auditLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("audit export line: %v", err)
		}
		lines = append(lines, l)
	}
	return lines
}

// passwordOf is the password in a database URL, or a string no log holds.
func passwordOf(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.User == nil {
		return "\x00no password\x00"
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return p
	}
	return "\x00no password\x00"
}

// TestReplicasSurviveADatabaseRestart restarts PostgreSQL while two
// replicas take calls: calls during the outage are refused (never allowed
// without their limits recorded), /readyz turns 503 and back by itself, no
// record is lost, and the budget still allows exactly what it allows.
func TestReplicasSurviveADatabaseRestart(t *testing.T) {
	clusterDir := os.Getenv("CLINK_TEST_PG_DIR")
	if clusterDir == "" {
		t.Fatal("CLINK_TEST_PG_DIR is not set: this test restarts the cluster .ci/postgres.sh started in that folder")
	}
	dbURL := replicaDatabase(t)
	clinkFake, clinkURL := newReplicaClink(t)
	env, policyFile := replicaEnv(t, replicaPolicy, dbURL, clinkURL)
	replicas := []*httpProcess{startHTTP(t, env), startHTTP(t, env)}

	var created, refusedBudget, refusedOther atomic.Int64
	var next atomic.Int64
	spend := func(n int64) {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > n {
						return
					}
					text, isErr := postTool(t, replicas[i%2].url, fmt.Sprintf(`{"customerEmail":"r-%d@example.com","amount":10,"currency":"USD"}`, i))
					switch {
					case !isErr:
						created.Add(1)
					case strings.Contains(text, "budget_exceeded"):
						refusedBudget.Add(1)
					default:
						refusedOther.Add(1) // the database is away: refused, nothing allowed
					}
				}
			})
		}
		wg.Wait()
	}
	// Calls run while the database restarts.
	done := make(chan struct{})
	go func() { defer close(done); spend(120) }()
	time.Sleep(300 * time.Millisecond)
	restart := exec.Command("bash", "../../.ci/postgres.sh", "restart", clusterDir)
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restarting PostgreSQL: %v: %s", err, out)
	}
	<-done
	// Both replicas are ready again by themselves.
	for i, r := range replicas {
		deadline := time.Now().Add(30 * time.Second)
		for {
			res, err := http.Get(strings.TrimSuffix(r.url, "/mcp") + "/readyz")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d not ready 30 s after the restart", i)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// No call is left open: one whose hold committed while its answer was
	// lost with the connection is resolved (its reservation given back)
	// once the database answers again.
	audit := map[string]string{"CLINK_DATABASE_URL": dbURL, "CLINK_POLICY": policyFile}
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, out, errOut := runCmd(t, audit, "audit", "verify")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the restart, audit verify: exit %d %s%s", code, out, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Then the budget still allows exactly 100 calls of 10.00 in all.
	spend(next.Load() + 150)
	if created.Load() != 100 {
		t.Errorf("created %d in all (refused: %d by the budget, %d during the outage), want exactly 100 under the 1,000.00 budget",
			created.Load(), refusedBudget.Load(), refusedOther.Load())
	}
	if n := clinkFake.posts.Load(); n != created.Load() {
		t.Errorf("Clink received %d creates, and %d were answered as created", n, created.Load())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// A completion that failed during the outage lands when the
		// journal retries it.
		if n := len(only(auditExportEnv(t, audit), "outcome", "created")); int64(n) == created.Load() {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d created outcomes in the audit trail, want %d: a record was lost", n, created.Load())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, out, errOut := runCmd(t, audit, "audit", "verify"); code != 0 || !strings.Contains(out, "hash chain intact") {
		t.Errorf("audit verify: exit %d %s%s", code, out, errOut)
	}
	t.Logf("created %d, refused %d by the budget and %d during the restart", created.Load(), refusedBudget.Load(), refusedOther.Load())
}

// The commands that work beside the replicas never migrate their
// database: a newer binary used to verify the trail would otherwise
// upgrade it under the older replicas, which would then refuse to
// restart. They refuse a database of an older schema, and one without the
// store, and leave both as they were.
func TestCommandsBesideTheReplicasNeverUpgradeTheDatabase(t *testing.T) {
	query := func(t *testing.T, dbURL, q string) (n int) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal("connecting to the test database failed")
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	t.Run("an older schema", func(t *testing.T) {
		dbURL := replicaDatabase(t)
		st, err := state.OpenPostgres(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		current := query(t, dbURL, `SELECT max(version) FROM schema_migrations`)
		// What a replica of the schema before left, as docs/operations.md
		// says to go back to it.
		query(t, dbURL, fmt.Sprintf(`WITH d AS (DELETE FROM schema_migrations WHERE version = %d RETURNING 1) SELECT count(*) FROM d`, current))
		for _, args := range besideTheServer {
			command := strings.Join(args[:2], " ")
			code, out, errOut := runCmd(t, map[string]string{"CLINK_DATABASE_URL": dbURL}, args...)
			want := fmt.Sprintf("the store in the database (CLINK_DATABASE_URL) has schema version %d, older than this clink-mcp's %d: \"clink-mcp %s\" does not upgrade it",
				current-1, current, command)
			if code != 1 || out != "" || !strings.Contains(errOut, want) {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", command, code, out, errOut, want)
			}
			if v := query(t, dbURL, `SELECT max(version) FROM schema_migrations`); v != current-1 {
				t.Fatalf("%s upgraded the database to schema %d", command, v)
			}
		}
	})
	t.Run("a database without the store", func(t *testing.T) {
		dbURL := replicaDatabase(t)
		for _, args := range besideTheServer {
			command := strings.Join(args[:2], " ")
			code, out, errOut := runCmd(t, map[string]string{"CLINK_DATABASE_URL": dbURL}, args...)
			if code != 1 || out != "" || !strings.Contains(errOut, "holds no clink-mcp store") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying the database holds no store", command, code, out, errOut)
			}
			if n := query(t, dbURL, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`); n != 0 {
				t.Fatalf("%s made %d tables in the database", command, n)
			}
		}
	})
}
