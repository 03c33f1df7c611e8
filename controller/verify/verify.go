// Package verify is the escape suite `darkshell sandbox verify` runs inside
// a live sandbox through ordinary exec, so it works on any driver: each
// case tries an escape that must be refused (by the expected layer) and a
// positive control that must work, so the suite cannot pass by breaking
// everything. On a driver that does not confine (ssh), most cases fail:
// that is the truth, and the report says so.
package verify

import (
	"context"
	"fmt"
	"strings"
)

// Runner runs a shell script in the sandbox and returns its output and
// shell-style status; err is a failure to run it at all.
type Runner func(ctx context.Context, script string) (stdout, stderr string, status int, err error)

// Case is one escape attempt and its positive control.
type Case struct {
	Name string `json:"case"`
	// Layer is the confinement expected to refuse the probe.
	Layer string `json:"layer"`
	// Probe must fail (non-zero status) with Want in its output (empty:
	// any failure is the expected one).
	Probe string `json:"-"`
	Want  string `json:"-"`
	// Control must succeed.
	Control string `json:"-"`
}

// Results of a case.
const (
	Refused      = "refused"       // the probe failed as expected and the control worked
	Escaped      = "ESCAPED"       // the probe succeeded
	WrongLayer   = "wrong-layer"   // the probe failed, but not as the expected layer refuses
	ControlFails = "control-fails" // the positive control failed: the result proves nothing
	Error        = "error"         // the case could not be run
)

// Result is the outcome of one case.
type Result struct {
	Case    string `json:"case"`
	Layer   string `json:"layer"`
	Result  string `json:"result"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail,omitempty"`
	Control string `json:"control"`
}

// Report is the whole suite's outcome.
type Report struct {
	Sandbox     string   `json:"sandbox"`
	Driver      string   `json:"driver,omitempty"`
	Kernel      string   `json:"kernel"`
	LandlockABI int      `json:"landlock_abi"`
	Confined    []string `json:"confined,omitempty"`
	Passed      bool     `json:"passed"`
	Cases       []Result `json:"cases"`
}

// arch sets $ptrace, $mount (syscall numbers) for the perl probes.
const arch = `case $(uname -m) in x86_64) mount=165 ptrace=101 bpf=321 socket=41 ioctl=16;; aarch64) mount=40 ptrace=117 bpf=280 socket=198 ioctl=29;; *) mount= ptrace= bpf= socket= ioctl=;; esac; `

// sysProbe is a case probe: the perl syscall(NR $nr, ARGS) must fail with
// EPERM; it prints the errno text so Want can match it.
func sysProbe(nrVar, args, what string) string {
	return `command -v perl >/dev/null || { echo "no perl to probe with"; exit 0; }; ` + arch +
		`[ -n "$` + nrVar + `" ] || { echo "no syscall number for $(uname -m)"; exit 0; }
perl -e 'my @a = (` + args + `); syscall('"$` + nrVar + `"', @a) == -1 or exit 0; print STDERR "` + what + `: $!\n"; exit 1'`
}

