package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/agentbin"
	"github.com/bohica-labs/darkshell/protocol"
)

// DefaultHandshakeTimeout bounds waiting for sandboxd's hello.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultRemoteDir is the remote base directory; "$HOME/" is expanded remotely.
const DefaultRemoteDir = "$HOME/.cache/darkshell/sandboxd"

var (
	// ErrUnsupportedArch means the sandbox's CPU architecture has no sandboxd build.
	ErrUnsupportedArch = errors.New("unsupported sandbox architecture")
	// ErrMissingTool means the sandbox lacks a command injection needs.
	ErrMissingTool = errors.New("sandbox lacks a required command")
	// ErrInstall means the upload or installation of sandboxd failed.
	ErrInstall = errors.New("unable to install sandboxd in the sandbox")
)

// Options tune [Connect].
type Options struct {
	// RemoteDir is the base directory for sandboxd builds in the sandbox
	// (default DefaultRemoteDir). A leading "~/" or "$HOME/" is expanded
	// by the remote shell; anything else is taken literally. The build
	// lives in RemoteDir/<BuildVersion>/sandboxd.
	RemoteDir string
	// HandshakeTimeout bounds waiting for sandboxd's hello (default 10 s).
	HandshakeTimeout time.Duration
	// Caps are the capabilities the controller announces in its hello.
	Caps []string
	// NoInject fails instead of uploading sandboxd (for images that bake it in).
	NoInject bool
	// Workdir is sandboxd's default directory for exec and relative sync
	// roots (`sandboxd serve --workdir`); empty means the remote $HOME.
	Workdir string
	// Logger receives diagnostics (default: discarded).
	Logger *slog.Logger
}

// Result describes an established sandboxd session.
type Result struct {
	// Carrier is the byte stream to sandboxd, positioned right after the
	// handshake: hand it to yamux. Closing it ends sandboxd.
	Carrier io.ReadWriteCloser
	// Remote is sandboxd's hello; Version the negotiated protocol version.
	Remote  protocol.Hello
	Version int
	// Injected is true when sandboxd was uploaded during this call.
	Injected bool
	// Reason says why it was uploaded ("missing", "wrong version ...").
	Reason string
	// Arch is the sandbox's GOARCH when it was probed (only when injecting).
	Arch string
	// Path is the remote path of sandboxd as a shell word.
	Path string
	// Duration is how long Connect took; InjectDuration the upload part of it.
	Duration, InjectDuration time.Duration
}

// Connect starts this build's sandboxd in the sandbox, injecting it first
// if needed, and returns the handshaken carrier and sandboxd's hello.
func Connect(ctx context.Context, r Runner, opts Options) (carrier io.ReadWriteCloser, remote protocol.Hello, err error) {
	res, err := Open(ctx, r, opts)
	if err != nil {
		return nil, protocol.Hello{}, err
	}
	return res.Carrier, res.Remote, nil
}

// Open is Connect with details of what happened.
func Open(ctx context.Context, r Runner, opts Options) (*Result, error) {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("component", "inject")
	start := time.Now()
	dir := versionDir(opts.RemoteDir, protocol.BuildVersion)
	res := &Result{Path: dir.join("sandboxd").String()}

	a, err := serve(ctx, r, dir, opts)
	if err == nil {
		return a.finish(res, start), nil
	}
	var fail *serveError
	if !errors.As(err, &fail) || !fail.replaceable() {
		return nil, err
	}
	if opts.NoInject {
		return nil, fmt.Errorf("sandboxd at %s cannot be used (%s) and injection is disabled: %w", res.Path, fail.reason, err)
	}
	res.Reason = fail.reason
	log.Info("injecting sandboxd", "reason", fail.reason, "path", res.Path)

	injStart := time.Now()
	arch, err := probeArch(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("unable to inject sandboxd (%s): %w", fail.reason, err)
	}
	res.Arch = arch
	if err := install(ctx, r, dir, arch); err != nil {
		return nil, fmt.Errorf("unable to inject sandboxd (%s): %w", fail.reason, err)
	}
	res.Injected, res.InjectDuration = true, time.Since(injStart)
	log.Info("injected sandboxd", "arch", arch, "elapsed", res.InjectDuration)

	a, err = serve(ctx, r, dir, opts)
	if err != nil {
		return nil, fmt.Errorf("sandboxd for linux/%s was injected at %s but still fails: %w", arch, res.Path, err)
	}
	return a.finish(res, start), nil
}

