package cpus

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var tuneOnce sync.Once

// TestLatencyMode: one P by default, every CPU while widened (nested, with
// idempotent releases) or while the process keeps its one P busy, and one
// P again after.
func TestLatencyMode(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || Max() < 2 {
		t.Skipf("latency mode needs at least 2 CPUs and GOMAXPROCS unset (Max %d, GOMAXPROCS=%q)", Max(), os.Getenv("GOMAXPROCS"))
	}
	// A low busy share: on a machine busy with other work (CI runs
	// packages in parallel) the spinning test gets only part of a CPU.
	// Set once: the monitor, started by the first run, reads them (-count).
	tuneOnce.Do(func() { samplePeriod, hold, busyShare = 20*time.Millisecond, 300*time.Millisecond, 0.3 })
	LatencyMode()
	expect := func(want int, what string) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Fatalf("%s: GOMAXPROCS = %d, want %d", what, got, want)
		}
	}
	expect(1, "latency mode")

	r1 := Widen()
	expect(Max(), "widened")
	r2 := Widen()
	r1()
	r1()
	expect(Max(), "one of two widenings released (twice)")
	r2()
	expect(1, "every widening released")

	// A busy process widens within a few samples and narrows after hold.
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
		}
	}()
	waitFor := func(want int, within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOMAXPROCS still %d after %v, want %d", what, runtime.GOMAXPROCS(0), within, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(Max(), 10*time.Second, "busy")
	stop.Store(true)
	<-done
	waitFor(1, 10*time.Second, "idle again")
}
