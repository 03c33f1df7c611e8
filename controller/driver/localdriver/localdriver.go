// Package localdriver is the local driver, DarkShell's embedded default: a
// sandbox is a process tree on this machine, confined by the kernel alone
// (namespaces, a read-only system root, Landlock, seccomp, an unprivileged
// uid) with no container engine. The controller's embedded sandboxd runs as
// PID 1 of the sandbox (`sandboxd init`, see sandboxd/localinit), serves SSH
// on a unix socket in the sandbox's state dir, and outlives the CLI and the
// daemon.
//
// State dir layout (h.SandboxDir(name)):
//
//	sandbox.json        the record (pid and start time of init in Extra)
//	keys/host, keys/client   per-sandbox ed25519 keys (private: 0600)
//	known_hosts         the pinned host key (written at create: no TOFU)
//	workspace/          /sandbox (unless --workspace names a host dir)
//	run/ssh.sock        the SSH socket sandboxd listens on
//	rootfs/             mount point of the sandbox's root (in its own mount ns only)
//	sandboxd.log        sandboxd's log
package localdriver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/agentbin"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/sshx"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/internal/cpus"
)

func init() { driver.Register(Driver{}) }

// Defaults.
const (
	// DefaultUID and DefaultGID are the ids sandbox processes run as: a
	// dedicated high id that owns no file on the host.
	DefaultUID = 65000
	DefaultGID = 65000
	// ReadyTimeout bounds waiting for a new sandbox's sandboxd.
	ReadyTimeout = 5 * time.Second
	// StopGrace separates SIGTERM and SIGKILL at delete.
	StopGrace = 2 * time.Second
)

// Extra is the driver's part of the record.
type Extra struct {
	driver.CreateOptions
	UID int `json:"uid"`
	GID int `json:"gid"`
	// PID is init's pid on the host; StartTime its start time in clock
	// ticks (/proc/PID/stat field 22), so a later daemon can tell it is
	// still the same process.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"start_time,omitempty"`
	// Cgroups are the sandbox's cgroup dirs (removed at delete); Limits
	// the limits applied through them.
	Cgroups []string `json:"cgroups,omitempty"`
	Limits  []string `json:"limits,omitempty"`
	// Stopped is set by Stop and cleared by Start.
	Stopped bool `json:"stopped,omitempty"`
	// Stopping is saved before Stop signals init, so a daemon killed while
	// init ends leaves a record that says stopped, not running: the next
	// Start finishes the stop before it launches.
	Stopping bool `json:"stopping,omitempty"`
}

// Driver implements driver.Driver for local sandboxes.
type Driver struct{}

// Name implements driver.Driver.
func (Driver) Name() string { return "local" }

// AcceptsCreateOptions implements driver.OptionsDriver.
func (Driver) AcceptsCreateOptions() {}

type paths struct{ dir string }

func (p paths) keys() string          { return filepath.Join(p.dir, "keys") }
func (p paths) hostKey() string       { return filepath.Join(p.dir, "keys", "host") }
func (p paths) clientKey() string     { return filepath.Join(p.dir, "keys", "client") }
func (p paths) knownHosts() string    { return filepath.Join(p.dir, "known_hosts") }
func (p paths) workspace() string     { return filepath.Join(p.dir, "workspace") }
func (p paths) runDir() string        { return filepath.Join(p.dir, "run") }
func (p paths) socket() string        { return filepath.Join(p.dir, "run", "ssh.sock") }
func (p paths) rootDir() string       { return filepath.Join(p.dir, "rootfs") }
func (p paths) imageRoot() string     { return filepath.Join(p.dir, "image") }
func (p paths) trustDir() string      { return filepath.Join(p.dir, "trust") }
func (p paths) log() string           { return filepath.Join(p.dir, "sandboxd.log") }
func (p paths) exitFile() string      { return filepath.Join(p.dir, "run", "init-exit") }
func hostKeyAlias(name string) string { return "darkshell-local-" + name }

// fsRules is the recorded policy's Landlock allow-list, nil without one.
func (x Extra) fsRules() (*policy.FSRules, error) {
	if x.Policy == "" {
		return nil, nil
	}
	pol, err := policy.Parse(x.PolicySource, []byte(x.Policy))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if fs, ok := pol.FSRules(); ok {
		return &fs, nil
	}
	return nil, nil
}

