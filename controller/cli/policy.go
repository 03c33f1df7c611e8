package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/yamldoc"
)

// policyValidation is `policy validate -o json`.
type policyValidation struct {
	File     string            `json:"file"`
	Valid    bool              `json:"valid"`
	Problems []yamldoc.Problem `json:"problems,omitempty"`
	// Enforced is what the local driver applies (filesystem allow-list).
	Enforced *policy.FSRules `json:"enforced,omitempty"`
	Rules    int             `json:"network_rules"`
}

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Aliases: []string{"pol"}, Short: "Check sandbox policy files (OpenShell format)"}
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a policy file: every error with file:line:column",
		Long: `Check a policy file in OpenShell's format (version: 1; unknown keys are errors,
as in OpenShell, so one file works in both systems). Every problem is printed
as FILE:LINE:COLUMN: field: what is wrong and what to write instead.

The local driver enforces filesystem_policy (Landlock allow-list: paths not
listed are inaccessible; the system dirs programs need, /tmp and /dev/null are
always added, and /sandbox with include_workdir), landlock.compatibility
(hard_requirement: a listed path that is missing stops the sandbox) and
process.run_as_user/group. Exit status 1 when the file is not valid.`,
		Example: `  darkshell policy validate policies/development.yaml
  darkshell policy validate my-policy.yaml -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			res := policyValidation{File: file}
			p, err := policy.Parse(file, data)
			var ps yamldoc.Problems
			switch {
			case err == nil:
				res.Valid = true
				res.Rules = len(p.NetworkPolicies)
				if fs, ok := p.FSRules(); ok {
					res.Enforced = &fs
				}
			case errors.As(err, &ps):
				res.Problems = ps
			default:
				return err
			}
			return a.reportValidation(file, res, res.Problems, fmt.Sprintf("valid (%d network rules)", res.Rules))
		},
	}
	cmd.AddCommand(validate, a.policyTestCmd(), a.withSelector(a.policySetCmd(), "policy set", a.fleetPolicySet))
	cmd.AddCommand(a.policySyncCmd()) // gitops.go
	return cmd
}

func (a *app) policyTestCmd() *cobra.Command {
	var req egress.Request
	cmd := &cobra.Command{
		Use:   "test NAME --host H --port P [--binary PATH] [--method M --path P]",
		Short: "Ask whether the sandbox's egress proxy would allow a request, and why",
		Long: `Evaluate a request against the sandbox's network policy with the same engine
the egress proxy uses, without sending any traffic. Prints allow or deny, the
matched policy and rule, or the reason for the denial.

