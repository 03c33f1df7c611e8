package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/bohica-labs/darkshell/controller/api"
)

type syncFlags struct {
	delete, dryRun, checksum, noGitIgnore bool
	exclude, include                      []string
}

func (f *syncFlags) add(cmd *cobra.Command, push bool) {
	fl := cmd.Flags()
	fl.BoolVar(&f.delete, "delete", false, "remove files the source lacks from the destination (mirror)")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print the plan (added, modified, deleted, bytes to send); write nothing")
	fl.BoolVarP(&f.checksum, "checksum", "c", false, "compare file content instead of size and mtime")
	fl.StringArrayVar(&f.exclude, "exclude", nil, "leave out paths matching this gitignore-style pattern (repeatable; '!' re-includes)")
	fl.StringArrayVar(&f.include, "include", nil, "sync only paths matching this gitignore-style pattern (repeatable); '/dir/' reads only that subtree")
	if push {
		fl.BoolVar(&f.noGitIgnore, "no-git-ignore", false, "send what the source's .gitignore files ignore too")
	}
}

const remoteHelp = `REMOTE defaults to /sandbox for the local driver and to the sandbox subdirectory
of the remote user's $HOME for the others; a relative REMOTE starts at $HOME.`

func (a *app) syncCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "sync NAME LOCAL[:REMOTE]",
		Short: "Make a directory in the sandbox a copy of a local directory (delta transfer)",
		Long: `Make REMOTE in sandbox NAME a copy of the local directory LOCAL: only files whose size
or mtime differ (or content, with --checksum) are sent, as block deltas against the
old version when there is one. Modes, mtimes, symlinks (as links) and empty
directories are kept; files are replaced atomically.

` + remoteHelp,
		Example: `  darkshell sync dev .
  darkshell sync dev ./src:/sandbox/src --delete --exclude node_modules`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local, remote, _ := strings.Cut(args[1], ":")
			return a.runSync(cmd, args[0], api.SyncPush, local, remote, f)
		},
	}
	f.add(cmd, true)
	return cmd
}

func (a *app) uploadCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "upload NAME LOCAL [REMOTE]",
		Short: "Upload a local directory into a sandbox (same engine as sync)",
		Long:  "Upload the directory LOCAL into REMOTE in sandbox NAME.\n\n" + remoteHelp,
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := ""
			if len(args) == 3 {
				remote = args[2]
			}
			return a.runSync(cmd, args[0], api.SyncPush, args[1], remote, f)
		},
	}
	f.add(cmd, true)
	return cmd
}

