package cli

import (
	"context"
	"fmt"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/daemon"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version [NAME]",
		Short: "Show darkshell's version, the daemon's, and a sandbox's sandboxd and capabilities",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := map[string]any{"darkshell": map[string]any{"version": protocol.BuildVersion, "protocol": protocol.ProtocolVersion}}
			c, err := client.New(client.Options{Home: a.home, NoAutoStart: len(args) == 0})
			if err != nil {
				return err
			}
			if v, err := c.Version(cmd.Context()); err == nil {
				out["daemon"] = v
			}
			var info *protocol.Info
			if len(args) == 1 {
				info, err = c.Info(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				out["sandboxd"] = info
			}
			if a.json() {
				return a.printJSON(out)
			}
			fmt.Fprintf(a.stdout, "darkshell: %s (protocol %d)\n", protocol.BuildVersion, protocol.ProtocolVersion)
			if d, ok := out["daemon"].(*api.Version); ok {
				fmt.Fprintf(a.stdout, "daemon:    %s (pid %d)\n", d.Version, d.PID)
			} else {
				fmt.Fprintln(a.stdout, "daemon:    not running")
			}
			if info != nil {
				fmt.Fprintf(a.stdout, "sandboxd:  %s (protocol %d..%d, %s/%s, pid %d)\n", info.BuildVersion, info.ProtocolMin, info.ProtocolMax, info.OS, info.Arch, info.PID)
				fmt.Fprintf(a.stdout, "caps:      %s\n", strings.Join(info.Caps, ", "))
				fid := info.EventFidelity
				if fid == "" {
					fid = "none"
				}
				conf := strings.Join(info.Confined, ", ")
				if conf == "" {
					conf = "none reported"
				}
				fmt.Fprintf(a.stdout, "events:    %s\nlandlock:  ABI %d\nconfined:  %s\n", fid, info.LandlockABI, conf)
			}
			return nil
		},
	}
}

func (a *app) daemonCmd() *cobra.Command {
	d := &cobra.Command{Use: "daemon", Short: "Run, stop or inspect the controller daemon"}
	var idle time.Duration
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the controller daemon in the foreground (the CLI starts it on demand otherwise)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cpus.Reexec() // started by hand: run again with the runtime setting latency mode wants
			dir := a.home
			if dir == "" {
				var err error
				if dir, err = state.DefaultDir(); err != nil {
					return err
				}
			}
			h, err := state.Open(dir)
			if err != nil {
				return err
			}
			l, err := daemon.Listen(h)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			level := slog.LevelInfo
			if os.Getenv("DARKSHELL_DEBUG") != "" {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			slog.SetDefault(log) // the drivers log through the default logger
			cpus.LatencyMode()   // one P while relaying; widened for sync and while busy
			return daemon.New(daemon.Options{Home: h, Log: log, IdleTimeout: idle}).Serve(ctx, l)
		},
	}
	run.Flags().DurationVar(&idle, "idle-timeout", 0, "exit after this long without requests (0: never)")
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the controller daemon (sandboxes keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, st, err := a.runningDaemon(cmd.Context())
			if c == nil {
				return err
			}
			if err != nil {
				if !a.json() {
					fmt.Fprintln(a.stdout, "daemon not running")
				}
				return nil
			}
			if err := c.StopDaemon(cmd.Context()); err != nil {
				return err
			}
			waitGone(cmd.Context(), st.PID)
			if a.json() {
				return a.printJSON(map[string]any{"stopped": st.PID})
			}
			fmt.Fprintf(a.stdout, "daemon (pid %d) stopped\n", st.PID)
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether the daemon runs, and its sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, st, err := a.runningDaemon(cmd.Context())
			if c == nil {
				return err
			}
			if err != nil {
				if a.json() {
					a.printJSON(map[string]any{"running": false})
				} else {
					fmt.Fprintln(a.stdout, "daemon not running")
				}
				return &exitError{code: ExitFail}
			}
			if a.json() {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "daemon running: pid %d, version %s, up %s\nsocket: %s\nwarm sessions: %s\nexec streams: %d (%d on reused connections)\n",
				st.PID, st.Version, time.Since(st.Started).Round(time.Second), st.Socket, strings.Join(st.Sessions, ", "), st.Execs, st.ExecsReused)
			return nil
		},
	}
	d.AddCommand(run, stop, status)
	return d
}

// runningDaemon asks the daemon for its status without starting one. A nil
// client means the client could not even be made (err says why); a non-nil
// client with an error means no daemon answers.
func (a *app) runningDaemon(ctx context.Context) (*client.Client, *api.DaemonStatus, error) {
	c, err := client.New(client.Options{Home: a.home, NoAutoStart: true})
	if err != nil {
		return nil, nil, err
	}
	st, err := c.Status(ctx)
	return c, st, err
}

func waitGone(ctx context.Context, pid int) {
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
