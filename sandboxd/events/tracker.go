package events

import (
	"bytes"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

// Raw record kinds and file operations (enum kind, enum fop in probes/trace.c).
const (
	rawExec = probes.KindExec
	rawFork = probes.KindFork
	rawExit = probes.KindExit
	rawFile = probes.KindFile

	opOpen   = 1
	opUnlink = 2
	opRename = 3
	opMkdir  = 4
	opRmdir  = 5
	opChmod  = 6
)

// proc is what the tracker knows of one live process.
type proc struct {
	execID       string
	parentExecID string
	binary       string
	since        uint64 // boot ns of its exec (or fork)
}

// tracker turns the probe's raw records into events: it assigns exec ids,
// remembers parentage and start times, resolves paths and decodes exit
// statuses. It is used by one goroutine.
type tracker struct {
	procs    map[uint32]*proc
	execs    uint64
	comms    map[[16]int8]string // interned command names
	bootWall time.Time           // wall-clock time of boot-ns 0
	uidMap   func(uint32) int
}

func newTracker(bootWall time.Time, uidMap func(uint32) int) *tracker {
	if uidMap == nil {
		uidMap = func(u uint32) int { return int(u) }
	}
	t := &tracker{procs: map[uint32]*proc{}, comms: map[[16]int8]string{}, bootWall: bootWall, uidMap: uidMap}
	// PID 1 is sandboxd itself; it was exec'd before the probes existed.
	t.procs[1] = &proc{execID: "1-0", binary: "sandboxd"}
	return t
}

// limit bounds the tracked processes; beyond it the oldest knowledge is
// dropped (events then lack exec ids, never block).
const maxTracked = 65536

func (t *tracker) event(r *probes.Record) (protocol.Event, bool) {
	e := protocol.Event{
		Time:     t.bootWall.Add(time.Duration(r.Ts)),
		PID:      int(r.Pid),
		UID:      ptr(t.uidMap(r.Uid)),
		Comm:     t.comm(r.Comm),
		Source:   protocol.SourceEBPF,
		Fidelity: protocol.FidelityComplete,
	}
	p := t.procs[r.Pid]
	switch r.Kind {
	case rawFork:
		e.Kind = protocol.KindFork
		child := r.Ppid // the probe puts the child's pid here
		e.PPID = int(r.Pid)
		e.PID = int(child)
		np := &proc{since: r.Ts}
		if p != nil {
			np.execID = p.execID
			np.parentExecID = p.parentExecID
			np.binary = p.binary
			e.ParentExecID = p.execID
		}
		if len(t.procs) < maxTracked {
			t.procs[child] = np
		}
		e.ExecID = np.execID
		e.Binary = np.binary
	case rawExec:
		e.Kind = protocol.KindExec
		e.PPID = int(r.Ppid)
		t.execs++
		np := &proc{execID: execID(r.Pid, t.execs), since: r.Ts, binary: cstr(r.S1)}
		if p != nil {
			np.parentExecID = p.execID
		} else if pp := t.procs[r.Ppid]; pp != nil {
			np.parentExecID = pp.execID
		}
		if p != nil || len(t.procs) < maxTracked {
			t.procs[r.Pid] = np
		}
		e.ExecID, e.ParentExecID, e.Binary = np.execID, np.parentExecID, np.binary
		e.Argv = argv(r.Args)
		e.Cwd = dirPath(r)
	case rawExit:
		e.Kind = protocol.KindExit
		e.PPID = int(r.Ppid)
		raw := int(r.Ret)
		if sig := raw & 0x7f; sig != 0 {
			e.Signal = sig
		} else {
			code := (raw >> 8) & 0xff
			e.ExitCode = &code
		}
		since := r.Start
		if p != nil {
			e.ExecID, e.ParentExecID, e.Binary = p.execID, p.parentExecID, p.binary
			if p.since != 0 {
				since = p.since
			}
			delete(t.procs, r.Pid)
		}
		// A record is untrusted: a span past int64 (a bogus start) is no duration.
		if d := r.Ts - since; since != 0 && r.Ts > since && d <= math.MaxInt64 {
			e.DurationNs = int64(d)
		}
	case rawFile:
		if p != nil {
			e.ExecID, e.ParentExecID, e.Binary = p.execID, p.parentExecID, p.binary
		}
		t.file(r, &e)
	default:
		return e, false
	}
	return e, true
}

// comm returns the command name, interned: there are few distinct ones.
func (t *tracker) comm(c [16]int8) string {
	if s, ok := t.comms[c]; ok {
		return s
	}
	s := cstr(bytesOf(c[:]))
	if len(t.comms) < 4096 {
		t.comms[c] = s
	}
	return s
}

func (t *tracker) file(r *probes.Record, e *protocol.Event) {
	p1 := cstr(r.S1)
	dir := ""
	if r.DirfdRel != 0 {
		dir = dirPath(r)
	}
	e.Path = resolve(dir, p1)
	switch r.Op {
	case opOpen:
		e.Intent = intent(r.Flags)
		e.Kind = protocol.KindFileOpen
		if e.Intent != "read" {
			e.Kind = protocol.KindFileWrite
		}
	case opUnlink:
		e.Kind = protocol.KindFileUnlink
	case opRename:
		e.Kind = protocol.KindFileRename
		e.NewPath = resolve(dir, cstr(r.S2))
	case opMkdir:
		e.Kind = protocol.KindFileMkdir
	case opRmdir:
		e.Kind = protocol.KindFileRmdir
	default:
		e.Kind = protocol.KindFileChmod
	}
	e.Result = protocol.ResultOK
	if r.Ret < 0 {
		errno := unix.Errno(-r.Ret)
		e.Errno = unix.ErrnoName(errno)
		e.Result = protocol.ResultError
		if errno == unix.EACCES || errno == unix.EPERM {
			e.Result = protocol.ResultDenied
		}
	}
}

// execID is "PID-N", built without fmt (once per exec on the reader's path).
func execID(pid uint32, n uint64) string {
	var b [32]byte
	out := strconv.AppendUint(b[:0], uint64(pid), 10)
	out = append(out, '-')
	out = strconv.AppendUint(out, n, 10)
	return string(out)
}

// intents are the names of what an open asks for, by access mode and
// the create, truncate and append bits (intentOf); built once, as an open
// is the most frequent event.
var intents = func() (t [4][8]string) {
	for acc := range 4 {
		for bits := range 8 {
			t[acc][bits] = intentOf(uint32(acc) | flagBits(bits))
		}
	}
	return t
}()

// flagBits maps bits 0-2 to O_CREAT, O_TRUNC and O_APPEND.
func flagBits(bits int) uint32 {
	var f uint32
	if bits&1 != 0 {
		f |= unix.O_CREAT
	}
	if bits&2 != 0 {
		f |= unix.O_TRUNC
	}
	if bits&4 != 0 {
		f |= unix.O_APPEND
	}
	return f
}

// intent names what an open asked for.
func intent(flags uint32) string {
	bits := 0
	if flags&unix.O_CREAT != 0 {
		bits |= 1
	}
	if flags&unix.O_TRUNC != 0 {
		bits |= 2
	}
	if flags&unix.O_APPEND != 0 {
		bits |= 4
	}
	return intents[flags&unix.O_ACCMODE][bits]
}

func intentOf(flags uint32) string {
	var parts []string
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		parts = append(parts, "read")
	case unix.O_WRONLY:
		parts = append(parts, "write")
	default:
		parts = append(parts, "read", "write")
	}
	if flags&unix.O_CREAT != 0 {
		parts = append(parts, "create")
	}
	if flags&unix.O_TRUNC != 0 {
		parts = append(parts, "truncate")
	}
	if flags&unix.O_APPEND != 0 {
		parts = append(parts, "append")
	}
	return strings.Join(parts, ",")
}

