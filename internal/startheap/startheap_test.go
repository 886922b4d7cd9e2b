package startheap

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent returns the collector's current GOGC.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// TestFirstCollectionRestoresTheDefault: the start runs with GOGC 400, and
// the first collection sets it back to 100.
func TestFirstCollectionRestoresTheDefault(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Fatal("GOGC is set in the environment: run this test without it (startheap leaves a set GOGC alone)")
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

// TestGOGCFromTheEnvironmentIsKept runs this test binary again with GOGC=50:
// startheap leaves it as it is, before and after a collection.
func TestGOGCFromTheEnvironmentIsKept(t *testing.T) {
	if os.Getenv("STARTHEAP_CHILD") != "" {
		if raised || gcPercent() != 50 {
			t.Fatalf("GOGC=50 in the environment: raised %v, GOGC %d", raised, gcPercent())
		}
		runtime.GC()
		time.Sleep(50 * time.Millisecond) // a cleanup, were there one, would run now
		if gcPercent() != 50 {
			t.Fatalf("GOGC after a collection: %d, want 50", gcPercent())
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestGOGCFromTheEnvironmentIsKept$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STARTHEAP_CHILD=1", "GOGC=50")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
