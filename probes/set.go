package probes

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrNotSupported wraps every failure that means "this kernel or this
// process cannot run the probes" (missing feature, no privilege): callers
// fall back to procfs and inotify. Other errors are bugs.
var ErrNotSupported = errors.New("eBPF tracing not supported here")

// Knob offsets in a sandbox's knobs array (struct knobs in trace.c).
const (
	KnobOn      = int64(unsafe.Offsetof(TraceKnobs{}.On))
	KnobFilesOn = int64(unsafe.Offsetof(TraceKnobs{}.FilesOn))
	KnobLost    = int64(unsafe.Offsetof(TraceKnobs{}.Lost))
)

// Set is one loaded and attached copy of the trace programs. It serves
// every sandbox added to it: each has its own ring buffer and knobs, keyed
// in the kernel by the inode number of the sandbox's pid namespace. One Set
// per host (the daemon's) costs one program run per event, however many
// sandboxes run; loading it once takes the BTF decoding and verification
// out of every sandbox's start.
type Set struct {
	objs  TraceObjects
	links []link.Link
	ring  *ebpf.MapSpec
	knobs *ebpf.MapSpec
}

// Load reads the kernel's BTF, feature-probes the kernel, loads the
// programs and attaches them. They match nothing until a sandbox is added.
// Errors wrap ErrNotSupported when the kernel or the privileges are why.
func Load() (_ *Set, err error) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("%w: no kernel BTF (tp_btf and CO-RE need it): %v", ErrNotSupported, err)
	}
	// Feature probes, not version guesses: ring buffers, maps of maps
	// and bpf_loop are what the programs cannot do without.
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return nil, fmt.Errorf("%w: ring buffer: %v", ErrNotSupported, err)
	}
	if err := features.HaveMapType(ebpf.HashOfMaps); err != nil {
		return nil, fmt.Errorf("%w: hash of maps: %v", ErrNotSupported, err)
	}
	if err := features.HaveProgramHelper(ebpf.Kprobe, asm.FnLoop); err != nil {
		return nil, fmt.Errorf("%w: bpf_loop: %v", ErrNotSupported, err)
	}
	_ = rlimit.RemoveMemlock() // only matters before memcg accounting (5.11)

	// One cache for CO-RE and for finding the tp_btf targets: the kernel's
	// BTF is decoded once.
	cache := btf.NewCache()
	kernel, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("%w: kernel BTF: %v", ErrNotSupported, err)
	}
	spec, err := LoadTrace()
	if err != nil {
		return nil, fmt.Errorf("unable to parse the probes: %w", err)
	}
	s := &Set{ring: spec.Maps[TraceMapSandboxRings].InnerMap, knobs: spec.Maps[TraceMapSandboxKnobs].InnerMap}
	if s.ring == nil || s.knobs == nil {
		return nil, errors.New("the probes' maps of maps have no inner map spec")
	}
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}, Cache: cache}
	if err := spec.LoadAndAssign(&s.objs, opts); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: load probes: %v", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("unable to load probes: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	progs := []struct {
		name string
		p    *ebpf.Program
	}{
		{"sched_process_exec", s.objs.OnExec},
		{"sched_process_fork", s.objs.OnFork},
		{"sched_process_exit", s.objs.OnExit},
		{"sys_enter", s.objs.OnSysEnter},
		{"sys_exit", s.objs.OnSysExit},
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
				return nil, fmt.Errorf("%w: attach tp_btf/%s: %v", ErrNotSupported, p.name, err)
			}
			return nil, fmt.Errorf("unable to attach tp_btf/%s: %w", p.name, err)
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

// Close detaches the programs (unless a sandbox holds its links, see
// LinkFiles) and drops this process's references to the maps.
func (s *Set) Close() error {
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil
	return s.objs.Close()
}

// LinkFiles returns duplicates of the links' descriptors. A program stays
// attached while any descriptor of its link is open: a sandbox's sandboxd
// holds these, so its tracing outlives the process that loaded the Set.
// The caller closes them.
func (s *Set) LinkFiles() ([]*os.File, error) {
	var fs []*os.File
	for _, l := range s.links {
		f, ok := l.(interface{ FD() int })
		if !ok {
			closeAll(fs)
			return nil, fmt.Errorf("link %T has no descriptor", l)
		}
		fd, err := unix.FcntlInt(uintptr(f.FD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeAll(fs)
			return nil, fmt.Errorf("dup link: %w", err)
		}
		fs = append(fs, os.NewFile(uintptr(fd), "bpf-link"))
	}
	return fs, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// Sandbox is one sandbox's share of a Set: its ring buffer and knobs.
type Sandbox struct {
	Ring  *ebpf.Map // BPF_MAP_TYPE_RINGBUF, read by the sandbox's sandboxd
	Knobs *ebpf.Map // one struct knobs, mmapable
}

// NewSandbox creates a sandbox's ring buffer and knobs (file audit on,
// tracing off until the reader sets KnobOn). They match nothing until Add.
func (s *Set) NewSandbox() (*Sandbox, error) {
	ring, err := ebpf.NewMap(s.ring)
	if err != nil {
		return nil, fmt.Errorf("create ring buffer: %w", err)
	}
	knobs, err := ebpf.NewMap(s.knobs)
	if err != nil {
		ring.Close()
		return nil, fmt.Errorf("create knobs: %w", err)
	}
	if err := knobs.Put(uint32(0), TraceKnobs{FilesOn: 1}); err != nil {
		ring.Close()
		knobs.Close()
		return nil, fmt.Errorf("set knobs: %w", err)
	}
	return &Sandbox{Ring: ring, Knobs: knobs}, nil
}

// Close drops this process's references to the sandbox's maps (the Set
// keeps its own while the sandbox is added).
func (sb *Sandbox) Close() error {
	return errors.Join(sb.Ring.Close(), sb.Knobs.Close())
}

// Add routes the events of the pid namespace with inode number ns to sb.
func (s *Set) Add(ns uint32, sb *Sandbox) error {
	if err := s.objs.SandboxRings.Update(ns, sb.Ring, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add ring buffer of pid namespace %d: %w", ns, err)
	}
	if err := s.objs.SandboxKnobs.Update(ns, sb.Knobs, ebpf.UpdateAny); err != nil {
		s.objs.SandboxRings.Delete(ns)
		return fmt.Errorf("add knobs of pid namespace %d: %w", ns, err)
	}
	return nil
}

// Remove stops tracing the pid namespace with inode number ns. It is not
// an error if it was not added.
func (s *Set) Remove(ns uint32) error {
	err1 := s.objs.SandboxKnobs.Delete(ns)
	err2 := s.objs.SandboxRings.Delete(ns)
	if errors.Is(err1, ebpf.ErrKeyNotExist) {
		err1 = nil
	}
	if errors.Is(err2, ebpf.ErrKeyNotExist) {
		err2 = nil
	}
	return errors.Join(err1, err2)
}

// PidNS is the inode number of process pid's pid namespace (0: this process).
func PidNS(pid int) (uint32, error) {
	p := "/proc/self/ns/pid"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/ns/pid", pid)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("pid namespace of %s: %w", p, err)
	}
	return uint32(st.Ino), nil
}
