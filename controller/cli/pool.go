package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/blueprint"
)

func (a *app) poolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Warm pools: generic sandboxes kept ready per blueprint, so a create is a claim, not a boot",
		Long: `A warm pool keeps N sandboxes of a blueprint booted, confined and connected.
` + "`darkshell sandbox create --from BLUEPRINT`" + ` then claims one and personalises it
(name, labels, env, providers, policy, uploads, MCP servers, forwards) instead of
booting a new one; the daemon refills the pool in the background.

Members are generic: made from the blueprint's image or rootfs, policy, limits and
driver options only, with no credentials, env or uploads until a create claims one.
A create claims only when its blueprint's generic options still match the pool's;
otherwise (or when the pool is empty) it boots as usual. Drivers: local, kubernetes.
See docs/pools.md.`,
	}
	var (
		size    int
		drv     string
		wait    bool
		timeout time.Duration
	)
	set := &cobra.Command{
		Use:   "set BLUEPRINT --size N [--driver local|kubernetes] [--wait]",
		Short: "Create or resize the warm pool of a blueprint file (size 0 empties it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if size < 0 {
				return usagef("--size %d: want 0 or more", size)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			refs, err := loadRefs(cmd.Context(), c)
			if err != nil {
				return err
			}
			bp, err := blueprint.Load(args[0], refs)
			if err != nil {
				return fmt.Errorf("blueprint %s is not valid (no pool was set):\n%w", args[0], err)
			}
			if drv != "" && drv != bp.Driver {
				return usagef("--driver %s: the blueprint's driver is %s, and creates from it ask for %s; set driver: in the blueprint instead", drv, bp.Driver, bp.Driver)
			}
			st, err := c.PoolSet(cmd.Context(), bp.PoolSpec(drv, size))
			if err != nil {
				return err
			}
			if wait {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				if st, err = a.waitPool(ctx, st.Name, size); err != nil {
					return err
				}
			}
			if a.json() {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "pool %s: size %d on %s, %d ready, %d starting\n", st.Name, st.Size, st.Driver, st.Ready, st.Starting)
			return nil
		},
	}
	set.Flags().IntVar(&size, "size", 1, "how many ready sandboxes to keep (0 to 64)")
	set.Flags().StringVar(&drv, "driver", "", "the pool's driver: must be the blueprint's (local or kubernetes); default the blueprint's")
	set.Flags().BoolVar(&wait, "wait", false, "wait until the pool holds --size ready sandboxes, showing progress")
	set.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: give up after this long")

	list := &cobra.Command{
		Use:   "list",
		Short: "List warm pools: size, ready and starting members, claims and replacements",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.PoolList(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, p := range l {
				rows = append(rows, []string{p.Name, p.Driver, strconv.Itoa(p.Size), strconv.Itoa(p.Ready), strconv.Itoa(p.Starting),
					strconv.Itoa(p.Claimed), strconv.Itoa(p.Replaced), p.LastError})
			}
			a.table("POOL\tDRIVER\tSIZE\tREADY\tSTARTING\tCLAIMED\tREPLACED\tLAST ERROR", rows)
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one warm pool and its members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.PoolGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "pool %s: size %d on %s, %d ready, %d starting, %d claimed, %d replaced\n", st.Name, st.Size, st.Driver, st.Ready, st.Starting, st.Claimed, st.Replaced)
			if st.LastError != "" {
				fmt.Fprintf(a.stdout, "last error: %s\n", st.LastError)
			}
			var rows [][]string
			for _, m := range st.Members {
				rows = append(rows, []string{m.Name, m.Phase, m.Created.Format(time.RFC3339)})
			}
			a.table("MEMBER\tPHASE\tCREATED", rows)
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a warm pool and its unclaimed members (claimed sandboxes stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.PoolDelete(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			return nil
		},
	}
	cmd.AddCommand(set, list, get, del)
	return cmd
}

// waitPool polls the pool until it holds size ready members, showing
// progress on stderr.
func (a *app) waitPool(ctx context.Context, name string, size int) (*api.PoolStatus, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	last := -1
	for {
		st, err := c.PoolGet(ctx, name)
		if err != nil {
			return nil, err
		}
		if st.Ready != last && !a.json() {
			fmt.Fprintf(a.stderr, "  pool %s: %d/%d ready\n", name, st.Ready, size)
			last = st.Ready
		}
		if st.Ready >= size {
			return st, nil
		}
		select {
		case <-ctx.Done():
			why := ""
			if st.LastError != "" {
				why = "; last error: " + st.LastError
			}
			return st, fmt.Errorf("pool %s: %d of %d ready when the wait ended%s", name, st.Ready, size, why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
