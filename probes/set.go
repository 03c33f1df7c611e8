package probes

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
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
	KnobHook    = int64(unsafe.Offsetof(TraceKnobs{}.Hook))
)

// Set is one loaded and attached copy of the trace programs. It serves
// every sandbox added to it: each has its own ring buffer and knobs, keyed
// in the kernel by the inode number of the sandbox's pid namespace. One Set
// per host (the daemon's) costs one program run per event, however many
// sandboxes run; loading it once takes the BTF decoding and verification
// out of every sandbox's start.
type Set struct {
	maps     TraceMaps
	progs    []*ebpf.Program
	links    []link.Link
	ring     *ebpf.MapSpec
	knobs    *ebpf.MapSpec
	hook     FileHook
	hookNote string
}

// procObjs are the process programs; rawObjs and tpObjs the two choices of
// file program (only the chosen one is loaded).
type procObjs struct {
	OnExec *ebpf.Program `ebpf:"on_exec"`
	OnFork *ebpf.Program `ebpf:"on_fork"`
	OnExit *ebpf.Program `ebpf:"on_exit"`
}

type rawObjs struct {
	OnSysExit *ebpf.Program `ebpf:"on_sys_exit"`
}

type tpObjs struct {
	OnScExit *ebpf.Program `ebpf:"on_sc_exit"`
}

// Options choose how Load hooks the file audit.
type Options struct {
	// FileHook: HookAuto (the cheapest hook that works here),
	// HookSyscallTracepoints (an error wrapping ErrNotSupported if it
	// cannot be had) or HookRawSysExit.
	FileHook FileHook
}

// Load loads the probes with the file hook EnvFileHook asks for (auto when
// unset). See LoadWith.
func Load() (*Set, error) {
	h, err := fileHookFromEnv()
	if err != nil {
		return nil, err
	}
	return LoadWith(Options{FileHook: h})
}

// LoadWith reads the kernel's BTF, feature-probes the kernel, loads the
// programs and attaches them. They match nothing until a sandbox is added.
// Errors wrap ErrNotSupported when the kernel or the privileges are why.
//
// The file audit hooks the sys_exit_* tracepoints of the watched syscalls
// when their ids can be read from tracefs (mounted, or a detached mount of
// our own) and the kernel links a program to a perf event; else, or with
// HookRawSysExit, tp_btf/sys_exit, which runs for every syscall of the
// machine. FileHook says which is in use.
func LoadWith(o Options) (_ *Set, err error) {
	if _, err := ParseFileHook(string(o.FileHook)); err != nil {
		return nil, err
	}
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
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}, Cache: cache}

	var why string // why the syscall tracepoints are not in use
	if o.FileHook != HookRawSysExit {
		ids, how, terr := syscallTracepoints()
		if terr == nil {
			s, err := load(spec, opts, HookSyscallTracepoints, ids)
			if err == nil {
				s.hookNote = fmt.Sprintf("%d syscall tracepoints, ids from %s", len(ids), how)
				return s, nil
			}
			terr = err
		}
		if o.FileHook == HookSyscallTracepoints {
			if errors.Is(terr, ErrNotSupported) {
				return nil, terr
			}
			return nil, fmt.Errorf("%w: file audit on syscall tracepoints: %v", ErrNotSupported, terr)
		}
		why = terr.Error()
	}
	s, err := load(spec, opts, HookRawSysExit, nil)
	if err != nil {
		return nil, err
	}
	if why != "" {
		s.hookNote = "syscall tracepoints unavailable: " + why
	} else {
		s.hookNote = "asked for"
	}
	return s, nil
}

