package integration

import (
	"os"
	"testing"
	"time"
)

// TestParseTimes reads the children's CPU from the shell's `times` output
// (the remote tar's CPU in bench-sync).
func TestParseTimes(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want time.Duration
	}{
		{"0m0.010s 0m0.020s\n0m1.250s 0m0.500s\n", 1750 * time.Millisecond},
		{"0m0.000s 0m0.000s\n1m2.000s 0m0.000s", 62 * time.Second},
		{"garbage", 0},
		{"", 0},
	} {
		if got := parseTimes(tc.out); got != tc.want {
			t.Errorf("parseTimes(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}

// TestProcCPU: this process's CPU time is read from /proc and grows with
// work; a missing process reads as 0.
func TestProcCPU(t *testing.T) {
	before := procCPU(os.Getpid())
	for t0 := time.Now(); time.Since(t0) < 50*time.Millisecond; {
	}
	if after := procCPU(os.Getpid()); after <= before {
		t.Fatalf("CPU time did not grow: %v then %v", before, after)
	}
	if got := procCPU(1 << 30); got != 0 {
		t.Fatalf("missing process: %v", got)
	}
}
