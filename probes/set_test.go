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

	"github.com/cilium/ebpf/ringbuf"
)

// hooks are the file hooks every probe test runs with.
var hooks = []FileHook{HookSyscallTracepoints, HookRawSysExit}

func loadOrSkip(t *testing.T, hook FileHook) *Set {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatal("needs root to load eBPF")
		}
		t.Skip("SKIP: needs root to load eBPF")
	}
	s, err := LoadWith(Options{FileHook: hook})
	if errors.Is(err, ErrNotSupported) && os.Getenv("DARKSHELL_REQUIRE_ALL") == "" {
		t.Skipf("SKIP (eBPF with file hook %s unavailable): %v", hook, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, note := s.FileHook(); hook != HookAuto && got != hook {
		s.Close()
		t.Fatalf("file hook %s (%s), want %s", got, note, hook)
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
	return records(t, r).execs()
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
	for _, hook := range hooks {
		t.Run(string(hook), func(t *testing.T) {
			s := loadOrSkip(t, hook)
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
		})
	}
}

// TestSetLinkFilesOutliveLoader: the loader closes the set; a sandbox
// holding the links' duplicates is still traced (process and file
// events), until it lets go.
func TestSetLinkFilesOutliveLoader(t *testing.T) {
	for _, hook := range hooks {
		t.Run(string(hook), func(t *testing.T) {
			s := loadOrSkip(t, hook)
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
			// 3 process programs, and the file program: once on
			// tp_btf/sys_exit, or on each watched syscall's tracepoint.
			want := 4
			if hook == HookSyscallTracepoints {
				want = len(s.links)
				if want < 3+2 { // openat and more, whatever the architecture
					t.Fatalf("%d links, want the file program on several syscall tracepoints", want)
				}
			}
			if len(links) != want {
				t.Fatalf("%d link files, want %d", len(links), want)
			}
			s.Close()
			ea.say(t, "held")
			recs := records(t, ra)
			if got := recs.execs(); len(got) != 1 || got[0] != "/bin/echo held" {
				t.Errorf("with the links held, saw execs %q, want /bin/echo held", got)
			}
			if recs.files() == 0 {
				t.Errorf("with the links held, no file events (the exec of /bin/echo opens its libraries)")
			}
			for _, f := range links {
				f.Close()
			}
			ea.say(t, "released")
			if got := records(t, ra); len(got) != 0 {
				t.Errorf("with every link closed, saw %d records", len(got))
			}
		})
	}
}

// record is one ring buffer record, copied and parsed, with its length.
type record struct {
	ev  Record
	len int
}

type recordList []record

func (rs recordList) execs() []string {
	var got []string
	for _, r := range rs {
		if r.ev.Kind != 1 { // K_EXEC
			continue
		}
		got = append(got, strings.ReplaceAll(strings.TrimRight(string(r.ev.Args), "\x00"), "\x00", " "))
	}
	return got
}

func (rs recordList) files() int {
	n := 0
	for _, r := range rs {
		if r.ev.Kind == 4 {
			n++
		}
	}
	return n
}

// records reads r until it is quiet for 300 ms.
func records(t *testing.T, r *ringbuf.Reader) recordList {
	t.Helper()
	var got recordList
	for {
		r.SetDeadline(time.Now().Add(300 * time.Millisecond))
		rec, err := r.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.RawSample) < RecordHeader {
			t.Fatalf("short record: %d bytes", len(rec.RawSample))
		}
		x := record{len: len(rec.RawSample)}
		if err := ParseRecord(append([]byte(nil), rec.RawSample...), &x.ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, x)
	}
}

// size is the length a record of r's header must have: the header and
// its data, not a byte of padding.
func (r record) size() int {
	return RecordHeader + int(r.ev.S1Len) + int(r.ev.S2Len) + int(r.ev.CompsLen) + int(r.ev.ArgsLen)
}

// TestSetFileEvents: each file hook reports a script's file syscalls (in
// a new pid namespace) in order, with the operation, the path as given,
// the directory it is relative to and the result, in records of their
// header and the bytes their data uses (fork and exit: the header alone);
// the same syscalls on the host do not show up.
func TestSetFileEvents(t *testing.T) {
	for _, hook := range hooks {
		t.Run(string(hook), func(t *testing.T) {
			s := loadOrSkip(t, hook)
			defer s.Close()
			a, ra := newSandbox(t, s)
			dir := t.TempDir()
			script := `read go; cd "$0" && : > f && mv f g && mkdir d && rmdir d && chmod 600 g && rm g && : > /proc/nope/x; exit 0`
			cmd := exec.Command("/bin/sh", "-c", script, dir)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
			in, _ := cmd.StdinPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ns, err := PidNS(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Add(ns, a); err != nil {
				t.Fatal(err)
			}
			on(t, a)
			hostDir := t.TempDir()
			exec.Command("/bin/sh", "-c", `cd "$0" && : > hostfile && rm hostfile`, hostDir).Run()
			in.Write([]byte("go\n"))
			in.Close()
			cmd.Wait()

			type want struct {
				op       uint32
				s1, s2   string
				relative bool
				failed   bool
			}
			wants := []want{
				{1, "f", "", true, false},            // open O_CREAT|O_TRUNC
				{3, "f", "g", true, false},           // rename
				{4, "d", "", true, false},            // mkdir
				{5, "d", "", true, false},            // rmdir (unlinkat AT_REMOVEDIR)
				{6, "g", "", true, false},            // chmod
				{2, "g", "", true, false},            // unlink
				{1, "/proc/nope/x", "", false, true}, // a failed open
			}
			recs := records(t, ra)
			var files []record
			for _, r := range recs {
				if r.len != r.size() {
					t.Errorf("kind %d record of %d bytes, want %d (header and data)", r.ev.Kind, r.len, r.size())
				}
				s1 := string(r.ev.S1)
				switch r.ev.Kind {
				case KindFork, KindExit:
					if r.len != RecordHeader {
						t.Errorf("kind %d record of %d bytes, want %d", r.ev.Kind, r.len, RecordHeader)
					}
				case KindFile:
					if r.ev.ArgsLen != 0 || int(r.ev.S1Len) != len(s1)+1 {
						t.Errorf("file record %q: s1 %d bytes, args %d, want %d and 0", s1, r.ev.S1Len, r.ev.ArgsLen, len(s1)+1)
					}
					if strings.Contains(s1, "hostfile") {
						t.Errorf("host file event traced: %s", s1)
					}
					if !strings.HasPrefix(s1, "/") || strings.HasPrefix(s1, "/proc/nope") {
						files = append(files, r)
					}
				case KindExec:
					if r.ev.ArgsLen == 0 || r.ev.S1Len == 0 || r.ev.Ncomp == 0 {
						t.Errorf("exec record of %q without args, filename or working directory", s1)
					}
				}
			}
			// the script's own relative-path syscalls, and the failed open
			var got []want
			for _, r := range files {
				got = append(got, want{r.ev.Op, string(r.ev.S1), string(r.ev.S2), r.ev.DirfdRel == 1, r.ev.Ret < 0})
			}
			if len(got) != len(wants) {
				t.Fatalf("file events %+v, want %+v", got, wants)
			}
			for i := range wants {
				if got[i] != wants[i] {
					t.Errorf("file event %d: %+v, want %+v", i, got[i], wants[i])
				}
			}
			// The relative paths carry the walked working directory.
			r := files[0].ev
			var comps []string
			r.Dir(func(c []byte) { comps = append([]string{string(c)}, comps...) })
			if len(comps) != int(r.Ncomp) {
				t.Errorf("%d components, the header says %d", len(comps), r.Ncomp)
			}
			if got := "/" + strings.Join(comps, "/"); got != dir {
				t.Errorf("directory of %q: %q, want %q", r.S1, got, dir)
			}
		})
	}
}

// TestLoadFileHook: auto picks the syscall tracepoints here (tracefs is
// unmounted on these machines: the ids come from a detached mount, and no
// tracefs mount is left behind), the environment forces the fallback,
// and a bad value is refused.
func TestLoadFileHook(t *testing.T) {
	tracefsMounts := func() int {
		n := 0
		for _, f := range []string{"/proc/self/mountinfo", "/proc/1/mountinfo"} {
			b, _ := os.ReadFile(f)
			n += strings.Count(string(b), " - tracefs ")
		}
		return n
	}
	before := tracefsMounts()
	t.Setenv(EnvFileHook, "")
	s := loadOrSkip(t, HookAuto)
	hook, note := s.FileHook()
	s.Close()
	t.Logf("auto: %s (%s)", hook, note)
	if hook != HookSyscallTracepoints {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatalf("auto chose %s (%s): the syscall tracepoints work on this kind of machine", hook, note)
		}
		t.Logf("SKIP part: syscall tracepoints unavailable here: %s", note)
	}
	if after := tracefsMounts(); after != before {
		t.Errorf("tracefs mounts went from %d to %d: a mount was left behind", before, after)
	}

	t.Setenv(EnvFileHook, string(HookRawSysExit))
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	hook, _ = s.FileHook()
	s.Close()
	if hook != HookRawSysExit {
		t.Errorf("%s=%s gave %s", EnvFileHook, HookRawSysExit, hook)
	}
	t.Setenv(EnvFileHook, "kprobe")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), EnvFileHook) || errors.Is(err, ErrNotSupported) {
		t.Errorf("a bad %s: %v, want an error naming it", EnvFileHook, err)
	}
}
