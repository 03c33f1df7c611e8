package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkMCP measures tools/call latency (server-everything's echo) side
// by side: direct stdio on the host and in the sandbox (the baselines), the
// bridge (host server, sandbox client over the relayed loopback URL), the
// in-sandbox server's loopback URL, and the `sandboxd mcp connect` shim.
// Runs: DARKSHELL_BENCH_RUNS (default 1000) sequential calls per transport,
// in DARKSHELL_BENCH_ROUNDS (default 5) rounds that take turns.
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
	// The machine is shared: the transports take turns, in rounds of
	// n/rounds calls each, so a burst of load hits them alike; a figure is
	// the median over rounds, and "added" is the median of the per-round
	// differences with the baseline of the same round.
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	per := max(n/rounds, 1)
	args := []string{"bench", "echo", `{"message":"bench"}`, strconv.Itoa(per)}

	type sample struct{ p50, p99, cps float64 }
	parse := func(name string, out []byte) sample {
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil || m["error"] != nil {
			b.Fatalf("%s: %v %s", name, err, out)
		}
		return sample{p50: m["p50_us"].(float64), p99: m["p99_us"].(float64), cps: m["calls_per_s"].(float64)}
	}
	type transport struct {
		name string
		base int // index of its baseline; -1: it is one
		run  func() []byte
	}
	inSandbox := func(flag ...string) func() []byte {
		return func() []byte {
			out, _, _ := e.ds(append(append([]string{"exec", "bench", "--", "/sandbox/mcpclient", "-timeout", "10m"}, flag...), args...)...)
			return []byte(out)
		}
	}
	bridgeURL, insbURL := e.mcpURL("bench", "bridge"), e.mcpURL("bench", "insb")
	ts := []transport{
		{"direct stdio, host", -1, func() []byte {
			out, err := exec.Command(mcpClient(b), append([]string{"-timeout", "10m", "-stdio", "node " + everythingJS(servers)}, args...)...).Output()
			if err != nil {
				b.Fatalf("direct stdio on the host: %v %s", err, out)
			}
			return out
		}},
		{"direct stdio, in sandbox", -1, inSandbox("-stdio", "node "+js)},
		{"bridge (host server, sandbox client)", 0, inSandbox("-url", bridgeURL)},
		{"in-sandbox (loopback URL)", 1, inSandbox("-url", insbURL)},
		{"in-sandbox (sandboxd mcp connect shim)", 1, inSandbox("-stdio", "/sandbox/sandboxd mcp connect insb")},
	}
	samples := make([][]sample, len(ts))
	b.ResetTimer()
	for range rounds {
		for i, t := range ts {
			samples[i] = append(samples[i], parse(t.name, t.run()))
		}
	}
	b.StopTimer()
	median := func(xs []float64) float64 {
		xs = append([]float64(nil), xs...)
		sort.Float64s(xs)
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	type result struct {
		name                 string
		p50, p99, cps, added float64 // ms, ms, calls/s, ms (NaN: a baseline)
	}
	var rs []result
	for i, t := range ts {
		var p50s, p99s, added []float64
		var secs float64
		for r, s := range samples[i] {
			p50s, p99s = append(p50s, s.p50/1000), append(p99s, s.p99/1000)
			secs += float64(per) / s.cps
			if t.base >= 0 {
				added = append(added, (s.p50-samples[t.base][r].p50)/1000)
			}
		}
		res := result{name: t.name, p50: median(p50s), p99: median(p99s), cps: float64(per*rounds) / secs, added: math.NaN()}
		if t.base >= 0 {
			res.added = median(added)
		}
		rs = append(rs, res)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("tools/call echo, %d sequential calls per transport in %d rounds (load average %s)", per*rounds, rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	b.Logf("%-42s %9s %9s %12s %14s", "transport", "p50", "p99", "calls/s", "added at p50")
	for _, r := range rs {
		added := "baseline"
		if !math.IsNaN(r.added) {
			added = fmt.Sprintf("%+.3f ms", r.added)
		}
		b.Logf("%-42s %7.3fms %7.3fms %12.0f %14s", r.name, r.p50, r.p99, r.cps, added)
	}
	b.ReportMetric(rs[2].p50, "bridge-p50-ms")
	b.ReportMetric(rs[2].added, "bridge-added-p50-ms")
	b.ReportMetric(rs[3].added, "insandbox-added-p50-ms")
	b.ReportMetric(rs[4].added, "shim-added-p50-ms")
	b.ReportMetric(rs[2].cps, "bridge-calls/s")
}