type attempt struct {
	proc    Proc
	remote  protocol.Hello
	version int
}

func (a attempt) finish(res *Result, start time.Time) *Result {
	res.Carrier, res.Remote, res.Version = a.proc, a.remote, a.version
	res.Duration = time.Since(start)
	return res
}

// serveError is a failed attempt to start and handshake with sandboxd.
type serveError struct {
	reason string // set when the installed sandboxd should be replaced
	err    error
}

func (e *serveError) Error() string     { return e.err.Error() }
func (e *serveError) Unwrap() error     { return e.err }
func (e *serveError) replaceable() bool { return e.reason != "" }

// serve runs `sandboxd serve` and handshakes with it.
func serve(ctx context.Context, r Runner, dir word, opts Options) (attempt, error) {
	cmd := "exec " + dir.join("sandboxd").String() + " serve"
	if opts.Workdir != "" {
		cmd += " --workdir " + quote(opts.Workdir)
	}
	p, err := r.Start(ctx, cmd)
	if err != nil {
		return attempt{}, fmt.Errorf("unable to start sandboxd: %w", err)
	}
	local := protocol.NewHello(protocol.RoleController, protocol.BuildVersion, opts.Caps...)
	type hs struct {
		remote  protocol.Hello
		version int
		err     error
	}
	ch := make(chan hs, 1)
	go func() {
		remote, v, err := protocol.Handshake(p, local)
		ch <- hs{remote, v, err}
	}()
	timer := time.NewTimer(opts.HandshakeTimeout)
	defer timer.Stop()
	var h hs
	select {
	case h = <-ch:
	case <-timer.C:
		p.Close()
		<-ch
		return attempt{}, fmt.Errorf("sandboxd gave no handshake within %s (stderr: %q); is the sandbox overloaded?", opts.HandshakeTimeout, tail(p.Stderr()))
	case <-ctx.Done():
		p.Close()
		<-ch
		return attempt{}, fmt.Errorf("unable to start sandboxd: %w", ctx.Err())
	}

	var re *protocol.RemoteError
	switch {
	case h.err == nil && h.remote.BuildVersion == protocol.BuildVersion:
		return attempt{proc: p, remote: h.remote, version: h.version}, nil
	case h.err == nil:
		p.Close()
		return attempt{}, &serveError{
			reason: fmt.Sprintf("found sandboxd build %q, want %q", h.remote.BuildVersion, protocol.BuildVersion),
			err:    fmt.Errorf("sandboxd at %s is build %q, not %q", dir.join("sandboxd"), h.remote.BuildVersion, protocol.BuildVersion),
		}
	case errors.Is(h.err, protocol.ErrVersionSkew),
		errors.As(h.err, &re) && re.Code == protocol.CodeUnsupported:
		p.Close()
		return attempt{}, &serveError{reason: "protocol version skew", err: h.err}
	case errors.Is(h.err, protocol.ErrNoMagic):
		code, werr := waitBriefly(p)
		stderr := p.Stderr()
		p.Close()
		switch {
		case werr == nil && code == 127,
			strings.Contains(stderr, "not found"), strings.Contains(stderr, "No such file"):
			return attempt{}, &serveError{reason: "sandboxd missing", err: h.err}
		case werr == nil && code == 126:
			return attempt{}, &serveError{reason: "sandboxd cannot be executed: " + tail(stderr), err: h.err}
		}
		status := "still running"
		if werr == nil {
			status = fmt.Sprintf("exit code %d", code)
		}
		// Something is there but does not speak the protocol. If it does not
		// say it is this build, it is ours to replace; if it does, serving is
		// genuinely broken and replacing it would not help.
		if build, detail := reportedBuild(ctx, r, dir); build != protocol.BuildVersion {
			return attempt{}, &serveError{
				reason: "sandboxd is not this build (" + detail + ")",
				err:    fmt.Errorf("sandboxd serve did not answer the handshake (%s, stderr: %q): %w", status, tail(stderr), h.err),
			}
		}
		return attempt{}, fmt.Errorf("sandboxd serve did not answer the handshake (%s, stderr: %q): %w; check the sandbox user's shell startup files for output or errors",
			status, tail(stderr), h.err)
	default:
		p.Close()
		return attempt{}, fmt.Errorf("handshake with sandboxd failed (stderr: %q): %w", tail(p.Stderr()), h.err)
	}
}

