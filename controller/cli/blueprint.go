package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/blueprint"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/yamldoc"
)

// providerRefs checks provider names against the daemon's store.
type providerRefs struct{ names map[string]bool }

func (r providerRefs) ProviderExists(n string) bool { return r.names[n] }

func loadRefs(ctx context.Context, c *client.Client) (blueprint.Refs, error) {
	ps, err := c.ProviderList(ctx)
	if err != nil {
		return nil, err
	}
	r := providerRefs{names: map[string]bool{}}
	for _, p := range ps {
		r.names[p.Name] = true
	}
	return r, nil
}

type blueprintValidation struct {
	File     string            `json:"file"`
	Valid    bool              `json:"valid"`
	Problems []yamldoc.Problem `json:"problems,omitempty"`
	Name     string            `json:"name,omitempty"`
}

func (a *app) blueprintCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "blueprint", Aliases: []string{"bp"}, Short: "Check blueprints (one YAML file for a ready sandbox)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a blueprint: every error with file:line:column",
		Long: `Check a blueprint file (docs/blueprint.md; JSON Schema in docs/blueprint.schema.json):
unknown keys, wrong types, bad values, secret-looking env values, and references
(providers must exist, the policy file must validate, upload sources must be
directories). Every problem is printed as FILE:LINE:COLUMN: field: what to write
instead. Exit status 1 when the file is not valid.`,
		Example: `  darkshell blueprint validate dev.yaml
  darkshell blueprint validate dev.yaml -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			refs, err := loadRefs(cmd.Context(), c)
			if err != nil {
				return err
			}
			res := blueprintValidation{File: args[0]}
			bp, err := blueprint.Load(args[0], refs)
			var ps yamldoc.Problems
			switch {
			case err == nil:
				res.Valid, res.Name = true, bp.Name
			case errors.As(err, &ps):
				res.Problems = ps
			default:
				return err
			}
			return a.reportValidation(args[0], res, res.Problems, "valid (sandbox "+res.Name+")")
		},
	})
	return cmd
}

// createFromBlueprint is `sandbox create --from FILE [--name N | NAME]`.
func (a *app) createFromBlueprint(ctx context.Context, file, name string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	refs, err := loadRefs(ctx, c)
	if err != nil {
		return err
	}
	bp, err := blueprint.Load(file, refs)
	if err != nil {
		return fmt.Errorf("blueprint %s is not valid (nothing was created):\n%w", file, err)
	}
	var onPhase func(blueprint.Phase)
	if !a.json() {
		onPhase = func(p blueprint.Phase) { fmt.Fprintf(a.stderr, "  %-9s %6d ms  %s\n", p.Phase, p.Ms, p.Detail) }
	}
	rep, err := blueprint.Apply(ctx, c, bp, name, onPhase)
	if a.json() {
		if perr := a.printJSON(rep); perr != nil {
			return perr
		}
		if err != nil {
			return &exitError{code: ExitFail}
		}
		return nil
	}
	if err != nil {
		undo := "nothing was left behind"
		if !rep.RolledBack && rep.FailedPhase != "create" {
			undo = "the rollback failed: check `darkshell sandbox list`"
		}
		return fmt.Errorf("create %s from %s failed in phase %s (%s): %w", rep.Sandbox, file, rep.FailedPhase, undo, err)
	}
	fmt.Fprintf(a.stdout, "sandbox %s ready from blueprint %s in %d ms\n", rep.Sandbox, bp.Name, rep.TotalMs)
	return nil
}
