package events

import (
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

func setStr(dst []int8, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

func raw(kind uint32, pid, ppid uint32, mut func(*probes.TraceEvent)) *probes.TraceEvent {
	r := &probes.TraceEvent{Kind: kind, Pid: pid, Ppid: ppid, Ts: 1000}
	if mut != nil {
		mut(r)
	}
	return r
}

func comps(r *probes.TraceEvent, innerFirst ...string) {
	for i, c := range innerFirst {
		setStr(r.Comps[i][:], c)
	}
	r.Ncomp = uint32(len(innerFirst))
	r.DirfdRel = 1
}

// TestTracker feeds one process life (fork, exec, files, exit) through the
// tracker and checks ids, parentage, paths, intents, results and statuses.
func TestTracker(t *testing.T) {
	tr := newTracker(time.Unix(100, 0), func(u uint32) int { return int(u) - 100000 })
	steps := []struct {
		name  string
		r     *probes.TraceEvent
		check func(t *testing.T, e protocol.Event)
	}{
		{"fork by init", raw(rawFork, 1, 7, nil), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFork || e.PID != 7 || e.PPID != 1 || e.ExecID != "1-0" || e.ParentExecID != "1-0" {
				t.Errorf("%+v", e)
			}
		}},
		{"exec", raw(rawExec, 7, 1, func(r *probes.TraceEvent) {
			r.Ts, r.Uid = 2000, 165000
			setStr(r.S1[:], "/usr/bin/sh")
			copy(r.Args[:], []int8{'s', 'h', 0, '-', 'c', 0, 'x', 0})
			r.ArgsLen = 8
			comps(r, "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindExec || e.ExecID != "7-1" || e.ParentExecID != "1-0" || e.Binary != "/usr/bin/sh" ||
				!slices.Equal(e.Argv, []string{"sh", "-c", "x"}) || e.Cwd != "/sandbox" || e.UID == nil || *e.UID != 65000 || !e.Time.Equal(time.Unix(100, 2000)) {
				t.Errorf("%+v", e)
			}
		}},
		{"relative create", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op, r.Flags = opOpen, 0o1101 // O_WRONLY|O_CREAT|O_TRUNC
			setStr(r.S1[:], "a/../f1")
			comps(r, "sub", "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileWrite || e.Path != "/sandbox/sub/f1" || e.Intent != "write,create,truncate" || e.Result != protocol.ResultOK || e.ExecID != "7-1" {
				t.Errorf("%+v", e)
			}
		}},
		{"read-only open, absolute", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op = opOpen
			setStr(r.S1[:], "//etc/./passwd")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileOpen || e.Path != "/etc/passwd" || e.Intent != "read" {
				t.Errorf("%+v", e)
			}
		}},
		{"denied", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op, r.Flags, r.Ret = opOpen, 1, -13
			setStr(r.S1[:], "/dev/urandom")
		}), func(t *testing.T, e protocol.Event) {
			if e.Result != protocol.ResultDenied || e.Errno != "EACCES" {
				t.Errorf("%+v", e)
			}
		}},
		{"failed", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op, r.Ret = opUnlink, -2
			setStr(r.S1[:], "/tmp/nope")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileUnlink || e.Result != protocol.ResultError || e.Errno != "ENOENT" {
				t.Errorf("%+v", e)
			}
		}},
		{"rename", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op = opRename
			setStr(r.S1[:], "f1")
			setStr(r.S2[:], "f2")
			comps(r, "sandbox")
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileRename || e.Path != "/sandbox/f1" || e.NewPath != "/sandbox/f2" {
				t.Errorf("%+v", e)
			}
		}},
		{"truncated walk", raw(rawFile, 7, 0, func(r *probes.TraceEvent) {
			r.Op = opMkdir
			setStr(r.S1[:], "d")
			comps(r, "deep")
			r.Truncated = 1
		}), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindFileMkdir || e.Path != ".../deep/d" {
				t.Errorf("%+v", e)
			}
		}},
		{"exit 3", raw(rawExit, 7, 1, func(r *probes.TraceEvent) { r.Ret, r.Ts = 3<<8, 5000 }), func(t *testing.T, e protocol.Event) {
			if e.Kind != protocol.KindExit || e.ExitCode == nil || *e.ExitCode != 3 || e.Signal != 0 || e.DurationNs != 3000 || e.ExecID != "7-1" {
				t.Errorf("%+v", e)
			}
		}},
		{"killed, unknown process", raw(rawExit, 9, 1, func(r *probes.TraceEvent) { r.Ret, r.Start, r.Ts = 9, 10, 110 }), func(t *testing.T, e protocol.Event) {
			if e.Signal != 9 || e.ExitCode != nil || e.DurationNs != 100 || e.ExecID != "" {
				t.Errorf("%+v", e)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e, ok := tr.event(s.r)
			if !ok {
				t.Fatal("no event")
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("invalid event %+v: %v", e, err)
			}
			s.check(t, e)
		})
	}
	if _, ok := tr.event(raw(99, 1, 1, nil)); ok {
		t.Error("unknown raw kind accepted")
	}
	if len(tr.procs) != 1 {
		t.Errorf("tracker keeps %d processes after every exit, want 1 (init)", len(tr.procs))
	}
}

