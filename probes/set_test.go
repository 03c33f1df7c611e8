package probes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
)

func loadOrSkip(t *testing.T) *Set {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatal("needs root to load eBPF")
		}
		t.Skip("SKIP: needs root to load eBPF")
	}
	s, err := Load()
	if errors.Is(err, ErrNotSupported) && os.Getenv("DARKSHELL_REQUIRE_ALL") == "" {
		t.Skipf("SKIP (eBPF unavailable): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// echoer is a shell in a new pid namespace that runs /bin/echo for every
// line written to it.
type echoer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	ns  uint32
}

func newEchoer(t *testing.T) *echoer {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `while read l; do /bin/echo "$l"; done`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	ns, err := PidNS(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return &echoer{cmd: cmd, in: in, out: bufio.NewReader(out), ns: ns}
}

// say runs /bin/echo word in the namespace and waits for its output.
func (e *echoer) say(t *testing.T, word string) {
	t.Helper()
	fmt.Fprintln(e.in, word)
	line, err := e.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != word {
		t.Fatalf("echo %s: %q %v", word, line, err)
	}
}

// execArgs reads r until it is quiet for 300 ms and returns the argv of
// every exec record.
func execArgs(t *testing.T, r *ringbuf.Reader) []string {
	t.Helper()
	var got []string
	for {
		r.SetDeadline(time.Now().Add(300 * time.Millisecond))
		rec, err := r.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.RawSample) < int(unsafe.Sizeof(TraceEvent{})) {
			t.Fatalf("short record: %d bytes", len(rec.RawSample))
		}
		ev := (*TraceEvent)(unsafe.Pointer(&rec.RawSample[0]))
		if ev.Kind != 1 { // K_EXEC
			continue
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(&ev.Args[0])), ev.ArgsLen)
		got = append(got, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
}

func on(t *testing.T, sb *Sandbox) {
	t.Helper()
	if err := sb.Knobs.Put(uint32(0), TraceKnobs{On: 1, FilesOn: 1}); err != nil {
		t.Fatal(err)
	}
}

func newSandbox(t *testing.T, s *Set) (*Sandbox, *ringbuf.Reader) {
	t.Helper()
	sb, err := s.NewSandbox()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ringbuf.NewReader(sb.Ring)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); sb.Close() })
	return sb, r
}

// TestSetRoutesBySandbox: one loaded set, two sandboxes: each ring buffer
// gets the execs of its own pid namespace only, nothing before the knob
// is on, nothing after Remove.
func TestSetRoutesBySandbox(t *testing.T) {
	s := loadOrSkip(t)
	defer s.Close()
	a, ra := newSandbox(t, s)
	b, rb := newSandbox(t, s)
	ea, eb := newEchoer(t), newEchoer(t)
	if err := s.Add(ea.ns, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(eb.ns, b); err != nil {
		t.Fatal(err)
	}
	ea.say(t, "before-on")
	on(t, a)
	on(t, b)
	ea.say(t, "alpha")
	eb.say(t, "beta")
	exec.Command("/bin/echo", "host-noise").Run()
	if got := execArgs(t, ra); len(got) != 1 || got[0] != "/bin/echo alpha" {
		t.Errorf("sandbox a saw %q, want only /bin/echo alpha", got)
	}
	if got := execArgs(t, rb); len(got) != 1 || got[0] != "/bin/echo beta" {
		t.Errorf("sandbox b saw %q, want only /bin/echo beta", got)
	}
	if err := s.Remove(ea.ns); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ea.ns); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	ea.say(t, "removed")
	eb.say(t, "still")
	if got := execArgs(t, ra); len(got) != 0 {
		t.Errorf("removed sandbox saw %q", got)
	}
	if got := execArgs(t, rb); len(got) != 1 || got[0] != "/bin/echo still" {
		t.Errorf("sandbox b saw %q, want only /bin/echo still", got)
	}
}

// TestSetLinkFilesOutliveLoader: the loader closes the set; a sandbox
// holding the links' duplicates is still traced, until it lets go.
func TestSetLinkFilesOutliveLoader(t *testing.T) {
	s := loadOrSkip(t)
	a, ra := newSandbox(t, s)
	ea := newEchoer(t)
	if err := s.Add(ea.ns, a); err != nil {
		t.Fatal(err)
	}
	on(t, a)
	links, err := s.LinkFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 5 {
		t.Fatalf("%d link files, want 5", len(links))
	}
	s.Close()
	ea.say(t, "held")
	if got := execArgs(t, ra); len(got) != 1 || got[0] != "/bin/echo held" {
		t.Errorf("with the links held, saw %q, want /bin/echo held", got)
	}
	for _, f := range links {
		f.Close()
	}
	ea.say(t, "released")
	if got := execArgs(t, ra); len(got) != 0 {
		t.Errorf("with every link closed, saw %q", got)
	}
}
