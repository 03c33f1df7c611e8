package probes

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// FileHook names the kernel hook behind the file audit.
type FileHook string

const (
	// HookAuto picks HookSyscallTracepoints where the kernel and the
	// privileges allow it, else HookRawSysExit.
	HookAuto FileHook = ""
	// HookSyscallTracepoints: one classic tracepoint program attached to
	// tracepoint/syscalls/sys_exit_* of each watched syscall. It runs for
	// those syscalls only; attaching needs the events' ids from tracefs.
	HookSyscallTracepoints FileHook = "tracepoint/syscalls"
	// HookRawSysExit: tp_btf/sys_exit, which runs for every syscall of the
	// machine and filters by number in the program. Needs no tracefs.
	HookRawSysExit FileHook = "tp_btf/sys_exit"
)

// EnvFileHook overrides the file hook choice: "tracepoint/syscalls" or
// "tp_btf/sys_exit" (tests force each path with it); empty or "auto" picks.
const EnvFileHook = "DARKSHELL_TRACE_FILE_HOOK"

// knob values of struct knobs.hook (enum hook in trace.c).
const (
	hookKnobTracepoints = 1
	hookKnobRaw         = 2
)

// HookOfKnob names the file hook a knobs.hook value stands for ("" for none).
func HookOfKnob(v uint32) FileHook {
	switch v {
	case hookKnobTracepoints:
		return HookSyscallTracepoints
	case hookKnobRaw:
		return HookRawSysExit
	}
	return ""
}

func (h FileHook) knob() uint32 {
	switch h {
	case HookSyscallTracepoints:
		return hookKnobTracepoints
	case HookRawSysExit:
		return hookKnobRaw
	}
	return 0
}

// ParseFileHook reads a FileHook from its name ("auto" and "" are HookAuto).
func ParseFileHook(s string) (FileHook, error) {
	switch FileHook(s) {
	case HookAuto, "auto":
		return HookAuto, nil
	case HookSyscallTracepoints, HookRawSysExit:
		return FileHook(s), nil
	}
	return "", fmt.Errorf("unknown file hook %q: want auto, %s or %s", s, HookSyscallTracepoints, HookRawSysExit)
}

// watchedSyscalls are the syscalls whose sys_exit_* events carry the file
// audit (the same list as watched() in trace.c). The architecture lacks
// some (arm64 has no open, creat, ...): their events do not exist and are
// skipped. openat is required.
var watchedSyscalls = []string{
	"openat", "open", "creat", "openat2",
	"unlink", "unlinkat", "rename", "renameat", "renameat2",
	"mkdir", "mkdirat", "rmdir",
	"chmod", "fchmodat", "fchmodat2",
}

// syscallTracepoints finds the sys_exit_* events of the watched syscalls
// and checks that a tracepoint program can do what on_sc_exit does.
func syscallTracepoints() (map[string]uint64, string, error) {
	for _, fn := range []asm.BuiltinFunc{asm.FnGetCurrentTaskBtf, asm.FnTaskPtRegs, asm.FnRingbufReserve} {
		if err := features.HaveProgramHelper(ebpf.TracePoint, fn); err != nil {
			return nil, "", fmt.Errorf("tracepoint programs lack %s: %w", fn, err)
		}
	}
	names := make([]string, len(watchedSyscalls))
	for i, s := range watchedSyscalls {
		names[i] = "sys_exit_" + s
	}
	ids, how, err := tracepointIDs("syscalls", names)
	if err != nil {
		return nil, "", err
	}
	if _, ok := ids["sys_exit_openat"]; !ok {
		return nil, "", errors.New("tracefs has no syscalls/sys_exit_openat event (CONFIG_FTRACE_SYSCALLS off?)")
	}
	return ids, how, nil
}

// attachTracepoints attaches prog to each tracepoint id through a BPF link
// on a perf event (Linux 5.15). The link holds the perf event: its
// descriptor is closed here, and the link alone keeps the program attached
// (LinkFiles hands it to sandboxes like the tp_btf links).
func attachTracepoints(prog *ebpf.Program, ids map[string]uint64) ([]link.Link, error) {
	names := make([]string, 0, len(ids))
	for n := range ids {
		names = append(names, n)
	}
	sort.Strings(names)
	var links []link.Link
	fail := func(err error) ([]link.Link, error) {
		for _, l := range links {
			l.Close()
		}
		return nil, err
	}
	for _, n := range names {
		attr := unix.PerfEventAttr{
			Type:        unix.PERF_TYPE_TRACEPOINT,
			Config:      ids[n],
			Sample_type: unix.PERF_SAMPLE_RAW,
			Sample:      1,
			Wakeup:      1,
		}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			return fail(fmt.Errorf("perf event of tracepoint syscalls/%s: %w", n, err))
		}
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
		unix.Close(fd)
		if err != nil {
			return fail(fmt.Errorf("link to tracepoint syscalls/%s: %w", n, err))
		}
		links = append(links, l)
	}
	return links, nil
}

// fileHookFromEnv reads EnvFileHook.
func fileHookFromEnv() (FileHook, error) {
	h, err := ParseFileHook(os.Getenv(EnvFileHook))
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvFileHook, err)
	}
	return h, nil
}
