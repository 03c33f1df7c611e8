package events

import (
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

// rawRec is a ring buffer record under construction: its header and the
// parts of its data (probes.ParseRecord's format).
type rawRec struct {
	probes.TraceEvent
	s1, s2, args string
	comps        []string // innermost first
}

func raw(kind uint32, pid, ppid uint32, mut func(*rawRec)) *rawRec {
	r := &rawRec{TraceEvent: probes.TraceEvent{Kind: kind, Pid: pid, Ppid: ppid, Ts: 1000}}
	if mut != nil {
		mut(r)
	}
	return r
}

func comps(r *rawRec, innerFirst ...string) {
	r.comps = innerFirst
	r.Ncomp = uint32(len(innerFirst))
	r.DirfdRel = 1
}

// bytes lays r out as the probes do: the header with the data's lengths,
// then s1 and s2 with their NULs, the components with theirs, and args.
func (r *rawRec) bytes() []byte {
	h := r.TraceEvent
	var data []byte
	part := func(s string, nul bool) uint16 {
		if s == "" {
			return 0
		}
		data = append(data, s...)
		if !nul {
			return uint16(len(s))
		}
		data = append(data, 0)
		return uint16(len(s) + 1)
	}
	h.S1Len = part(r.s1, true)
	h.S2Len = part(r.s2, true)
	n := len(data)
	for _, c := range r.comps {
		part(c, true)
	}
	h.CompsLen = uint16(len(data) - n)
	h.ArgsLen = part(r.args, false)
	b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))...)
	return append(b, data...)
}

// record parses r's bytes as the reader does.
func (r *rawRec) record(tb testing.TB) *probes.Record {
	tb.Helper()
	var rec probes.Record
	if err := probes.ParseRecord(r.bytes(), &rec); err != nil {
		tb.Fatal(err)
	}
	return &rec
}

