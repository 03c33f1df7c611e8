package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// threadSched is the scheduling policy and nice value of every thread of
// this process (fields 41 and 19 of /proc/self/task/TID/stat).
func threadSched(t *testing.T) map[string][2]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc/self/task: %v", err)
	}
	out := map[string][2]int{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		nice, _ := strconv.Atoi(f[19-3])
		policy, _ := strconv.Atoi(f[41-3])
		out[task.Name()] = [2]int{policy, nice}
	}
	return out
}

// TestLowerPriority: in a fresh process (the class of the test binary's
// threads must not leak into other tests) every thread gets the class and
// niceness, and so do threads made afterwards (locked goroutines force
// new ones).
func TestLowerPriority(t *testing.T) {
	if c := os.Getenv("DS_TEST_PRIO_CHILD"); c != "" {
		sched, nice, _ := strings.Cut(c, ":")
		n, _ := strconv.Atoi(nice)
		if err := lowerPriority(sched, n); err != nil {
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
		b, _ := json.Marshal(threadSched(t))
		close(release)
		os.Stdout.Write(append(append([]byte("THREADS "), b...), '\n'))
		return
	}
	for _, tc := range []struct {
		sched          string
		nice           int
		policy, wantNi int
	}{
		{schedIdle, 10, unix.SCHED_IDLE, -1}, // SCHED_IDLE has no niceness
		{schedBatch, 10, unix.SCHED_BATCH, 10},
		{schedBatch, 0, unix.SCHED_BATCH, 0},
		{schedNormal, 3, unix.SCHED_NORMAL, 3},
		{schedNormal, 0, unix.SCHED_NORMAL, 0},
	} {
		t.Run(tc.sched+"/"+strconv.Itoa(tc.nice), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestLowerPriority$", "-test.v")
			cmd.Env = append(os.Environ(), "DS_TEST_PRIO_CHILD="+tc.sched+":"+strconv.Itoa(tc.nice))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			_, js, ok := strings.Cut(string(out), "THREADS ")
			if !ok {
				t.Fatalf("child said nothing:\n%s", out)
			}
			js, _, _ = strings.Cut(js, "\n")
			var th map[string][2]int
			if err := json.Unmarshal([]byte(js), &th); err != nil {
				t.Fatal(err)
			}
			if len(th) < 5 {
				t.Fatalf("only %d threads: %v", len(th), th)
			}
			for tid, pn := range th {
				if pn[0] != tc.policy || (tc.wantNi >= 0 && pn[1] != tc.wantNi) {
					t.Fatalf("thread %s: policy %d nice %d, want policy %d nice %d (all: %v)", tid, pn[0], pn[1], tc.policy, tc.wantNi, th)
				}
			}
		})
	}
	if err := lowerPriority("fifo", 1); err == nil || !strings.Contains(err.Error(), "DARKSHELL_EXPORT_SCHED") {
		t.Fatalf("a bad class: %v", err)
	}
}

func TestKnobs(t *testing.T) {
	t.Setenv("DARKSHELL_EXPORT_SCHED", "")
	t.Setenv("DARKSHELL_EXPORT_NICE", "")
	if schedClass() != schedBatch || niceness() != defaultNice {
		t.Fatalf("defaults: %q %d", schedClass(), niceness())
	}
	t.Setenv("DARKSHELL_EXPORT_SCHED", "Idle")
	t.Setenv("DARKSHELL_EXPORT_NICE", "0")
	if schedClass() != schedIdle || niceness() != 0 {
		t.Fatalf("knobs ignored: %q %d", schedClass(), niceness())
	}
}