// reportedBuild asks the installed sandboxd for its build version.
func reportedBuild(ctx context.Context, r Runner, dir word) (build, detail string) {
	out, err := run(ctx, r, "exec "+dir.join("sandboxd").String()+" version --json", nil)
	if err != nil {
		return "", "version --json: " + err.Error()
	}
	v, ok := parseVersion(out.stdout)
	if out.code != 0 || !ok {
		return "", fmt.Sprintf("version --json: exit code %d, output %q", out.code, tail(out.stdout+out.stderr))
	}
	return v.BuildVersion, "version --json reports build " + strconv.Quote(v.BuildVersion)
}

// versionInfo is what `sandboxd version --json` prints.
type versionInfo struct {
	BuildVersion string `json:"build_version"`
	SHA256       string `json:"sha256"`
}

// parseVersion finds the JSON document in `sandboxd version --json` output,
// which login-shell noise may precede.
func parseVersion(out string) (versionInfo, bool) {
	out = strings.TrimSpace(out)
	lines := strings.Split(out, "\n")
	for _, cand := range []string{lines[len(lines)-1], out[max(strings.Index(out, "{"), 0):]} {
		var v versionInfo
		if json.Unmarshal([]byte(cand), &v) == nil && v.BuildVersion != "" {
			return v, true
		}
	}
	return versionInfo{}, false
}

// waitBriefly waits for a process whose stdout ended; a process that keeps
// running (it merely printed too much noise) is not waited for.
func waitBriefly(p Proc) (int, error) {
	type res struct {
		code int
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		io.Copy(io.Discard, io.LimitReader(p, 1<<20))
		c, err := p.Wait()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		return r.code, r.err
	case <-time.After(2 * time.Second):
		return -1, errors.New("still running")
	}
}

// probeArch checks for the tools injection needs and maps `uname -m` to GOARCH.
func probeArch(ctx context.Context, r Runner) (string, error) {
	const script = `for c in uname cat mkdir chmod mv rm; do ` +
		`command -v "$c" >/dev/null 2>&1 || { echo "darkshell-missing $c"; exit 3; }; done; echo "darkshell-arch $(uname -m)"`
	out, err := run(ctx, r, "sh -c "+quote(script), nil)
	if err != nil {
		return "", fmt.Errorf("unable to probe the sandbox architecture: %w", err)
	}
	switch {
	case out.code == 127:
		return "", fmt.Errorf("%w: no POSIX `sh` in the sandbox (%s); install one or use an image with sandboxd baked in", ErrMissingTool, tail(out.stderr))
	case out.code == 3 && taggedLine(out.stdout, "darkshell-missing ") != "":
		tool := taggedLine(out.stdout, "darkshell-missing ")
		return "", fmt.Errorf("%w: no `%s` in the sandbox's PATH; install it or use an image with sandboxd baked in", ErrMissingTool, tool)
	case out.code != 0:
		return "", fmt.Errorf("unable to probe the sandbox architecture: `uname -m` failed with exit code %d: %s", out.code, tail(out.stderr))
	}
	// Login shells may print noise around the answer: read only the tagged line.
	m := taggedLine(out.stdout, "darkshell-arch ")
	arch, ok := goarch(m)
	if !ok {
		return "", fmt.Errorf("%w: `uname -m` says %q; darkshell ships sandboxd for linux/amd64 (x86_64) and linux/arm64 (aarch64) only", ErrUnsupportedArch, tail(m))
	}
	return arch, nil
}

// taggedLine returns the rest of the last output line that starts with tag.
func taggedLine(out, tag string) string {
	v := ""
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), tag); ok {
			v = strings.TrimSpace(rest)
		}
	}
	return v
}

