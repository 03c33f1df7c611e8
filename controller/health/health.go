// Package health turns what the daemon knows of a sandbox (phase, session,
// cgroup use against limits, egress proxy and DNS, MCP servers, event
// losses, confinement) into named checks and one verdict, as `darkshell
// sandbox health` prints them and as metrics.
package health

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Status of one check.
const (
	OK   = "ok"
	Warn = "warn" // reported, not unhealthy
	Fail = "fail" // makes the sandbox unhealthy
	Skip = "skip" // does not apply to this sandbox or driver
)

// Check is one named check.
type Check struct {
	Name   string  `json:"name"`
	Status string  `json:"status"`
	Value  float64 `json:"value,omitempty"`
	Limit  float64 `json:"limit,omitempty"`
	Detail string  `json:"detail,omitempty"`
}

// Report is a sandbox's health.
type Report struct {
	Sandbox    string    `json:"sandbox"`
	Time       time.Time `json:"time"`
	Healthy    bool      `json:"healthy"`
	Failing    []string  `json:"failing"`
	Checks     []Check   `json:"checks"`
	DurationMs int64     `json:"duration_ms"`
}

// MCPServer is one MCP server's state.
type MCPServer struct {
	Name, State, LastError string
	Restarts               int
}

// Facts are what the daemon gathered; zero values mean unknown.
type Facts struct {
	Phase, Reason string
	// Quick facts leave out what needs the sandbox (session, DNS, disk).
	Quick bool

	Reachable bool
	RTT       time.Duration
	ReachErr  string

	MemoryBytes, MemoryLimit, OOMKills int64
	Pids, PidsLimit, ForkRefusals      int64
	CPUThrottled                       int64
	HasCgroups                         bool

	WorkspaceBytes int64
	WorkspaceKnown bool

	// Egress: Expected when the sandbox's network goes through the
	// daemon's proxy (local driver).
	EgressExpected, EgressRunning bool
	ProxyErr                      string // probe of the proxy's listener in the sandbox
	DNSErr                        string // the proxy's resolver
	DNSChecked                    bool

	MCP []MCPServer

	EventsLost uint64

	// Credentials the sandbox uses that have an expiry; warn within
	// CredentialWarning of it, fail after.
	Credentials       []Credential
	CredentialWarning time.Duration
	Now               time.Time // for tests; zero: now

	// Confinement from sandboxd's hello.
	ConfinementExpected bool
	Confined            []string
	LandlockABI         int
}

// Credential is one expiring provider credential.
type Credential struct {
	Provider, Key string
	Expires       time.Time
}

