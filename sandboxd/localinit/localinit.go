// Package localinit is `sandboxd init`: sandboxd as PID 1 of a local-driver
// sandbox. The controller starts it in new mount, pid, net, uts, ipc and
// cgroup namespaces (and a user namespace when it is not root); Run then
// confines itself and serves SSH on a unix socket. The order matters and is
// irreversible:
//
//  0. Close every descriptor inherited from the host side but stdio, the
//     readiness pipe (fd 3) and the probe descriptors (ProbeFDs): whatever
//     the controller's ancestors leaked must not reach sandbox processes.
//  1. Read the host key and the authorized client key (host paths).
//  2. Listen on the SSH unix socket at its host path, so it exists before
//     lock-down; the listening descriptor is all that is kept (close-on-exec,
//     never visible inside the sandbox).
//  3. Make every mount private (nothing propagates back to the host).
//  4. Build the new root in a tmpfs: read-only, nosuid, nodev binds of the
//     host's /usr /lib /lib64 /lib32 /bin /sbin /etc /opt (symlinks such as
//     /bin -> usr/bin recreated as symlinks); /sandbox bound read-write from
//     the workspace; /tmp a tmpfs; a fresh /proc of the new pid namespace; a
//     minimal /dev (null zero full random urandom tty bound from the host, a
//     new devpts instance with /dev/ptmx, /dev/shm tmpfs). Nothing else of
//     the host: no /home /root /run /var /mnt /srv, no DarkShell state.
//  5. pivot_root into it, detach the old root, make / read-only.
//  6. Bring up loopback in the (empty) network namespace; set the hostname.
//  7. Take over this sandbox's share of the host's eBPF trace probes (the
//     controller loads them once per host and routes this pid namespace's
//     events to a ring buffer of its own); the ring buffer and the knobs
//     are read through mmap after lock-down (no bpf() needed, and seccomp
//     denies it). Without them the server falls back to procfs+inotify.
//  8. Drop privileges: clear the capability bounding and ambient sets, set
//     groups/gid/uid to the unprivileged sandbox ids, clear the remaining
//     capability sets, mark the process non-dumpable, set no_new_privs.
//  9. Landlock (newest ABI, best effort above the required minimum): the
//     read-only and read-write allow-list, no network rules (all TCP bind
//     and connect denied), signal and abstract-socket scoping from ABI 8 on
//     (see applyLandlock for why not before).
//  10. seccomp (two filters, TSYNC): a name deny-list (go-seccomp-bpf) and a
//     hand-written filter for foreign architectures, namespace flags of
//     clone/clone3, MPTCP sockets and TIOCSTI/TIOCLINUX.
//  11. Canary self-check: a write outside the workspace, a denied syscall, a
//     route out, capabilities. If any canary succeeds, exit non-zero and never serve.
//  12. Signal readiness on fd 3 and serve; as PID 1 reap orphans and, on
//     SIGTERM, signal every process of the sandbox, then exit.
package localinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/sandboxd"
	"github.com/bohica-labs/darkshell/sandboxd/internal/process"
	"github.com/bohica-labs/darkshell/sandboxd/sshserver"
)

// Paths inside the sandbox.
const (
	Workspace = "/sandbox"
)

// Options configures Run. The local driver passes them as JSON (the tags)
// in the SANDBOXD_INIT environment variable.
type Options struct {
	Name          string    `json:"name"`             // sandbox name, the hostname
	Workspace     string    `json:"workspace"`        // host dir bound at /sandbox
	RootDir       string    `json:"root_dir"`         // host dir the new root's tmpfs is mounted on (in our mount ns only)
	Socket        string    `json:"socket"`           // host path of the SSH unix socket
	HostKey       string    `json:"host_key"`         // host path of the SSH host key
	AuthorizedKey string    `json:"authorized_key"`   // host path of the authorized client public key
	UID           int       `json:"uid"`              // unprivileged uid the sandbox runs as
	GID           int       `json:"gid"`              // and its gid
	Unconfined    bool      `json:"unconfined"`       // development only: no Landlock, no seccomp
	UserNS        bool      `json:"userns"`           // started in a user namespace (not root on the host)
	FS            *FSPolicy `json:"fs,omitempty"`     // Landlock allow-list (nil: DefaultFS)
	Rootfs        string    `json:"rootfs,omitempty"` // host dir whose top-level entries make the root (empty: the host's system dirs)
	Env           []string  `json:"env,omitempty"`    // added to every command's environment (the egress proxy's address)
	CADir         string    `json:"ca_dir,omitempty"` // host dir bound read-only at /run/darkshell (the egress CA and trust bundle)
	Extra         []string  `json:"report"`           // confinements applied by the controller (e.g. cgroups), for the hello
	Probes        *ProbeFDs `json:"probes,omitempty"` // the sandbox's share of the host's eBPF probes (nil: fallbacks)
	// WorkloadCgroups are host paths of v1 cgroup dirs, each a child of
	// the cgroup sandboxd is in, that every command sandboxd starts is born
	// in: the limits bind the workload, while sandboxd keeps headroom in
	// the parent (a fork bomb must not starve the Go runtime of threads).
	WorkloadCgroups []string `json:"workload_cgroups"`

	Logger *slog.Logger `json:"-"`
}

