package daemon

import (
	"context"
	"fmt"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/snapshot"
	"github.com/bohica-labs/darkshell/controller/state"
)

// readLayer mounts sb's container layer for a capture (nil, and a no-op
// release, when its driver has none or cannot read it here).
func (d *Daemon) readLayer(ctx context.Context, sb *state.Sandbox) (*snapshot.LayerSource, func(), error) {
	nop := func() {}
	drv, err := driver.Get(sb.Driver)
	if err != nil {
		return nil, nop, nil
	}
	ld, ok := drv.(driver.Layerer)
	if !ok {
		return nil, nop, nil
	}
	l, err := ld.ReadLayer(ctx, d.opts.Home, sb)
	if err != nil {
		return nil, nop, fmt.Errorf("snapshot %s: read the container's layer: %w", sb.Name, err)
	}
	if l == nil {
		d.log.Info("snapshot without the container's layer: the driver cannot read it here", "sandbox", sb.Name, "driver", sb.Driver)
		return nil, nop, nil
	}
	release := func() {
		if err := l.Release(); err != nil {
			d.log.Warn("unmount the container's layer after a snapshot", "sandbox", sb.Name, "err", err)
		}
	}
	return &snapshot.LayerSource{Root: l.Root, Changed: l.Changed, Deleted: l.Deleted, Skip: []string{workspaceRemote(sb)}}, release, nil
}

// restoreLayer makes sb's container anew with snap's layer (nothing when
// snap has none: records from before layers, drivers without one).
func (d *Daemon) restoreLayer(ctx context.Context, sb *state.Sandbox, repo *snapshot.Repo, snap *snapshot.Snapshot) error {
	if len(snap.Layer) == 0 {
		return nil
	}
	drv, err := driver.Get(sb.Driver)
	if err != nil {
		return err
	}
	ld, ok := drv.(driver.Layerer)
	if !ok {
		return fmt.Errorf("snapshot %s holds a container layer, and the %s driver of sandbox %s has none to restore it into", snap.ID, sb.Driver, sb.Name)
	}
	d.pool.drop(sb.Name)
	err = ld.ReplaceLayer(ctx, d.opts.Home, sb, func(ctx context.Context, root string) error {
		return repo.ApplyLayer(ctx, snap, root)
	})
	d.pool.drop(sb.Name)
	if err != nil {
		return err
	}
	return d.opts.Home.Save(sb)
}
