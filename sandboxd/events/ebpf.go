package events

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

// pollInterval is how often a busy reader drains the ring buffer, and so
// the bound of an event's latency while records keep coming: 4 MiB of
// variable-length records is far more than a sandbox makes in 50 ms (about
// 8,000 execs of /bin/true; 5,000 execs/s make 250). Each drain's wakeup
// costs the reader's process about 100-300 µs of CPU on these VMs (the Go
// runtime's sysmon and scheduler spin up after every blocking syscall),
// whatever it reads: 50 ms instead of 20 cut the reader's CPU on an
// exec-heavy workload by about 40 % (docs/trace.md). An idle reader waits
// in epoll instead, woken by the first record (the probes' adaptive
// wakeups), which it reads at once.
const pollInterval = 50 * time.Millisecond

// ErrNotSupported wraps every failure that means "this kernel or this
// process cannot run the probes" (missing feature, no privilege): the
// caller falls back to procfs and inotify. Other errors are bugs.
var ErrNotSupported = probes.ErrNotSupported

// EBPF reads one sandbox's share of the probes: its ring buffer and knobs.
// Open it while bpf() is still allowed; Enable, Run and everything after
// work under Landlock and seccomp (mmap and epoll only).
type EBPF struct {
	set    *probes.Set // set when this process loaded the probes itself
	ns     uint32      // the pid namespace it added to set
	ring   *ebpf.Map
	knobs  *ebpf.Map
	mem    *ebpf.Memory
	reader *ringbuf.Reader
	// pollFile is a non-blocking duplicate of the ring buffer's
	// descriptor in the Go netpoller; poll waits on it.
	pollFile *os.File
	poll     syscall.RawConn
	rec      ringbuf.Record // the last record read (its buffer is reused)
	// rmu orders reads of the ring buffer with closing it:
	// ringbuf.Reader's AvailableBytes is not safe against its Close.
	rmu    sync.Mutex
	closed bool          // the reader is closed (under rmu)
	waits  atomic.Uint64 // idle waits in the netpoller (tests)
	track  *tracker
	log    *slog.Logger
}

// LoadEBPF loads a probe set of this process's own, scoped to nothing
// until ScopeToPID (tests and benchmarks that trace a workload they start
// themselves; sandboxes get their share from the host, OpenEBPF). Errors
// wrap ErrNotSupported when the kernel or the privileges are the reason.
// The file hook is the one probes.EnvFileHook asks for (auto when unset).
func LoadEBPF(log *slog.Logger) (*EBPF, error) {
	set, err := probes.Load()
	if err != nil {
		return nil, err
	}
	return fromSet(set, log)
}

// LoadEBPFWith is LoadEBPF with a choice of file hook (tests of each hook).
func LoadEBPFWith(o probes.Options, log *slog.Logger) (*EBPF, error) {
	set, err := probes.LoadWith(o)
	if err != nil {
		return nil, err
	}
	return fromSet(set, log)
}

func fromSet(set *probes.Set, log *slog.Logger) (*EBPF, error) {
	sb, err := set.NewSandbox()
	if err != nil {
		set.Close()
		return nil, err
	}
	e, err := newEBPF(sb.Ring, sb.Knobs, log)
	if err != nil {
		sb.Close()
		set.Close()
		return nil, err
	}
	e.set = set
	return e, nil
}

// OpenEBPF reads the share a host daemon loaded for this sandbox, from the
// descriptors of its ring buffer and knobs (which it takes over).
func OpenEBPF(ringFD, knobsFD int, log *slog.Logger) (*EBPF, error) {
	ring, err := ebpf.NewMapFromFD(ringFD)
	if err != nil {
		return nil, fmt.Errorf("ring buffer descriptor %d: %w", ringFD, err)
	}
	knobs, err := ebpf.NewMapFromFD(knobsFD)
	if err != nil {
		ring.Close()
		return nil, fmt.Errorf("knobs descriptor %d: %w", knobsFD, err)
	}
	e, err := newEBPF(ring, knobs, log)
	if err != nil {
		ring.Close()
		knobs.Close()
		return nil, err
	}
	return e, nil
}

func newEBPF(ring, knobs *ebpf.Map, log *slog.Logger) (*EBPF, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ring.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("ring buffer descriptor is a %s map", ring.Type())
	}
	mem, err := knobs.Memory()
	if err != nil {
		return nil, fmt.Errorf("map the knobs: %w", err)
	}
	reader, err := ringbuf.NewReader(ring)
	if err != nil {
		return nil, fmt.Errorf("unable to open the ring buffer: %w", err)
	}
	pollFile, poll, err := pollable(ring.FD())
	if err != nil {
		reader.Close()
		return nil, err
	}
	return &EBPF{ring: ring, knobs: knobs, mem: mem, reader: reader, pollFile: pollFile, poll: poll, log: log,
		track: newTracker(bootWall(), uidMapper())}, nil
}

