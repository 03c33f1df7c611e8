package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/fleet"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/protocol"
)

// Fleet operations: exec, sync and policy set over every sandbox a label
// selector picks, in parallel, with one result per sandbox.

const fleetHelp = `

With --selector (-l) KEY=VALUE[,KEY!=VALUE][,KEY][,!KEY] the command runs on
every sandbox whose labels (sandbox create --label) match, in parallel
(--parallel, default 16), and prints one result row per sandbox (-o json: one
document with every result). The exit status is 0 when it succeeded on every
sandbox, 1 otherwise; no sandbox matching is an error.`

// fleetResult is one sandbox's result of a fleet operation.
type fleetResult struct {
	Sandbox    string `json:"sandbox"`
	Driver     string `json:"driver"`
	OK         bool   `json:"ok"`
	DurationMs int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
	// exec
	Status *int   `json:"status,omitempty"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// sync
	Sync *api.SyncResult `json:"sync,omitempty"`
	// policy set
	Policy *api.PolicySetResult `json:"policy,omitempty"`
}

// fleetReport is a fleet operation's -o json document.
type fleetReport struct {
	Operation string        `json:"operation"`
	Selector  string        `json:"selector"`
	OK        int           `json:"ok"`
	Failed    int           `json:"failed"`
	Results   []fleetResult `json:"results"`
}

// fleetOp runs the operation on one sandbox, filling in r.
type fleetOp func(ctx context.Context, name string, r *fleetResult)

// withSelector adds --selector and --parallel to cmd. With --selector the
// command takes nameArgs fewer arguments (no sandbox NAME) and prepare
// turns the remaining arguments into the per-sandbox operation.
func (a *app) withSelector(cmd *cobra.Command, op string, prepare func(cmd *cobra.Command, args []string) (fleetOp, error)) *cobra.Command {
	var sel string
	var parallel int
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "run on every sandbox whose labels match, e.g. team=infra,tier!=gpu (instead of NAME)")
	cmd.Flags().IntVar(&parallel, "parallel", fleet.DefaultParallel, "with --selector: how many sandboxes at once")
	origArgs, origRun := cmd.Args, cmd.RunE
	cmd.Args = func(c *cobra.Command, args []string) error {
		if sel == "" {
			return origArgs(c, args)
		}
		return origArgs(c, append([]string{"NAME"}, args...))
	}
	cmd.Long += fleetHelp
	cmd.Use = strings.Replace(cmd.Use, "NAME", "NAME|--selector K=V", 1)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if sel == "" {
			return origRun(c, args)
		}
		s, err := fleet.ParseSelector(sel)
		if err != nil {
			return usagef("--selector: %v", err)
		}
		run, err := prepare(c, args)
		if err != nil {
			return err
		}
		return a.runFleet(c.Context(), op, s, parallel, run)
	}
	return cmd
}

// selectSandboxes lists the sandboxes that match s.
func (a *app) selectSandboxes(ctx context.Context, s fleet.Selector) ([]api.Sandbox, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	l, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Sandbox
	for _, sb := range l {
		if s.Matches(sb.Labels) {
			out = append(out, sb)
		}
	}
	return out, nil
}

func (a *app) runFleet(ctx context.Context, op string, s fleet.Selector, parallel int, run fleetOp) error {
	sbs, err := a.selectSandboxes(ctx, s)
	if err != nil {
		return err
	}
	if len(sbs) == 0 {
		return fmt.Errorf("no sandbox has labels matching %q (see `darkshell sandbox list --selector %s`)", s, s)
	}
	drivers := map[string]string{}
	var names []string
	for _, sb := range sbs {
		names = append(names, sb.Name)
		drivers[sb.Name] = sb.Driver
	}
	if !a.json() {
		fmt.Fprintf(a.stderr, "%s on %d sandboxes (%s)...\n", op, len(names), s)
	}
	res := fleet.Run(ctx, names, parallel, func(ctx context.Context, name string) fleetResult {
		r := fleetResult{Sandbox: name, Driver: drivers[name]}
		t0 := time.Now()
		run(ctx, name, &r)
		r.DurationMs = time.Since(t0).Milliseconds()
		return r
	})
	rep := fleetReport{Operation: op, Selector: s.String(), Results: res}
	for _, r := range res {
		if r.OK {
			rep.OK++
		} else {
			rep.Failed++
		}
	}
	if a.json() {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, r := range res {
			rows = append(rows, []string{r.Sandbox, r.Driver, fleetOutcome(r), fmt.Sprintf("%dms", r.DurationMs), fleetDetail(r)})
		}
		a.table("NAME\tDRIVER\tRESULT\tTIME\tDETAIL", rows)
	}
	if rep.Failed > 0 {
		return &exitError{ExitFail, fmt.Sprintf("%s failed on %d of %d sandboxes", op, rep.Failed, len(res))}
	}
	return nil
}

func fleetOutcome(r fleetResult) string {
	switch {
	case r.Status != nil:
		if *r.Status == 0 {
			return "exit 0"
		}
		return "exit " + strconv.Itoa(*r.Status)
	case r.OK:
		return "ok"
	}
	return "error"
}

// fleetDetail is one line: the error, exec's last line of output, or a summary.
func fleetDetail(r fleetResult) string {
	d := r.Error
	switch {
	case d != "":
	case r.Sync != nil:
		d = fmt.Sprintf("%d added, %d modified, %d deleted, %d unchanged -> %s", r.Sync.Added, r.Sync.Modified, r.Sync.Deleted, r.Sync.Unchanged, r.Sync.Remote)
	case r.Policy != nil:
		d = fmt.Sprintf("%d network rules", r.Policy.NetworkRules)
	default:
		out := r.Stdout
		if strings.TrimSpace(out) == "" {
			out = r.Stderr
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		d = lines[len(lines)-1]
	}
	d = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, d)
	if len(d) > 80 {
		d = d[:77] + "..."
	}
	return d
}

// fleetExec prepares `exec --selector ... -- CMD`.
func (a *app) fleetExec(cmd *cobra.Command, args []string) (fleetOp, error) {
	fl := cmd.Flags()
	shell, _ := fl.GetBool("sh")
	tty, _ := fl.GetBool("tty")
	stdin, _ := fl.GetBool("interactive")
	durable, _ := fl.GetBool("durable")
	key, _ := fl.GetString("idempotency-key")
	env, _ := fl.GetStringArray("env")
	dir, _ := fl.GetString("workdir")
	timeout, _ := fl.GetDuration("timeout")
	switch {
	case tty:
		return nil, usagef("-t cannot be used with --selector (one terminal, many sandboxes)")
	case durable || key != "":
		return nil, usagef("--durable and --idempotency-key cannot be used with --selector")
	case len(args) == 0:
		return nil, usagef("exec --selector needs a command after --")
	}
	if shell && len(args) != 1 {
		args = []string{strings.Join(args, " ")}
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, usagef("-e %q is not KEY=VALUE", e)
		}
	}
	req := api.ExecRequest{ExecStart: protocol.ExecStart{Argv: args, Shell: shell, Env: env, Dir: dir, TimeoutMs: timeout.Milliseconds()}}
	if stdin {
		// Every sandbox gets the same input.
		b, err := io.ReadAll(io.LimitReader(a.stdin, 64<<20+1))
		if err != nil {
			return nil, err
		}
		if len(b) > 64<<20 {
			return nil, usagef("-i with --selector: stdin is over 64 MiB")
		}
		req.Stdin, req.StdinData = true, b
	}
	if err := req.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, name string, r *fleetResult) {
		res, err := c.ExecWait(ctx, name, &req)
		if err != nil {
			r.Error = err.Error()
			return
		}
		if res.Error != nil {
			r.Error = res.Error.Message
		}
		st := res.Status
		r.Status, r.Stdout, r.Stderr = &st, string(res.Stdout), string(res.Stderr)
		r.OK = st == 0 && res.Error == nil
	}, nil
}

// fleetSync prepares `sync --selector ... LOCAL[:REMOTE]`.
func (a *app) fleetSync(cmd *cobra.Command, args []string) (fleetOp, error) {
	if len(args) != 1 {
		return nil, usagef("sync --selector takes LOCAL[:REMOTE]")
	}
	fl := cmd.Flags()
	del, _ := fl.GetBool("delete")
	dry, _ := fl.GetBool("dry-run")
	sum, _ := fl.GetBool("checksum")
	noGI, _ := fl.GetBool("no-git-ignore")
	exc, _ := fl.GetStringArray("exclude")
	inc, _ := fl.GetStringArray("include")
	local, remote, _ := strings.Cut(args[0], ":")
	abs, err := filepath.Abs(local)
	if err != nil || local == "" {
		return nil, usagef("LOCAL %q: %v", local, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, usagef("LOCAL %s is not a directory", local)
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, name string, r *fleetResult) {
		req := &api.SyncRequest{Direction: api.SyncPush, Local: abs, Remote: remote, Delete: del, DryRun: dry,
			Checksum: sum, Exclude: exc, Include: inc, GitIgnore: !noGI}
		res, err := c.Sync(ctx, name, req)
		if err != nil {
			r.Error = err.Error()
			return
		}
		r.Sync, r.OK = res, true
	}, nil
}

// fleetPolicySet prepares `policy set --selector ... --policy FILE`.
func (a *app) fleetPolicySet(cmd *cobra.Command, args []string) (fleetOp, error) {
	file, _ := cmd.Flags().GetString("policy")
	if file == "" {
		return nil, usagef("--policy FILE is required")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("--policy: %v", err)
	}
	if _, err := policy.Parse(file, data); err != nil {
		return nil, fmt.Errorf("%s is not valid (nothing changed):\n%w", file, err)
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, name string, r *fleetResult) {
		res, err := c.PolicySet(ctx, name, &api.PolicySetRequest{Policy: string(data), Source: file})
		if err != nil {
			r.Error = err.Error()
			return
		}
		r.Policy, r.OK = res, true
	}, nil
}

// filterSelector keeps the sandboxes whose labels match selector.
func filterSelector(l []api.Sandbox, selector string) ([]api.Sandbox, error) {
	s, err := fleet.ParseSelector(selector)
	if err != nil {
		return nil, usagef("--selector: %v", err)
	}
	out := []api.Sandbox{}
	for _, sb := range l {
		if s.Matches(sb.Labels) {
			out = append(out, sb)
		}
	}
	return out, nil
}

// labelList shows labels as k=v,k2=v2 (sorted), or "-".
func labelList(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	var p []string
	for k, v := range l {
		p = append(p, k+"="+v)
	}
	slices.Sort(p)
	return strings.Join(p, ",")
}
