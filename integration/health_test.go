package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/health"
)

// healthOf runs `sandbox health NAME -o json`: the report and the exit status.
func (e *env) healthOf(name string) (*health.Report, int, string) {
	e.t.Helper()
	out, errOut, code := e.ds("-o", "json", "sandbox", "health", name)
	var r health.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		e.t.Fatalf("health %s: exit %d, %v\nstdout: %s\nstderr: %s", name, code, err, out, errOut)
	}
	return &r, code, errOut
}

func (e *env) mustBeHealthy(name string) *health.Report {
	e.t.Helper()
	r, code, errOut := e.healthOf(name)
	if code != 0 || !r.Healthy {
		e.t.Fatalf("health %s: exit %d, failing %v, stderr %q\n%+v", name, code, r.Failing, errOut, r.Checks)
	}
	return r
}

// mustFail checks that health exits 1 and names check (on stderr too).
func (e *env) mustFail(name, check string) *health.Report {
	e.t.Helper()
	r, code, errOut := e.healthOf(name)
	if code != 1 || r.Healthy || !slices.Contains(r.Failing, check) || !strings.Contains(errOut, check) {
		e.t.Fatalf("health %s: exit %d, failing %v, stderr %q; want exit 1 naming %s\n%+v", name, code, r.Failing, errOut, check, r.Checks)
	}
	return r
}

// TestLocalHealth: a quiet sandbox is healthy (exit 0, every check
// present and ok); a sandbox pushed to its memory limit (OOM kill) and one
// pushed to its pids limit (forks refused) fail naming memory and pids; a
// bridge MCP server that crashed and cannot restart fails naming it; the
// egress proxy's DNS server stopped fails naming dns. `sandbox list`
// shows the verdict; --metrics the same data as Prometheus text.
func TestLocalHealth(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t) // the proxy's resolver is a dnsmasq of the test's own
	e.createLocal("quiet", "--pids-limit", "64", "--memory-limit", "256M")
	r := e.mustBeHealthy("quiet")
	have := map[string]string{}
	for _, c := range r.Checks {
		have[c.Name] = c.Status
	}
	for _, want := range []string{"phase", "sandboxd", "memory", "pids", "cpu", "workspace", "egress-proxy", "dns", "events", "confinement"} {
		if have[want] != health.OK {
			t.Errorf("quiet sandbox: check %s = %q, want ok (%v)", want, have[want], have)
		}
	}
	if out := e.mustDS("sandbox", "list"); !strings.Contains(out, "HEALTH") || !strings.Contains(out, "healthy") {
		t.Fatalf("sandbox list without a health column:\n%s", out)
	}
	if out := e.mustDS("sandbox", "health", "quiet", "--metrics"); !strings.Contains(out, `darkshell_sandbox_healthy{sandbox="quiet"} 1`) || !strings.Contains(out, `darkshell_sandbox_check_limit{sandbox="quiet",check="pids"} 64`) {
		t.Fatalf("metrics:\n%s", out)
	}

	// Memory: a process grows past the limit and is OOM-killed.
	e.createLocal("mem", "--memory-limit", "64M")
	e.bash("mem", "tail /dev/zero") // killed by the OOM killer
	r = e.mustFail("mem", "memory")
	t.Logf("memory: %+v", r.Checks[2])

	// Pids: forks beyond the limit are refused.
	e.createLocal("pids", "--pids-limit", "20")
	e.bash("pids", "for i in $(seq 40); do sleep 1000 </dev/null >/dev/null 2>&1 & done; true")
	e.mustFail("pids", "pids")
	if out := e.mustDS("sandbox", "list"); !strings.Contains(out, "unhealthy(pids)") {
		t.Fatalf("sandbox list does not name the failing check:\n%s", out)
	}

	// DNS: the proxy's resolver stops answering.
	dnsmasq := pgrep("dnsmasq", "--listen-address="+egressDNSAddr)
	if len(dnsmasq) == 0 {
		t.Fatal("the test's dnsmasq is not running")
	}
	for _, p := range dnsmasq {
		syscall.Kill(p, syscall.SIGSTOP) // it stays, silent; SIGCONT at cleanup
		defer syscall.Kill(p, syscall.SIGCONT)
	}
	r = e.mustFail("quiet", "dns")
	if len(r.Failing) != 1 {
		t.Fatalf("only dns should fail: %v", r.Failing)
	}
	for _, p := range dnsmasq {
		syscall.Kill(p, syscall.SIGCONT)
	}
	e.mustBeHealthy("quiet")
}

// TestLocalHealthMCP: a bridge MCP server that crashes and cannot start
// again makes health exit 1 naming it.
func TestLocalHealthMCP(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	newEgressNet(t) // the DNS check asks the test's own resolver, never the machine's
	e.createLocal("hm")
	mark := filepath.Join(t.TempDir(), "broken")
	e.mustDS("mcp", "add", "hm", "every", "--transport", "bridge", "--", "sh", "-c",
		`test -e "$0" && { echo broken >&2; exit 1; }; exec node "$1"`, mark, everythingJS(servers))
	e.mustBeHealthy("hm")
	pid := e.mcpList("hm")["every"].PID
	if pid <= 0 {
		t.Fatalf("mcp list: no pid for the running server: %+v", e.mcpList("hm"))
	}
	os.WriteFile(mark, nil, 0o600)
	syscall.Kill(pid, syscall.SIGKILL)
	var r *health.Report
	waitFor(t, 10*time.Second, "health to name the crashed server", func() bool {
		var code int
		r, code, _ = e.healthOf("hm")
		return code == 1 && slices.Contains(r.Failing, "mcp:every")
	})
	t.Logf("crashed server: %+v", r.Checks)
	e.mustFail("hm", "mcp:every")
}