// Cases is the suite, in report order.
var Cases = []Case{
	{
		Name: "write /etc", Layer: "read-only mount (EROFS)",
		Probe: `echo x > /etc/darkshell-verify && rm -f /etc/darkshell-verify`, Want: "Read-only file system",
		Control: `echo x > /sandbox/.darkshell-verify && rm /sandbox/.darkshell-verify`,
	},
	{
		Name: "write /usr", Layer: "read-only mount (EROFS)",
		Probe: `echo x > /usr/darkshell-verify && rm -f /usr/darkshell-verify`, Want: "Read-only file system",
		Control: `echo x > /tmp/.darkshell-verify && rm /tmp/.darkshell-verify`,
	},
	{
		// The process's own comm is writable by its owner: only the
		// Landlock allow-list refuses it.
		Name: "write outside the allow-list (/proc/self/comm)", Layer: "landlock (EACCES)",
		Probe: `echo x > /proc/self/comm`, Want: "Permission denied",
		Control: `cat /proc/self/comm >/dev/null && echo x > /dev/null`,
	},
	{
		Name: "mount", Layer: "seccomp (EPERM)",
		// mount(2) itself where perl can make the call (bad pointers: only
		// the filter answers EPERM, the kernel would say EFAULT), else a
		// tmpfs mount in a new user and mount namespace.
		Probe: `` + arch + `if command -v perl >/dev/null && [ -n "$mount" ]; then
  perl -e 'my @a = (1, 1, 1, 0, 0); syscall('"$mount"', @a) == -1 or exit 0; print STDERR "mount(2): $!\n"; exit 1'
elif command -v unshare >/dev/null && command -v mount >/dev/null; then unshare -rm mount -t tmpfs none /tmp
else echo "no perl, unshare or mount to probe with"; exit 0; fi`,
		Want:    "Operation not permitted",
		Control: `grep -q ' / ' /proc/self/mounts`,
	},
	{
		Name: "namespace creation (unshare -r)", Layer: "seccomp (EPERM)",
		Probe:   `command -v unshare >/dev/null || { echo "no unshare to probe with"; exit 0; }; unshare -r true`,
		Want:    "Operation not permitted",
		Control: `sh -c true`,
	},
	{
		Name: "ptrace", Layer: "seccomp (EPERM)",
		Probe: `command -v perl >/dev/null || { echo "no perl to probe with"; exit 0; }; ` + arch + `[ -n "$ptrace" ] || { echo "no syscall number for $(uname -m)"; exit 0; }
perl -e 'my @a = (0, 0, 0, 0); syscall('"$ptrace"', @a) == -1 or exit 0; print STDERR "ptrace(PTRACE_TRACEME): $!\n"; exit 1'`,
		Want:    "Operation not permitted",
		Control: `kill -0 $$`,
	},
	{
		Name: "load a BPF program", Layer: "seccomp (EPERM)",
		Probe: sysProbe("bpf", "5, 0, 0", "bpf(BPF_PROG_LOAD)"), Want: "Operation not permitted",
		Control: `true`,
	},
	{
		Name: "AF_VSOCK socket (not network-namespaced)", Layer: "seccomp (EPERM)",
		Probe: sysProbe("socket", "40, 1, 0", "socket(AF_VSOCK)"), Want: "Operation not permitted",
		Control: `command -v perl >/dev/null || exit 0; ` + arch + `[ -n "$socket" ] || exit 0; perl -e 'my @a = (1, 1, 0); syscall('"$socket"', @a) >= 0 or die "socket(AF_UNIX): $!\n"'`,
	},
	{
		Name: "MPTCP socket (bypasses Landlock TCP rules)", Layer: "seccomp (EPERM)",
		Probe: sysProbe("socket", "2, 1, 262", "socket(AF_INET, IPPROTO_MPTCP)"), Want: "Operation not permitted",
		Control: `command -v perl >/dev/null || exit 0; ` + arch + `[ -n "$socket" ] || exit 0; perl -e 'my @a = (2, 1, 0); syscall('"$socket"', @a) >= 0 or die "socket(AF_INET): $!\n"'`,
	},
	{
		Name: "TIOCSTI keystroke injection", Layer: "seccomp (EPERM)",
		Probe: sysProbe("ioctl", "0, 0x5412, 0", "ioctl(TIOCSTI)"), Want: "Operation not permitted",
		Control: `true`,
	},
	{
		Name: "hard link to a file outside the workspace", Layer: "separate mounts (EXDEV)",
		Probe:   `ln /etc/passwd /sandbox/.darkshell-verify-link`,
		Want:    "Invalid cross-device link",
		Control: `echo x > /sandbox/.darkshell-verify-a && ln /sandbox/.darkshell-verify-a /sandbox/.darkshell-verify-b; r=$?; rm -f /sandbox/.darkshell-verify-a /sandbox/.darkshell-verify-b; exit $r`,
	},
	{
		Name: "device node creation", Layer: "no CAP_MKNOD (EPERM)",
		Probe:   `mknod /sandbox/.darkshell-verify-mem c 1 1`,
		Want:    "Operation not permitted",
		Control: `mkfifo /sandbox/.darkshell-verify-fifo && rm /sandbox/.darkshell-verify-fifo`,
	},
	{
		Name: "network interfaces other than lo", Layer: "network namespace",
		Probe: `if [ -d /sys/class/net ]; then ifs=$(ls /sys/class/net); else ifs=$(tail -n +3 /proc/net/dev | cut -d: -f1); fi
ifs=$(echo "$ifs" | tr -d ' ' | grep -vx lo | grep .) && { echo "interfaces:" $ifs; exit 0; }; echo "only lo" >&2; exit 1`,
		Control: `grep -q 'lo:' /proc/net/dev`,
	},
	{
		Name: "route out", Layer: "network namespace",
		Probe:   `r=$(tail -n +2 /proc/net/route | grep .) && { echo "routes: $r"; exit 0; }; echo "no route" >&2; exit 1`,
		Control: `cat /proc/net/route >/dev/null`,
	},
	{
		Name: "host home dirs (/root, /home)", Layer: "not mounted (ENOENT)",
		Probe:   `for p in /root /home; do [ -e $p ] && { echo "$p is visible:" $(ls -A $p 2>&1 | head -5); exit 0; }; done; echo "No such file or directory" >&2; exit 1`,
		Want:    "No such file or directory",
		Control: `[ -d /sandbox ] && [ -r /etc/passwd ]`,
	},
	{
		Name: "/proc/1/root escape", Layer: "ptrace access check (non-dumpable PID 1)",
		Probe:   `ls /proc/1/root/ >/dev/null`,
		Want:    "Permission denied",
		Control: `ls /proc/self/root/ >/dev/null`,
	},
	{
		Name: "setuid / privileges", Layer: "no_new_privs + empty capability sets",
		Probe: `st=$(cat /proc/self/status) || exit 0
echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1$' || { echo "NoNewPrivs is not 1"; exit 0; }
echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000000$' || { echo "$st" | grep '^CapEff'; exit 0; }
[ "$(id -u)" != 0 ] || { echo "uid 0"; exit 0; }
echo "NoNewPrivs=1 CapEff=0 uid=$(id -u)" >&2; exit 1`,
		Control: `grep -q '^NoNewPrivs:' /proc/self/status && id -u >/dev/null`,
	},
}

