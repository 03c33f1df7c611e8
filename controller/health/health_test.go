package health

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	base := func() Facts {
		return Facts{Phase: "Running", Reachable: true, RTT: time.Millisecond, HasCgroups: true,
			MemoryBytes: 10 << 20, MemoryLimit: 100 << 20, Pids: 3, PidsLimit: 50,
			EgressExpected: true, EgressRunning: true, DNSChecked: true, WorkspaceKnown: true,
			ConfinementExpected: true, Confined: []string{"net-ns", "landlock", "seccomp"}, LandlockABI: 7,
			MCP: []MCPServer{{Name: "gh", State: "running"}}}
	}
	tests := []struct {
		name    string
		edit    func(*Facts)
		failing []string
		warn    string
	}{
		{"quiet", func(*Facts) {}, nil, ""},
		{"stopped", func(f *Facts) { f.Phase = "Stopped" }, []string{"phase"}, ""},
		{"unreachable", func(f *Facts) { f.Reachable, f.ReachErr = false, "EOF" }, []string{"sandboxd"}, ""},
		{"oom", func(f *Facts) { f.OOMKills = 2 }, []string{"memory"}, ""},
		{"memory high", func(f *Facts) { f.MemoryBytes = 95 << 20 }, nil, "memory"},
		{"pids at limit", func(f *Facts) { f.Pids = 50 }, []string{"pids"}, ""},
		{"forks refused", func(f *Facts) { f.ForkRefusals = 1 }, []string{"pids"}, ""},
		{"no proxy", func(f *Facts) { f.EgressRunning = false }, []string{"egress-proxy"}, ""},
		{"proxy unreachable", func(f *Facts) { f.ProxyErr = "refused" }, []string{"egress-proxy"}, ""},
		{"dns", func(f *Facts) { f.DNSErr = "timeout" }, []string{"dns"}, ""},
		{"mcp crashed", func(f *Facts) { f.MCP[0].State, f.MCP[0].LastError = "backoff", "exited" }, []string{"mcp:gh"}, ""},
		{"events lost", func(f *Facts) { f.EventsLost = 5 }, nil, "events"},
		{"unconfined", func(f *Facts) { f.Confined = []string{"net-ns"} }, []string{"confinement"}, ""},
		{"ssh not confined", func(f *Facts) { f.Confined, f.ConfinementExpected = nil, false }, nil, "confinement"},
		{"credential soon", func(f *Facts) {
			f.Now, f.CredentialWarning = time.Unix(1000, 0), time.Hour
			f.Credentials = []Credential{{"gh", "TOKEN", time.Unix(1000+600, 0)}}
		}, nil, "credential:gh/TOKEN"},
		{"credential expired", func(f *Facts) {
			f.Now, f.CredentialWarning = time.Unix(1000, 0), time.Hour
			f.Credentials = []Credential{{"gh", "TOKEN", time.Unix(999, 0)}}
		}, []string{"credential:gh/TOKEN"}, ""},
		{"two at once", func(f *Facts) { f.OOMKills, f.DNSErr = 1, "x" }, []string{"memory", "dns"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.edit(&f)
			r := Evaluate("sb", f)
			if r.Healthy != (len(tc.failing) == 0) || !slices.Equal(r.Failing, append([]string{}, tc.failing...)) && !(len(tc.failing) == 0 && len(r.Failing) == 0) {
				t.Fatalf("failing = %v, want %v (%+v)", r.Failing, tc.failing, r.Checks)
			}
			if tc.warn != "" {
				found := false
				for _, c := range r.Checks {
					if c.Name == tc.warn && c.Status == Warn {
						found = true
					}
				}
				if !found {
					t.Fatalf("no warning on %s: %+v", tc.warn, r.Checks)
				}
			}
			want := "healthy"
			if len(tc.failing) > 0 {
				want = "unhealthy(" + strings.Join(tc.failing, ",") + ")"
			}
			if r.Summary() != want {
				t.Fatalf("summary %q, want %q", r.Summary(), want)
			}
			var b bytes.Buffer
			r.WriteMetrics(&b)
			up := `darkshell_sandbox_healthy{sandbox="sb"} 1`
			if !r.Healthy {
				up = `darkshell_sandbox_healthy{sandbox="sb"} 0`
			}
			if !strings.Contains(b.String(), up) {
				t.Fatalf("metrics:\n%s", b.String())
			}
		})
	}
}