// Evaluate makes the report.
func Evaluate(sandbox string, f Facts) *Report {
	r := &Report{Sandbox: sandbox, Time: time.Now().UTC(), Failing: []string{}}
	add := func(c Check) { r.Checks = append(r.Checks, c) }

	ph := Check{Name: "phase", Status: OK, Detail: f.Phase}
	if f.Phase != "" && f.Phase != "Running" {
		ph.Status = Fail
		if f.Reason != "" {
			ph.Detail += ": " + f.Reason
		}
	}
	add(ph)
	running := f.Phase == "" || f.Phase == "Running"

	if !f.Quick {
		c := Check{Name: "sandboxd", Status: OK, Value: float64(f.RTT.Microseconds()) / 1000, Detail: fmt.Sprintf("round trip %.2f ms", float64(f.RTT.Microseconds())/1000)}
		if !f.Reachable {
			c.Status, c.Value, c.Detail = Fail, 0, "unreachable: "+f.ReachErr
		}
		add(c)
	}

	if f.HasCgroups && running {
		c := Check{Name: "memory", Status: OK, Value: float64(f.MemoryBytes), Limit: float64(f.MemoryLimit)}
		switch {
		case f.OOMKills > 0:
			c.Status, c.Detail = Fail, fmt.Sprintf("%d process(es) OOM-killed at the %s limit", f.OOMKills, size(f.MemoryLimit))
		case f.MemoryLimit > 0 && f.MemoryBytes*100 >= f.MemoryLimit*90:
			c.Status, c.Detail = Warn, fmt.Sprintf("%s of %s (>= 90%%)", size(f.MemoryBytes), size(f.MemoryLimit))
		case f.MemoryLimit > 0:
			c.Detail = fmt.Sprintf("%s of %s", size(f.MemoryBytes), size(f.MemoryLimit))
		default:
			c.Detail = size(f.MemoryBytes) + ", no limit"
		}
		add(c)
		p := Check{Name: "pids", Status: OK, Value: float64(f.Pids), Limit: float64(f.PidsLimit)}
		switch {
		case f.PidsLimit > 0 && f.Pids >= f.PidsLimit:
			p.Status, p.Detail = Fail, fmt.Sprintf("%d of %d: at the limit", f.Pids, f.PidsLimit)
		case f.ForkRefusals > 0:
			p.Status, p.Detail = Fail, fmt.Sprintf("%d of %d; the limit refused %d fork(s)", f.Pids, f.PidsLimit, f.ForkRefusals)
		case f.PidsLimit > 0 && f.Pids*100 >= f.PidsLimit*90:
			p.Status, p.Detail = Warn, fmt.Sprintf("%d of %d (>= 90%%)", f.Pids, f.PidsLimit)
		case f.PidsLimit > 0:
			p.Detail = fmt.Sprintf("%d of %d", f.Pids, f.PidsLimit)
		default:
			p.Detail = fmt.Sprintf("%d, no limit", f.Pids)
		}
		add(p)
		cpu := Check{Name: "cpu", Status: OK, Value: float64(f.CPUThrottled), Detail: fmt.Sprintf("throttled %d period(s)", f.CPUThrottled)}
		add(cpu)
	} else if !f.HasCgroups {
		add(Check{Name: "limits", Status: Skip, Detail: "the driver reports no cgroup use"})
	}

	if !f.Quick {
		if f.WorkspaceKnown {
			add(Check{Name: "workspace", Status: OK, Value: float64(f.WorkspaceBytes), Detail: size(f.WorkspaceBytes) + " used"})
		} else {
			add(Check{Name: "workspace", Status: Skip, Detail: "the workspace is not on this host"})
		}
	}

	if f.EgressExpected && running {
		c := Check{Name: "egress-proxy", Status: OK, Detail: "listening in the sandbox"}
		switch {
		case !f.EgressRunning:
			c.Status, c.Detail = Fail, "the daemon runs no egress proxy for this sandbox"
		case f.ProxyErr != "":
			c.Status, c.Detail = Fail, "unreachable from the sandbox side: "+f.ProxyErr
		case f.Quick:
			c.Detail = "running"
		}
		add(c)
		if f.DNSChecked {
			d := Check{Name: "dns", Status: OK, Detail: "the proxy's resolver answers"}
			if f.DNSErr != "" {
				d.Status, d.Detail = Fail, "the proxy's resolver does not answer: "+f.DNSErr
			}
			add(d)
		}
	}

	for _, m := range f.MCP {
		c := Check{Name: "mcp:" + m.Name, Status: OK, Value: float64(m.Restarts), Detail: m.State}
		switch m.State {
		case "running", "starting", "":
			if m.Restarts > 0 && m.LastError != "" {
				c.Detail = fmt.Sprintf("%s after %d restart(s); last: %s", m.State, m.Restarts, m.LastError)
			}
		default:
			c.Status = Fail
			if m.LastError != "" {
				c.Detail += ": " + m.LastError
			}
		}
		add(c)
	}

	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	for _, c := range f.Credentials {
		ch := Check{Name: "credential:" + c.Provider + "/" + c.Key, Status: OK, Value: c.Expires.Sub(now).Hours(),
			Detail: "expires " + c.Expires.UTC().Format(time.RFC3339)}
		switch left := c.Expires.Sub(now); {
		case left <= 0:
			ch.Status, ch.Detail = Fail, "expired "+c.Expires.UTC().Format(time.RFC3339)+": run `darkshell provider update "+c.Provider+" --credential "+c.Key+"=...`"
		case left < f.CredentialWarning:
			ch.Status, ch.Detail = Warn, fmt.Sprintf("expires in %s (%s)", left.Round(time.Minute), c.Expires.UTC().Format(time.RFC3339))
		}
		add(ch)
	}

	ev := Check{Name: "events", Status: OK, Value: float64(f.EventsLost), Detail: "none lost"}
	if f.EventsLost > 0 {
		ev.Status, ev.Detail = Warn, fmt.Sprintf("%d event(s) lost", f.EventsLost)
	}
	add(ev)

	if !f.Quick && f.Reachable {
		c := Check{Name: "confinement", Status: OK, Value: float64(f.LandlockABI), Detail: strings.Join(f.Confined, ",")}
		var missing []string
		for _, want := range []string{"landlock", "seccomp", "net-ns"} {
			if !slices.Contains(f.Confined, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			c.Status = Warn
			if f.ConfinementExpected {
				c.Status = Fail
			}
			c.Detail = "missing " + strings.Join(missing, ", ") + " (have: " + strings.Join(f.Confined, ",") + ")"
		} else {
			c.Detail = fmt.Sprintf("landlock ABI %d, seccomp, net-ns", f.LandlockABI)
		}
		add(c)
	}

	for _, c := range r.Checks {
		if c.Status == Fail {
			r.Failing = append(r.Failing, c.Name)
		}
	}
	r.Healthy = len(r.Failing) == 0
	return r
}

// Summary is the one-word health of `sandbox list`: "healthy", or
// "unhealthy(a,b)" naming the failing checks.
func (r *Report) Summary() string {
	if r.Healthy {
		return "healthy"
	}
	return "unhealthy(" + strings.Join(r.Failing, ",") + ")"
}

// WriteMetrics writes the report as Prometheus text exposition.
func (r *Report) WriteMetrics(w io.Writer) {
	lbl := fmt.Sprintf("sandbox=%q", r.Sandbox)
	up := 0
	if r.Healthy {
		up = 1
	}
	fmt.Fprintf(w, "# TYPE darkshell_sandbox_healthy gauge\ndarkshell_sandbox_healthy{%s} %d\n", lbl, up)
	fmt.Fprintf(w, "# TYPE darkshell_sandbox_check_ok gauge\n")
	checks := slices.Clone(r.Checks)
	sort.SliceStable(checks, func(i, j int) bool { return checks[i].Name < checks[j].Name })
	for _, c := range checks {
		ok := 0
		if c.Status != Fail {
			ok = 1
		}
		fmt.Fprintf(w, "darkshell_sandbox_check_ok{%s,check=%q,status=%q} %d\n", lbl, c.Name, c.Status, ok)
	}
	fmt.Fprintf(w, "# TYPE darkshell_sandbox_check_value gauge\n")
	for _, c := range checks {
		if c.Value != 0 || c.Limit != 0 {
			fmt.Fprintf(w, "darkshell_sandbox_check_value{%s,check=%q} %g\n", lbl, c.Name, c.Value)
		}
		if c.Limit != 0 {
			fmt.Fprintf(w, "darkshell_sandbox_check_limit{%s,check=%q} %g\n", lbl, c.Name, c.Limit)
		}
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
