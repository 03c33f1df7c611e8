package enginedriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

var _ driver.Layerer = Driver{}

// layerReadable reports whether this engine's container layers can be
// mounted here: podman run by root (`podman mount`; docker has no such
// command, rootless podman needs `podman unshare`).
func (d Driver) layerReadable() bool {
	return d.Engine.Name == Podman.Name && os.Geteuid() == 0
}

// podmanDiff is `podman diff --format json`.
type podmanDiff struct {
	Changed []string `json:"changed"`
	Added   []string `json:"added"`
	Deleted []string `json:"deleted"`
}

// ReadLayer implements driver.Layerer: `podman diff` names the paths that
// differ from the image, `podman mount` makes the container's root
// readable on the host.
func (d Driver) ReadLayer(ctx context.Context, h *state.Home, sb *state.Sandbox) (*driver.Layer, error) {
	if !d.layerReadable() {
		return nil, nil
	}
	x, err := readExtra(sb)
	if err != nil {
		return nil, err
	}
	out, err := d.Engine.run(ctx, x.EngineEnv, "diff", "--format", "json", x.Container)
	if err != nil {
		return nil, fmt.Errorf("unable to list the changes of container %s: %w", x.Container, err)
	}
	var df podmanDiff
	if out != "" {
		if err := json.Unmarshal([]byte(out), &df); err != nil {
			return nil, fmt.Errorf("unexpected `%s diff` output: %w", d.Engine.Bin, err)
		}
	}
	root, err := d.Engine.run(ctx, x.EngineEnv, "mount", x.Container)
	if err != nil {
		return nil, fmt.Errorf("unable to mount container %s: %w", x.Container, err)
	}
	root = firstLine(root)
	release := func() error {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := d.Engine.run(c, x.EngineEnv, "unmount", x.Container)
		return err
	}
	if !strings.HasPrefix(root, "/") {
		release()
		return nil, fmt.Errorf("`%s mount %s` gave %q, not a directory", d.Engine.Bin, x.Container, clean(root))
	}
	return &driver.Layer{Root: root, Changed: append(df.Changed, df.Added...), Deleted: df.Deleted, Release: release}, nil
}

// ReplaceLayer implements driver.Layerer: a new container is created (not
// started) from the image with the sandbox's options under a spare name,
// apply writes into its mounted root, then the old container is stopped
// and put aside, the new one takes its name and starts, and the old one
// is removed. Until the new one runs, a failure puts the old one back.
func (d Driver) ReplaceLayer(ctx context.Context, h *state.Home, sb *state.Sandbox, apply func(ctx context.Context, root string) error) error {
	if !d.layerReadable() {
		return fmt.Errorf("the %s driver can restore a container's layer only as root with podman", d.Engine.Name)
	}
	x, err := readExtra(sb)
	if err != nil {
		return err
	}
	eng := d.Engine
	name, spare, prev := x.Container, x.Container+"-restore", x.Container+"-prev"
	// A restore killed between putting the old container aside and naming
	// the new one left the old one as prev: it is the sandbox's again.
	if _, err := eng.run(ctx, x.EngineEnv, "container", "exists", name); err != nil {
		var ee *engineError
		if !errors.As(err, &ee) || ee.code != 1 {
			return fmt.Errorf("unable to look for container %s: %w", name, err)
		}
		if _, err := eng.run(ctx, x.EngineEnv, "rename", prev, name); err != nil {
			return fmt.Errorf("container %s is missing, and taking back %s (put aside by an interrupted restore) failed: %w", name, prev, err)
		}
	}
	for _, c := range []string{spare, prev} { // leftovers of an interrupted restore
		if err := d.remove(Extra{Container: c, EngineEnv: x.EngineEnv}); err != nil {
			return err
		}
	}
	nx := x
	nx.Container = spare
	args, _, err := d.runArgs(h, sb, nx)
	if err != nil {
		return err
	}
	// `run -d -i ...` becomes `create -i ...`.
	args = append([]string{"create"}, append(args[2:], x.ImageID)...)
	out, err := eng.run(ctx, x.EngineEnv, args...)
	if err != nil {
		d.remove(nx)
		return fmt.Errorf("unable to create the restored container: %w", hint(err))
	}
	id := firstLine(out)
	root, err := eng.run(ctx, x.EngineEnv, "mount", spare)
	if err != nil {
		d.remove(nx)
		return fmt.Errorf("unable to mount the restored container: %w", err)
	}
	err = apply(ctx, firstLine(root))
	if _, uerr := eng.run(context.WithoutCancel(ctx), x.EngineEnv, "unmount", spare); uerr != nil && err == nil {
		err = fmt.Errorf("unable to unmount the restored container: %w", uerr)
	}
	if err != nil {
		d.remove(nx)
		return err
	}

	// The swap.
	bg := context.WithoutCancel(ctx)
	if _, err := eng.run(bg, x.EngineEnv, "stop", "-t", strconv.Itoa(StopTimeout), name); err != nil {
		d.remove(nx)
		return fmt.Errorf("unable to stop container %s: %w", name, err)
	}
	if _, err := eng.run(bg, x.EngineEnv, "rename", name, prev); err != nil {
		d.remove(nx)
		return fmt.Errorf("unable to put container %s aside: %w", name, err)
	}
	back := func(cause error) error {
		d.remove(Extra{Container: name, EngineEnv: x.EngineEnv})
		d.remove(nx)
		if _, err := eng.run(bg, x.EngineEnv, "rename", prev, name); err != nil {
			return errors.Join(cause, fmt.Errorf("and putting the old container back failed (it is %s): %w", prev, err))
		}
		if !x.Stopped {
			eng.run(bg, x.EngineEnv, "start", name)
		}
		return fmt.Errorf("%w (the old container is back)", cause)
	}
	if _, err := eng.run(bg, x.EngineEnv, "rename", spare, name); err != nil {
		return back(fmt.Errorf("unable to rename the restored container: %w", err))
	}
	if _, err := eng.run(bg, x.EngineEnv, "start", name); err != nil {
		return back(fmt.Errorf("unable to start the restored container: %w", hint(err)))
	}
	if err := d.remove(Extra{Container: prev, EngineEnv: x.EngineEnv}); err != nil {
		d.log().Warn("remove the replaced container", "container", prev, "err", err)
	}
	x.ContainerID, x.Stopped = id, false
	sb.Extra, err = json.Marshal(x)
	return err
}
