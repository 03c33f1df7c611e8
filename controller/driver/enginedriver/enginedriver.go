// Package enginedriver is the podman and docker driver: a sandbox is a
// container of a container engine, driven through the engine's own
// command-line client (the two CLIs agree on everything used here).
//
// Create starts a long-lived container from an image (a reference in the
// engine's store, or an image archive path that is `load`ed first) with no
// network, no capabilities, no-new-privileges, the engine's init as PID 1
// and /sandbox as its working directory, limits mapped to the engine's
// flags. The carrier to sandboxd is `ENGINE exec -i CONTAINER /bin/sh -c
// 'exec sandboxd serve'`; sandboxd is pushed in over that same stream with
// zero setup when the image lacks it (controller/inject), into the
// container user's $HOME/.cache, so the image needs only a POSIX sh,
// uname, cat, mkdir, chmod, mv and rm.
//
// The engine's client is slow to start an exec (about 200 ms for podman
// here), but the daemon keeps one warm session per sandbox, so commands
// through the daemon cost a stream open, not an engine exec.
//
// Record (state.Sandbox.Extra): see [Extra]. The container is named
// darkshell-NAME-HASH (HASH from the installation's state dir, so two
// installations never collide) and labelled darkshell.sandbox=NAME.
package enginedriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

func init() {
	driver.Register(Driver{Engine: Podman})
	driver.Register(Driver{Engine: Docker})
}

// Workspace is the sandbox's working directory and the default remote of
// sync, upload and download.
const Workspace = "/sandbox"

// Labels put on every container the driver makes.
const (
	LabelSandbox = "darkshell.sandbox"
	LabelHome    = "darkshell.home"
)

// StopTimeout is how long stop waits for the container's init before the
// engine kills it.
const StopTimeout = 2

// Extra is the driver's part of the record.
type Extra struct {
	driver.CreateOptions
	// Container is the engine's name of the container, ContainerID its id.
	Container   string `json:"container"`
	ContainerID string `json:"container_id,omitempty"`
	// ImageID is the id of the image the container runs; Loaded is set
	// when Image was an archive that create loaded into the engine.
	ImageID string `json:"image_id,omitempty"`
	Loaded  string `json:"loaded,omitempty"`
	// EngineEnv are the engine state variables (Engine.StateEnv) at create.
	EngineEnv []string `json:"engine_env,omitempty"`
	// Limits lists the limits as the engine flags they became.
	Limits []string `json:"limits,omitempty"`
	// Stopped is set by Stop and cleared by Start.
	Stopped bool `json:"stopped,omitempty"`
}

func readExtra(sb *state.Sandbox) (Extra, error) {
	var x Extra
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &x); err != nil {
			return x, fmt.Errorf("sandbox %s: bad driver data: %w", sb.Name, err)
		}
	}
	return x, nil
}

// Driver implements driver.Driver for one engine.
type Driver struct {
	Engine Engine
	// Logger receives diagnostics (default: slog.Default()).
	Logger *slog.Logger
}

// Name implements driver.Driver.
func (d Driver) Name() string { return d.Engine.Name }

// AcceptsCreateOptions implements driver.OptionsDriver.
func (Driver) AcceptsCreateOptions() {}

// Workspace implements driver.Workspacer.
func (Driver) Workspace() string { return Workspace }

func (d Driver) log() *slog.Logger {
	l := d.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "driver", "driver", d.Engine.Name)
}

// containerName is the engine name of sandbox name in installation h.
func containerName(h *state.Home, name string) string {
	sum := sha256.Sum256([]byte(h.Dir))
	return "darkshell-" + name + "-" + hex.EncodeToString(sum[:4])
}