// goarch maps a `uname -m` machine name to a GOARCH with a sandboxd build.
func goarch(machine string) (string, bool) {
	switch machine {
	case "x86_64", "amd64":
		return "amd64", true
	case "aarch64", "arm64":
		return "arm64", true
	}
	return "", false
}

// Exit codes of the install script.
const (
	exitNoDir      = 90
	exitWrite      = 91
	exitBadSum     = 92
	exitNoRun      = 93
	exitNoRename   = 94
	installedToken = "darkshell-inject-ok"
)

// installScript uploads stdin to a temp file in dir, verifies it (sha256sum
// when the sandbox has it, else the binary's own report) and renames it
// into place. Everything is in one round trip.
func installScript(dir word, sum string) string {
	lines := []string{`umask 077`}
	if dir.home {
		lines = append(lines, `[ -n "$HOME" ] || { echo "darkshell-inject: HOME is not set for the sandbox user" >&2; exit 90; }`)
	}
	return strings.Join(append(lines,
		`d=`+dir.String(),
		`mkdir -p "$d" || { echo "darkshell-inject: cannot create $d: is it (or \$HOME) writable?" >&2; exit 90; }`,
		`t="$d/.sandboxd.$$"`,
		`trap 'rm -f "$t"' EXIT`,
		`cat > "$t" || { echo "darkshell-inject: cannot write $t (disk full?)" >&2; exit 91; }`,
		`chmod 700 "$t" || exit 91`,
		`want=`+quote(sum),
		`if command -v sha256sum >/dev/null 2>&1; then s=$(sha256sum "$t") || exit 92; s=${s%% *}; `+
			`[ "$s" = "$want" ] || { echo "darkshell-inject: upload corrupted: sha256 $s, want $want" >&2; exit 92; }; checked=1; fi`,
		`v=$("$t" version --json 2>&1) || { echo "darkshell-inject: the uploaded sandboxd does not run here (noexec mount? wrong arch?): $v" >&2; exit 93; }`,
		`if [ -z "$checked" ]; then case "$v" in *"$want"*) ;; *) echo "darkshell-inject: uploaded sandboxd reports $v, want sha256 $want" >&2; exit 92;; esac; fi`,
		`mv -f "$t" "$d/sandboxd" || { echo "darkshell-inject: cannot move sandboxd into $d" >&2; exit 94; }`,
		`trap - EXIT`,
		`echo `+installedToken,
	), "\n")
}

// install streams the embedded sandboxd for arch into dir.
func install(ctx context.Context, r Runner, dir word, arch string) error {
	bin, err := agentbin.Binary(arch)
	if err != nil {
		return err
	}
	sum, err := agentbin.SHA256(arch)
	if err != nil {
		return err
	}
	out, err := run(ctx, r, "sh -c "+quote(installScript(dir, sum)), bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInstall, err)
	}
	msg := tail(out.stderr)
	switch out.code {
	case 0:
		if strings.Contains(out.stdout, installedToken) {
			return nil
		}
		return fmt.Errorf("%w: the install script ended early (stdout %q, stderr %q)", ErrInstall, tail(out.stdout), msg)
	case 127:
		tool := "a required command"
		for _, t := range []string{"sh", "cat", "mkdir", "chmod", "mv"} {
			if strings.Contains(out.stderr, t+": not found") || strings.Contains(out.stderr, t+": command not found") {
				tool = "`" + t + "`"
			}
		}
		return fmt.Errorf("%w: %s is missing in the sandbox: %s", ErrMissingTool, tool, msg)
	case exitNoDir:
		return fmt.Errorf("%w: %s (set a writable HOME for the sandbox user, or a different remote directory)", ErrInstall, msg)
	case exitWrite, exitBadSum, exitNoRun, exitNoRename:
		return fmt.Errorf("%w: %s", ErrInstall, msg)
	default:
		if out.writeErr != nil {
			msg += fmt.Sprintf(" (upload: %v)", out.writeErr)
		}
		return fmt.Errorf("%w: install script failed with exit code %d: %s", ErrInstall, out.code, msg)
	}
}

// tail shortens remote output for error messages and strips control characters.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = "..." + s[len(s)-300:]
	}
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
