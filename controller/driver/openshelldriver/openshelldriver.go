// Package openshelldriver is the openshell driver: it registers a sandbox
// that NVIDIA OpenShell runs and reaches it the way OpenShell's own tools
// do, over OpenShell's SSH path.
//
// Create asks the openshell CLI for the sandbox's SSH settings (`openshell
// sandbox ssh-config NAME`: user `sandbox` and a ProxyCommand `openshell
// ssh-proxy --gateway-name G --name N --workspace W` that tunnels through the
// gateway to the SSH server on a unix socket inside the sandbox), or takes
// --proxy-command as given. Every SSH exec there runs `/bin/bash -lc CMD`, so
// the login shell's output comes before sandboxd's handshake; sandboxd's
// magic prefix lets the controller skip it. The host key is not pinned:
// OpenShell's in-sandbox SSH server makes a fresh one at every start and
// accepts any client key, the gateway's authenticated relay being the gate
// (OpenShell's ssh-config disables host key checking for the same reason).
//
// The workspace is the sandbox's working directory, found with `pwd -P` over
// SSH at create as OpenShell's CLI does (`/` is refused); it is sandboxd's
// default directory and the default remote of sync, upload and download.
// sandboxd is pushed to RemoteDir, outside the workspace. Stop, start and status go through the openshell CLI when it is present.
// Delete only forgets the sandbox: OpenShell owns it (`openshell sandbox
// delete` removes it there).
package openshelldriver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/sshx"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

func init() { driver.Register(Driver{}) }

// DefaultUser is the SSH user of OpenShell sandboxes.
const DefaultUser = "sandbox"

// Driver options (--driver-opt KEY=VALUE).
const (
	OptName      = "name"      // the sandbox's name in OpenShell (default: darkshell's name)
	OptGateway   = "gateway"   // openshell -g (default: the CLI's active gateway)
	OptWorkspace = "workspace" // openshell --workspace, the tenant namespace (default: the CLI's)
	OptCLI       = "cli"       // path of the openshell binary (default: openshell on PATH)
)

// RemoteDir is where sandboxd is pushed: under /tmp, which OpenShell's
// default policy makes writable, and not in $HOME, which is the workspace
// in OpenShell (sync and download would carry sandboxd along).
const RemoteDir = "/tmp/.darkshell/sandboxd"

// cliTimeout bounds one openshell CLI call (start waits for Ready).
const cliTimeout = 2 * time.Minute

// Extra is the driver's part of the record.
type Extra struct {
	driver.CreateOptions
	// OpenShellName is the sandbox's name in OpenShell.
	OpenShellName string `json:"openshell_name"`
	// Gateway and Tenant are the CLI's -g and --workspace, if given.
	Gateway string `json:"gateway,omitempty"`
	Tenant  string `json:"tenant,omitempty"`
	// CLI is the openshell binary used (empty: none was found).
	CLI string `json:"cli,omitempty"`
	// HostAlias is the Host of ssh-config's block (openshell-N.W).
	HostAlias string `json:"host_alias,omitempty"`
	// WorkspaceDir is the sandbox's working directory (`pwd -P`).
	WorkspaceDir string `json:"workspace_dir,omitempty"`
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

// Driver implements driver.Driver for OpenShell sandboxes.
type Driver struct {
	// Logger receives diagnostics (default: slog.Default()).
	Logger *slog.Logger
}

var (
	_ driver.OptionsDriver = Driver{}
	_ driver.StatusDriver  = Driver{}
	_ driver.Lifecycle     = Driver{}
	_ driver.WorkspaceOf   = Driver{}
)

// Name implements driver.Driver.
func (Driver) Name() string { return "openshell" }

// AcceptsCreateOptions implements driver.OptionsDriver.
func (Driver) AcceptsCreateOptions() {}

// WorkspaceOf implements driver.WorkspaceOf.
func (Driver) WorkspaceOf(sb *state.Sandbox) string {
	x, _ := readExtra(sb)
	return x.WorkspaceDir
}

func (d Driver) log() *slog.Logger {
	l := d.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "driver", "driver", "openshell")
}