// pollable returns a non-blocking duplicate of the ring buffer's
// descriptor registered with the Go netpoller, to wait for records on.
func pollable(fd int) (*os.File, syscall.RawConn, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("duplicate the ring buffer descriptor: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, nil, fmt.Errorf("ring buffer descriptor: %w", err)
	}
	f := os.NewFile(uintptr(dup), "ringbuf")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("ring buffer descriptor: %w", err)
	}
	return f, rc, nil
}

func (e *EBPF) setKnob(off int64, v uint32) error {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	_, err := e.mem.WriteAt(b[:], off)
	return err
}

// Enable switches the probes on for this sandbox; until then they match
// nothing (sandboxd init's own set-up is not traced). It writes mapped
// memory only, so it works after lock-down.
func (e *EBPF) Enable() error {
	if err := e.setKnob(probes.KnobOn, 1); err != nil {
		return fmt.Errorf("unable to switch the probes on: %w", err)
	}
	return nil
}

// Disable makes the probes match nothing (they stay attached).
func (e *EBPF) Disable() error {
	if err := e.setKnob(probes.KnobOn, 0); err != nil {
		return fmt.Errorf("unable to switch the probes off: %w", err)
	}
	return nil
}

// ScopeToPID re-scopes a self-loaded probe set to the pid namespace of
// process pid and enables it (benchmarks and tests that trace a workload
// they start themselves).
func (e *EBPF) ScopeToPID(pid int) error {
	if e.set == nil {
		return errors.New("the probes were handed over by the host: their scope is fixed")
	}
	ns, err := probes.PidNS(pid)
	if err != nil {
		return err
	}
	if e.ns != 0 {
		if err := e.set.Remove(e.ns); err != nil {
			return err
		}
	}
	if err := e.set.Add(ns, &probes.Sandbox{Ring: e.ring, Knobs: e.knobs}); err != nil {
		return err
	}
	e.ns = ns
	return e.Enable()
}

// ProbeStats reads the kernel's run-time statistics of a self-loaded probe
// set's programs (benchmarks; see probes.Set.Stats).
func (e *EBPF) ProbeStats() ([]probes.ProgramStats, error) {
	if e.set == nil {
		return nil, errors.New("the probes were handed over by the host: their programs are not here")
	}
	return e.set.Stats()
}

// Lost reads the probe's loss counter (a full ring buffer), through mmap.
func (e *EBPF) Lost() uint64 {
	var b [8]byte
	if _, err := e.mem.ReadAt(b[:], probes.KnobLost); err != nil {
		return 0
	}
	return binary.NativeEndian.Uint64(b[:])
}

// Hello describes the eBPF source for an events stream, with the file
// audit's kernel hook, which the loader wrote into the knobs.
func (e *EBPF) Hello() protocol.EventsHello {
	return helloFor(e.FileHook())
}

func helloFor(h probes.FileHook) protocol.EventsHello {
	return protocol.EventsHello{
		Sources:      []string{protocol.SourceEBPF},
		Fidelity:     protocol.FidelityComplete,
		FileFidelity: protocol.FidelityComplete,
		FileProbe:    string(h),
	}
}

// FileHook is the kernel hook of the file audit, read from the knobs
// (through mmap); "" if the loader did not say.
func (e *EBPF) FileHook() probes.FileHook {
	var b [4]byte
	if _, err := e.mem.ReadAt(b[:], probes.KnobHook); err != nil {
		return ""
	}
	return probes.HookOfKnob(binary.NativeEndian.Uint32(b[:]))
}