// Report says what Run applied.
type Report struct {
	LandlockABI int
	Confined    []string
}

// Run confines the process as the package doc describes and serves until
// SIGTERM. It never serves if a step or a canary fails.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Getpid() != 1 {
		return errors.New("init must run as PID 1 of a new pid namespace (started by the local driver)")
	}
	t0 := time.Now()
	closeInherited(log, o.Probes)
	// Nothing init or the workload executes may regain a capability; the
	// ones init's set-up uses stay effective until dropPrivileges.
	if err := dropBoundingSet(); err != nil {
		return err
	}
	hostKey, authKey, err := sshserver.ReadKeyFiles(o.HostKey, o.AuthorizedKey)
	if err != nil {
		return err
	}
	os.Remove(o.Socket)
	l, err := net.Listen("unix", o.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Socket, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(o.Socket, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", o.Socket, err)
	}

	wrap, err := workloadCgroups(o.WorkloadCgroups, log)
	if err != nil {
		return err
	}
	if wrap != nil {
		process.SetStartWrapper(wrap)
	}

	rep := &Report{Confined: []string{"mount-ns", "pid-ns", "net-ns", "uts-ns", "ipc-ns", "cgroup-ns"}}
	if o.UserNS {
		rep.Confined = append(rep.Confined, "user-ns")
	} else {
		rep.Confined = append(rep.Confined, "rootful") // set up by host root, no user namespace
	}
	tRoot := time.Now()
	bound, err := buildRoot(o)
	if err != nil {
		return fmt.Errorf("build root: %w", err)
	}
	tRoot2 := time.Now()
	if o.Rootfs != "" {
		rep.Confined = append(rep.Confined, "rootfs="+o.Rootfs)
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := syscall.Sethostname([]byte(o.Name)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	// 7. The sandbox's share of the host's eBPF probes, while bpf() is
	// still allowed (docs/trace.md).
	probes, hub := openProbes(o.Probes, log)
	tLock := time.Now()
	var steps []any // how long each step of the lock-down took, for the log
	if err := dropPrivileges(o.UID, o.GID, o.UserNS); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	rep.Confined = append(rep.Confined, fmt.Sprintf("uid=%d", o.UID), "no-new-privs", "no-caps")
	if o.Unconfined {
		log.Warn("UNCONFINED sandbox: no Landlock, no seccomp (development only)")
		rep.Confined = append(rep.Confined, "UNCONFINED")
	} else {
		fs := DefaultFS()
		if o.Rootfs != "" {
			// An image's own top-level dirs (/app, /srv, ...) stay readable.
			fs.ReadOnly = append(fs.ReadOnly, bound...)
		}
		if o.FS != nil {
			fs = *o.FS
			rep.Confined = append(rep.Confined, "policy")
		}
		tLL := time.Now()
		abi, scoped, err := applyLandlock(fs)
		steps = append(steps, "drop", tLL.Sub(tLock), "landlock", time.Since(tLL))
		if err != nil {
			return fmt.Errorf("landlock: %w", err)
		}
		rep.LandlockABI = abi
		rep.Confined = append(rep.Confined, "landlock")
		if scoped {
			rep.Confined = append(rep.Confined, "landlock-scoped")
		}
		tSC := time.Now()
		if err := applySeccomp(); err != nil {
			return fmt.Errorf("seccomp: %w", err)
		}
		rep.Confined = append(rep.Confined, "seccomp")
		tCan := time.Now()
		if err := Canaries(); err != nil {
			return fmt.Errorf("self-check failed, refusing to serve: %w", err)
		}
		steps = append(steps, "seccomp", tCan.Sub(tSC), "canaries", time.Since(tCan))
	}
	rep.Confined = append(rep.Confined, o.Extra...)
	log.Info("sandbox confined", append([]any{"landlock_abi", rep.LandlockABI, "confined", strings.Join(rep.Confined, ","),
		"took", time.Since(t0), "root", tRoot2.Sub(tRoot)}, steps...)...)

	srv := sandboxd.New(sandboxd.Options{
		DefaultDir:  Workspace,
		BaseEnv:     append(baseEnv(o.Name), o.Env...),
		Logger:      log,
		LandlockABI: rep.LandlockABI,
		Confined:    rep.Confined,
		Events:      hub,
	})
	ssrv, err := sshserver.New(sshserver.Options{HostKey: hostKey, AuthorizedKey: authKey, Serve: srv, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runProbes(ctx, probes, hub, log) // before ready: the first exec is traced
	if ready := os.NewFile(3, "ready"); ready != nil {
		ready.WriteString("ready\n")
		ready.Close()
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGCHLD {
					log.Info("stopping", "signal", s)
					cancel()
					return
				}
				process.ReapOrphans()
			case <-t.C:
				process.ReapOrphans()
			case <-ctx.Done():
				return
			}
		}
	}()
	serr := ssrv.Serve(ctx, l)
	cancel()
	shutdown(srv, log)
	return serr
}

// shutdown ends every process of the sandbox: the server's own, then
// SIGTERM to everything else, SIGKILL after 2 s.
func shutdown(srv *sandboxd.Server, log *slog.Logger) {
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	go srv.Close(cctx)
	syscall.Kill(-1, syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && othersAlive() {
		process.ReapOrphans()
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(-1, syscall.SIGKILL)
	process.ReapOrphans()
	log.Info("stopped")
}

// othersAlive reports whether any process but PID 1 is left in the namespace.
func othersAlive() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name() != "1" && e.Name()[0] >= '0' && e.Name()[0] <= '9' {
			return true
		}
	}
	return false
}

func baseEnv(name string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + Workspace,
		"USER=sandbox",
		"LOGNAME=sandbox",
		"HOSTNAME=" + name,
		"LANG=C.UTF-8",
		"TMPDIR=/tmp",
	}
}

// workloadCgroups opens, as root and before lock-down, the v1 "tasks" files
// of each workload cgroup and of its parent (sandboxd's own), and returns a
// start wrapper that forks from a thread moved into the workload cgroups,
// then moves the thread back. The child is born in the workload cgroup, so
// nothing it forks can escape the limit. The descriptors stay usable after
// lock-down: v1 checks the opener's credentials, and Landlock checks opens.
func workloadCgroups(dirs []string, log *slog.Logger) (func(start func() error) error, error) {
	if len(dirs) == 0 {
		return nil, nil
	}
	type pair struct{ work, home *os.File }
	var pairs []pair
	for _, d := range dirs {
		w, err := os.OpenFile(filepath.Join(d, "tasks"), os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open workload cgroup: %w", err)
		}
		h, err := os.OpenFile(filepath.Join(filepath.Dir(d), "tasks"), os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open sandboxd's cgroup: %w", err)
		}
		pairs = append(pairs, pair{w, h})
	}
	return func(start func() error) error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid := strconv.Itoa(syscall.Gettid())
		for _, p := range pairs {
			if _, err := p.work.WriteString(tid); err != nil {
				return fmt.Errorf("unable to enter the workload cgroup %s: %w", p.work.Name(), err)
			}
		}
		err := start()
		for _, p := range pairs {
			if _, err := p.home.WriteString(tid); err != nil {
				log.Error("unable to move a sandboxd thread out of the workload cgroup", "cgroup", p.home.Name(), "err", err)
			}
		}
		return err
	}, nil
}

// closeInherited closes descriptors above 3 that are not close-on-exec:
// they were inherited across exec from the host side (the Go runtime opens
// its own close-on-exec), and sandbox processes would inherit them in turn.
func closeInherited(log *slog.Logger, keep *ProbeFDs) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		log.Warn("unable to list inherited descriptors", "err", err)
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 3 || keep.keep(fd) {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		log.Info("closing a descriptor inherited from the host", "fd", fd, "target", target)
		unix.Close(fd)
	}
}