// Run runs every case through run and fills in the report's cases, kernel
// and verdict (the caller sets the sandbox, driver, ABI and confinements).
func Run(ctx context.Context, run Runner, rep *Report) {
	if out, _, st, err := run(ctx, "uname -r"); err == nil && st == 0 {
		rep.Kernel = strings.TrimSpace(out)
	}
	rep.Passed = true
	for _, c := range Cases {
		r := runCase(ctx, run, c)
		rep.Passed = rep.Passed && r.OK
		rep.Cases = append(rep.Cases, r)
	}
}

func runCase(ctx context.Context, run Runner, c Case) Result {
	r := Result{Case: c.Name, Layer: c.Layer}
	cout, cerr, cst, err := run(ctx, c.Control)
	switch {
	case err != nil:
		r.Control = "error: " + err.Error()
	case cst != 0:
		r.Control = fmt.Sprintf("FAILED (status %d: %s)", cst, clip(cout+cerr))
	default:
		r.Control = "ok"
	}
	pout, perr, pst, err := run(ctx, c.Probe)
	msg := clip(perr + pout)
	switch {
	case err != nil:
		r.Result, r.Detail = Error, err.Error()
	case pst == 0:
		r.Result, r.Detail = Escaped, "the probe succeeded: "+msg
	case c.Want != "" && !strings.Contains(perr+pout, c.Want):
		r.Result, r.Detail = WrongLayer, fmt.Sprintf("refused, but not with %q: %s", c.Want, msg)
	case r.Control != "ok":
		r.Result, r.Detail = ControlFails, msg
	default:
		r.Result, r.Detail, r.OK = Refused, msg, true
	}
	return r
}

func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
