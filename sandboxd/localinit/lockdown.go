package localinit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// allThreads runs a syscall on every thread of the process: capability sets,
// the bounding set and no_new_privs are per-thread attributes.
func allThreads(trap, a1, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3); e != 0 {
		return e
	}
	return nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 63
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 63
	}
	return n
}

// dropBoundingSet empties the capability bounding set (what an execve
// could ever gain). The effective and permitted sets stay, so init runs it
// first, while the Go runtime has few threads: each drop is a call on every
// thread, which later cost tens of milliseconds. Capabilities already
// gone are not dropped again.
func dropBoundingSet() error {
	for c := 0; c <= lastCap(); c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			break // beyond the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("read capability %d of the bounding set: %w", c, err)
		}
		if in == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// dropPrivileges leaves the process with uid/gid, no supplementary groups,
// empty capability sets (bounding, ambient, inheritable, permitted,
// effective), non-dumpable, and no_new_privs.
func dropPrivileges(uid, gid int, userNS bool) error {
	if uid == 0 || gid == 0 {
		return errors.New("refusing to run the sandbox as uid or gid 0")
	}
	if err := dropBoundingSet(); err != nil {
		return err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// In a user namespace made without root, setgroups is denied (the
	// caller's supplementary groups show as the overflow gid and grant
	// nothing mounted here).
	if !userNS {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// LandlockABI is the kernel's Landlock ABI version (0: none).
func LandlockABI() int {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// LoopbackPortFirst..LoopbackPortLast are the only TCP ports sandbox
// processes (sandboxd included) may bind or connect to: DarkShell's MCP
// endpoints (from 7300) and port forwards use them. The network namespace
// has only loopback, so nothing outside the sandbox is reachable through
// them; every other TCP bind and connect stays refused by Landlock (ABI 4+).
const (
	LoopbackPortFirst = 7300
	LoopbackPortLast  = 7399
)

// FSPolicy is the Landlock allow-list, as paths inside the sandbox: only
// these are reachable. Dirs and files may be mixed; char devices in
// ReadWrite also get ioctl rights (terminals).
type FSPolicy struct {
	ReadOnly  []string `json:"read_only"`
	ReadWrite []string `json:"read_write"`
	// Hard refuses to start when a listed path is missing or the kernel
	// cannot enforce every right (OpenShell's hard_requirement); otherwise
	// missing paths are skipped (best_effort).
	Hard bool `json:"hard,omitempty"`
	// ListRoot lets every directory be listed (ReadDir from / down, as
	// Landlock rules are hierarchical). Only the default sets it: it lists
	// nothing that is not readable anyway. A policy's allow-list is exact.
	ListRoot bool `json:"-"`
}

// DefaultFS is the allow-list without a policy file: the host system dirs
// the rootfs holds, read-only; the workspace, /tmp and a few devices
// read-write.
func DefaultFS() FSPolicy {
	return FSPolicy{
		ReadOnly: []string{"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", TrustDir,
			"/dev/urandom", "/dev/random", "/dev/zero"},
		ReadWrite: []string{Workspace, "/tmp", "/dev/shm", "/dev/null", "/dev/full", "/dev/tty", "/dev/pts"},
		ListRoot:  true,
	}
}

// applyLandlock restricts the whole process with the newest ABI the kernel
// has; fs lists what stays reachable. scoped reports whether
// signal and abstract-socket scoping is in force.
//
// Before ABI 8 (no LANDLOCK_RESTRICT_SELF_TSYNC) each thread of a Go
// program gets its own Landlock domain, and signal scoping then refuses a
// signal from one sandboxd thread to a process forked from another: exec
// timeouts and shutdown could not signal the workload. Scoping is only used
// from ABI 8 on; below it the pid namespace already keeps signals in (no
// process outside is addressable) and the network namespace keeps abstract
// unix sockets in (they are per network namespace).
func applyLandlock(fs FSPolicy) (abi int, scoped bool, err error) {
	abi = LandlockABI()
	if abi < 1 {
		return 0, false, errors.New("the kernel has no Landlock (needs Linux 5.13+ with landlock in the lsm= list)")
	}
	cfg := landlock.V11
	scoped = abi >= 8
	if !scoped {
		cfg.Scoped = 0
	}
	var rules []landlock.Rule
	if fs.ListRoot {
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(llsys.AccessFSReadDir), "/"))
	}
	for _, l := range []struct {
		paths []string
		rw    bool
	}{{fs.ReadOnly, false}, {fs.ReadWrite, true}} {
		for _, p := range l.paths {
			fi, err := os.Stat(p)
			if err != nil {
				if fs.Hard {
					return 0, false, fmt.Errorf("policy path %s: %w (landlock compatibility is hard_requirement)", p, err)
				}
				continue
			}
			var r landlock.FSRule
			switch {
			case fi.IsDir() && l.rw:
				r = landlock.RWDirs(p)
			case fi.IsDir():
				r = landlock.RODirs(p)
			case l.rw:
				r = landlock.RWFiles(p)
			default:
				r = landlock.ROFiles(p)
			}
			if l.rw && (fi.Mode()&os.ModeCharDevice != 0 || p == "/dev/pts") {
				r = r.WithIoctlDev()
			}
			rules = append(rules, r)
		}
	}
	for p := LoopbackPortFirst; p <= LoopbackPortLast; p++ {
		rules = append(rules, landlock.BindTCP(uint16(p)), landlock.ConnectTCP(uint16(p)))
	}
	// Rights newer than the kernel's ABI are dropped in both modes (the
	// ABI in use is reported); hard_requirement is about the listed paths.
	if err := cfg.BestEffort().Restrict(rules...); err != nil {
		return 0, false, err
	}
	return abi, scoped, nil
}

// deniedSyscalls return EPERM for every caller.
var deniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
	"ptrace", "process_vm_readv", "process_vm_writev",
	"bpf", "perf_event_open",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"keyctl", "add_key", "request_key",
	"unshare", "setns",
	"reboot", "swapon", "swapoff",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"userfaultfd", "acct", "quotactl", "lookup_dcookie", "name_to_handle_at", "open_by_handle_at",
}

// NameFilter is the go-seccomp-bpf deny-list policy.
func NameFilter() seccomp.Filter {
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls:      []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: deniedSyscalls}},
		},
	}
}

