package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/protocol"
)

func (a *app) mcpCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mcp", Short: "MCP servers for a sandbox: host bridges, in-sandbox servers, tool policy, call logs"}
	cmd.AddCommand(a.mcpAddCmd(), a.mcpListCmd(), a.mcpRemoveCmd(), a.mcpLogsCmd())
	return cmd
}

func (a *app) mcpAddCmd() *cobra.Command {
	var req api.MCPAddRequest
	var rules, denyRules []string
	cmd := &cobra.Command{
		Use:   "add NAME SERVER --transport bridge|in-sandbox|http [flags] [-- COMMAND [ARGS...]]",
		Short: "Add an MCP server and expose it inside the sandbox at a loopback URL",
		Long: `Add an MCP server to sandbox NAME and expose it inside the sandbox as a Streamable
HTTP endpoint on loopback, listed in /sandbox/.darkshell/mcp.json.

  bridge      COMMAND runs on the host with the providers' credentials in its
              environment; the sandbox only gets the URL.
  in-sandbox  COMMAND runs inside the sandbox under sandboxd's supervision
              (confined like everything else; no providers allowed).
  http        --url names a remote Streamable HTTP server, fronted by the host
              so policy and logging apply (a provider credential is sent as
              "Authorization: Bearer").

--allow-tool/--deny-tool take globs; denied tools are hidden from tools/list
and refused on call with an error naming the policy.

--rule and --deny-rule take rules in the shape of OpenShell's "protocol: mcp"
rules, as METHOD or METHOD:TOOL with globs (* and ?), e.g. --rule tools/list
--rule 'tools/call:read_*' --deny-rule 'tools/call:read_secret*'. With any
--rule, a relayed method must match one; deny rules win. Rules on call
arguments (params) are written in a blueprint (docs/blueprint.md). For
--transport http, the protocol: mcp rules of the sandbox's policy file for
the URL apply as well.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash >= 0 {
				if dash != 2 {
					return usagef("mcp add takes NAME SERVER before --")
				}
				req.Command = args[2:]
			} else if len(args) > 2 {
				return usagef("put the server command after --: darkshell mcp add NAME SERVER --transport bridge -- COMMAND [ARGS...]")
			}
			if req.Transport == "" {
				return usagef("--transport is required (bridge, in-sandbox or http)")
			}
			req.Server = args[1]
			for _, l := range []struct {
				specs []string
				dst   *[]protocol.MCPRule
				flag  string
			}{{rules, &req.Rules, "--rule"}, {denyRules, &req.DenyRules, "--deny-rule"}} {
				for _, s := range l.specs {
					r, err := parseMCPRule(s)
					if err != nil {
						return usagef("%s %q: %v", l.flag, s, err)
					}
					*l.dst = append(*l.dst, r)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.MCPAdd(cmd.Context(), args[0], &req)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(info)
			}
			fmt.Fprintf(a.stdout, "%s (%s) %s at %s\n", info.Name, info.Transport, info.State, info.URL)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Transport, "transport", "", "bridge, in-sandbox or http")
	f.StringArrayVar(&req.Providers, "provider", nil, "provider whose credentials the server gets (bridge, http)")
	f.StringArrayVar(&req.Env, "env", nil, "KEY=VALUE (non-secret setting) or KEY (only this provider credential)")
	f.StringArrayVar(&req.Allow, "allow-tool", nil, "tool name glob to allow (repeatable; none: all)")
	f.StringArrayVar(&req.Deny, "deny-tool", nil, "tool name glob to deny (repeatable)")
	f.StringArrayVar(&rules, "rule", nil, "allow rule METHOD[:TOOL] in OpenShell's protocol: mcp shape, globs * and ? (repeatable)")
	f.StringArrayVar(&denyRules, "deny-rule", nil, "deny rule METHOD[:TOOL] (repeatable; deny wins)")
	f.StringVar(&req.URL, "url", "", "remote Streamable HTTP endpoint (--transport http)")
	f.StringVar(&req.Dir, "dir", "", "working directory of the server")
	f.IntVar(&req.Port, "port", 0, "loopback port in the sandbox (default: the first free one from 7300)")
	return cmd
}

func (a *app) mcpListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list NAME",
		Short: "List a sandbox's MCP servers: transport, state, pid, restarts, tools, calls, last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.MCPList(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, s := range l {
				pid := "-"
				if s.PID > 0 {
					pid = strconv.Itoa(s.PID)
				}
				rows = append(rows, []string{s.Name, s.Transport, s.State, pid, strconv.Itoa(s.Restarts), strconv.Itoa(s.Tools),
					strconv.FormatInt(s.Calls, 10), strconv.FormatInt(s.Denied, 10), s.URL, oneLine(s.LastError)})
			}
			a.table("SERVER\tTRANSPORT\tSTATE\tPID\tRESTARTS\tTOOLS\tCALLS\tDENIED\tURL\tLAST ERROR", rows)
			return nil
		},
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func (a *app) mcpRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME SERVER",
		Short: "Stop an MCP server and remove it from the sandbox",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.MCPRemove(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]any{"removed": args[1], "sandbox": args[0]})
			}
			return nil
		},
	}
}

func (a *app) mcpLogsCmd() *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "logs NAME [SERVER]",
		Short: "Show the tool-call log (arguments redacted) of a sandbox's MCP servers",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			server := ""
			if len(args) == 2 {
				server = args[1]
			}
			evs, err := c.MCPLogs(cmd.Context(), args[0], server, n)
			if err != nil {
				return err
			}
			if a.json() {
				enc := json.NewEncoder(a.stdout) // JSON lines, one event each
				for _, ev := range evs {
					if err := enc.Encode(ev); err != nil {
						return err
					}
				}
				return nil
			}
			for _, ev := range evs {
				res := fmt.Sprintf("%d bytes", ev.ResultSize)
				switch {
				case ev.Decision == "deny":
					res = "DENIED by " + ev.Rule
				case ev.Error != "":
					res = "error: " + oneLine(ev.Error)
				case ev.IsError:
					res += " (isError)"
				}
				fmt.Fprintf(a.stdout, "%s %s %s %s %.1fms %s\n", ev.Time.Format("2006-01-02T15:04:05.000Z07:00"), ev.Server, ev.Tool, string(ev.Args), ev.DurationMs, res)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "tail", "n", 0, "only the last N events")
	return cmd
}

// parseMCPRule reads METHOD or METHOD:TOOL.
func parseMCPRule(s string) (protocol.MCPRule, error) {
	method, tool, hasTool := strings.Cut(s, ":")
	r := protocol.MCPRule{Method: method}
	if hasTool {
		r.Tool = []string{tool}
	}
	return r, r.Validate()
}
