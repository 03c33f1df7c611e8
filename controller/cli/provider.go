package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
)

func (a *app) providerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "provider", Short: "Credentials kept on the host for MCP bridges (never sent to a sandbox, never printed)"}
	cmd.AddCommand(a.providerCreateCmd(), a.providerUpdateCmd(), a.providerListCmd(), a.providerDeleteCmd())
	return cmd
}

// credFlags collects --credential KEY=VALUE and --from-env KEY.
type credFlags struct{ creds, fromEnv []string }

func (f *credFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.creds, "credential", nil, "KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&f.fromEnv, "from-env", nil, "KEY: take the value of environment variable KEY (repeatable)")
}

func (f *credFlags) values(allowEmpty bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range f.creds {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--credential wants KEY=VALUE")
		}
		if v == "" && !allowEmpty {
			return nil, usagef("--credential %s= has an empty value", k)
		}
		out[k] = v
	}
	for _, k := range f.fromEnv {
		v, ok := os.LookupEnv(k)
		if !ok || v == "" {
			return nil, usagef("--from-env %s: the variable is not set", k)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, usagef("give at least one --credential KEY=VALUE or --from-env KEY")
	}
	return out, nil
}

func (a *app) providerCreateCmd() *cobra.Command {
	var name, typ string
	var cf credFlags
	cmd := &cobra.Command{
		Use:   "create --name P --type generic|github|anthropic|openai (--credential KEY=VALUE | --from-env KEY)...",
		Short: "Store a provider's credentials on the host (0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return usagef("--name is required")
			}
			creds, err := cf.values(false)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.ProviderCreate(cmd.Context(), &api.ProviderRequest{Name: name, Type: typ, Credentials: creds})
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(s)
			}
			fmt.Fprintf(a.stdout, "provider %s (%s): %s\n", s.Name, s.Type, strings.Join(s.Keys, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "provider name")
	cmd.Flags().StringVar(&typ, "type", "generic", "generic, github, anthropic or openai")
	cf.add(cmd)
	return cmd
}

func (a *app) providerUpdateCmd() *cobra.Command {
	var cf credFlags
	var expires string
	cmd := &cobra.Command{
		Use:   "update P (--credential KEY=VALUE | --from-env KEY)...",
		Short: "Rotate a provider's credentials; running bridges restart their server with the new values (KEY= removes KEY)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			creds, err := cf.values(true)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			req := &api.ProviderRequest{Credentials: creds}
			if expires != "" {
				t, err := parseExpiry(expires, time.Now())
				if err != nil {
					return err
				}
				req.Expires = &t
			}
			u, err := c.ProviderRotate(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(u)
			}
			fmt.Fprintf(a.stdout, "provider %s updated (%s); %d running bridge(s) re-keyed between calls, %d sandbox(es) get the new values at their next request\n",
				u.Name, strings.Join(u.Keys, ", "), u.Rotated, len(u.Sandboxes))
			warnExpiry(a.stderr, u.Name, u.Expires, time.Now())
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVar(&expires, "expires", "", "when the new values stop working: RFC 3339 time or a duration from now (e.g. 720h, 30d); health warns 72h before")
	return cmd
}

func (a *app) providerListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List providers and their credential keys (never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ProviderList(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, p := range l {
				rows = append(rows, []string{p.Name, p.Type, strings.Join(p.Keys, ","), p.Updated.Format("2006-01-02 15:04:05"), expiryOf(p.Expires, time.Now())})
			}
			a.table("NAME\tTYPE\tKEYS\tUPDATED\tEXPIRES", rows)
			return nil
		},
	}
}

func (a *app) providerDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete P",
		Short: "Delete a provider (refused while an MCP server uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.ProviderDelete(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]string{"deleted": args[0]})
			}
			return nil
		},
	}
}
