package localdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// killInit ends the recorded init: SIGTERM (sandboxd then signals every
// process of the sandbox), SIGKILL after StopGrace. The kernel kills the
// rest of the pid namespace when init ends, and the mounts go with its
// mount namespace.
func killInit(ctx context.Context, name string, x Extra) error {
	if !running(x) {
		return nil
	}
	syscall.Kill(x.PID, syscall.SIGTERM)
	if !waitGone(ctx, x, StopGrace) {
		syscall.Kill(x.PID, syscall.SIGKILL)
		if !waitGone(ctx, x, StopGrace) {
			return fmt.Errorf("sandbox %s: init (pid %d) did not exit after SIGKILL", name, x.PID)
		}
	}
	return nil
}

// Stop implements driver.Lifecycle: the sandbox's process tree ends and
// its cgroups are removed; the state dir (keys, pinned host key, workspace)
// is kept for Start.
func (Driver) Stop(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if running(x) && !x.Stopping {
		x.Stopping = true
		if sb.Extra, err = json.Marshal(x); err != nil {
			return err
		}
		if err := h.Save(sb); err != nil {
			return fmt.Errorf("sandbox %s: record the stop: %w", sb.Name, err)
		}
	}
	return finishStop(ctx, sb, x)
}

// finishStop ends init (if it still runs), removes the cgroups and marks
// the record stopped.
func finishStop(ctx context.Context, sb *state.Sandbox, x Extra) error {
	if err := killInit(ctx, sb.Name, x); err != nil {
		return err
	}
	if err := removeCgroups(x.Cgroups); err != nil {
		return err
	}
	x.Stopped, x.Stopping, x.PID, x.StartTime, x.Cgroups, x.Limits = true, false, 0, 0, nil, nil
	var err error
	sb.Extra, err = json.Marshal(x)
	return err
}

// Start implements driver.Lifecycle: init runs again with the sandbox's
// workspace, keys and limits (recreated cgroups). The host key is the
// same, so the pinned known_hosts line stays valid.
func (Driver) Start(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if x.Stopping {
		// A stop was interrupted (the daemon killed while init ended):
		// finish it, then start afresh.
		if err := finishStop(ctx, sb, x); err != nil {
			return err
		}
		if x, err = readExtra(sb); err != nil {
			return err
		}
	}
	if running(x) {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("the local driver needs root for now: the unprivileged (user namespace) mode is not implemented yet")
	}
	// A failed sandbox may have left its cgroups (nothing removed them),
	// an interrupted start an unrecorded init in them (snapshot.go).
	killStrays(h, sb.Name)
	if err := removeCgroups(x.Cgroups); err != nil {
		return err
	}
	p := paths{h.SandboxDir(sb.Name)}
	ws := x.Workspace
	if ws == "" {
		ws = p.workspace()
	}
	if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		return fmt.Errorf("sandbox %s: workspace %s is not an existing directory", sb.Name, ws)
	}
	if err := launch(ctx, h, p, sb.Name, ws, sb.Env, &x); err != nil {
		return err
	}
	x.Stopped = false
	sb.Extra, err = json.Marshal(x)
	return err
}

// Status implements driver.StatusDriver from the record and /proc alone:
// Running while the recorded init (same pid and start time) lives,
// Stopped after Stop, Failed when init ended without a stop.
func (Driver) Status(ctx context.Context, h *state.Home, sb *state.Sandbox) driver.Status {
	x, err := readExtra(sb)
	switch {
	case err != nil:
		return driver.Status{Phase: driver.PhaseFailed, Reason: err.Error()}
	case x.Stopped:
		return driver.Status{Phase: driver.PhaseStopped}
	case x.Stopping:
		why := "a stop was interrupted; start finishes it"
		if running(x) {
			why = fmt.Sprintf("stopping: init (pid %d) is ending", x.PID)
		}
		return driver.Status{Phase: driver.PhaseStopped, Reason: why}
	case x.PID <= 0:
		return driver.Status{Phase: driver.PhasePending}
	case running(x):
		return driver.Status{Phase: driver.PhaseRunning, Resources: usage(x)}
	}
	p := paths{h.SandboxDir(sb.Name)}
	why := fmt.Sprintf("init (pid %d) ended without a stop", x.PID)
	if b, err := os.ReadFile(p.exitFile()); err == nil {
		var e initExit
		if json.Unmarshal(b, &e) == nil && e.PID == x.PID && e.How != "" {
			why = fmt.Sprintf("init (pid %d) %s", x.PID, e.How)
		}
	}
	if tail := lastLines(logTail(p.log()), 1); tail != "" {
		why += "; " + p.log() + " ends with: " + tail
	}
	return driver.Status{Phase: driver.PhaseFailed, Reason: why}
}

// initExit is run/init-exit: how init ended, when the process that
// started it was still there to reap it.
type initExit struct {
	PID int    `json:"pid"`
	How string `json:"how"`
}

// exitHow waits for pid to end without reaping it (waitid WNOWAIT), so
// the record is written before the pid leaves /proc.
func exitHow(pid int) (string, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	// The SIGCHLD part of siginfo_t: si_pid, si_uid, si_status follow the
	// 16-byte header on every 64-bit Linux.
	c := (*struct {
		Signo, Errno, Code, _ int32
		Pid                   int32
		UID                   uint32
		Status                int32
	})(unsafe.Pointer(&info))
	switch c.Code {
	case 2, 3: // CLD_KILLED, CLD_DUMPED
		sig := syscall.Signal(c.Status)
		return fmt.Sprintf("was killed by signal %d (%s)", int(sig), sig), nil
	default:
		return fmt.Sprintf("exited with status %d", c.Status), nil
	}
}

func recordExit(p paths, pid int, how string) {
	b, _ := json.Marshal(initExit{PID: pid, How: how})
	// The run dir is gone after delete: then there is nothing to record.
	state.WriteFileAtomic(p.exitFile(), b, 0o600)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.TrimSpace(strings.Join(l, " | "))
}

var (
	_ driver.Lifecycle    = Driver{}
	_ driver.StatusDriver = Driver{}
)
