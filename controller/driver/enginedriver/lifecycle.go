package enginedriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

var (
	_ driver.Lifecycle    = Driver{}
	_ driver.StatusDriver = Driver{}
	_ driver.Workspacer   = Driver{}
)

// inspected is the part of `inspect` output Status reads; podman and
// docker agree on these fields.
type inspected struct {
	State struct {
		Status    string `json:"Status"`
		Pid       int    `json:"Pid"`
		ExitCode  int    `json:"ExitCode"`
		OOMKilled bool   `json:"OOMKilled"`
		Error     string `json:"Error"`
	} `json:"State"`
	HostConfig struct {
		Memory    int64  `json:"Memory"`
		PidsLimit *int64 `json:"PidsLimit"`
	} `json:"HostConfig"`
}

func (d Driver) inspect(ctx context.Context, x Extra) (*inspected, error) {
	out, err := d.Engine.run(ctx, x.EngineEnv, "container", "inspect", x.Container)
	if err != nil {
		return nil, err
	}
	var l []inspected
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != 1 {
		return nil, fmt.Errorf("unexpected `%s container inspect` output: %v", d.Engine.Bin, err)
	}
	return &l[0], nil
}

// Status implements driver.StatusDriver from the engine's view of the
// container (one `inspect` call).
func (d Driver) Status(ctx context.Context, h *state.Home, sb *state.Sandbox) driver.Status {
	x, err := readExtra(sb)
	if err != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	in, err := d.inspect(ctx, x)
	var ee *engineError
	switch {
	case errors.As(err, &ee) && ee.notFound():
		return driver.Status{Phase: driver.PhaseFailed, Reason: fmt.Sprintf("container %s is gone (removed outside darkshell?)", x.Container)}
	case err != nil:
		return driver.Status{Phase: driver.PhaseFailed, Reason: "unable to inspect the container: " + err.Error()}
	}
	res := &driver.Resources{MemoryLimitBytes: in.HostConfig.Memory}
	if in.HostConfig.PidsLimit != nil && *in.HostConfig.PidsLimit > 0 {
		res.PidsLimit = *in.HostConfig.PidsLimit
	}
	if in.State.OOMKilled {
		res.OOMKills = 1
	}
	st := driver.Status{Resources: res}
	switch in.State.Status {
	case "running":
		st.Phase = driver.PhaseRunning
		if d.Engine.ForkExec && in.State.Pid > 0 {
			oom := res.OOMKills
			cgroupUsage(in.State.Pid, res)
			res.OOMKills = max(res.OOMKills, oom)
		}
	case "created", "configured", "initialized", "restarting":
		st.Phase = driver.PhasePending
	case "paused":
		st.Phase, st.Reason = driver.PhaseStopped, "paused by the engine (`"+d.Engine.Bin+" unpause` resumes it)"
	default: // exited, stopped, dead, removing
		if x.Stopped {
			st.Phase = driver.PhaseStopped
			break
		}
		st.Phase = driver.PhaseFailed
		switch {
		case in.State.OOMKilled:
			st.Reason = "killed at its memory limit"
		case in.State.Error != "":
			st.Reason = "engine error: " + clean(in.State.Error)
		default:
			st.Reason = "container " + in.State.Status + " with exit code " + strconv.Itoa(in.State.ExitCode)
		}
	}
	return st
}

// Stop implements driver.Lifecycle: the container stops (its processes
// end), its file system and the pushed sandboxd are kept.
func (d Driver) Stop(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if _, err := d.Engine.run(ctx, x.EngineEnv, "stop", "-t", strconv.Itoa(StopTimeout), x.Container); err != nil {
		return fmt.Errorf("unable to stop container %s: %w", x.Container, err)
	}
	x.Stopped = true
	sb.Extra, err = json.Marshal(x)
	return err
}

// Start implements driver.Lifecycle.
func (d Driver) Start(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	if _, err := d.Engine.run(ctx, x.EngineEnv, "start", x.Container); err != nil {
		return fmt.Errorf("unable to start container %s: %w", x.Container, hint(err))
	}
	x.Stopped = false
	sb.Extra, err = json.Marshal(x)
	return err
}
