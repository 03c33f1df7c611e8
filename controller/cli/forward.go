package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/forward"
)

func (a *app) forwardCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "forward", Short: "Port forwards over the sandbox's session (no SSH -L, no open host port for reverse)"}
	var reverse bool
	start := &cobra.Command{
		Use:   "start [bind:]PORT NAME [--reverse]",
		Short: "Forward host bind:PORT (default 127.0.0.1) to PORT in the sandbox; --reverse: sandbox 127.0.0.1:PORT to host bind:PORT",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := forward.ParseSpec(args[0]); err != nil {
				return usagef("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.ForwardStart(cmd.Context(), args[1], args[0], reverse)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(info)
			}
			if info.Reverse {
				fmt.Fprintf(a.stdout, "sandbox 127.0.0.1:%d -> host %s:%d\n", info.Port, info.Bind, info.Port)
			} else {
				fmt.Fprintf(a.stdout, "host %s:%d -> sandbox 127.0.0.1:%d\n", info.Bind, info.Port, info.Port)
			}
			return nil
		},
	}
	start.Flags().BoolVar(&reverse, "reverse", false, "let the sandbox reach a host service")
	var stopReverse bool
	stop := &cobra.Command{
		Use:   "stop PORT NAME [--reverse]",
		Short: "Stop a forward",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := strconv.Atoi(args[0])
			if err != nil {
				return usagef("PORT must be a number, not %q", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.ForwardStop(cmd.Context(), args[1], port, stopReverse); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]any{"stopped": port, "sandbox": args[1], "reverse": stopReverse})
			}
			return nil
		},
	}
	stop.Flags().BoolVar(&stopReverse, "reverse", false, "stop the reverse forward of PORT")
	list := &cobra.Command{
		Use:   "list [NAME]",
		Short: "List running forwards",
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
			l, err := c.ForwardList(cmd.Context(), sb)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, f := range l {
				dir := "local"
				if f.Reverse {
					dir = "reverse"
				}
				rows = append(rows, []string{f.Sandbox, dir, fmt.Sprintf("%s:%d", f.Bind, f.Port), f.State,
					strconv.Itoa(f.Active), strconv.FormatInt(f.Total, 10), oneLine(f.LastError)})
			}
			a.table("SANDBOX\tDIRECTION\tHOST\tSTATE\tACTIVE\tTOTAL\tLAST ERROR", rows)
			return nil
		},
	}
	cmd.AddCommand(start, stop, list)
	return cmd
}