// dirPath joins the walked directory components (innermost first, each
// ending with a NUL), with one allocation: the result.
func dirPath(r *probes.Record) string {
	var ends [64]int // where each component ends in r.Comps (its NUL)
	n := 0
	for i, c := range r.Comps {
		if c == 0 && n < len(ends) {
			ends[n] = i
			n++
		}
	}
	if n < len(ends) && len(r.Comps) > 0 && r.Comps[len(r.Comps)-1] != 0 {
		ends[n] = len(r.Comps) // a last component without its NUL
		n++
	}
	var buf [512]byte
	b := buf[:0]
	if r.Truncated != 0 {
		b = append(b, "..."...)
	}
	for i := n - 1; i >= 0; i-- {
		start := 0
		if i > 0 {
			start = ends[i-1] + 1
		}
		b = append(b, '/')
		b = append(b, r.Comps[start:ends[i]]...)
	}
	if len(b) == 0 {
		return "/"
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func resolve(dir, p string) string {
	if p == "" || strings.HasPrefix(p, "/") || dir == "" {
		if strings.HasPrefix(p, "/") {
			return path.Clean(p)
		}
		return p
	}
	return path.Join(dir, p)
}

// bytesOf views a C char array as bytes, without copying.
func bytesOf(b []int8) []byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b))
}

// cstr converts bytes, up to a NUL if there is one, to a valid UTF-8 string.
func cstr(bs []byte) string {
	if i := bytes.IndexByte(bs, 0); i >= 0 {
		bs = bs[:i]
	}
	if utf8.Valid(bs) {
		return string(bs)
	}
	return strings.ToValidUTF8(string(bs), "\uFFFD")
}

// argv splits the NUL-separated argument area read from the process.
func argv(b []byte) []string {
	bs := bytes.TrimRight(b, "\x00")
	if len(bs) == 0 {
		return nil
	}
	var out []string
	for len(bs) > 0 {
		a := bs
		if i := bytes.IndexByte(bs, 0); i >= 0 {
			a, bs = bs[:i], bs[i+1:]
		} else {
			bs = nil
		}
		out = append(out, string(a))
	}
	return protocol.ClampArgv(out)
}

func ptr[T any](v T) *T { return &v }