// Create starts the container and makes sure sandboxd answers in it
// (pushing it there if the image lacks it). On failure nothing is left.
func (d Driver) Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if err := d.checkOptions(x.CreateOptions); err != nil {
		return err
	}
	x.Container = containerName(h, sb.Name)
	x.EngineEnv = d.Engine.engineEnv()
	eng := d.Engine
	if _, err := eng.run(ctx, x.EngineEnv, "version"); err != nil {
		return fmt.Errorf("%s is not usable here: %w", eng.Name, hint(err))
	}

	id, loaded, err := d.resolveImage(ctx, x)
	if err != nil {
		return err
	}
	x.Loaded, x.ImageID = loaded, id

	args, limits, err := d.runArgs(h, sb, x)
	if err != nil {
		return err
	}
	if len(limits) > 0 {
		if err := d.checkLimitsEnforced(ctx, x); err != nil {
			return err
		}
	}
	x.Limits = limits
	args = append(args, x.ImageID)
	out, err := eng.run(ctx, x.EngineEnv, args...)
	if err != nil {
		d.remove(x) // `run` may leave a created container behind
		return fmt.Errorf("unable to start the sandbox's container: %w", hint(err))
	}
	x.ContainerID = firstLine(out)
	d.log().Info("container started", "sandbox", sb.Name, "container", x.Container, "image", x.ImageID[:min(12, len(x.ImageID))], "limits", limits)

	if sb.Extra, err = json.Marshal(x); err != nil {
		d.remove(x)
		return err
	}
	s, err := d.Connect(ctx, h, sb)
	if err != nil {
		d.remove(x)
		return err
	}
	return s.Close()
}

// checkOptions refuses the create options this driver cannot honour.
func (d Driver) checkOptions(o driver.CreateOptions) error {
	switch {
	case o.Rootfs != "":
		return fmt.Errorf("--rootfs is not supported by the %s driver: build an image from the directory and pass --image", d.Engine.Name)
	case o.Image == "":
		return fmt.Errorf("--driver %s needs --image: an image in %s's store (e.g. built by `darkshell image build` and loaded) or the path of an image archive", d.Engine.Name, d.Engine.Name)
	case o.Unconfined:
		return fmt.Errorf("--unconfined is not supported by the %s driver (the container's confinement is the engine's)", d.Engine.Name)
	case o.Policy != "":
		return fmt.Errorf("--policy is not supported by the %s driver yet: its containers have no network, no capabilities and no-new-privileges; use --driver local for Landlock policies", d.Engine.Name)
	case o.Workspace != "":
		if fi, err := os.Stat(o.Workspace); err != nil || !fi.IsDir() {
			return fmt.Errorf("--workspace %s is not an existing directory", o.Workspace)
		}
	}
	return nil
}

// resolveImage returns the id of the image to run: Image is a reference
// in the engine's store (pulled if missing) or, when it names a file here,
// an archive that is loaded first (loaded is then the reference it gave).
func (d Driver) resolveImage(ctx context.Context, x Extra) (id, loaded string, err error) {
	ref := x.Image
	if fi, statErr := os.Stat(x.Image); statErr != nil {
		if id, err := d.imageID(ctx, x, ref); err == nil {
			return id, "", nil
		}
		if _, perr := d.Engine.run(ctx, x.EngineEnv, "pull", x.Image); perr != nil {
			return "", "", fmt.Errorf("--image %s is neither a file nor an image in %s's store, and pulling it failed: %w\n(load an archive with `%s load -i FILE`, or pass the archive's path to --image)",
				x.Image, d.Engine.Name, perr, d.Engine.Bin)
		}
	} else if fi.IsDir() {
		return "", "", fmt.Errorf("--image %s is a directory: the %s driver loads image archives (docker-archive or oci-archive files); use `%s load` for other formats", x.Image, d.Engine.Name, d.Engine.Bin)
	} else {
		out, err := d.Engine.run(ctx, x.EngineEnv, "load", "-i", x.Image)
		if err != nil {
			return "", "", fmt.Errorf("--image %s: unable to load the archive: %w", x.Image, err)
		}
		if ref = loadedRef(out); ref == "" {
			return "", "", fmt.Errorf("--image %s: `%s load` did not say which image it loaded: %q", x.Image, d.Engine.Bin, clean(out))
		}
		loaded = ref
	}
	id, err = d.imageID(ctx, x, ref)
	if err != nil {
		return "", "", fmt.Errorf("--image %s: %w", x.Image, err)
	}
	return id, loaded, nil
}

