package events

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

// pollInterval is how often the reader looks at the ring buffer when the
// probes did not wake it (they do at 256 KiB pending).
const pollInterval = 20 * time.Millisecond

// ErrNotSupported wraps every failure that means "this kernel or this
// process cannot run the probes" (missing feature, no privilege): the
// caller falls back to procfs and inotify. Other errors are bugs.
var ErrNotSupported = errors.New("eBPF tracing not supported here")

// EBPF is the loaded and attached probe set. Load it while privileged;
// Start and everything after works under Landlock and seccomp (no bpf()).
type EBPF struct {
	objs   probes.TraceObjects
	links  []link.Link
	reader *ringbuf.Reader
	track  *tracker
	log    *slog.Logger
	nsDev  uint64
	nsIno  uint64
}

// LoadEBPF is PrepareEBPF then Load.
func LoadEBPF(log *slog.Logger) (*EBPF, error) {
	p, err := PrepareEBPF()
	if err != nil {
		return nil, err
	}
	return p.Load(log)
}

// Prepared holds what loading the probes needs from the file system: the
// kernel's BTF, the probes' spec, the pid namespace and uid map of the
// calling process. Prepare while the host's /sys and /proc are visible;
// Load needs no file system.
type Prepared struct {
	spec   *ebpf.CollectionSpec
	cache  *btf.Cache // holds the kernel's BTF, read once
	kernel *btf.Spec
	nsDev  uint64
	nsIno  uint64
	uidMap func(uint32) int
}

// PrepareEBPF reads the kernel BTF and the probes' spec. Errors wrap
// ErrNotSupported when the kernel lacks BTF.
func PrepareEBPF() (*Prepared, error) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("%w: no kernel BTF (tp_btf and CO-RE need it): %v", ErrNotSupported, err)
	}
	// One cache for CO-RE and for finding the tp_btf targets: the kernel's
	// BTF is decoded once, now, while /sys is visible.
	cache := btf.NewCache()
	kernel, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("%w: kernel BTF: %v", ErrNotSupported, err)
	}
	spec, err := probes.LoadTrace()
	if err != nil {
		return nil, fmt.Errorf("unable to parse the probes: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return nil, fmt.Errorf("unable to stat the pid namespace: %w", err)
	}
	return &Prepared{spec: spec, cache: cache, kernel: kernel, nsDev: uint64(st.Dev), nsIno: st.Ino, uidMap: uidMapper()}, nil
}

// Load feature-probes the kernel, loads the probes and attaches them,
// matching nothing until Enable scopes them to the pid namespace of the
// process that prepared them (the sandbox's, when sandboxd init does).
// Errors wrap ErrNotSupported when the kernel or the privileges are the
// reason.
func (p *Prepared) Load(log *slog.Logger) (_ *EBPF, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Feature probes, not version guesses: a ring buffer, the pidns
	// helper and bpf_loop are what the probes cannot do without.
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return nil, fmt.Errorf("%w: ring buffer: %v", ErrNotSupported, err)
	}
	if err := features.HaveProgramHelper(ebpf.Kprobe, asm.FnGetNsCurrentPidTgid); err != nil {
		return nil, fmt.Errorf("%w: bpf_get_ns_current_pid_tgid: %v", ErrNotSupported, err)
	}
	if err := features.HaveProgramHelper(ebpf.Kprobe, asm.FnLoop); err != nil {
		return nil, fmt.Errorf("%w: bpf_loop: %v", ErrNotSupported, err)
	}
	_ = rlimit.RemoveMemlock() // only matters before memcg accounting (5.11)

	e := &EBPF{log: log, nsDev: p.nsDev, nsIno: p.nsIno}
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: p.kernel}, Cache: p.cache}
	if err := p.spec.LoadAndAssign(&e.objs, opts); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: load probes: %v", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("unable to load probes: %w", err)
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	progs := []struct {
		name string
		p    *ebpf.Program
	}{
		{"sched_process_exec", e.objs.OnExec},
		{"sched_process_fork", e.objs.OnFork},
		{"sched_process_exit", e.objs.OnExit},
		{"sys_enter", e.objs.OnSysEnter},
		{"sys_exit", e.objs.OnSysExit},
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
				return nil, fmt.Errorf("%w: attach tp_btf/%s: %v", ErrNotSupported, p.name, err)
			}
			return nil, fmt.Errorf("unable to attach tp_btf/%s: %w", p.name, err)
		}
		e.links = append(e.links, l)
	}
	e.reader, err = ringbuf.NewReader(e.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("unable to open the ring buffer: %w", err)
	}
	e.track = newTracker(bootWall(), p.uidMap)
	return e, nil
}