// TestDecodeRecord: records cut short by kind (fork and exit: the header,
// file: up to Args) decode with the rest zeroed, whatever scratch held;
// a record shorter than its kind needs is refused; exec records are
// viewed in place.
func TestDecodeRecord(t *testing.T) {
	rec := func(kind uint32, size int) []byte {
		var ev probes.TraceEvent
		ev.Kind, ev.Pid, ev.Ppid, ev.Ret = kind, 7, 9, 256
		ev.S1[0], ev.Args[0] = 'x', 'y'
		full := unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))
		return append([]byte(nil), full[:size]...)
	}
	tests := []struct {
		name     string
		b        []byte
		ok       bool
		inPlace  bool
		s1, args bool // S1 and Args kept (else zeroed)
	}{
		{"shorter than a header", make([]byte, probes.RecordHeader-1), false, false, false, false},
		{"fork header", rec(rawFork, probes.RecordHeader), true, false, false, false},
		{"exit header", rec(rawExit, probes.RecordHeader), true, false, false, false},
		{"file record", rec(rawFile, probes.RecordFile), true, false, true, false},
		{"file record cut short", rec(rawFile, probes.RecordFile-8), false, false, false, false},
		{"exec record cut short", rec(rawExec, probes.RecordFile), false, false, false, false},
		{"exec record", rec(rawExec, probes.RecordExec), true, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var scratch probes.TraceEvent
			junk := unsafe.Slice((*byte)(unsafe.Pointer(&scratch)), unsafe.Sizeof(scratch))
			for i := range junk {
				junk[i] = 0xa5
			}
			r, ok := decodeRecord(tc.b, &scratch)
			if ok != tc.ok {
				t.Fatalf("decoded %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if inPlace := unsafe.Pointer(r) == unsafe.Pointer(&tc.b[0]); inPlace != tc.inPlace {
				t.Errorf("viewed in place %v, want %v", inPlace, tc.inPlace)
			}
			if r.Pid != 7 || r.Ppid != 9 || r.Ret != 256 {
				t.Errorf("header: pid %d ppid %d ret %d", r.Pid, r.Ppid, r.Ret)
			}
			if (r.S1[0] == 'x') != tc.s1 || (!tc.s1 && r.S1[0] != 0) {
				t.Errorf("S1[0] = %d, kept want %v", r.S1[0], tc.s1)
			}
			if (r.Args[0] == 'y') != tc.args || (!tc.args && r.Args[0] != 0) {
				t.Errorf("Args[0] = %d, kept want %v", r.Args[0], tc.args)
			}
		})
	}
}

// FuzzTracker: arbitrary ring buffer bytes decode to valid events or none.
func FuzzTracker(f *testing.F) {
	f.Add(make([]byte, 3000))
	f.Fuzz(func(t *testing.T, b []byte) {
		var scratch probes.TraceEvent
		r, ok := decodeRecord(b, &scratch)
		if !ok {
			return
		}
		tr := newTracker(time.Unix(0, 0), nil)
		if e, ok := tr.event(r); ok {
			if err := e.Validate(); err != nil && e.Kind != "" {
				t.Fatalf("invalid event from raw record: %v", err)
			}
		}
	})
}