// checkOptions refuses what OpenShell, not darkshell, decides.
func checkOptions(o driver.CreateOptions) error {
	switch {
	case o.Image != "" || o.Rootfs != "":
		return errors.New("--image and --rootfs are not supported by the openshell driver: it registers a sandbox OpenShell already runs (`openshell sandbox create --from IMAGE` makes one)")
	case o.Policy != "":
		return errors.New("--policy is not supported by the openshell driver: OpenShell enforces its own policy (`openshell policy set`)")
	case o.Workspace != "":
		return errors.New("--workspace is not supported by the openshell driver: the workspace is the OpenShell sandbox's working directory")
	case o.Unconfined, o.CPULimit != "", o.MemoryLimit != "", o.PidsLimit != 0:
		return errors.New("--unconfined and limits are not supported by the openshell driver: OpenShell sets them (`openshell sandbox create --cpu --memory`)")
	case len(o.Providers) > 0:
		return errors.New("--provider is not supported by the openshell driver: attach providers in OpenShell (`openshell sandbox provider attach`)")
	}
	return driver.CheckDriverOpts("openshell", o.DriverOpts, OptName, OptGateway, OptWorkspace, OptCLI)
}

// Create registers the sandbox: it reads OpenShell's SSH settings, dials
// once, finds the workspace and makes sure sandboxd answers there.
func (d Driver) Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if err := checkOptions(x.CreateOptions); err != nil {
		return err
	}
	o := x.DriverOpts
	x.OpenShellName, x.Gateway, x.Tenant = o[OptName], o[OptGateway], o[OptWorkspace]
	if x.OpenShellName == "" {
		x.OpenShellName = sb.Name
	}
	x.CLI = findCLI(o[OptCLI])
	if o[OptCLI] != "" && x.CLI == "" {
		return fmt.Errorf("--driver-opt cli=%s: no such executable", o[OptCLI])
	}

	t := &state.SSHTarget{User: DefaultUser}
	if sb.SSH != nil && sb.SSH.ProxyCommand != "" {
		*t = *sb.SSH
		if t.User == "" {
			t.User = DefaultUser
		}
		x.HostAlias = "openshell-" + x.OpenShellName
	} else {
		if x.CLI == "" {
			return errors.New("the openshell driver needs the openshell CLI (on PATH, or --driver-opt cli=PATH) to read the sandbox's SSH settings, or --proxy-command with OpenShell's ProxyCommand")
		}
		out, err := x.run(ctx, "sandbox", "ssh-config", x.OpenShellName)
		if err != nil {
			return fmt.Errorf("unable to read the SSH settings of OpenShell sandbox %s: %w", x.OpenShellName, err)
		}
		cfg, err := ParseSSHConfig(out)
		if err != nil {
			return fmt.Errorf("`openshell sandbox ssh-config %s`: %w", x.OpenShellName, err)
		}
		t.ProxyCommand, x.HostAlias = cfg.ProxyCommand, cfg.Host
		if cfg.User != "" {
			t.User = cfg.User
		}
	}
	t.Host = x.HostAlias
	if t.Identity == "" {
		// OpenShell's SSH server accepts any key; a key of our own avoids
		// offering the user's.
		key, _, err := sshx.GenerateKey(filepath.Join(h.SandboxDir(sb.Name), "keys"), "id_ed25519")
		if err != nil {
			return err
		}
		t.Identity = key
	}
	sb.SSH = t

	cl, err := d.dial(ctx, h, sb)
	if err != nil {
		return err
	}
	defer cl.Close()
	ws, err := workspaceRoot(ctx, cl)
	if err != nil {
		return fmt.Errorf("OpenShell sandbox %s: %w", x.OpenShellName, err)
	}
	x.WorkspaceDir = ws
	if sb.Extra, err = json.Marshal(x); err != nil {
		return err
	}
	res, err := inject.Open(ctx, runner{inject.SSHRunner(cl)}, inject.Options{Workdir: ws, RemoteDir: RemoteDir, Logger: d.log()})
	if err != nil {
		return fmt.Errorf("unable to start sandboxd in OpenShell sandbox %s: %w", x.OpenShellName, err)
	}
	if res.Injected {
		d.log().Info("pushed sandboxd", "sandbox", sb.Name, "reason", res.Reason, "arch", res.Arch, "took", res.InjectDuration)
	}
	return res.Carrier.Close()
}