// TestTracker feeds one process life (fork, exec, files, exit) through the
// tracker and checks ids, parentage, paths, intents, results and statuses.
func TestTracker(t *testing.T) {
	tr := newTracker(time.Unix(100, 0), func(u uint32) int { return int(u) - 100000 })
	steps := []struct {
		name  string
		r     *rawRec
		check func(t *testing.T, e protocol.Event)
	}{
		{"fork by init", raw(rawFork, 1, 7, nil), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFork || e.PID != 7 || e.PPID != 1 || e.ExecID != "1-0" || e.ParentExecID != "1-0" {
				t.Errorf("%+v", e)
			}
		}},
		{"exec", raw(rawExec, 7, 1, func(r *rawRec) {
			r.Ts, r.Uid = 2000, 165000
			r.s1 = "/usr/bin/sh"
			r.args = "sh\x00-c\x00x\x00"
			comps(r, "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindExec || e.ExecID != "7-1" || e.ParentExecID != "1-0" || e.Binary != "/usr/bin/sh" ||
				!slices.Equal(e.Argv, []string{"sh", "-c", "x"}) || e.Cwd != "/sandbox" || e.UID == nil || *e.UID != 65000 || !e.Time.Equal(time.Unix(100, 2000)) {
				t.Errorf("%+v", e)
			}
		}},
		{"relative create", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op, r.Flags = opOpen, 0o1101 // O_WRONLY|O_CREAT|O_TRUNC
			r.s1 = "a/../f1"
			comps(r, "sub", "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileWrite || e.Path != "/sandbox/sub/f1" || e.Intent != "write,create,truncate" || e.Result != protocol.ResultOK || e.ExecID != "7-1" {
				t.Errorf("%+v", e)
			}
		}},
		{"read-only open, absolute", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op = opOpen
			r.s1 = "//etc/./passwd"
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileOpen || e.Path != "/etc/passwd" || e.Intent != "read" {
				t.Errorf("%+v", e)
			}
		}},
		{"denied", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op, r.Flags, r.Ret = opOpen, 1, -13
			r.s1 = "/dev/urandom"
		}), func(t *testing.T, e protocol.Event) {
			if e.Result != protocol.ResultDenied || e.Errno != "EACCES" {
				t.Errorf("%+v", e)
			}
		}},
		{"failed", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op, r.Ret = opUnlink, -2
			r.s1 = "/tmp/nope"
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileUnlink || e.Result != protocol.ResultError || e.Errno != "ENOENT" {
				t.Errorf("%+v", e)
			}
		}},
		{"rename", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op = opRename
			r.s1 = "f1"
			r.s2 = "f2"
			comps(r, "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileRename || e.Path != "/sandbox/f1" || e.NewPath != "/sandbox/f2" {
				t.Errorf("%+v", e)
			}
		}},
		{"truncated walk", raw(rawFile, 7, 0, func(r *rawRec) {
			r.Op = opMkdir
			r.s1 = "d"
			comps(r, "deep")
			r.Truncated = 1
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileMkdir || e.Path != ".../deep/d" {
				t.Errorf("%+v", e)
			}
		}},
		{"exit 3", raw(rawExit, 7, 1, func(r *rawRec) { r.Ret, r.Ts = 3<<8, 5000 }), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindExit || e.ExitCode == nil || *e.ExitCode != 3 || e.Signal != 0 || e.DurationNs != 3000 || e.ExecID != "7-1" {
				t.Errorf("%+v", e)
			}
		}},
		{"killed, unknown process", raw(rawExit, 9, 1, func(r *rawRec) { r.Ret, r.Start, r.Ts = 9, 10, 110 }), func(t *testing.T, e protocol.Event) {
			if e.Signal != 9 || e.ExitCode != nil || e.DurationNs != 100 || e.ExecID != "" {
				t.Errorf("%+v", e)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e, ok := tr.event(s.r.record(t))
			if !ok {
				t.Fatal("no event")
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("invalid event %+v: %v", e, err)
			}
			s.check(t, e)
		})
	}
	if _, ok := tr.event(raw(99, 1, 1, nil).record(t)); ok {
		t.Error("unknown raw kind accepted")
	}
	if len(tr.procs) != 1 {
		t.Errorf("tracker keeps %d processes after every exit, want 1 (init)", len(tr.procs))
	}
}

// FuzzTracker: arbitrary ring buffer bytes decode to valid events or none.
func FuzzTracker(f *testing.F) {
	f.Add(make([]byte, 3000))
	f.Add(raw(rawExec, 7, 1, func(r *rawRec) { r.s1, r.args = "/bin/sh", "sh\x00-c"; comps(r, "b", "a") }).bytes())
	f.Add(raw(rawFile, 7, 0, func(r *rawRec) { r.Op, r.s1, r.s2 = opRename, "x", "y"; comps(r, "d") }).bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		var r probes.Record
		if probes.ParseRecord(b, &r) != nil {
			return
		}
		tr := newTracker(time.Unix(0, 0), nil)
		if e, ok := tr.event(&r); ok {
			if err := e.Validate(); err != nil && e.Kind != "" {
				t.Fatalf("invalid event from raw record: %v", err)
			}
		}
	})
}

// TestIntent: every access mode and flag bit of an open, named from the
// precomputed table.
func TestIntent(t *testing.T) {
	for _, c := range []struct {
		flags uint32
		want  string
	}{
		{unix.O_RDONLY, "read"},
		{unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW, "read"},
		{unix.O_WRONLY, "write"},
		{unix.O_RDWR, "read,write"},
		{unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, "write,create,truncate"},
		{unix.O_WRONLY | unix.O_APPEND | unix.O_CREAT, "write,create,append"},
		{unix.O_RDWR | unix.O_TRUNC | unix.O_APPEND, "read,write,truncate,append"},
		{unix.O_ACCMODE, "read,write"}, // 3: no such mode, reported as both
	} {
		if got := intent(c.flags); got != c.want {
			t.Errorf("intent(%#o) = %q, want %q", c.flags, got, c.want)
		}
	}
}
