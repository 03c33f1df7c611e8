package syncer

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
	"time"
)

// TestProfPush is a profiling aid: PROF_SRC=DIR [PROF_OUT=cpu.out
// PROF_RUN=N] pushes DIR four times in-process and profiles run N (default
// 1, the first unchanged one; 0 is the initial upload).
func TestProfPush(t *testing.T) {
	src := os.Getenv("PROF_SRC")
	if src == "" {
		t.Skip("set PROF_SRC to a tree to profile")
	}
	home := t.TempDir()
	o := &pipeOpener{t: t, home: home}
	for i := range 4 {
		if i == profRun() && os.Getenv("PROF_OUT") != "" {
			f, err := os.Create(os.Getenv("PROF_OUT"))
			if err != nil {
				t.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		t0 := time.Now()
		sum, err := Push(context.Background(), o, src, "d", Options{Delete: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %v %+v", i, time.Since(t0), *sum)
	}
}

func profRun() int {
	if os.Getenv("PROF_RUN") == "0" {
		return 0
	}
	return 1
}
