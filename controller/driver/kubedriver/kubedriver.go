// Package kubedriver is the kubernetes driver: a sandbox is a Pod.
//
// Create makes a Pod (namespace from --driver-opt namespace, default
// "default") from --image with one container that idles in /bin/sh on an
// open, silent stdin, confined by the cluster: non-root (uid 65000), no
// privilege escalation, all capabilities dropped, seccomp RuntimeDefault, a
// read-only root file system (writable emptyDirs at /sandbox, /tmp and
// $HOME=/home/sandbox), no service account token, no service links, CPU
// and memory limits from --cpu-limit/--memory-limit. It watches the Pod
// until it runs, then connects once.
//
// The carrier to sandboxd is the pod exec stream (WebSocket, SPDY as
// fallback), as `kubectl exec -i POD -- /bin/sh -c 'exec sandboxd serve'`;
// sandboxd is pushed in over the same stream with zero setup when the
// image lacks it (controller/inject), into $HOME/.cache.
//
// The Kubernetes API is spoken by client-go in a helper program,
// darkshell-kube (cmd/darkshell-kube, installed next to darkshell), which
// this package runs: client-go's package initialisation costs milliseconds
// that every darkshell command (exec's hot path among them) would pay if it
// were linked in. The helper is also the exec stream's carrier, as `podman
// exec -i` is for the podman driver; the daemon's warm session makes that a
// once-per-session cost.
//
// Pods are named ds-NAME-HASH and labelled darkshell.sandbox=NAME and
// darkshell.home=HASH (HASH from the installation's state dir), plus the
// sandbox's own labels. Status reads the installation's Pods by label.
// Delete removes the Pod (its emptyDirs go with it) and waits until it is
// gone.
package kubedriver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/driver/enginedriver"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

func init() { driver.Register(Driver{}) }

// Workspace is the sandbox's working directory and the default remote of
// sync, upload and download.
const Workspace = "/sandbox"

// Home is the sandbox user's $HOME (an emptyDir: the root is read-only).
const Home = "/home/sandbox"

// UID is the uid and gid the container runs as.
const UID = 65000

// Container is the name of the sandbox's container in the Pod.
const Container = "sandbox"

// Labels put on every Pod the driver makes.
const (
	LabelSandbox = "darkshell.sandbox"
	LabelHome    = "darkshell.home"
	// AnnotationHome holds the installation's state dir.
	AnnotationHome = "darkshell.home-dir"
)

// Driver options (--driver-opt KEY=VALUE).
const (
	OptNamespace    = "namespace"     // default "default"
	OptKubeconfig   = "kubeconfig"    // default $KUBECONFIG, ~/.kube/config
	OptContext      = "context"       // default the kubeconfig's current context
	OptPullPolicy   = "pull-policy"   // Always, IfNotPresent (default), Never
	OptWritableRoot = "writable-root" // "true": no read-only root file system
	OptAPI          = "api"           // "pod" (default) or "agent-sandbox"
)

// Values of OptAPI.
const (
	APIPod          = "pod"
	APIAgentSandbox = "agent-sandbox"
)

var knownOpts = []string{OptNamespace, OptKubeconfig, OptContext, OptPullPolicy, OptWritableRoot, OptAPI}

// Helper is the name of the client-go helper program.
const Helper = "darkshell-kube"

// Extra is the driver's part of the record.
type Extra struct {
	driver.CreateOptions
	Namespace  string `json:"namespace"`
	Pod        string `json:"pod"`
	PodUID     string `json:"pod_uid,omitempty"`
	Kubeconfig string `json:"kubeconfig"`
	Context    string `json:"context,omitempty"`
	// API is "pod" (a bare Pod) or "agent-sandbox" (an agents.x-k8s.io
	// Sandbox named Pod, whose controller makes the Pod); SandboxUID is
	// the Sandbox object's uid.
	API        string `json:"api,omitempty"`
	SandboxUID string `json:"sandbox_uid,omitempty"`
	// Claim is the agent-sandbox SandboxClaim that bound the Sandbox, for
	// a sandbox claimed from a cluster-kept warm pool (pool.go).
	Claim string `json:"claim,omitempty"`
	// Limits lists the limits as the container resources they became.
	Limits []string `json:"limits,omitempty"`
}

// ReadExtra decodes sb's driver data.
func ReadExtra(sb *state.Sandbox) (Extra, error) {
	var x Extra
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &x); err != nil {
			return x, fmt.Errorf("sandbox %s: bad driver data: %w", sb.Name, err)
		}
	}
	return x, nil
}

// Request is what the helper reads on stdin for create, delete and status.
type Request struct {
	HomeDir string        `json:"home_dir"`
	Sandbox state.Sandbox `json:"sandbox"`
}