// imageID is the engine's id (hex, no algorithm) of image ref.
func (d Driver) imageID(ctx context.Context, x Extra, ref string) (string, error) {
	out, err := d.Engine.run(ctx, x.EngineEnv, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return "", err
	}
	id := strings.TrimPrefix(firstLine(out), "sha256:")
	if id == "" {
		return "", fmt.Errorf("`%s image inspect %s` gave no id", d.Engine.Bin, ref)
	}
	return id, nil
}

// loadedRef picks the image from `load` output: podman prints "Loaded
// image: REF" (or "Loaded image(s): REF,..."), docker "Loaded image: REF"
// or "Loaded image ID: sha256:...".
func loadedRef(out string) string {
	ref := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "Loaded image") {
			continue
		}
		_, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(strings.TrimSpace(v), ",")
		if v != "" {
			ref = v
		}
	}
	return ref
}

// runArgs is the `run` command line without the image, and the limits it sets.
func (d Driver) runArgs(h *state.Home, sb *state.Sandbox, x Extra) (args, limits []string, err error) {
	args = []string{"run", "-d", "-i",
		"--name", x.Container,
		"--hostname", sb.Name,
		"--label", LabelSandbox + "=" + sb.Name,
		"--label", LabelHome + "=" + h.Dir,
		"--init",
		"--network", "none",
		"--cap-drop", "ALL",
		"--security-opt", "no-new-privileges",
		"--workdir", Workspace,
		// The init's child is a shell reading the (open, silent) stdin: it
		// idles until the container is stopped, whatever the image's
		// entrypoint would have run.
		"--entrypoint", "/bin/sh",
	}
	for _, e := range sb.Env {
		args = append(args, "--env", e)
	}
	if x.Workspace != "" {
		args = append(args, "--volume", x.Workspace+":"+Workspace)
	} else {
		// An anonymous volume: kept across stop/start, removed with the container.
		args = append(args, "--volume", Workspace)
	}
	if x.CPULimit != "" {
		if f, err := strconv.ParseFloat(x.CPULimit, 64); err != nil || f <= 0 {
			return nil, nil, fmt.Errorf("--cpu-limit %q: want a positive number of CPUs, e.g. 1.5", x.CPULimit)
		}
		limits = append(limits, "--cpus="+x.CPULimit)
	}
	if x.MemoryLimit != "" {
		m, err := memoryFlag(x.MemoryLimit)
		if err != nil {
			return nil, nil, err
		}
		limits = append(limits, "--memory="+m, "--memory-swap="+m)
	}
	if x.PidsLimit != 0 {
		if x.PidsLimit < 0 {
			return nil, nil, fmt.Errorf("--pids-limit %d: want a positive number", x.PidsLimit)
		}
		limits = append(limits, "--pids-limit="+strconv.FormatInt(x.PidsLimit, 10))
	}
	args = append(args, limits...)
	if d.Engine.ForkExec {
		args = append(args, ulimitArgs()...)
	}
	return args, limits, nil
}

// checkLimitsEnforced refuses limits the engine would silently ignore:
// rootless podman on a cgroup v1 host starts the container without them
// (it only prints a warning).
func (d Driver) checkLimitsEnforced(ctx context.Context, x Extra) error {
	if d.Engine.Name != Podman.Name {
		return nil
	}
	out, err := d.Engine.run(ctx, x.EngineEnv, "info", "--format", "{{.Host.Security.Rootless}} {{.Host.CgroupsVersion}}")
	if err != nil {
		return fmt.Errorf("unable to tell whether podman can enforce the limits: %w", err)
	}
	if f := strings.Fields(out); len(f) == 2 && f[0] == "true" && f[1] == "v1" {
		return errors.New("--cpu-limit, --memory-limit and --pids-limit cannot be enforced by rootless podman on a cgroup v1 host (podman would ignore them): run darkshell as root for rootful podman, or use a cgroup v2 host with delegated controllers")
	}
	return nil
}