--binary is the calling program's real executable (what the proxy sees from
/proc/PID/exe; argv is never trusted); --ancestor adds a parent's executable.
With --method and --path the request is decided at L7 (REST rules, access
presets); without, at L4 (host, port, binary). Exit status 1 on deny.`,
		Example: `  darkshell policy test dev --host api.github.com --port 443 --binary /usr/bin/gh
  darkshell policy test dev --host pypi.org --port 443 --binary /usr/bin/python3 --method GET --path /simple/requests/
  darkshell policy test dev --host example.com --port 80 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Host == "" || req.Port == 0 {
				return usagef("--host and --port are required")
			}
			if (req.Method == "") != (req.Path == "") {
				return usagef("--method and --path go together (an L7 request)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PolicyTest(cmd.Context(), args[0], &req)
			if err != nil {
				return err
			}
			if a.json() {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else {
				d := res.Decision
				verdict := "DENY"
				if d.Allow {
					verdict = "ALLOW"
				}
				fmt.Fprintf(a.stdout, "%s %s:%d", verdict, req.Host, req.Port)
				if req.Method != "" {
					fmt.Fprintf(a.stdout, " %s %s", req.Method, req.Path)
				}
				fmt.Fprintln(a.stdout)
				if d.Policy != "" {
					fmt.Fprintf(a.stdout, "policy:  %s (endpoint %d)\n", d.Policy, d.Endpoint)
				}
				if d.Rule != "" {
					fmt.Fprintf(a.stdout, "rule:    %s\n", d.Rule)
				}
				fmt.Fprintf(a.stdout, "reason:  %s\n", d.Reason)
				if d.Inspect && req.Method == "" {
					fmt.Fprintln(a.stdout, "note:    this endpoint has L7 rules: give --method and --path to test a request")
				}
			}
			if !res.Decision.Allow {
				return &exitError{code: ExitFail}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Host, "host", "", "destination host name or address")
	f.IntVar(&req.Port, "port", 0, "destination port")
	f.StringVar(&req.Binary, "binary", "", "the calling program's real executable path")
	f.StringArrayVar(&req.Ancestors, "ancestor", nil, "a parent process's executable (repeatable, nearest first)")
	f.StringVar(&req.Method, "method", "", "HTTP method (L7)")
	f.StringVar(&req.Path, "path", "", "HTTP path (L7)")
	f.StringVar(&req.Query, "query", "", "HTTP query string (L7)")
	return cmd
}

func (a *app) policySetCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "set NAME --policy FILE",
		Short: "Replace the network policy of a running sandbox (hot reload)",
		Long: `Replace network_policies (and network_middlewares) of a sandbox's policy
atomically: requests already decided finish under the old policy, every new
one is decided by the new. A file that does not validate is refused and the
old policy stays in force. filesystem_policy, landlock and process are fixed
at create: a file that changes them is refused, as OpenShell does.`,
		Example: `  darkshell policy set dev --policy policies/development.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usagef("--policy FILE is required")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return usagef("--policy: %v", err)
			}
			if _, err := policy.Parse(file, data); err != nil {
				return fmt.Errorf("%s is not valid (nothing changed):\n%w", file, err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PolicySet(cmd.Context(), args[0], &api.PolicySetRequest{Policy: string(data), Source: file})
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "sandbox %s: network policy replaced (%d rules)\n", res.Sandbox, res.NetworkRules)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "policy", "", "policy file (OpenShell format)")
	return cmd
}

func (a *app) netTestCmd() *cobra.Command {
	var (
		req         api.NetTestRequest
		tlsOn, noHT bool
	)
	cmd := &cobra.Command{
		Use:   "net-test NAME --host H --port P",
		Short: "Show where a request from the sandbox gets, hop by hop",
		Long: `Follow a request from inside the sandbox: the egress proxy reached from the
sandbox, the policy decision (which rule, or why not), resolution and the SSRF
checks, the TCP connect, the TLS handshake (--tls, default for port 443) and the
HTTP status. It stops at the first hop that fails and says why. Exit status 1
when the request would not get through.`,
		Example: `  darkshell sandbox net-test dev --host pypi.org --port 443 --binary /usr/bin/python3.11
  darkshell sandbox net-test dev --host api.github.com --port 443 --method GET --path /repos/x/y -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Host == "" || req.Port == 0 {
				return usagef("--host and --port are required")
			}
			if cmd.Flags().Changed("tls") {
				req.TLS = &tlsOn
			}
			if noHT {
				f := false
				req.HTTP = &f
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.NetTest(cmd.Context(), args[0], &req)
			if err != nil {
				return err
			}
			if a.json() {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else {
				for _, s := range res.Steps {
					mark := "ok  "
					if !s.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(a.stdout, "%s %-24s %5d ms  %s\n", mark, s.Step, s.Ms, s.Detail)
				}
			}
			if !res.OK {
				return &exitError{code: ExitFail}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Host, "host", "", "destination host")
	f.IntVar(&req.Port, "port", 0, "destination port")
	f.StringVar(&req.Binary, "binary", "", "the calling program's real executable (for binary-scoped rules)")
	f.StringVar(&req.Method, "method", "", "HTTP method to decide and send (default: HEAD /)")
	f.StringVar(&req.Path, "path", "", "HTTP path")
	f.BoolVar(&tlsOn, "tls", false, "do a TLS handshake (default: when the port is 443)")
	f.BoolVar(&noHT, "no-http", false, "stop after the connection (and TLS): send no HTTP request")
	return cmd
}

// reportValidation prints a validate command's result (res as JSON, or
// ok / every problem as text) and fails with exit status 1 on problems.
func (a *app) reportValidation(file string, res any, problems []yamldoc.Problem, ok string) error {
	if a.json() {
		if err := a.printJSON(res); err != nil {
			return err
		}
	} else if len(problems) == 0 {
		fmt.Fprintf(a.stdout, "%s: %s\n", file, ok)
	} else {
		for _, p := range problems {
			fmt.Fprintln(a.stdout, p.String())
		}
	}
	if len(problems) > 0 {
		return &exitError{code: ExitFail, msg: fmt.Sprintf("%s: %d problems", file, len(problems))}
	}
	return nil
}
