package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"golang.org/x/sys/unix"
)

// helperPID is the pid of the exporter helper of the daemon of home (""
// while none runs).
func helperPID(home string) string {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if a := strings.Split(string(cmd), "\x00"); filepath.Base(a[0]) != "darkshell-export" {
			continue
		}
		// It has the daemon's environment.
		if env, err := os.ReadFile("/proc/" + p.Name() + "/environ"); err == nil && slices.Contains(strings.Split(string(env), "\x00"), "DARKSHELL_HOME="+home) {
			return p.Name()
		}
	}
	return ""
}

// TestExportStarvedHelper: with DARKSHELL_EXPORT_SCHED=idle the daemon
// starts the exporter helper in SCHED_IDLE (every thread), so it runs only
// on CPU the sandboxes leave. Starved completely (SIGSTOP: worse than any load), it holds back no exec
// and no `export list`; the events of that time wait in the bounded pipe
// and subscription, and all of them arrive once it runs again.
func TestExportStarvedHelper(t *testing.T) {
	t.Setenv("DARKSHELL_EXPORT_FLUSH", "100ms")
	t.Setenv("DARKSHELL_EXPORT_SCHED", "idle")
	e := newLocalEnv(t)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	if _, errOut, code := e.ds("export", "add", "jsonl", "--file", out); code != 0 {
		t.Fatalf("export add: %s", errOut)
	}
	e.createLocal("st")
	var pid string
	waitFor(t, 30*time.Second, "the exporter helper", func() bool { pid = helperPID(e.home); return pid != "" })

	// Every thread of the helper is SCHED_IDLE (field 41 of stat: policy).
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Fatalf("helper %s has %d threads", pid, len(tasks))
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		if pol, _ := strconv.Atoi(f[41-3]); pol != unix.SCHED_IDLE {
			t.Fatalf("helper thread %s has policy %d, want SCHED_IDLE (%d)", task.Name(), pol, unix.SCHED_IDLE)
		}
	}

	n, _ := strconv.Atoi(pid)
	if err := syscall.Kill(n, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(n, syscall.SIGCONT)
		}
	}()
	const execs = 40
	for i := range execs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := e.c.Exec(ctx, "st", &protocol.ExecStart{Argv: []string{"/bin/echo", fmt.Sprintf("starved-%d.", i)}})
		if err != nil {
			cancel()
			t.Fatalf("exec %d with the helper stopped: %v", i, err)
		}
		x, err := p.Wait(nil, nil)
		p.Close()
		cancel()
		if err != nil || x.Status() != 0 {
			t.Fatalf("exec %d with the helper stopped: %v %v", i, x, err)
		}
	}
	// The daemon answers for the exporters while the helper is stopped.
	if st := exportStatus(t, e, "jsonl"); st.Error != "" {
		t.Fatalf("export list with the helper stopped: %+v", st)
	}
	if b, _ := os.ReadFile(out); strings.Contains(string(b), "starved-0.") {
		t.Fatal("a stopped helper wrote events")
	}
	if err := syscall.Kill(n, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitFor(t, 30*time.Second, "every event of the starved time", func() bool {
		b, _ := os.ReadFile(out)
		for i := range execs {
			if !strings.Contains(string(b), fmt.Sprintf("starved-%d.", i)) {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "the helper's report", func() bool { return exportStatus(t, e, "jsonl").Stats.Sent > 0 })
	if st := exportStatus(t, e, "jsonl"); st.Stats.Dropped != 0 || st.Stats.SpoolDropped != 0 {
		t.Fatalf("events dropped: %+v", st.Stats)
	}
	if helperPID(e.home) != pid {
		t.Fatalf("the helper was restarted (%s -> %s)", pid, helperPID(e.home))
	}
}