// memoryFlag turns a size like 512M, 1G, 1.5GiB or 1048576 into the
// engine's --memory value (bytes, or a number with b/k/m/g).
func memoryFlag(s string) (string, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(t[len(num):]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "ib"), "b")
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || mult == 0 {
		return "", fmt.Errorf("--memory-limit %q: want a size like 512M, 1G or a number of bytes", s)
	}
	b := int64(n * mult)
	if b < 6<<20 {
		return "", fmt.Errorf("--memory-limit %q: the engines refuse limits under 6 MiB", s)
	}
	return strconv.FormatInt(b, 10), nil
}

// ulimitArgs lowers the container's default ulimits to what podman's own
// processes hold when this process cannot raise limits (no
// CAP_SYS_RESOURCE, as for root on some VMs): podman's defaults (nofile
// 1048576, nproc 4194304) would otherwise make every container fail to
// start. nofile is capped at this process's hard limit, nproc at 32768
// (podman lowers its own nproc to that when it cannot raise it; measured).
func ulimitArgs() []string {
	if hasCap(unix.CAP_SYS_RESOURCE) {
		return nil
	}
	var out []string
	for _, l := range []struct {
		name string
		res  int
		max  uint64
	}{{"nofile", unix.RLIMIT_NOFILE, 1 << 20}, {"nproc", unix.RLIMIT_NPROC, 32768}} {
		var r unix.Rlimit
		if unix.Getrlimit(l.res, &r) != nil {
			continue
		}
		n := min(r.Max, l.max)
		out = append(out, "--ulimit", fmt.Sprintf("%s=%d:%d", l.name, n, n))
	}
	return out
}

// hasCap reports whether this process has capability c in its effective set.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || n&(1<<uint(c)) != 0
		}
	}
	return true
}

// remove force-removes the container; a missing one is not an error.
func (d Driver) remove(x Extra) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.Engine.run(ctx, x.EngineEnv, append(d.Engine.ForceRemoveArgs, x.Container)...)
	var ee *engineError
	if errors.As(err, &ee) && ee.notFound() {
		return nil
	}
	return err
}

// Delete removes the container and everything in it (an image loaded
// from an archive stays in the engine's store, like any other image).
func (d Driver) Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if x.Container == "" {
		return nil // create failed before the container was named
	}
	if err := d.remove(x); err != nil {
		return fmt.Errorf("unable to remove container %s: %w", x.Container, err)
	}
	return nil
}

// Connect implements driver.Driver: `exec -i` into the container, pushing
// sandboxd first if needed.
func (d Driver) Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error) {
	x, err := readExtra(sb)
	if err != nil {
		return nil, err
	}
	r := execRunner{eng: d.Engine, env: x.EngineEnv, container: x.Container}
	res, err := inject.Open(ctx, r, inject.Options{Workdir: Workspace, Logger: d.log()})
	if err != nil {
		if st := d.Status(ctx, h, sb); st.Phase != driver.PhaseRunning {
			logs := ""
			if st.Phase == driver.PhaseFailed {
				logs = d.logsTail(x)
			}
			return nil, fmt.Errorf("sandbox %s is not running (%s%s%s): `darkshell sandbox start %s` runs it again",
				sb.Name, st.Phase, reasonSuffix(st.Reason), logs, sb.Name)
		}
		return nil, fmt.Errorf("unable to start sandboxd in container %s: %w", x.Container, err)
	}
	if res.Injected {
		d.log().Info("pushed sandboxd", "sandbox", sb.Name, "reason", res.Reason, "arch", res.Arch, "took", res.InjectDuration)
	}
	return session.New(res.Carrier, res.Remote, res.Version)
}

// logsTail is the end of the container's output (its init's complaints),
// for error messages.
func (d Driver) logsTail(x Extra) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd, err := d.Engine.command(ctx, x.EngineEnv, "logs", "--tail", "5", x.Container)
	if err != nil {
		return ""
	}
	out, _ := cmd.CombinedOutput()
	s := clean(string(out))
	switch {
	case s == "":
		return ""
	case strings.Contains(s, "failed to exec pid1") || strings.Contains(s, "/bin/sh"):
		return "; container output: " + s + "; the image has no /bin/sh: the " + d.Engine.Name + " driver needs a POSIX shell at /bin/sh in the image"
	}
	return "; container output: " + s
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}