// workspaceRoot is the sandbox's working directory, as OpenShell's CLI
// finds it. The login shell may print before the answer, so it is marked.
func workspaceRoot(ctx context.Context, cl *sshx.Client) (string, error) {
	const mark = "darkshell-workspace:"
	out, errOut, code, err := cl.Run(ctx, "printf '"+mark+"%s\\n' \"$(pwd -P)\"", nil)
	if err != nil {
		return "", fmt.Errorf("unable to find the workspace: %w", err)
	}
	var ws string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, mark); ok {
			ws = v
		}
	}
	switch {
	case code != 0 || ws == "":
		return "", fmt.Errorf("unable to find the workspace (`pwd -P` exit %d: %q)", code, strings.TrimSpace(string(errOut)))
	case !strings.HasPrefix(ws, "/"):
		return "", fmt.Errorf("the working directory %q is not absolute", ws)
	case ws == "/":
		return "", errors.New("the working directory is /, which OpenShell refuses as a workspace root")
	}
	return ws, nil
}

func (d Driver) dial(ctx context.Context, h *state.Home, sb *state.Sandbox) (*sshx.Client, error) {
	t := sshx.Target{
		User: sb.SSH.User, Host: sb.SSH.Host, Port: sshx.DefaultPort,
		ProxyCommand: sb.SSH.ProxyCommand, IdentityFiles: []string{sb.SSH.Identity},
		KnownHostsFile: h.KnownHosts(), HostKeyAlias: "darkshell-" + sb.Name,
	}
	cl, err := sshx.Dial(ctx, t, sshx.Options{AcceptAnyHostKey: true, Logger: d.log()})
	if err != nil {
		return nil, fmt.Errorf("unable to reach OpenShell sandbox over its SSH path: %w", err)
	}
	return cl, nil
}

// Delete forgets the sandbox: OpenShell owns it.
func (Driver) Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error { return nil }

// Connect implements driver.Driver.
func (d Driver) Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error) {
	x, err := readExtra(sb)
	if err != nil {
		return nil, err
	}
	if sb.SSH == nil {
		return nil, fmt.Errorf("sandbox %s has no SSH settings", sb.Name)
	}
	cl, err := d.dial(ctx, h, sb)
	if err != nil {
		if st := d.Status(ctx, h, sb); st.Phase != "" && st.Phase != driver.PhaseRunning {
			return nil, fmt.Errorf("OpenShell sandbox %s is %s%s: %w", x.OpenShellName, st.Phase, reasonSuffix(st.Reason), err)
		}
		return nil, err
	}
	res, err := inject.Open(ctx, runner{inject.SSHRunner(cl)}, inject.Options{Workdir: x.WorkspaceDir, RemoteDir: RemoteDir, Logger: d.log()})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return session.New(res.Carrier, res.Remote, res.Version, io.Closer(cl))
}

// runner keeps sandboxd's runtime files (its agent's socket, lock and log)
// next to it under /tmp, out of $HOME, which is the workspace in OpenShell.
type runner struct{ inject.Runner }

func (r runner) Start(ctx context.Context, cmd string) (inject.Proc, error) {
	return r.Runner.Start(ctx, "SANDBOXD_RUNTIME_DIR="+RemoteDir+"/"+protocol.BuildVersion+"/run; export SANDBOXD_RUNTIME_DIR; "+cmd)
}

// Stop implements driver.Lifecycle: `openshell sandbox stop` (container
// and workspace kept).
func (Driver) Stop(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	return lifecycle(ctx, sb, "stop")
}

// Start implements driver.Lifecycle: `openshell sandbox start` (waits for Ready).
func (Driver) Start(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	return lifecycle(ctx, sb, "start")
}

