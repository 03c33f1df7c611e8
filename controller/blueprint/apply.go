package blueprint

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/goccy/go-yaml"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/protocol"
)

// Phase is one timed step of an apply.
type Phase struct {
	Phase  string `json:"phase"`
	Ms     int64  `json:"ms"`
	Detail string `json:"detail,omitempty"`
}

// Report is the outcome of Apply.
type Report struct {
	Sandbox   string  `json:"sandbox"`
	Blueprint string  `json:"blueprint"`
	Phases    []Phase `json:"phases"`
	TotalMs   int64   `json:"total_ms"`
	// FailedPhase and Error say where and why an apply stopped; the
	// sandbox was then deleted (RolledBack).
	FailedPhase string `json:"failed_phase,omitempty"`
	Error       string `json:"error,omitempty"`
	RolledBack  bool   `json:"rolled_back,omitempty"`
}

// PhaseError is an apply that failed in Phase.
type PhaseError struct {
	Phase string
	Err   error
}

func (e *PhaseError) Error() string { return fmt.Sprintf("phase %s: %v", e.Phase, e.Err) }
func (e *PhaseError) Unwrap() error { return e.Err }

// Apply creates the sandbox name (bp.Name when empty) as bp says: create
// (driver, image or rootfs, policy, providers, limits, env), uploads, MCP
// servers, forwards, workdir, then a round trip to prove it ready. A
// failure in any phase deletes what was made and names the phase. onPhase,
// if set, sees each phase as it ends.
func Apply(ctx context.Context, c *client.Client, bp *Blueprint, name string, onPhase func(Phase)) (*Report, error) {
	if name == "" {
		name = bp.Name
	}
	rep := &Report{Sandbox: name, Blueprint: bp.Name}
	start := time.Now()
	created := false
	phase := func(n string, f func() (string, error)) error {
		t0 := time.Now()
		detail, err := f()
		p := Phase{Phase: n, Ms: time.Since(t0).Milliseconds(), Detail: detail}
		if err != nil {
			rep.FailedPhase, rep.Error = n, err.Error()
			return &PhaseError{Phase: n, Err: err}
		}
		rep.Phases = append(rep.Phases, p)
		if onPhase != nil {
			onPhase(p)
		}
		return nil
	}
	err := func() error {
		if err := phase("create", func() (string, error) {
			sb, err := c.Create(ctx, bp.CreateRequest(name))
			if err != nil {
				return "", err
			}
			created = true
			if sb.Pool != "" {
				return fmt.Sprintf("driver %s, claimed from warm pool %s", bp.Driver, sb.Pool), nil
			}
			return fmt.Sprintf("driver %s", bp.Driver), nil
		}); err != nil {
			return err
		}
		if len(bp.Exporters) > 0 {
			if err := phase("export", func() (string, error) {
				var names []string
				for i := range bp.Exporters {
					st, err := c.ExportAdd(ctx, bp.Exporters[i].Spec(bp, name, i))
					if err != nil {
						return "", fmt.Errorf("exporter %d: %w", i, err)
					}
					names = append(names, st.Name)
				}
				return strings.Join(names, ", "), nil
			}); err != nil {
				return err
			}
		}
		if bp.Inference != nil && len(bp.Inference.Routes) > 0 {
			if err := phase("inference", func() (string, error) {
				cfg, err := c.InferenceSet(ctx, name, bp.Inference)
				if err != nil {
					return "", err
				}
				var apis []string
				for _, r := range cfg.Routes {
					apis = append(apis, r.API+" -> "+r.Upstream)
				}
				return strings.Join(apis, ", "), nil
			}); err != nil {
				return err
			}
		}
		if len(bp.Uploads) > 0 {
			if err := phase("uploads", func() (string, error) {
				// Trees whose destinations do not overlap go in parallel.
				var files atomic.Int64
				one := func(u Upload) error {
					res, err := c.Sync(ctx, name, &api.SyncRequest{Direction: "push", Local: bp.Path(u.From), Remote: u.To, Exclude: u.Exclude, Include: u.Include, GitIgnore: true})
					if err != nil {
						return fmt.Errorf("upload %s: %w", u.From, err)
					}
					files.Add(int64(res.Entries))
					return nil
				}
				if !overlapping(bp.Uploads) {
					g, _ := errgroup.WithContext(ctx)
					for _, u := range bp.Uploads {
						g.Go(func() error { return one(u) })
					}
					if err := g.Wait(); err != nil {
						return "", err
					}
				} else {
					for _, u := range bp.Uploads {
						if err := one(u); err != nil {
							return "", err
						}
					}
				}
				return fmt.Sprintf("%d trees, %d entries", len(bp.Uploads), files.Load()), nil
			}); err != nil {
				return err
			}
		}
		if len(bp.MCPServers) > 0 {
			if err := phase("mcp", func() (string, error) {
				var names []string
				for _, m := range bp.MCPServers {
					if _, err := c.MCPAdd(ctx, name, &api.MCPAddRequest{Server: m.Name, Transport: m.Transport, Command: m.Command, URL: m.URL,
						Providers: m.Providers, Env: m.Env, Allow: m.AllowTools, Deny: m.DenyTools, Rules: m.rules, DenyRules: m.denyRules}); err != nil {
						return "", fmt.Errorf("MCP server %s: %w", m.Name, err)
					}
					names = append(names, m.Name)
				}
				return strings.Join(names, ", "), nil
			}); err != nil {
				return err
			}
		}
		if len(bp.Forwards) > 0 {
			if err := phase("forwards", func() (string, error) {
				var specs []string
				for _, f := range bp.Forwards {
					if _, err := c.ForwardStart(ctx, name, f.Port, f.Reverse); err != nil {
						return "", fmt.Errorf("forward %s: %w", f.Port, err)
					}
					specs = append(specs, f.Port)
				}
				return strings.Join(specs, ", "), nil
			}); err != nil {
				return err
			}
		}
		if bp.Workdir != "" {
			if err := phase("workdir", func() (string, error) {
				return bp.Workdir, run(ctx, c, name, "mkdir", "-p", "--", bp.Workdir)
			}); err != nil {
				return err
			}
		}
		return phase("ready", func() (string, error) { return "exec round trip", run(ctx, c, name, "true") })
	}()
	rep.TotalMs = time.Since(start).Milliseconds()
	if err != nil {
		if created {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			derr := c.Delete(dctx, name)
			cancel()
			rep.RolledBack = derr == nil
			if derr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: delete %s: %w", name, derr))
			}
		}
		return rep, err
	}
	return rep, nil
}

func run(ctx context.Context, c *client.Client, name string, argv ...string) error {
	p, err := c.Exec(ctx, name, &protocol.ExecStart{Argv: argv})
	if err != nil {
		return err
	}
	defer p.Close()
	x, err := p.Wait(nil, nil)
	if err != nil {
		return err
	}
	if x.Status() != 0 {
		return fmt.Errorf("%s exited with status %d", strings.Join(argv, " "), x.Status())
	}
	return nil
}

func (bp *Blueprint) envList() []string {
	var out []string
	for k, v := range bp.Env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func inlineYAML(p *policy.Policy) []byte {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil
	}
	return b
}

// overlapping reports whether two uploads write into the same tree (one
// destination inside or equal to another, or a default destination).
func overlapping(us []Upload) bool {
	for i, a := range us {
		for _, b := range us[i+1:] {
			if a.To == "" || b.To == "" {
				return true
			}
			x, y := path.Clean(a.To)+"/", path.Clean(b.To)+"/"
			if strings.HasPrefix(x, y) || strings.HasPrefix(y, x) {
				return true
			}
		}
	}
	return false
}
