package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

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
			if a.json() {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else if res.Valid {
				fmt.Fprintf(a.stdout, "%s: valid (%d network rules)\n", file, res.Rules)
			} else {
				for _, p := range res.Problems {
					fmt.Fprintln(a.stdout, p.String())
				}
			}
			if !res.Valid {
				return &exitError{code: ExitFail, msg: fmt.Sprintf("%s: %d problems", file, len(res.Problems))}
			}
			return nil
		},
	}
	cmd.AddCommand(validate)
	return cmd
}
