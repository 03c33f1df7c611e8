package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/state"
)

// Options of `darkshell policy sync` (run by the darkshell-gitops helper,
// which keeps go-git out of the darkshell CLI's start-up).
type Options struct {
	Home               string // DARKSHELL_HOME
	Repo, Branch, Path string
	Interval           time.Duration
	Once, DryRun, JSON bool
	// NoAutoStart: do not start a daemon when none answers (a daemon's
	// job must not start another as its daemon stops).
	NoAutoStart bool
	Out, Err    io.Writer
}

// Run runs the sync until ctx ends (with Interval) or once, and returns
// the exit status: 0, or 1 when the last pass found an invalid commit or
// a failed apply (one pass only), 2 on bad options.
func Run(ctx context.Context, o Options) int {
	if o.Repo == "" {
		fmt.Fprintln(o.Err, "darkshell: --repo PATH|URL is required")
		return 2
	}
	if o.Interval < 0 || (o.Interval > 0 && o.Interval < time.Second) {
		fmt.Fprintf(o.Err, "darkshell: --interval %s: want 1s or more\n", o.Interval)
		return 2
	}
	c, err := client.New(client.Options{Home: o.Home, NoAutoStart: o.NoAutoStart})
	if err != nil {
		fmt.Fprintln(o.Err, "darkshell:", err)
		return 1
	}
	src := o.Repo
	if abs, err := filepath.Abs(o.Repo); err == nil {
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			src = abs
		}
	}
	g, err := Open(src, filepath.Join(c.Home().Dir, "gitops", "clones"))
	if err != nil {
		fmt.Fprintln(o.Err, "darkshell:", err)
		return 1
	}
	stPath := filepath.Join(c.Home().Dir, "gitops", "state-"+Hash(src + "\x00" + o.Branch + "\x00" + o.Path)[:16]+".json")
	for {
		p := o.syncPolicies(ctx, c, g, src, o.Branch, o.Path, stPath, o.DryRun)
		o.printPass(p)
		if o.Interval == 0 || o.Once {
			if p.Status == "invalid" || p.Status == "error" {
				return 1
			}
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(o.Interval):
		}
	}
}

// syncPass is what one pass of `policy sync` did (one JSON line with -o json).
type syncPass struct {
	Time   time.Time `json:"time"`
	Repo   string    `json:"repo"`
	Commit string    `json:"commit"`
	// Status: "applied" (something changed), "unchanged", "invalid" (the
	// commit was refused: nothing of it applied, the last good one stays),
	// "error" (an apply failed).
	Status    string            `json:"status"`
	Error     string            `json:"error,omitempty"`
	LastGood  string            `json:"last_good,omitempty"`
	Applied   []string          `json:"applied,omitempty"`
	Corrected []string          `json:"corrected,omitempty"` // drift: changed by hand, put back
	Would     []string          `json:"would_apply,omitempty"`
	Failed    map[string]string `json:"failed,omitempty"`
	DryRun    bool              `json:"dry_run,omitempty"`
}

// gitopsState remembers, per repository and dir, the last good commit and
// what was applied to each sandbox.
type gitopsState struct {
	LastGood string            `json:"last_good"`
	Applied  map[string]string `json:"applied"` // sandbox -> Hash
}

func (o *Options) printPass(p *syncPass) {
	if o.JSON {
		b, _ := json.Marshal(p)
		o.Out.Write(append(b, '\n'))
		return
	}
	c := p.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	switch p.Status {
	case "invalid":
		fmt.Fprintf(o.Out, "commit %s is invalid, nothing of it applied (last good: %s):\n%s\n", c, shortC(p.LastGood), p.Error)
	case "error":
		fmt.Fprintf(o.Out, "commit %s: %s\n", c, p.Error)
	default:
		fmt.Fprintf(o.Out, "commit %s: %s", c, p.Status)
		if len(p.Applied) > 0 {
			fmt.Fprintf(o.Out, "; applied to %s", strings.Join(p.Applied, ", "))
		}
		if len(p.Corrected) > 0 {
			fmt.Fprintf(o.Out, "; drift corrected on %s", strings.Join(p.Corrected, ", "))
		}
		if len(p.Would) > 0 {
			fmt.Fprintf(o.Out, "; would apply to %s", strings.Join(p.Would, ", "))
		}
		fmt.Fprintln(o.Out)
	}
	for sb, e := range p.Failed {
		fmt.Fprintf(o.Err, "darkshell: policy sync: %s: %s\n", sb, e)
	}
}

