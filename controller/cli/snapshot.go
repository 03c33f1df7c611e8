package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/driver"
)

// snapshotCmds are `sandbox snapshot ...` and `sandbox restore`.
func (a *app) snapshotCmds() []*cobra.Command {
	return []*cobra.Command{a.snapshotCmd(), a.restoreCmd()}
}

// progressLine shows a long operation's phase and counts on one rewritten
// stderr line when stderr is a terminal; nil otherwise.
func (a *app) progressLine() (client.Progress, func()) {
	if !isTerminal(a.stderr) {
		return nil, func() {}
	}
	var mu sync.Mutex
	shown := false
	p := func(phase string, pr api.SyncProgress) {
		mu.Lock()
		defer mu.Unlock()
		shown = true
		fmt.Fprintf(a.stderr, "\r\033[K%-8s %d/%d entries  %s / %s  %.1fs", phase, pr.FilesDone, pr.FilesTotal,
			size(pr.BytesDone), size(pr.BytesTotal), float64(pr.ElapsedMs)/1000)
	}
	return p, func() {
		mu.Lock()
		defer mu.Unlock()
		if shown {
			fmt.Fprint(a.stderr, "\r\033[K")
		}
	}
}

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, usagef("--label %q: want KEY=VALUE", l)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) snapshotCmd() *cobra.Command {
	var name, maxAge string
	var labels []string
	var keep int
	cmd := &cobra.Command{
		Use:   "snapshot NAME",
		Short: "Take a snapshot of a sandbox's workspace (deduplicated, zstd, on the host)",
		Long: `Take a snapshot of sandbox NAME's workspace into the installation's content-addressed
store ($DARKSHELL_HOME/snapshots): files are cut into content-defined chunks, compressed
with zstd and stored once, so a snapshot after a one-file change adds about that file.
Modes, mtimes, symlinks and empty directories are kept.

On the local driver the daemon reads the workspace's host directory in place, with the
sandbox's processes frozen (cgroup freezer) while it reads, so the snapshot is consistent.
Other drivers' workspaces are read through sandboxd's sync stream into the daemon's mirror.

--keep N and --max-age D prune the sandbox's older snapshots afterwards and collect the
chunks no snapshot uses any more.

Subcommands list, delete, verify and prune manage what is stored; restore puts one back.
(A sandbox named like a subcommand is snapshotted with ` + "`snapshot -- NAME`" + `.)`,
		Example: `  darkshell sandbox snapshot dev --name before-upgrade --label ticket=42
  darkshell sandbox snapshot dev --keep 5
  darkshell sandbox snapshot list dev
  darkshell sandbox restore dev before-upgrade
  darkshell sandbox restore dev before-upgrade --to dev-copy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			prog, clear := a.progressLine()
			res, err := c.Snapshot(ctx, args[0], &api.SnapshotRequest{Name: name, Labels: lm, Keep: keep, MaxAge: maxAge}, prog)
			clear()
			if err != nil {
				if ctx.Err() != nil && cmd.Context().Err() == nil {
					return fmt.Errorf("snapshot interrupted: no snapshot was recorded, the earlier ones are intact")
				}
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			s := res.Snapshot
			fmt.Fprintf(a.stdout, "snapshot %s (%s) of %s: %d files, %d dirs, %d symlinks, %s; %s added to the store in %.2fs\n",
				s.Name, s.ID, s.Sandbox, s.Files, s.Dirs, s.Symlinks, size(s.Bytes), size(s.AddedBytes), float64(s.DurationMs)/1000)
			if s.LayerEntries > 0 {
				fmt.Fprintf(a.stdout, "with the container's layer: %d paths outside the workspace changed, added or deleted\n", s.LayerEntries)
			}
			if len(res.Pruned) > 0 {
				fmt.Fprintf(a.stdout, "pruned %s", strings.Join(res.Pruned, ", "))
				if res.GC != nil {
					fmt.Fprintf(a.stdout, "; %s freed", size(res.GC.RemovedBytes))
				}
				fmt.Fprintln(a.stdout)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "name of the snapshot, unique per sandbox (default: its id)")
	fl.StringArrayVar(&labels, "label", nil, "KEY=VALUE label (repeatable)")
	fl.IntVar(&keep, "keep", 0, "afterwards keep only the newest N snapshots of this sandbox")
	fl.StringVar(&maxAge, "max-age", "", "afterwards delete this sandbox's snapshots older than D (e.g. 36h, 7d)")
	cmd.AddCommand(a.snapshotListCmd(), a.snapshotDeleteCmd(), a.snapshotVerifyCmd(), a.snapshotPruneCmd())
	return cmd
}

func (a *app) snapshotListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list [NAME]",
		Short: "List snapshots (of sandbox NAME), oldest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sb := ""
			if len(args) == 1 {
				sb = args[0]
			}
			l, err := c.Snapshots(cmd.Context(), sb)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, s := range l {
				var ls []string
				for k, v := range s.Labels {
					ls = append(ls, k+"="+v)
				}
				lab := strings.Join(ls, ",")
				if lab == "" {
					lab = "-"
				}
				rows = append(rows, []string{s.ID, s.Name, s.Sandbox, s.Created.Local().Format(time.DateTime), fmt.Sprint(s.Files), size(s.Bytes), size(s.AddedBytes), lab})
			}
			a.table("ID\tNAME\tSANDBOX\tCREATED\tFILES\tSIZE\tADDED\tLABELS", rows)
			return nil
		},
	}
}

func (a *app) snapshotDeleteCmd() *cobra.Command {
	var sandbox string
	cmd := &cobra.Command{
		Use:   "delete S...",
		Short: "Delete snapshots (ids, or names) and collect their unshared chunks",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out []*api.PruneResult
			for _, ref := range args {
				res, err := c.DeleteSnapshot(cmd.Context(), sandbox, ref)
				if err != nil {
					return err
				}
				out = append(out, res)
				if !a.json() {
					fmt.Fprintf(a.stdout, "deleted snapshot %s; %s freed\n", strings.Join(res.Deleted, ", "), size(res.GC.RemovedBytes))
				}
			}
			if a.json() {
				return a.printJSON(out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "the sandbox whose snapshot names S (when a name is used by several)")
	return cmd
}

func (a *app) snapshotPruneCmd() *cobra.Command {
	var keep int
	var maxAge string
	cmd := &cobra.Command{
		Use:   "prune NAME",
		Short: "Apply retention to sandbox NAME's snapshots (--keep N, --max-age D)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep <= 0 && maxAge == "" {
				return usagef("prune needs --keep N or --max-age D")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PruneSnapshots(cmd.Context(), &api.PruneRequest{Sandbox: args[0], Keep: keep, MaxAge: maxAge})
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "deleted %d snapshots; %s freed, %s kept in %d chunks\n", len(res.Deleted), size(res.GC.RemovedBytes), size(res.GC.KeptBytes), res.GC.Kept)
			return nil
		},
	}
	cmd.Flags().IntVar(&keep, "keep", 0, "keep only the newest N snapshots")
	cmd.Flags().StringVar(&maxAge, "max-age", "", "delete snapshots older than D (e.g. 36h, 7d)")
	return cmd
}

func (a *app) snapshotVerifyCmd() *cobra.Command {
	var sandbox string
	cmd := &cobra.Command{
		Use:   "verify [S]",
		Short: "Check every chunk of the snapshots (all, one sandbox's, or S): read, decompress, hash",
		Long: `Read every chunk the selected snapshots name (their trees and file contents), decompress
it and check its SHA-256 against its name, and check that each file's chunks add up to its
size. Exit status 1 when anything is missing or damaged; each problem is named.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := &api.VerifyRequest{Sandbox: sandbox}
			if len(args) == 1 {
				req.Snapshot = args[0]
			}
			prog, clear := a.progressLine()
			res, err := c.VerifySnapshots(cmd.Context(), req, prog)
			clear()
			if err != nil {
				return err
			}
			if a.json() {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else {
				for _, p := range res.Problems {
					fmt.Fprintf(a.stdout, "PROBLEM snapshot %s %s %s: %s\n", p.Snapshot, p.Path, p.Chunk, p.Error)
				}
				fmt.Fprintf(a.stdout, "%d snapshots, %d chunks (%s) checked, %d problems\n", res.Snapshots, res.Chunks, size(res.Bytes), len(res.Problems))
			}
			if len(res.Problems) > 0 {
				return &exitError{code: 1, msg: ""}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "only this sandbox's snapshots")
	return cmd
}

func (a *app) restoreCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "restore NAME S",
		Short: "Restore snapshot S into sandbox NAME's workspace, or into a new sandbox (--to)",
		Long: `Make sandbox NAME's workspace exactly snapshot S (an id or a name). Every chunk's hash is
checked while the snapshot is written into a staging directory.

Local driver: the sandbox is stopped, the staged tree is renamed into place and the sandbox
started again; killed at any point, the workspace is the old tree or the new one, and the
next restore or start finishes the job. Other drivers: the staged tree is pushed with
--delete through sandboxd's sync (each file old or new; rerun to complete).

--to NEW creates sandbox NEW with NAME's driver, limits, policy and providers (not its
--workspace directory) and restores S into it; NAME is left alone.`,
		Example: `  darkshell sandbox restore dev before-upgrade
  darkshell sandbox restore dev s-1a2b3c4d5e6f --to dev-copy -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			target := args[0]
			if to != "" {
				if err := createLike(ctx, c, args[0], to); err != nil {
					return err
				}
				target = to
			}
			prog, clear := a.progressLine()
			res, err := c.Restore(ctx, target, &api.RestoreRequest{Snapshot: args[1]}, prog)
			clear()
			if err != nil {
				if to != "" {
					_ = c.Delete(context.WithoutCancel(ctx), to)
					return fmt.Errorf("%w (sandbox %s deleted again)", err, to)
				}
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			s := res.Snapshot
			how := map[string]string{"swap": "swapped in while stopped", "sync": "pushed with --delete"}[res.Method]
			fmt.Fprintf(a.stdout, "restored snapshot %s (%s, %d files, %s) into %s: %s in %.2fs\n", s.Name, s.ID, s.Files, size(s.Bytes), target, how, float64(res.DurationMs)/1000)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "restore into a new sandbox of this name, made like NAME")
	return cmd
}

// createLike creates sandbox name with src's driver and create options
// (its workspace directory excepted: the new one gets its own).
func createLike(ctx context.Context, c *client.Client, src, name string) error {
	sb, err := c.Get(ctx, src)
	if err != nil {
		return err
	}
	req := &api.CreateRequest{Name: name, Driver: sb.Driver, SSH: sb.SSH, Env: sb.Env}
	if len(sb.Extra) > 0 {
		var o driver.CreateOptions
		if err := json.Unmarshal(sb.Extra, &o); err != nil {
			return fmt.Errorf("sandbox %s: read its settings: %w", src, err)
		}
		o.Workspace = ""
		req.CreateOptions = o
	}
	if _, err := c.Create(ctx, req); err != nil {
		return fmt.Errorf("create %s like %s: %w", name, src, err)
	}
	return nil
}