// Enable scopes the probes to the pid namespace LoadEBPF ran in; until
// then they match nothing (sandboxd init's own set-up is not traced). It
// writes the mmap'd .bss only, so it works after lock-down.
func (e *EBPF) Enable() error {
	if err := e.objs.FilterNsDev.Set(e.nsDev); err != nil {
		return fmt.Errorf("unable to set the pid namespace filter: %w", err)
	}
	if err := e.objs.FilterNsIno.Set(e.nsIno); err != nil {
		return fmt.Errorf("unable to set the pid namespace filter: %w", err)
	}
	return nil
}

// Disable makes the probes match nothing (they stay attached).
func (e *EBPF) Disable() error {
	if err := e.objs.FilterNsIno.Set(uint64(0)); err != nil {
		return fmt.Errorf("unable to clear the pid namespace filter: %w", err)
	}
	return nil
}

// ScopeToPID re-scopes the probes to the pid namespace of process pid
// (benchmarks and tests that trace a workload they start themselves).
func (e *EBPF) ScopeToPID(pid int) error {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &st); err != nil {
		return fmt.Errorf("unable to stat the pid namespace of %d: %w", pid, err)
	}
	e.nsDev, e.nsIno = uint64(st.Dev), st.Ino
	return e.Enable()
}

// Lost reads the probe's loss counter (a full ring buffer), through mmap.
func (e *EBPF) Lost() uint64 {
	var n uint64
	if err := e.objs.Lost.Get(&n); err != nil {
		return 0
	}
	return n
}

// Hello describes the eBPF source for an events stream.
func (e *EBPF) Hello() protocol.EventsHello {
	return protocol.EventsHello{
		Sources:      []string{protocol.SourceEBPF},
		Fidelity:     protocol.FidelityComplete,
		FileFidelity: protocol.FidelityComplete,
	}
}

// Run reads the ring buffer into hub until ctx ends or the reader is
// closed. It needs no bpf() call, so it works after lock-down.
func (e *EBPF) Run(ctx context.Context, hub *Hub) error {
	hub.SetLost(e.Lost)
	stop := context.AfterFunc(ctx, func() { e.reader.Close() })
	defer stop()
	var rec ringbuf.Record
	for {
		// The probes wake the reader only when much is pending; below
		// that, poll (bounds an event's latency by pollInterval).
		e.reader.SetDeadline(time.Now().Add(pollInterval))
		if err := e.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("unable to read the ring buffer: %w", err)
		}
		r, ok := decodeRecord(rec.RawSample)
		if !ok {
			e.log.Warn("short ring buffer record", "bytes", len(rec.RawSample))
			continue
		}
		if ev, ok := e.track.event(r); ok {
			hub.Publish(ev)
		}
	}
}

// Close detaches and unloads the probes.
func (e *EBPF) Close() error {
	if e.reader != nil {
		e.reader.Close()
	}
	for _, l := range e.links {
		l.Close()
	}
	return e.objs.Close()
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

// SetFiles turns the file audit on or off (mmap'd .bss, works after lock-down).
func (e *EBPF) SetFiles(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := e.objs.FilesOn.Set(v); err != nil {
		return fmt.Errorf("unable to switch the file audit: %w", err)
	}
	return nil
}