func readExtra(sb *state.Sandbox) (Extra, error) {
	x := Extra{UID: DefaultUID, GID: DefaultGID}
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &x); err != nil {
			return x, fmt.Errorf("sandbox %s: bad driver data: %w", sb.Name, err)
		}
	}
	return x, nil
}

// Create makes the sandbox's keys and dirs, starts its init and waits until
// sandboxd is confined and serving.
func (Driver) Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if rootless() {
		if err := checkUserNS(); err != nil {
			return err
		}
	}
	if x.Policy != "" {
		pol, err := policy.Parse(x.PolicySource, []byte(x.Policy))
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		if uid, gid := pol.RunAs(); uid > 0 || gid > 0 {
			if uid > 0 {
				x.UID = int(uid)
			}
			if gid > 0 {
				x.GID = int(gid)
			}
			if sb.Extra, err = json.Marshal(x); err != nil {
				return err
			}
		}
	}
	t0 := time.Now()
	p := paths{h.SandboxDir(sb.Name)}
	if err := prepareRoot(ctx, p, x); err != nil {
		return err
	}
	for _, name := range x.Providers {
		if _, err := provider.Open(h).Get(name); err != nil {
			return fmt.Errorf("--provider %s: %w", name, err)
		}
	}
	ws := x.Workspace
	if ws == "" {
		ws = p.workspace()
		if err := os.Mkdir(ws, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		// Rootless: the caller's own dir is already the sandbox ids' inside.
		if !rootless() {
			if err := os.Chown(ws, x.UID, x.GID); err != nil {
				return fmt.Errorf("chown workspace: %w", err)
			}
		}
		// An image's own /sandbox seeds a new workspace (the bind would
		// hide it), as container engines copy an image into a new volume.
		root := x.Rootfs
		if x.Image != "" {
			root = p.imageRoot()
		}
		if root != "" {
			if err := seedWorkspace(filepath.Join(root, "sandbox"), ws, x); err != nil {
				return fmt.Errorf("seed the workspace from the image: %w", err)
			}
		}
	} else {
		if !filepath.IsAbs(ws) {
			return fmt.Errorf("--workspace %q must be an absolute path", ws)
		}
		if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
			return fmt.Errorf("--workspace %s is not an existing directory", ws)
		}
	}
	if err := os.Mkdir(p.runDir(), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if _, _, err := sshx.GenerateKey(p.keys(), "host"); err != nil {
		return err
	}
	if _, _, err := sshx.GenerateKey(p.keys(), "client"); err != nil {
		return err
	}
	if err := pinHostKey(p, sb.Name); err != nil {
		return err
	}
	t1 := time.Now()
	if err := launch(ctx, h, p, sb.Name, ws, sb.Env, &x); err != nil {
		return err
	}
	slog.Debug("local sandbox started", "name", sb.Name, "prepare", t1.Sub(t0), "init_ready", time.Since(t1))
	if sb.Extra, err = json.Marshal(x); err != nil {
		return err
	}
	sb.SSH = &state.SSHTarget{User: "sandbox", UnixSocket: p.socket(), Identity: p.clientKey()}
	return nil
}

// launch makes the sandbox's cgroups and starts its init, recording the pid,
// start time, cgroups and applied limits in x. On failure nothing is left.
func launch(ctx context.Context, h *state.Home, p paths, name, ws string, env []string, x *Extra) error {
	bin, err := sandboxdBinary(h)
	if err != nil {
		return err
	}
	cg := &cgroups{}
	if !rootless() {
		if cg, err = makeCgroups(h.Dir, name, x.CreateOptions); err != nil {
			return err
		}
	} else if x.PidsLimit > 0 || x.MemoryLimit != "" || x.CPULimit != "" {
		return fmt.Errorf("--pids-limit, --memory-limit and --cpu-limit need root: uid %d has no delegated cgroup to put limits on (run as root, or create without limits)", os.Getuid())
	}
	pid, st, err := start(ctx, bin, p, name, ws, env, *x, cg)
	if err != nil {
		if rerr := cg.remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	x.PID, x.StartTime = pid, st
	x.Cgroups, x.Limits = cg.dirs(), cg.Applied
	return nil
}

// pinHostKey writes the known_hosts line for the host key generated above.
func pinHostKey(p paths, name string) error {
	b, err := os.ReadFile(p.hostKey() + ".pub")
	if err != nil {
		return err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostKeyAlias(name) + ":22")}, pub) + "\n"
	return state.WriteFileAtomic(p.knownHosts(), []byte(line), 0o600)
}

