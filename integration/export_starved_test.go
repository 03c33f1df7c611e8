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
	waitForMarks(t, 30*time.Second, "every event of the starved time", out, execs, "starved-%d.")
	waitFor(t, 10*time.Second, "the helper's report", func() bool { return exportStatus(t, e, "jsonl").Stats.Sent > 0 })
	if st := exportStatus(t, e, "jsonl"); st.Stats.Dropped != 0 || st.Stats.SpoolDropped != 0 {
		t.Fatalf("events dropped: %+v", st.Stats)
	}
	if helperPID(e.home) != pid {
		t.Fatalf("the helper was restarted (%s -> %s)", pid, helperPID(e.home))
	}
}

// pipeFill is how many bytes wait in the pipe the helper pid reads on
// fd 0, and the pipe's capacity less a page: a pipe is full when its last
// page is in use, which may not be filled (the test opens the pipe through
// /proc and only asks; it reads nothing).
func pipeFill(t *testing.T, pid string) (queued, size int) {
	t.Helper()
	f, err := os.OpenFile("/proc/"+pid+"/fd/0", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("the helper's stdin: %v", err)
	}
	defer f.Close()
	if size, err = unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0); err != nil {
		t.Fatalf("the helper's stdin is not a pipe: %v", err)
	}
	size -= os.Getpagesize()
	if queued, err = unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ); err != nil { // FIONREAD
		t.Fatal(err)
	}
	return queued, size
}

// TestExportControlWithFullPipe: with the helper stopped (SIGSTOP) and its
// stdin pipe full, `export add`, `export list` and `export remove` still
// complete (the daemon's pipe writer holds no lock they need), and every
// event of that time arrives once the helper runs again.
func TestExportControlWithFullPipe(t *testing.T) {
	t.Setenv("DARKSHELL_EXPORT_FLUSH", "100ms")
	e := newLocalEnv(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "events.jsonl")
	if _, errOut, code := e.ds("export", "add", "jsonl", "--file", out); code != 0 {
		t.Fatalf("export add: %s", errOut)
	}
	e.createLocal("fp")
	var pid string
	waitFor(t, 30*time.Second, "the exporter helper", func() bool { pid = helperPID(e.home); return pid != "" })
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
	// Exec calls (each an exec_call start and end, and the processes'
	// events) until the pipe is full.
	// The pipe is full when it holds its size (less a page), or when a
	// round of execs added nothing to what it held past half its size:
	// the daemon's writer is blocked (the kernel can call a pipe full a
	// few KiB short of its size, its last pages partly used).
	marks, full, last := 0, 0, -1
	for round := 0; ; round++ {
		if q, size := pipeFill(t, pid); q >= size || (q == last && q >= size/2) {
			full = q
			break
		} else if round == 60 {
			t.Fatalf("the helper's pipe holds %d of %d bytes after %d rounds of execs", q, size, round)
		} else {
			last = q
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		p, err := e.c.Exec(ctx, "fp", &protocol.ExecStart{Argv: []string{"sh", "-c", fmt.Sprintf("echo full-%d.; i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done", marks)}})
		if err != nil {
			cancel()
			t.Fatalf("exec with the helper stopped: %v", err)
		}
		x, err := p.Wait(nil, nil)
		p.Close()
		cancel()
		if err != nil || x.Status() != 0 {
			t.Fatalf("exec with the helper stopped: %v %v", x, err)
		}
		marks++
		time.Sleep(200 * time.Millisecond) // the daemon writes every 100 ms (DARKSHELL_EXPORT_FLUSH)
	}
	// Control operations complete (e.ds gives each 2 minutes; before the
	// fix, add and remove waited for the helper to read).
	second := filepath.Join(dir, "second.jsonl")
	if _, errOut, code := e.ds("export", "add", "jsonl", "--name", "second", "--file", second); code != 0 {
		t.Fatalf("export add with the pipe full: %s", errOut)
	}
	if st := exportStatus(t, e, "second"); st.Name != "second" {
		t.Fatalf("export list with the pipe full: %+v", st)
	}
	if _, errOut, code := e.ds("export", "remove", "second"); code != 0 {
		t.Fatalf("export remove with the pipe full: %s", errOut)
	}
	if q, size := pipeFill(t, pid); q < full {
		t.Fatalf("the pipe drained meanwhile (%d of %d bytes, %d when full): the test proves nothing", q, size, full)
	}
	if err := syscall.Kill(n, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitForMarks(t, 60*time.Second, "every exec call of the stopped time", out, marks, "echo full-%d.;")
	if helperPID(e.home) != pid {
		t.Fatalf("the helper was restarted (%s -> %s)", pid, helperPID(e.home))
	}
}

// waitForMarks waits until file holds format's mark for every i below n.
func waitForMarks(t *testing.T, within time.Duration, what, file string, n int, format string) {
	t.Helper()
	waitFor(t, within, what, func() bool {
		b, _ := os.ReadFile(file)
		for i := range n {
			if !strings.Contains(string(b), fmt.Sprintf(format, i)) {
				return false
			}
		}
		return true
	})
}