func applySeccomp() error {
	if !seccomp.Supported() {
		return errors.New("the kernel has no seccomp filter support")
	}
	if err := seccomp.LoadFilter(NameFilter()); err != nil {
		return err
	}
	prog, err := ArgFilter()
	if err != nil {
		return err
	}
	return loadRaw(prog)
}

// Offsets in struct seccomp_data (little-endian: an argument's low 32 bits
// come first). Argument checks look at the low 32 bits only, as the kernel
// does for int and unsigned int arguments, so high bits cannot slip past.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
)

func argLow(i int) uint32 { return uint32(offArg0 + 8*i) }

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

	ipprotoMPTCP = 262
	// Namespace flags of clone(2) (CLONE_NEWTIME shares a bit with CSIGNAL there).
	cloneNSFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
)

// ArgFilter is the hand-written filter: EPERM for any foreign-architecture
// syscall (i386 int 0x80 on amd64, arm32 on arm64) and x32, ENOSYS for
// clone3 (libc falls back to clone, whose flags can be checked), EPERM for
// clone with namespace flags, MPTCP sockets and TIOCSTI/TIOCLINUX.
func ArgFilter() ([]bpf.RawInstruction, error) {
	p, err := argFilter()
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(p)
}

func argFilter() ([]bpf.Instruction, error) {
	native, ok := nativeArch()
	if !ok {
		return nil, fmt.Errorf("no seccomp architecture filter for %s", runtime.GOARCH)
	}
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: native, SkipTrue: 1},
		/* 2 */ bpf.RetConstant{Val: retEPERM},
		/* 3 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 0x40000000, SkipFalse: 1}, // x32
		/* 5 */ bpf.RetConstant{Val: retEPERM},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLONE3, SkipFalse: 1},
		/* 7 */ bpf.RetConstant{Val: retENOSYS},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLONE, SkipFalse: 3},
		/* 9 */ bpf.LoadAbsolute{Off: argLow(0), Size: 4},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cloneNSFlags, SkipFalse: 1},
		/* 11 */ bpf.RetConstant{Val: retEPERM},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_IOCTL, SkipFalse: 5},
		/* 13 */ bpf.LoadAbsolute{Off: argLow(1), Size: 4},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCSTI, SkipTrue: 1},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCLINUX, SkipFalse: 1},
		/* 16 */ bpf.RetConstant{Val: retEPERM},
		/* 17 */ bpf.RetConstant{Val: retAllow},
		// socket: an allow-list of families. AF_UNIX; AF_INET/AF_INET6 but
		// MPTCP (it bypasses Landlock's TCP rules); AF_NETLINK for route
		// queries only. AF_VSOCK (not network-namespaced: it reaches the
		// hypervisor host), AF_PACKET, AF_KEY, AF_ALG and the rest: EPERM.
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 10},
		/* 19 */ bpf.LoadAbsolute{Off: argLow(0), Size: 4},
		/* 20 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipTrue: 8},
		/* 21 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 3},
		/* 22 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipTrue: 2},
		/* 23 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_NETLINK, SkipTrue: 3},
		/* 24 */ bpf.RetConstant{Val: retEPERM},
		/* 25 */ bpf.LoadAbsolute{Off: argLow(2), Size: 4},
		/* 26 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipprotoMPTCP, SkipTrue: 3, SkipFalse: 2},
		/* 27 */ bpf.LoadAbsolute{Off: argLow(2), Size: 4},
		/* 28 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.NETLINK_ROUTE, SkipFalse: 1},
		/* 29 */ bpf.RetConstant{Val: retAllow},
		/* 30 */ bpf.RetConstant{Val: retEPERM},
	}, nil
}

func nativeArch() (uint32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, true
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, true
	}
	return 0, false
}

// loadRaw installs a filter on every thread (TSYNC); no_new_privs is set.
func loadRaw(raw []bpf.RawInstruction) error {
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if e != 0 {
		return fmt.Errorf("load argument filter: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("load argument filter: thread %d could not be synchronised", r)
	}
	return nil
}
