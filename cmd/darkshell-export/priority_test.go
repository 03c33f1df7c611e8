package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// threadNices is the nice value of every thread of this process.
func threadNices(t *testing.T) map[string]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc/self/task: %v", err)
	}
	out := map[string]int{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		n, _ := strconv.Atoi(f[16]) // field 19 of stat: nice
		out[task.Name()] = n
	}
	return out
}

// TestLowerPriority: every thread is reniced, and threads made afterwards
// (a locked goroutine forces new ones) are as nice.
func TestLowerPriority(t *testing.T) {
	if err := lowerPriority(3); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread() // this thread stays busy: others are made
			wg.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	wg.Wait()
	defer close(release)
	nices := threadNices(t)
	if len(nices) < 5 {
		t.Fatalf("only %d threads", len(nices))
	}
	for tid, n := range nices {
		if n < 3 {
			t.Fatalf("thread %s has nice %d, want >= 3 (%v)", tid, n, nices)
		}
	}
	if niceness() != defaultNice {
		t.Fatalf("niceness %d without DARKSHELL_EXPORT_NICE", niceness())
	}
	t.Setenv("DARKSHELL_EXPORT_NICE", "0")
	if niceness() != 0 {
		t.Fatal("DARKSHELL_EXPORT_NICE=0 ignored")
	}
}