// load loads the maps, the process programs and the file program of hook,
// and attaches them (tps: the tracepoint ids for HookSyscallTracepoints).
func load(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions, hook FileHook, tps map[string]uint64) (_ *Set, err error) {
	s := &Set{ring: spec.Maps[TraceMapSandboxRings].InnerMap, knobs: spec.Maps[TraceMapSandboxKnobs].InnerMap, hook: hook}
	if s.ring == nil || s.knobs == nil {
		return nil, errors.New("the probes' maps of maps have no inner map spec")
	}
	var proc procObjs
	var raw rawObjs
	var tp tpObjs
	var file *ebpf.Program
	if hook == HookSyscallTracepoints {
		err = spec.LoadAndAssign(&struct {
			*TraceMaps
			*procObjs
			*tpObjs
		}{&s.maps, &proc, &tp}, opts)
		file = tp.OnScExit
	} else {
		err = spec.LoadAndAssign(&struct {
			*TraceMaps
			*procObjs
			*rawObjs
		}{&s.maps, &proc, &raw}, opts)
		file = raw.OnSysExit
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: load probes: %v", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("unable to load probes: %w", err)
	}
	s.progs = []*ebpf.Program{proc.OnExec, proc.OnFork, proc.OnExit, file}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	progs := []struct {
		name string
		p    *ebpf.Program
	}{
		{"sched_process_exec", proc.OnExec},
		{"sched_process_fork", proc.OnFork},
		{"sched_process_exit", proc.OnExit},
	}
	if hook == HookRawSysExit {
		progs = append(progs, struct {
			name string
			p    *ebpf.Program
		}{"sys_exit", file})
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
	if hook == HookSyscallTracepoints {
		ls, err := attachTracepoints(file, tps)
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported) ||
				errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
				return nil, fmt.Errorf("%w: %v", ErrNotSupported, err)
			}
			return nil, err
		}
		s.links = append(s.links, ls...)
	}
	return s, nil
}

// FileHook is the hook behind the file audit, and Note says why it was
// chosen (how the tracepoints were found, or why they were not usable).
func (s *Set) FileHook() (FileHook, string) { return s.hook, s.hookNote }

// Close detaches the programs (unless a sandbox holds its links, see
// LinkFiles) and drops this process's references to the maps.
func (s *Set) Close() error {
	// In parallel: detaching a tracepoint's last perf event waits for an
	// RCU grace period (tens of ms each); concurrent ones share them.
	var wg sync.WaitGroup
	for _, l := range s.links {
		wg.Go(func() { l.Close() })
	}
	wg.Wait()
	s.links = nil
	err := s.maps.Close()
	for _, p := range s.progs {
		if p != nil {
			err = errors.Join(err, p.Close())
		}
	}
	s.progs = nil
	return err
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
	if err := knobs.Put(uint32(0), TraceKnobs{FilesOn: 1, Hook: s.hook.knob()}); err != nil {
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
	if err := s.maps.SandboxRings.Update(ns, sb.Ring, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add ring buffer of pid namespace %d: %w", ns, err)
	}
	if err := s.maps.SandboxKnobs.Update(ns, sb.Knobs, ebpf.UpdateAny); err != nil {
		s.maps.SandboxRings.Delete(ns)
		return fmt.Errorf("add knobs of pid namespace %d: %w", ns, err)
	}
	return nil
}

// Remove stops tracing the pid namespace with inode number ns. It is not
// an error if it was not added.
func (s *Set) Remove(ns uint32) error {
	err1 := s.maps.SandboxKnobs.Delete(ns)
	err2 := s.maps.SandboxRings.Delete(ns)
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

// ProgramStats is what the kernel counted for one program: how often it
// ran and for how long in total. Both stay zero unless BPF run-time
// statistics are on (ebpf.EnableStats, or sysctl kernel.bpf_stats_enabled).
type ProgramStats struct {
	Name    string
	Runs    uint64
	Runtime time.Duration
}

// Stats reads the run-time statistics of the set's programs: the three
// process programs, then the file program (named after its hook).
func (s *Set) Stats() ([]ProgramStats, error) {
	names := []string{"tp_btf/sched_process_exec", "tp_btf/sched_process_fork", "tp_btf/sched_process_exit", string(s.hook)}
	var out []ProgramStats
	for i, p := range s.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("statistics of %s: %w", names[i], err)
		}
		out = append(out, ProgramStats{Name: names[i], Runs: st.RunCount, Runtime: st.Runtime})
	}
	return out, nil
}
