package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// BenchmarkMCP measures tools/call latency (server-everything's echo) side
// by side: direct stdio on the host and in the sandbox (the baselines), the
// bridge (host server, sandbox client over the relayed loopback URL), the
// in-sandbox server's loopback URL, and the `sandboxd mcp connect` shim.
// Runs: DARKSHELL_BENCH_RUNS (default 1000) sequential calls per transport.
func BenchmarkMCP(b *testing.B) {
	servers := mcpServers(b)
	e := newLocalEnv(b)
	ws := mcpWorkspace(b, servers)
	e.createLocal("bench", "--workspace", ws)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_BENCH_RUNS")); err == nil && v > 0 {
		n = v
	}
	js := "/sandbox/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
	e.mustDS("mcp", "add", "bench", "bridge", "--transport", "bridge", "--", "node", everythingJS(servers))
	e.mustDS("mcp", "add", "bench", "insb", "--transport", "in-sandbox", "--", "node", js)
	args := []string{"bench", "echo", `{"message":"bench"}`, strconv.Itoa(n)}

	type result struct {
		name           string
		p50, p99, base int64
		callsPerS      float64
	}
	parse := func(name string, out []byte, base int64) result {
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil || m["error"] != nil {
			b.Fatalf("%s: %v %s", name, err, out)
		}
		return result{name: name, p50: int64(m["p50_us"].(float64)), p99: int64(m["p99_us"].(float64)), callsPerS: m["calls_per_s"].(float64), base: base}
	}
	b.ResetTimer()
	hostOut, err := exec.Command(mcpClient(b), append([]string{"-timeout", "10m", "-stdio", "node " + everythingJS(servers)}, args...)...).Output()
	if err != nil {
		b.Fatalf("direct stdio on the host: %v %s", err, hostOut)
	}
	host := parse("direct stdio, host", hostOut, 0)
	inOut, _, _ := e.ds(append([]string{"exec", "bench", "--", "/sandbox/mcpclient", "-timeout", "10m", "-stdio", "node " + js}, args...)...)
	in := parse("direct stdio, in sandbox", []byte(inOut), 0)
	run := func(name string, base result, flag ...string) result {
		out, _, _ := e.ds(append(append([]string{"exec", "bench", "--", "/sandbox/mcpclient", "-timeout", "10m"}, flag...), args...)...)
		return parse(name, []byte(out), base.p50)
	}
	rs := []result{host, in,
		run("bridge (host server, sandbox client)", host, "-url", e.mcpURL("bench", "bridge")),
		run("in-sandbox (loopback URL)", in, "-url", e.mcpURL("bench", "insb")),
		run("in-sandbox (sandboxd mcp connect shim)", in, "-stdio", "/sandbox/sandboxd mcp connect insb"),
	}
	b.StopTimer()
	b.Logf("tools/call echo, %d sequential calls each", n)
	b.Logf("%-42s %9s %9s %12s %14s", "transport", "p50", "p99", "calls/s", "added at p50")
	for _, r := range rs {
		added := "baseline"
		if r.base > 0 {
			added = fmt.Sprintf("%+.3f ms", float64(r.p50-r.base)/1000)
		}
		b.Logf("%-42s %7.3fms %7.3fms %12.0f %14s", r.name, float64(r.p50)/1000, float64(r.p99)/1000, r.callsPerS, added)
	}
	b.ReportMetric(float64(rs[2].p50)/1000, "bridge-p50-ms")
	b.ReportMetric(float64(rs[2].p50-rs[0].p50)/1000, "bridge-added-p50-ms")
	b.ReportMetric(float64(rs[3].p50-rs[1].p50)/1000, "insandbox-added-p50-ms")
}
