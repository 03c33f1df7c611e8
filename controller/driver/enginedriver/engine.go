package enginedriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// Engine describes one container engine's command-line client. The podman
// and docker CLIs agree on every subcommand and flag the driver uses except
// where a field below says otherwise.
type Engine struct {
	// Name is the driver name (--driver) and Bin the client executable.
	Name, Bin string
	// StateEnv are the environment variables that choose which engine
	// state the client talks to (storage, config, daemon socket). Their
	// values at create are recorded and used for every later call on
	// that sandbox, so a daemon started from another shell still finds
	// the container.
	StateEnv []string
	// ForceRemoveArgs removes a container and its anonymous volumes at
	// once (podman waits for a stop timeout unless told not to).
	ForceRemoveArgs []string
	// ForkExec is true when the client itself starts the container's
	// processes (podman, no daemon): it then inherits this process's
	// resource limits, and the driver lowers the default ulimits to what
	// this process may grant (see ulimitArgs).
	ForkExec bool
	// Install says how to install the engine.
	Install string
}

// The engines. Docker goes through the same code; see docs/drivers.md for
// what was and was not exercised.
var (
	Podman = Engine{
		Name: "podman", Bin: "podman",
		StateEnv:        []string{"CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"},
		ForceRemoveArgs: []string{"rm", "-f", "-v", "-t", "0"},
		ForkExec:        true,
		Install:         "install podman (Debian/Ubuntu: apt-get install podman runc catatonit)",
	}
	Docker = Engine{
		Name: "docker", Bin: "docker",
		StateEnv:        []string{"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"},
		ForceRemoveArgs: []string{"rm", "-f", "-v"},
		Install:         "install Docker Engine and make sure `docker info` works for this user",
	}
)

// ErrEngineMissing means the engine's client is not installed.
var ErrEngineMissing = errors.New("container engine not found")

// engineEnv is the current values of e's state variables, as KEY=VALUE.
func (e Engine) engineEnv() []string {
	var out []string
	for _, k := range e.StateEnv {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// command builds a call of the engine's client with the recorded state
// environment (stateEnv) instead of this process's values of those keys.
func (e Engine) command(ctx context.Context, stateEnv []string, args ...string) (*exec.Cmd, error) {
	bin, err := exec.LookPath(e.Bin)
	if err != nil {
		return nil, fmt.Errorf("%w: `%s` is not in PATH: %s", ErrEngineMissing, e.Bin, e.Install)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(e.StateEnv, k)
	})
	cmd.Env = append(env, stateEnv...)
	return cmd, nil
}

// engineError is a failed engine call: the command and what it printed.
type engineError struct {
	eng    string
	args   []string
	code   int
	stderr string
}

func (e *engineError) Error() string {
	return fmt.Sprintf("`%s %s` failed (exit code %d): %s", e.eng, strings.Join(e.args, " "), e.code, e.stderr)
}

// notFound reports whether the engine said the container or image does not exist.
func (e *engineError) notFound() bool {
	s := strings.ToLower(e.stderr)
	return strings.Contains(s, "no such container") || strings.Contains(s, "no such object") ||
		strings.Contains(s, "no such image") || strings.Contains(s, "image not known") ||
		strings.Contains(s, "no container with name or id")
}

// run calls the engine and returns its trimmed stdout; a non-zero exit is
// an *engineError carrying the tail of stderr.
func (e Engine) run(ctx context.Context, stateEnv []string, args ...string) (string, error) {
	cmd, err := e.command(ctx, stateEnv, args...)
	if err != nil {
		return "", err
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if ctx.Err() != nil {
			return "", fmt.Errorf("`%s %s`: %w", e.Bin, strings.Join(args, " "), ctx.Err())
		}
		if !errors.As(err, &ee) {
			return "", fmt.Errorf("unable to run %s: %w", e.Bin, err)
		}
		return out.String(), &engineError{eng: e.Bin, args: args, code: ee.ExitCode(), stderr: clean(errb.String())}
	}
	return strings.TrimSpace(out.String()), nil
}

// clean shortens engine output for an error message and strips control
// characters (it may echo what a process inside the sandbox printed).
func clean(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// hint adds what to do for failures whose cause is known on this kind of
// machine.
func hint(err error) error {
	var ee *engineError
	if !errors.As(err, &ee) {
		return err
	}
	s := ee.stderr
	switch {
	case strings.Contains(s, "cgroups in hybrid mode not supported"):
		return fmt.Errorf("%w\n(crun cannot run containers on this host's hybrid cgroup layout: install runc and set runtime = \"runc\" under [engine] in the containers.conf podman uses, see docs/drivers.md)", err)
	case strings.Contains(s, "error setting rlimit"):
		return fmt.Errorf("%w\n(the engine's default ulimits exceed what this process may grant: set lower default_ulimits, e.g. nofile=20000:20000 and nproc=32768:32768, in containers.conf; see docs/drivers.md)", err)
	case strings.Contains(s, "container-init binary not found") || strings.Contains(s, "catatonit"):
		return fmt.Errorf("%w\n(--init needs catatonit: apt-get install catatonit)", err)
	case strings.Contains(s, "Cannot connect to the Docker daemon"):
		return fmt.Errorf("%w\n(start the Docker daemon, or point DOCKER_HOST at one)", err)
	}
	return err
}