// Driver implements driver.Driver for Kubernetes Pods.
type Driver struct {
	// Logger receives diagnostics (default: slog.Default()).
	Logger *slog.Logger
}

var (
	_ driver.Lifecycle     = Driver{}
	_ driver.OptionsDriver = Driver{}
	_ driver.StatusDriver  = Driver{}
	_ driver.Workspacer    = Driver{}
)

// Name implements driver.Driver.
func (Driver) Name() string { return "kubernetes" }

// AcceptsCreateOptions implements driver.OptionsDriver.
func (Driver) AcceptsCreateOptions() {}

// Workspace implements driver.Workspacer.
func (Driver) Workspace() string { return Workspace }

func (d Driver) log() *slog.Logger {
	l := d.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "driver", "driver", "kubernetes")
}

// HomeHash names installation dir in Pod names and labels.
func HomeHash(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:4])
}

// PodName is the Pod of sandbox name in installation dir.
func PodName(dir, name string) string { return "ds-" + name + "-" + HomeHash(dir) }

// CheckOptions refuses what this driver cannot honour.
func CheckOptions(o driver.CreateOptions) error {
	switch {
	case o.Image == "":
		return errors.New("--driver kubernetes needs --image: an image the cluster's nodes have or can pull, with a POSIX sh")
	case o.Rootfs != "":
		return errors.New("--rootfs is not supported by the kubernetes driver: build an image from the directory and pass --image")
	case o.Workspace != "":
		return errors.New("--workspace is not supported by the kubernetes driver: the workspace is an emptyDir in the Pod; fill it with --upload or sync")
	case o.Unconfined:
		return errors.New("--unconfined is not supported by the kubernetes driver (the Pod's confinement is the cluster's)")
	case o.Policy != "":
		return errors.New("--policy is not supported by the kubernetes driver yet: the Pod runs non-root with no capabilities, no privilege escalation and seccomp RuntimeDefault; use --driver local for Landlock policies")
	case o.PidsLimit != 0:
		return errors.New("--pids-limit is not supported by the kubernetes driver: Kubernetes has no per-Pod pids limit (the node's kubelet podPidsLimit applies)")
	case len(o.Providers) > 0:
		return errors.New("--provider is not supported by the kubernetes driver yet (no egress proxy in the cluster)")
	}
	if err := driver.CheckDriverOpts("kubernetes", o.DriverOpts, knownOpts...); err != nil {
		return err
	}
	switch p := o.DriverOpts[OptPullPolicy]; p {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("--driver-opt pull-policy=%s: want Always, IfNotPresent or Never", p)
	}
	switch a := o.DriverOpts[OptAPI]; a {
	case "", APIPod, APIAgentSandbox:
	default:
		return fmt.Errorf("--driver-opt api=%s: want pod or agent-sandbox", a)
	}
	switch w := o.DriverOpts[OptWritableRoot]; w {
	case "", "true", "false":
	default:
		return fmt.Errorf("--driver-opt writable-root=%s: want true or false", w)
	}
	return nil
}

// ResolveKubeconfig is the kubeconfig file to use: opt, else the first
// file of $KUBECONFIG, else ~/.kube/config.
func ResolveKubeconfig(opt string) (string, error) {
	p := opt
	if p == "" {
		if env := os.Getenv("KUBECONFIG"); env != "" {
			p = filepath.SplitList(env)[0]
		}
	}
	if p == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", errors.New("no kubeconfig: pass --driver-opt kubeconfig=FILE or set KUBECONFIG")
		}
		p = filepath.Join(home, ".kube", "config")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("kubeconfig %s: %w (pass --driver-opt kubeconfig=FILE or set KUBECONFIG)", abs, err)
	}
	return abs, nil
}

// helperPath finds darkshell-kube next to this program, else on PATH.
func helperPath() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), Helper)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(Helper)
	if err != nil {
		return "", fmt.Errorf("the kubernetes driver needs its helper %s next to darkshell or on PATH (`make build` puts it in bin/)", Helper)
	}
	return p, nil
}

// call runs the helper's op with req on stdin and decodes its stdout into out.
func call(ctx context.Context, op string, req any, out any) error {
	hp, err := helperPath()
	if err != nil {
		return err
	}
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, hp, op)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(msg)
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			return fmt.Errorf("%s %s: bad answer %q: %w", Helper, op, stdout.String(), err)
		}
	}
	return nil
}