func (a *app) downloadCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "download NAME REMOTE [LOCAL]",
		Short: "Download a directory from a sandbox (default into .)",
		Long: `Make the local directory LOCAL (default .) a copy of REMOTE in sandbox NAME.
Every path the sandbox sends is checked: nothing is written outside LOCAL.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := "."
			if len(args) == 3 {
				local = args[2]
			}
			return a.runSync(cmd, args[0], api.SyncPull, local, args[1], f)
		},
	}
	f.add(cmd, false)
	return cmd
}

func (a *app) runSync(cmd *cobra.Command, name, dir, local, remote string, f syncFlags) error {
	if local == "" {
		return usagef("LOCAL must not be empty")
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		return usagef("%s: %v", local, err)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	req := &api.SyncRequest{
		Direction: dir, Local: abs, Remote: remote,
		Delete: f.delete, DryRun: f.dryRun, Checksum: f.checksum,
		Exclude: f.exclude, Include: f.include,
		GitIgnore: dir == api.SyncPush && !f.noGitIgnore,
	}
	// Ctrl-C cancels the request: the daemon stops the transfer, every file
	// stays old or new, and a rerun completes it.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var res *api.SyncResult
	switch {
	case a.json():
		enc := jsonLines(a.stdout)
		res, err = c.SyncProgress(ctx, name, req, func(p api.SyncProgress) {
			enc(api.SyncEvent{Type: "progress", Progress: &p})
		})
		if err == nil {
			enc(api.SyncEvent{Type: "result", Result: res})
		}
	case isTerminal(a.stderr) && !f.dryRun:
		res, err = syncWithBar(ctx, a.stderr, func(progress func(api.SyncProgress)) (*api.SyncResult, error) {
			return c.SyncProgress(ctx, name, req, progress)
		})
	default:
		res, err = c.Sync(ctx, name, req)
	}
	if err != nil {
		if ctx.Err() != nil && cmd.Context().Err() == nil {
			return errors.New("sync interrupted: every file is either old or new; run the same command again to complete it")
		}
		return err
	}
	if a.json() {
		return nil
	}
	from, to := res.Local, name+":"+res.Remote
	if dir == api.SyncPull {
		from, to = to, from
	}
	verb := ""
	if res.DryRun {
		verb = "would be "
	}
	fmt.Fprintf(a.stdout, "%s -> %s: %d %sadded, %d %smodified, %d %sdeleted, %d unchanged; %s to send, %s on the wire in %.2fs\n",
		from, to, res.Added, verb, res.Modified, verb, res.Deleted, verb, res.Unchanged,
		size(res.BytesToSend), size(res.SentBytes+res.RecvBytes), float64(res.DurationMs)/1000)
	for _, s := range res.Skipped {
		fmt.Fprintf(a.stderr, "darkshell: skipped %s\n", s)
	}
	return nil
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func jsonLines(w io.Writer) func(v any) {
	return func(v any) {
		b, _ := json.Marshal(v)
		w.Write(append(b, '\n'))
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// syncWithBar runs a sync with a live progress bar on w: bytes, rate, ETA
// and files done/total.
func syncWithBar(ctx context.Context, w io.Writer, run func(func(api.SyncProgress)) (*api.SyncResult, error)) (*api.SyncResult, error) {
	p := mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(100*time.Millisecond))
	var cur atomic.Pointer[api.SyncProgress]
	cur.Store(&api.SyncProgress{})
	bar := p.AddBar(0,
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			last := cur.Load()
			return fmt.Sprintf("%d/%d files", last.FilesDone, last.FilesTotal)
		}, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			last := cur.Load()
			secs := float64(last.ElapsedMs) / 1000
			rate, eta := 0.0, "?"
			if secs > 0 {
				rate = float64(last.BytesDone) / secs
			}
			if rate > 0 {
				eta = time.Duration(float64(last.BytesTotal-last.BytesDone) / rate * float64(time.Second)).Round(time.Second).String()
			}
			return fmt.Sprintf("%s / %s  %s/s  ETA %s", size(last.BytesDone), size(last.BytesTotal), size(int64(rate)), eta)
		})),
	)
	res, err := run(func(pr api.SyncProgress) {
		cur.Store(&pr)
		bar.SetTotal(max(pr.BytesTotal, 1), false)
		bar.SetCurrent(pr.BytesDone)
	})
	if err != nil {
		bar.Abort(false)
	} else {
		bar.SetTotal(max(cur.Load().BytesTotal, 1), true)
	}
	p.Wait()
	return res, err
}

// uploadSpec parses `sandbox create --upload LOCAL[:REMOTE]`.
func uploadSpec(s string) (api.SyncRequest, error) {
	local, remote, _ := strings.Cut(s, ":")
	if local == "" {
		return api.SyncRequest{}, usagef("--upload %q: LOCAL must not be empty", s)
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		return api.SyncRequest{}, usagef("--upload %q: %v", s, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return api.SyncRequest{}, usagef("--upload %q: %s is not a directory", s, local)
	}
	return api.SyncRequest{Direction: api.SyncPush, Local: abs, Remote: remote, GitIgnore: true}, nil
}

func printUploads(w io.Writer, name string, ups []api.SyncResult) {
	for _, r := range ups {
		fmt.Fprintf(w, "uploaded %s -> %s:%s: %d entries, %s in %.2fs\n",
			r.Local, name, r.Remote, r.Entries, size(r.BytesToSend), float64(r.DurationMs)/1000)
	}
}