func lifecycle(ctx context.Context, sb *state.Sandbox, op string) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if x.CLI = findCLI(x.CLI); x.CLI == "" {
		return fmt.Errorf("%s of an OpenShell sandbox needs the openshell CLI (on PATH, or --driver-opt cli=PATH at create)", op)
	}
	_, err = x.run(ctx, "sandbox", op, x.OpenShellName)
	return err
}

// Status implements driver.StatusDriver from `openshell sandbox get NAME
// -o json`; without the CLI the phase is unknown (empty).
func (Driver) Status(ctx context.Context, h *state.Home, sb *state.Sandbox) driver.Status {
	x, err := readExtra(sb)
	if err != nil || findCLI(x.CLI) == "" {
		return driver.Status{}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := x.run(ctx, "sandbox", "get", x.OpenShellName, "-o", "json")
	if err != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: err.Error()}
	}
	return MapPhase(findPhase(out))
}

// MapPhase maps OpenShell's sandbox phases (Provisioning, Ready, Stopping,
// Stopped, Starting, Error, Deleting) to darkshell's.
func MapPhase(p string) driver.Status {
	switch strings.ToLower(p) {
	case "ready", "running":
		return driver.Status{Phase: driver.PhaseRunning}
	case "stopped", "stopping":
		return driver.Status{Phase: driver.PhaseStopped}
	case "provisioning", "starting":
		return driver.Status{Phase: driver.PhasePending, Reason: "OpenShell: " + p}
	case "":
		return driver.Status{Phase: driver.PhaseFailed, Reason: "OpenShell reported no phase"}
	}
	return driver.Status{Phase: driver.PhaseFailed, Reason: "OpenShell: " + p}
}

// findPhase returns the first "phase" string in a JSON document (OpenShell
// puts it at the top or under status).
func findPhase(doc string) string {
	var v any
	if json.Unmarshal([]byte(doc), &v) != nil {
		return ""
	}
	var walk func(v any) string
	walk = func(v any) string {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				if s, ok := e.(string); ok && strings.EqualFold(k, "phase") {
					return s
				}
			}
			for _, e := range t {
				if p := walk(e); p != "" {
					return p
				}
			}
		case []any:
			for _, e := range t {
				if p := walk(e); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(v)
}

// findCLI resolves the openshell binary: path if given, else openshell on PATH.
func findCLI(path string) string {
	if path == "" {
		path = "openshell"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}

// run runs the openshell CLI with the record's gateway and workspace.
func (x Extra) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	var global []string
	if x.Gateway != "" {
		global = append(global, "-g", x.Gateway)
	}
	if x.Tenant != "" {
		global = append(global, "--workspace", x.Tenant)
	}
	cmd := exec.CommandContext(ctx, x.CLI, append(global, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return "", fmt.Errorf("`openshell %s`: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// SSHConfig is the part of an ssh_config Host block the driver uses.
type SSHConfig struct {
	Host, User, ProxyCommand string
}

// ParseSSHConfig reads the first Host block of `openshell sandbox
// ssh-config` output. Keywords are case-insensitive; "Key value" and
// "Key=value" forms are accepted; the ProxyCommand is kept verbatim (it is
// run with sh -c, as OpenSSH does).
func ParseSSHConfig(s string) (SSHConfig, error) {
	var c SSHConfig
	sc := bufio.NewScanner(strings.NewReader(s))
	inHost := false
scan:
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.IndexAny(l, " \t=")
		if i < 0 {
			continue
		}
		key := strings.ToLower(l[:i])
		val := strings.TrimSpace(strings.TrimLeft(l[i:], " \t="))
		switch {
		case (key == "host" || key == "match") && inHost:
			break scan // the next block
		case key == "host":
			inHost, c.Host = true, strings.Fields(val)[0]
		case !inHost:
		case key == "user":
			c.User = strings.Trim(val, `"`)
		case key == "proxycommand":
			c.ProxyCommand = val
		}
	}
	switch {
	case c.Host == "":
		return c, errors.New("no Host block in its output")
	case c.ProxyCommand == "" || strings.EqualFold(c.ProxyCommand, "none"):
		return c, fmt.Errorf("host %s has no ProxyCommand", c.Host)
	}
	return c, nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}