var binMu sync.Mutex

// sandboxdBinary writes the embedded sandboxd for this machine to
// $DARKSHELL_HOME/bin/sandboxd-<sha256 prefix> once and returns its path.
func sandboxdBinary(h *state.Home) (string, error) {
	b, err := agentbin.Binary(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	sum, err := agentbin.SHA256(runtime.GOARCH) // cached: no 12 MB hash per create
	if err != nil {
		return "", err
	}
	path := filepath.Join(h.Dir, "bin", "sandboxd-"+sum[:16])
	binMu.Lock()
	defer binMu.Unlock()
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(b)) {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := state.WriteFileAtomic(path, b, 0o755); err != nil {
		return "", err
	}
	return path, nil
}

// initConfig is sandboxd's localinit.Options on the wire (SANDBOXD_INIT).
type initConfig struct {
	Name          string   `json:"name"`
	Workspace     string   `json:"workspace"`
	RootDir       string   `json:"root_dir"`
	Socket        string   `json:"socket"`
	HostKey       string   `json:"host_key"`
	AuthorizedKey string   `json:"authorized_key"`
	UID           int      `json:"uid"`
	GID           int      `json:"gid"`
	Unconfined    bool     `json:"unconfined"`
	Report        []string `json:"report,omitempty"`
	// WorkloadCgroups: v1 cgroup dirs each command is born in.
	WorkloadCgroups []string `json:"workload_cgroups,omitempty"`
	// FS is the policy's Landlock allow-list (nil: sandboxd's default).
	FS *policy.FSRules `json:"fs,omitempty"`
	// Rootfs is the host dir whose top-level entries make the root (empty:
	// the host's system dirs).
	Rootfs string `json:"rootfs,omitempty"`
	// UserNS: init starts in a user namespace (the caller is not root).
	UserNS bool `json:"userns,omitempty"`
	// Env is added to every command's environment.
	Env []string `json:"env,omitempty"`
	// CADir is the host dir holding the egress CA bundle files bound
	// read-only at /run/darkshell in the sandbox.
	CADir string `json:"ca_dir,omitempty"`
	// Probes: the sandbox's share of the host's eBPF probes.
	Probes *probeFDs `json:"probes,omitempty"`
}

// rootless reports whether sandboxes are made without root: then a user
// namespace maps the caller's ids, and cgroup limits need delegation.
func rootless() bool { return os.Geteuid() != 0 }

// start runs `sandboxd init` in new namespaces, detached, and waits for it
// to report ready on a pipe (fd 3), or to fail.
func start(ctx context.Context, bin string, p paths, name, ws string, env []string, x Extra, cg *cgroups) (pid int, startTime uint64, err error) {
	logf, err := os.OpenFile(p.log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	fs, err := x.fsRules()
	if err != nil {
		return 0, 0, err
	}
	rootfs := x.Rootfs
	if x.Image != "" {
		rootfs = p.imageRoot()
	}
	trustEnv, err := writeTrust(p, name)
	if err != nil {
		return 0, 0, err
	}
	placeholders, err := providerPlaceholders(p, x.Providers)
	if err != nil {
		return 0, 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	// The sandbox's share of the host's eBPF probes (fds from 4 on).
	share := newProbeShare()
	defer share.close()
	extra, probeFDs, err := share.files([]*os.File{w})
	if err != nil {
		w.Close()
		return 0, 0, err
	}
	cfg, err := json.Marshal(initConfig{
		Name: name, Workspace: ws, RootDir: p.rootDir(), Socket: p.socket(),
		HostKey: p.hostKey(), AuthorizedKey: p.clientKey() + ".pub",
		UID: x.UID, GID: x.GID, Unconfined: x.Unconfined, Report: cg.report(),
		WorkloadCgroups: cg.Workload, FS: fs, Rootfs: rootfs, UserNS: rootless(),
		// Every local sandbox finds the egress proxy (run by the daemon;
		// without network_policies it denies everything, saying why), then
		// the sandbox's own --env values.
		Env:    append(append(egress.ProxyEnv(), trustEnv...), append(placeholders, env...)...),
		CADir:  p.trustDir(),
		Probes: probeFDs,
	})
	if err != nil {
		return 0, 0, err
	}
	cmd := &exec.Cmd{Path: bin, Args: []string{"sandboxd", "init"}, Dir: "/"}
	// Nothing of the controller's environment enters the sandbox. The
	// options travel in the environment, not argv: /proc/1/cmdline is
	// readable inside the sandbox, a non-dumpable PID 1's environ is not.
	cmd.Env = cpus.Env([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SANDBOXD_INIT=" + string(cfg)})
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid: true,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWCGROUP,
	}
	if rootless() {
		// Not root: a user namespace owns the others. Its one mapping
		// makes the caller's own uid and gid the sandbox's ids inside, so
		// no helper (newuidmap) and no subordinate ids are needed; the
		// sandbox's processes can reach nothing of the caller's but what
		// is mounted (system dirs read-only, the workspace) and Landlock allows.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: x.UID, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: x.GID, HostID: os.Getgid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		// A non-zero uid loses its capabilities at execve; ambient ones
		// survive it, for init's set-up inside its own namespaces (mounts,
		// pivot_root, hostname, loopback), after which it drops them all.
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_SYS_CHROOT}
	}
	if cg.V2 != "" {
		// Join the unified cgroup atomically at clone (CLONE_INTO_CGROUP),
		// so the sandbox's cgroup namespace is rooted there.
		fd, err := os.Open(cg.V2)
		if err != nil {
			return 0, 0, err
		}
		defer fd.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(fd.Fd())
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("start sandboxd init: %w", err)
	}
	pid = cmd.Process.Pid
	// v1 limits apply before init starts any workload: it only serves
	// after it reported ready, which is read below. So does the probes'
	// route: init switches it on only once confined.
	detach, err := share.attach(pid)
	if err == nil {
		err = cg.join(pid)
	}
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
		if detach != nil {
			detach()
		}
		return 0, 0, err
	}
	startTime, _ = procStartTime(pid)
	// The sandbox outlives this process; the goroutine only reaps it (no
	// zombie) if it ends while this process still runs, and records how it
	// ended for Status.
	os.Remove(p.exitFile())
	go func() {
		// Record how init ended while it is still a zombie, then reap:
		// Status never sees it gone without the record.
		if how, err := exitHow(pid); err == nil {
			recordExit(p, pid, how)
		}
		detach()
		cmd.Wait()
	}()

	deadline := time.Now().Add(ReadyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	r.SetReadDeadline(deadline)
	line, rerr := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) == "ready" {
		return pid, startTime, nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
	why := "exited before it was ready"
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		why = "did not get ready in time"
	}
	time.Sleep(50 * time.Millisecond) // let the log reach the file
	return 0, 0, fmt.Errorf("sandboxd init %s; its log (%s) ends with:\n%s", why, p.log(), logTail(p.log()))
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// procStartTime is field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	// A zombie still counts: its reaper (the process that started it)
	// records how it ended before reaping it, so Status and delete wait
	// for that record rather than race it.
	if f[0] == "X" {
		return 0, errors.New("dead")
	}
	// ... unless its starter is gone: then it was reparented to PID 1,
	// which on some hosts (a Firecracker init) never reaps it, and the
	// sandbox would look running forever (found by the snapshot tests,
	// which kill the daemon mid-restore).
	if f[0] == "Z" && f[1] == "1" {
		return 0, errors.New("dead (a zombie nobody will reap)")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// running reports whether the recorded init still runs (same pid and start time).
func running(x Extra) bool {
	if x.PID <= 0 {
		return false
	}
	st, err := procStartTime(x.PID)
	return err == nil && st == x.StartTime
}

// Delete stops the sandbox: SIGTERM to init (its PID 1), SIGKILL after
// StopGrace. The kernel kills every other process of the pid namespace when
// init ends, and its mounts go with its mount namespace. The caller removes
// the state dir.
func (Driver) Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if err := killInit(ctx, sb.Name, x); err != nil {
		return err
	}
	return removeCgroups(x.Cgroups)
}

func waitGone(ctx context.Context, x Extra, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for running(x) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Connect dials the sandbox's SSH socket with its own keys (host key pinned
// at create) and starts `sandboxd serve`, which sandboxd serves in process.
func (Driver) Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error) {
	x, err := readExtra(sb)
	if err != nil {
		return nil, err
	}
	if x.Stopped || x.Stopping {
		return nil, fmt.Errorf("sandbox %s is stopped (start it with `darkshell sandbox start %s`)", sb.Name, sb.Name)
	}
	if !running(x) {
		return nil, fmt.Errorf("sandbox %s is not running (init pid %d is gone); see %s", sb.Name, x.PID, paths{h.SandboxDir(sb.Name)}.log())
	}
	p := paths{h.SandboxDir(sb.Name)}
	t := sshx.Target{
		UnixSocket: p.socket(), User: "sandbox", IdentityFiles: []string{p.clientKey()},
		KnownHostsFile: p.knownHosts(), HostKeyAlias: hostKeyAlias(sb.Name),
	}
	cl, err := sshx.Dial(ctx, t, sshx.Options{})
	if err != nil {
		return nil, err
	}
	res, err := inject.Open(ctx, inject.SSHRunner(cl), inject.Options{NoInject: true})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return session.New(res.Carrier, res.Remote, res.Version, io.Closer(cl))
}

// checkUserNS says why unprivileged user namespaces cannot be made here.
func checkUserNS() error {
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("the local driver without root needs unprivileged user namespaces, which are disabled (kernel.unprivileged_userns_clone=0): enable them or run as root")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("the local driver without root needs user namespaces, which are disabled (user.max_user_namespaces=0): enable them or run as root")
	}
	return nil
}

// Inside the sandbox: the egress CA and a bundle of the host's roots plus it.
const (
	trustMount  = "/run/darkshell"
	trustCA     = trustMount + "/egress-ca.pem"
	trustBundle = trustMount + "/ca-bundle.pem"
)

// hostBundles are where distributions keep their root bundle.
var hostBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

// writeTrust makes the sandbox's egress CA (kept in its state dir) and the
// files bound at /run/darkshell, and returns the environment that points
// TLS clients at them.
func writeTrust(p paths, name string) ([]string, error) {
	ca, err := egress.LoadOrCreateCA(p.dir, name)
	if err != nil {
		return nil, fmt.Errorf("egress CA: %w", err)
	}
	if err := os.MkdirAll(p.trustDir(), 0o755); err != nil {
		return nil, err
	}
	bundle := []byte{}
	for _, b := range hostBundles {
		if data, err := os.ReadFile(b); err == nil {
			bundle = append(data, '\n')
			break
		}
	}
	bundle = append(bundle, ca.PEM()...)
	// Rewritten at every start, so no fsync: a crash leaves nothing to trust.
	for name, data := range map[string][]byte{"egress-ca.pem": ca.PEM(), "ca-bundle.pem": bundle} {
		if err := os.WriteFile(filepath.Join(p.trustDir(), name), data, 0o644); err != nil {
			return nil, err
		}
	}
	return []string{"SSL_CERT_FILE=" + trustBundle, "CURL_CA_BUNDLE=" + trustBundle, "REQUESTS_CA_BUNDLE=" + trustBundle,
		"GIT_SSL_CAINFO=" + trustBundle, "NODE_EXTRA_CA_CERTS=" + trustCA}, nil
}

// providerPlaceholders is KEY=placeholder for every key of the providers.
func providerPlaceholders(p paths, names []string) ([]string, error) {
	var env []string
	home := &state.Home{Dir: filepath.Dir(filepath.Dir(p.dir))}
	for _, name := range names {
		pr, err := provider.Open(home).Get(name)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		keys := pr.Summary().Keys
		for _, k := range keys {
			env = append(env, k+"="+egress.Placeholder(name, k))
		}
	}
	return env, nil
}

// seedWorkspace copies src (an image's /sandbox) into the new workspace ws:
// modes kept, symlinks copied as links, owned by the sandbox ids.
func seedWorkspace(src, ws string, x Extra) error {
	if fi, err := os.Lstat(src); err != nil || !fi.IsDir() {
		return nil
	}
	return filepath.WalkDir(src, func(full string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, full)
		if rel == "." {
			return nil
		}
		dst := filepath.Join(ws, rel)
		info, err := os.Lstat(full)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			err = os.Mkdir(dst, info.Mode().Perm()|0o700)
		case info.Mode()&os.ModeSymlink != 0:
			var target string
			if target, err = os.Readlink(full); err == nil {
				err = os.Symlink(target, dst)
			}
		case info.Mode().IsRegular():
			var b []byte
			if b, err = os.ReadFile(full); err == nil {
				err = os.WriteFile(dst, b, info.Mode().Perm())
			}
		default:
			return nil
		}
		if err != nil {
			return err
		}
		if !rootless() {
			return os.Lchown(dst, x.UID, x.GID)
		}
		return nil
	})
}
