package startheap

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// gcPercent returns the collector's current GOGC, read without setting
// it (a set and a set back would race with the cleanup that sets it).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// inChild runs the test named test again in a process of its own, with
// GOGC removed from the environment and then set to gogc unless it is
// empty, and fails t with the child's output if it fails. It reports
// whether this process is that child, which then runs the test's checks.
func inChild(t *testing.T, test, gogc string) bool {
	if os.Getenv("STARTHEAP_CHILD") == test {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "STARTHEAP_CHILD="+test)
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return false
}

// TestFirstCollectionRestoresTheDefault: without GOGC in the environment
// the start runs with GOGC 400, and the first collection sets it back to
// 100.
func TestFirstCollectionRestoresTheDefault(t *testing.T) {
	if !inChild(t, "TestFirstCollectionRestoresTheDefault", "") {
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := gcPercent()
	switch {
	case !raised:
		t.Fatal("init did not raise the threshold")
	case ms.NumGC == 0 && p != startPercent:
		t.Fatalf("GOGC before the first collection: %d, want %d", p, startPercent)
	case p != startPercent && p != runPercent:
		t.Fatalf("GOGC after %d collections: %d, want %d", ms.NumGC, p, runPercent)
	}
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != runPercent {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC after the first collection: %d, want %d", gcPercent(), runPercent)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGOGCFromTheEnvironmentIsKept: with GOGC=50 in the environment,
// startheap leaves it as it is, before and after a collection.
func TestGOGCFromTheEnvironmentIsKept(t *testing.T) {
	if !inChild(t, "TestGOGCFromTheEnvironmentIsKept", "50") {
		return
	}
	if raised || gcPercent() != 50 {
		t.Fatalf("GOGC=50 in the environment: raised %v, GOGC %d", raised, gcPercent())
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond) // a cleanup, were there one, would run now
	if gcPercent() != 50 {
		t.Fatalf("GOGC after a collection: %d, want 50", gcPercent())
	}
}
