//go:build postgres

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clink-mcp/clink-mcp/clink/sandbox"
	"github.com/clink-mcp/clink-mcp/internal/loadbench"
)

// BenchmarkReplicaProcessesPostgres measures what replicas add, with the
// machine's cores shared or each replica held to CPU of its own: 1 or 3
// processes of the real binary (`serve --http`) on one fresh database, 64
// clients making distinct calls spread round-robin over them, a Clink (the
// sandbox, in this process) that answers after 50 ms. It reports calls/s and
// the p50 and p99 of a call.
//
// cpu=host leaves the replicas the machine's cores, which they share with
// the database, the Clink and the clients: on a small machine the run is
// bound by its CPU, whatever the number of replicas. cpu=0.5 and cpu=0.25
// confine each replica to half or a quarter of a core with a cgroup of its
// own (a CPU quota, standing in for CPU of its own: a quota also pauses a
// process that has used its share of a period, which raises the p99),
// leaving the rest of the machine to the database and the clients: what
// three replicas then do that one cannot is what the shared store lets them
// do together. Those need root and a cgroup CPU controller (v1 or v2), and
// fail without them. It also reports the CPU time the replicas spent per
// call (Linux only). A failed call fails the run, which then reports nothing.
//
//	dir=$(mktemp -d); export CLINK_TEST_DATABASE_URL=$(.ci/postgres.sh start "$dir")
//	go test -tags postgres -run '^$' -bench ReplicaProcessesPostgres -benchtime 3000x ./cmd/clink-mcp/
//	.ci/postgres.sh stop "$dir"
func BenchmarkReplicaProcessesPostgres(b *testing.B) {
	for _, cpu := range []float64{0, 0.5, 0.25} {
		for _, replicas := range []int{1, 3} {
			name := "host"
			if cpu > 0 {
				name = strconv.FormatFloat(cpu, 'f', -1, 64)
			}
			b.Run(fmt.Sprintf("cpu=%s/replicas=%d/clients=64", name, replicas), func(b *testing.B) {
				replicaLoad(b, replicas, cpu, 64)
			})
		}
	}
}

// replicaLoad starts replicas servers on a fresh database, each confined to
// cpu cores unless cpu is 0, and has clients clients make b.N distinct calls
// over them.
func replicaLoad(b *testing.B, replicas int, cpu float64, clients int) {
	sb := sandbox.New()
	sb.SetFault(sandbox.Fault{Latency: 50 * time.Millisecond})
	clinkURL, shutdown, err := sb.Listen()
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(context.Background())
	env, _ := replicaEnv(b, loadbench.Policy, replicaDatabase(b), clinkURL)
	urls := make([]string, replicas)
	pids := make([]int, replicas)
	for i := range urls {
		p := startHTTP(b, env)
		if cpu > 0 {
			confineCPU(b, p, cpu)
		}
		urls[i], pids[i] = p.url, p.cmd.Process.Pid
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	defer hc.CloseIdleConnections()

	cpuBefore, cpuErr := processesCPU(pids)
	latencies, elapsed := loadbench.Run(b, clients, func(i int64) (time.Duration, error) {
		t0 := time.Now()
		text, isErr := postToolWith(hc, urls[int(i)%len(urls)],
			fmt.Sprintf(`{"customerEmail":"load-%d@example.com","amount":10,"currency":"USD"}`, i))
		if isErr {
			return 0, fmt.Errorf("call %d: %s", i, text)
		}
		return time.Since(t0), nil
	})
	cpuAfter, err := processesCPU(pids)
	if b.Failed() {
		return // figures over the calls that succeeded would mislead
	}
	if got := sb.Requests(); got != int64(b.N) {
		b.Fatalf("Clink received %d requests for %d calls", got, b.N)
	}
	switch {
	case cpuErr == nil && err == nil:
		b.ReportMetric(float64((cpuAfter-cpuBefore).Microseconds())/1000/float64(len(latencies)), "replica-cpu-ms/call")
	case runtime.GOOS == "linux":
		b.Errorf("reading the replicas' CPU time: %v", errors.Join(cpuErr, err))
	}
	loadbench.Report(b, latencies, elapsed)
}

// processesCPU returns the CPU time the processes pids have used, user and
// system, from Linux's /proc.
func processesCPU(pids []int) (time.Duration, error) {
	const tick = 10 * time.Millisecond // USER_HZ is 100 on every Linux Go supports
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// The fields after the command's name, which ends at the last ')':
		// utime and stime are the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
		}
		for _, v := range f[11:13] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, err
			}
			total += time.Duration(n) * tick
		}
	}
	return total, nil
}

// confineCPU moves the server p into a cgroup of its own limited to cpus
// cores (a CPU quota over periods of 100 ms), with cgroup v2 when its root
// offers the cpu controller, else with v1's cpu hierarchy. When b ends it
// stops p and removes the cgroup.
func confineCPU(b testing.TB, p *httpProcess, cpus float64) {
	b.Helper()
	const period = 100_000 // us
	quota := int(cpus * period)
	name := fmt.Sprintf("clink-bench-%d-%d", os.Getpid(), p.cmd.Process.Pid)
	var dir string
	var limits [][2]string // file, value
	if ctl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(ctl)), "cpu") {
		// The controller is enabled for the root's children unless it is
		// already, and disabled again afterwards (once the cgroup below is
		// gone: Cleanup runs last in, first out).
		const subtree = "/sys/fs/cgroup/cgroup.subtree_control"
		if on, err := os.ReadFile(subtree); err != nil || !slices.Contains(strings.Fields(string(on)), "cpu") {
			if err := os.WriteFile(subtree, []byte("+cpu"), 0); err != nil {
				b.Fatalf("confining a replica's CPU: enabling cgroup v2's cpu controller (needs root; in a container whose processes sit in its root cgroup the kernel refuses it): %v", err)
			}
			b.Cleanup(func() { _ = os.WriteFile(subtree, []byte("-cpu"), 0) })
		}
		dir = filepath.Join("/sys/fs/cgroup", name)
		limits = [][2]string{{"cpu.max", fmt.Sprintf("%d %d", quota, period)}}
	} else if st, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil && st.Mode().IsRegular() {
		dir = filepath.Join("/sys/fs/cgroup/cpu", name)
		limits = [][2]string{{"cpu.cfs_period_us", strconv.Itoa(period)}, {"cpu.cfs_quota_us", strconv.Itoa(quota)}}
	} else {
		b.Fatal("confining a replica's CPU needs a cgroup CPU controller (v2 at /sys/fs/cgroup, or v1 at /sys/fs/cgroup/cpu): this machine has neither")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatalf("confining a replica's CPU: creating a cgroup (needs root): %v", err)
	}
	b.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
		// The kernel may take a moment to see the cgroup empty.
		for range 50 {
			if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.Errorf("the cgroup %s could not be removed", dir)
	})
	for _, l := range append(limits, [2]string{"cgroup.procs", strconv.Itoa(p.cmd.Process.Pid)}) {
		if err := os.WriteFile(filepath.Join(dir, l[0]), []byte(l[1]), 0); err != nil {
			b.Fatalf("confining a replica's CPU: writing %s: %v", l[0], err)
		}
	}
}