// Run reads the ring buffer into hub until ctx ends or the reader is
// closed. It needs no bpf() call, so it works after lock-down.
//
// While records keep coming it drains the ring buffer every pollInterval
// (which bounds an event's latency) and sleeps in between, never waiting
// in epoll: the ring buffer's descriptor stays ready while records keep
// coming, so a reader that waits in epoll returns for every record or two,
// and that cost three times the rest of reading. When a drain found
// nothing it waits in epoll, where the probes' adaptive wakeup (the first
// record after the reader caught up) finds it: an idle sandbox costs no
// timer wakeups, and a first event after a quiet spell is read at once.
//
// Neither the pause nor the idle wait is a blocking system call: sandboxd
// runs Go code on one P (internal/cpus), and a goroutine blocked in a
// system call holds that P until the runtime's monitor takes it back, up
// to 20 ms later, stalling every exec meanwhile. The pause is a Go timer,
// and the idle wait is the Go netpoller's, on a non-blocking duplicate of
// the ring buffer's descriptor.
func (e *EBPF) Run(ctx context.Context, hub *Hub) error {
	hub.SetLost(e.Lost)
	stop := context.AfterFunc(ctx, e.closeReader)
	defer stop()
	pause := time.NewTimer(pollInterval)
	defer pause.Stop()
	for {
		n, err := e.drain(hub)
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if n == 0 {
			// Idle: wait for the producers' wakeup. Close interrupts it.
			if err := e.wait(); err != nil {
				if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
					return nil
				}
				return err
			}
			continue
		}
		pause.Reset(pollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-pause.C:
		}
	}
}

// drain reads the ring buffer into hub until it is empty, and returns how
// many records it read; ringbuf.ErrClosed once the reader is closed.
func (e *EBPF) drain(hub *Hub) (int, error) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if e.closed {
		return 0, ringbuf.ErrClosed
	}
	if e.reader.AvailableBytes() == 0 {
		return 0, nil
	}
	e.reader.SetDeadline(time.Now()) // do not block
	n := 0
	for {
		if err := e.reader.ReadInto(&e.rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, nil
			}
			return n, fmt.Errorf("unable to read the ring buffer: %w", err)
		}
		n++
		e.publish(hub)
	}
}

// wait blocks in the Go netpoller until the ring buffer has a record or
// the reader is closed (then os.ErrClosed).
func (e *EBPF) wait() error {
	e.waits.Add(1)
	err := e.poll.Read(func(uintptr) bool {
		e.rmu.Lock()
		defer e.rmu.Unlock()
		return e.closed || e.reader.AvailableBytes() > 0
	})
	if err != nil {
		return fmt.Errorf("wait for the ring buffer: %w", err)
	}
	return nil
}

// publish decodes the last record read into an event for hub.
func (e *EBPF) publish(hub *Hub) {
	var r probes.Record
	if err := probes.ParseRecord(e.rec.RawSample, &r); err != nil {
		e.log.Warn("malformed ring buffer record", "err", err)
		return
	}
	if ev, ok := e.track.event(&r); ok {
		hub.Publish(ev)
	}
}

// closeReader closes the ring buffer's reader once no read is under way.
func (e *EBPF) closeReader() {
	e.rmu.Lock()
	first := !e.closed
	if first {
		e.closed = true
		e.reader.Close()
	}
	e.rmu.Unlock()
	if first {
		// Outside rmu: Close waits for a wait in progress, whose
		// check takes rmu.
		e.pollFile.Close()
	}
}

// Close stops reading; a self-loaded set is detached and unloaded.
func (e *EBPF) Close() error {
	e.closeReader()
	err := errors.Join(e.ring.Close(), e.knobs.Close())
	if e.set != nil {
		err = errors.Join(err, e.set.Close())
	}
	return err
}

// bootWall is the wall-clock time of CLOCK_BOOTTIME zero (bpf_ktime_get_boot_ns).
func bootWall() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano()))
}

// uidMapper maps kernel uids to those of sandboxd's user namespace
// (/proc/self/uid_map); outside any mapping a uid is reported as is.
func uidMapper() func(uint32) int {
	f, err := os.Open("/proc/self/uid_map")
	if err != nil {
		return nil
	}
	defer f.Close()
	type ext struct{ in, out, n uint64 }
	var m []ext
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		in, _ := strconv.ParseUint(fs[0], 10, 32)
		out, _ := strconv.ParseUint(fs[1], 10, 32)
		n, _ := strconv.ParseUint(fs[2], 10, 32)
		m = append(m, ext{in, out, n})
	}
	if len(m) == 1 && m[0].in == 0 && m[0].out == 0 {
		return nil // the initial namespace: identity
	}
	return func(u uint32) int {
		for _, x := range m {
			if uint64(u) >= x.out && uint64(u) < x.out+x.n {
				return int(uint64(u) - x.out + x.in)
			}
		}
		return int(u)
	}
}

// SetFiles turns the file audit on or off (mapped memory, works after lock-down).
func (e *EBPF) SetFiles(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := e.setKnob(probes.KnobFilesOn, v); err != nil {
		return fmt.Errorf("unable to switch the file audit: %w", err)
	}
	return nil
}