func shortC(c string) string {
	if c == "" {
		return "none"
	}
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func loadGitopsState(p string) *gitopsState {
	st := &gitopsState{Applied: map[string]string{}}
	if b, err := os.ReadFile(p); err == nil {
		json.Unmarshal(b, st)
	}
	if st.Applied == nil {
		st.Applied = map[string]string{}
	}
	return st
}

// syncPolicies runs one pass.
func (o *Options) syncPolicies(ctx context.Context, c *client.Client, g *Repo, src, branch, dir, stPath string, dryRun bool) *syncPass {
	p := &syncPass{Time: time.Now().UTC(), Repo: src, DryRun: dryRun, Failed: map[string]string{}}
	st := loadGitopsState(stPath)
	p.LastGood = st.LastGood
	fail := func(status string, err error) *syncPass {
		p.Status, p.Error = status, err.Error()
		return p
	}
	if err := g.Refresh(); err != nil {
		return fail("error", err)
	}
	head, err := g.Head(branch)
	if err != nil {
		return fail("error", err)
	}
	p.Commit = head
	want, err := g.Load(head, dir)
	invalid := err
	if invalid != nil {
		// The last good commit stays in force: drift is still corrected.
		if st.LastGood == "" {
			return fail("invalid", invalid)
		}
		if want, err = g.Load(st.LastGood, dir); err != nil {
			return fail("invalid", errors.Join(invalid, fmt.Errorf("the last good commit %s: %w", shortC(st.LastGood), err)))
		}
	}
	sbs, err := c.List(ctx)
	if err != nil {
		return fail("error", err)
	}
	var recs []*state.Sandbox
	current := map[string]string{}
	for i := range sbs {
		sb := sbs[i].Sandbox
		recs = append(recs, &sb)
		var x struct {
			Policy string `json:"policy"`
		}
		json.Unmarshal(sb.Extra, &x)
		current[sb.Name] = x.Policy
	}
	plan := Plan(want.Targets(recs), current, st.Applied)
	for _, act := range plan {
		if act.Do == "none" {
			if _, ok := st.Applied[act.Sandbox]; !ok && !dryRun {
				st.Applied[act.Sandbox] = Hash(act.Content)
			}
			continue
		}
		if dryRun {
			p.Would = append(p.Would, act.Sandbox)
			continue
		}
		srcName := fmt.Sprintf("git:%s@%s:%s", src, shortC(want.Commit), filepath.ToSlash(filepath.Join(dir, act.File)))
		if _, err := c.PolicySet(ctx, act.Sandbox, &api.PolicySetRequest{Policy: act.Content, Source: srcName}); err != nil {
			p.Failed[act.Sandbox] = err.Error()
			continue
		}
		st.Applied[act.Sandbox] = Hash(act.Content)
		if act.Do == "correct" {
			p.Corrected = append(p.Corrected, act.Sandbox)
		} else {
			p.Applied = append(p.Applied, act.Sandbox)
		}
	}
	sort.Strings(p.Applied)
	sort.Strings(p.Corrected)
	sort.Strings(p.Would)
	if !dryRun {
		if invalid == nil {
			st.LastGood = head
			p.LastGood = head
		}
		if b, err := json.Marshal(st); err == nil {
			os.MkdirAll(filepath.Dir(stPath), 0o700)
			state.WriteFileAtomic(stPath, b, 0o600)
		}
	}
	switch {
	case invalid != nil:
		p.Status, p.Error = "invalid", invalid.Error()
	case len(p.Failed) > 0:
		p.Status, p.Error = "error", fmt.Sprintf("%d apply(ies) failed", len(p.Failed))
	case len(p.Applied)+len(p.Corrected)+len(p.Would) > 0:
		p.Status = "applied"
		if dryRun {
			p.Status = "would-apply"
		}
	default:
		p.Status = "unchanged"
	}
	if len(p.Failed) == 0 {
		p.Failed = nil
	}
	return p
}