// Create makes the Pod, waits until it runs and makes sure sandboxd
// answers in it (pushing it there if the image lacks it). On failure the
// Pod is deleted again.
func (d Driver) Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := ReadExtra(sb)
	if err != nil {
		return err
	}
	if err := CheckOptions(x.CreateOptions); err != nil {
		return err
	}
	if x.Kubeconfig, err = ResolveKubeconfig(x.DriverOpts[OptKubeconfig]); err != nil {
		return err
	}
	x.Context, x.Namespace = x.DriverOpts[OptContext], x.DriverOpts[OptNamespace]
	if x.Namespace == "" {
		x.Namespace = "default"
	}
	x.Pod = PodName(h.Dir, sb.Name)
	if x.API = x.DriverOpts[OptAPI]; x.API == "" {
		x.API = APIPod
	}
	if sb.Extra, err = json.Marshal(x); err != nil {
		return err
	}
	t0 := time.Now()
	if err := call(ctx, "create", Request{HomeDir: h.Dir, Sandbox: *sb}, &x); err != nil {
		return err
	}
	if sb.Extra, err = json.Marshal(x); err != nil {
		return err
	}
	d.log().Info("pod running", "sandbox", sb.Name, "pod", x.Namespace+"/"+x.Pod, "image", x.Image, "limits", x.Limits, "took", time.Since(t0))
	s, err := d.Connect(ctx, h, sb)
	if err != nil {
		d.Delete(context.WithoutCancel(ctx), h, sb)
		return err
	}
	return s.Close()
}

// Delete removes the Pod (and its emptyDirs) and waits until it is gone.
func (d Driver) Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := ReadExtra(sb)
	if err != nil {
		return err
	}
	if x.Pod == "" || x.Kubeconfig == "" {
		return nil // create failed before the Pod was named
	}
	return call(ctx, "delete", Request{HomeDir: h.Dir, Sandbox: *sb}, nil)
}

// Status implements driver.StatusDriver from the Pod's phase and its
// container's state.
func (d Driver) Status(ctx context.Context, h *state.Home, sb *state.Sandbox) driver.Status {
	x, err := ReadExtra(sb)
	if err != nil || x.Pod == "" {
		return driver.Status{Phase: driver.PhasePending}
	}
	if st, ok := primedStatus(x); ok { // statuscache.go
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var st driver.Status
	if err := call(ctx, "status", Request{HomeDir: h.Dir, Sandbox: *sb}, &st); err != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: err.Error()}
	}
	return st
}

// Stop implements driver.Lifecycle: an agent-sandbox Sandbox goes to
// replicas 0 (its Pod is deleted, the Sandbox kept); bare Pods cannot stop.
func (d Driver) Stop(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	return call(ctx, "stop", Request{HomeDir: h.Dir, Sandbox: *sb}, nil)
}

// Start implements driver.Lifecycle: replicas 1, until the new Pod runs.
// The Pod is new: its emptyDirs (workspace included) start empty.
func (d Driver) Start(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	return call(ctx, "start", Request{HomeDir: h.Dir, Sandbox: *sb}, nil)
}

// ExecArgs are the helper's arguments that run argv in sb's container
// with stdin, stdout and stderr streamed (kubectl exec -i).
func ExecArgs(x Extra, argv ...string) []string {
	a := []string{"exec", "--kubeconfig", x.Kubeconfig, "--namespace", x.Namespace, "--pod", x.Pod, "--container", Container}
	if x.Context != "" {
		a = append(a, "--context", x.Context)
	}
	return append(append(a, "--"), argv...)
}

// runner runs commands through the helper's exec.
type runner struct{ x Extra }

// Start runs cmd with the container's /bin/sh.
func (r runner) Start(ctx context.Context, cmd string) (inject.Proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hp, err := helperPath()
	if err != nil {
		return nil, err
	}
	return enginedriver.StartProc(exec.Command(hp, ExecArgs(r.x, "/bin/sh", "-c", cmd)...))
}

// Connect implements driver.Driver: an exec stream into the container,
// pushing sandboxd first if needed.
func (d Driver) Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error) {
	x, err := ReadExtra(sb)
	if err != nil {
		return nil, err
	}
	res, err := inject.Open(ctx, runner{x}, inject.Options{Workdir: Workspace, Logger: d.log()})
	if err != nil {
		if st := d.Status(ctx, h, sb); st.Phase != driver.PhaseRunning {
			return nil, fmt.Errorf("sandbox %s is not running (%s%s): delete and create it again", sb.Name, st.Phase, reasonSuffix(st.Reason))
		}
		return nil, fmt.Errorf("unable to start sandboxd in Pod %s/%s: %w", x.Namespace, x.Pod, err)
	}
	if res.Injected {
		d.log().Info("pushed sandboxd", "sandbox", sb.Name, "reason", res.Reason, "arch", res.Arch, "took", res.InjectDuration)
	}
	return session.New(res.Carrier, res.Remote, res.Version)
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}
