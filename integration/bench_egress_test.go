package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpClientBench is the client of BenchmarkEgress, run by the test binary
// itself (inside the sandbox, or on the host for the baseline): n
// sequential GETs on one kept-alive connection, then n on new connections.
// It prints "reuse-p50 reuse-p99 new-p50 new-p99 req/s" in microseconds.
func httpClientBench(url string) int {
	n, _ := strconv.Atoi(os.Getenv("DARKSHELL_TEST_HTTP_N"))
	if n <= 0 {
		n = 200
	}
	run := func(keep bool) ([]time.Duration, time.Duration) {
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: !keep}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		var ds []time.Duration
		start := time.Now()
		for range n {
			t0 := time.Now()
			resp, err := c.Get(url)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fmt.Fprintln(os.Stderr, "status", resp.Status)
				os.Exit(1)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		return ds, time.Since(start)
	}
	keep, total := run(true)
	fresh, _ := run(false)
	fmt.Printf("%d %d %d %d %.0f\n", pct(keep, 50).Microseconds(), pct(keep, 99).Microseconds(),
		pct(fresh, 50).Microseconds(), pct(fresh, 99).Microseconds(), float64(n)/total.Seconds())
	return 0
}

// BenchmarkEgress: HTTP through the sandbox's egress proxy (sandboxd relay,
// session, daemon's policy decision, resolution, dial) against the same
// client on the host reaching the same server directly.
func BenchmarkEgress(b *testing.B) {
	e := newLocalEnv(b)
	newEgressNet(b)
	pol := filepath.Join(b.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n      - { host: allowed.test, port: 8080 }\n"), 0o600)
	e.createLocal("bench", "--policy", pol)
	self, _ := os.Executable()
	bin, _ := os.ReadFile(self)
	ws := filepath.Join(e.home, "sandboxes", "bench", "workspace")
	if err := os.WriteFile(filepath.Join(ws, "client"), bin, 0o755); err != nil {
		b.Fatal(err)
	}
	os.Chown(filepath.Join(ws, "client"), 65000, 65000)
	runs := strconv.Itoa(benchRuns())
	out, errOut, code := e.ds("exec", "-e", "DARKSHELL_TEST_HTTP_CLIENT=http://allowed.test:8080/x", "-e", "DARKSHELL_TEST_HTTP_N="+runs, "bench", "--", "/sandbox/client")
	if code != 0 {
		b.Fatalf("client in the sandbox: %d %s %s", code, out, errOut)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "DARKSHELL_TEST_HTTP_CLIENT=http://"+egressPublicAddr+":8080/x", "DARKSHELL_TEST_HTTP_N="+runs,
		"HTTP_PROXY=", "http_proxy=")
	direct, err := cmd.Output()
	if err != nil {
		b.Fatalf("client on the host: %v", err)
	}
	f := func(s string) []float64 {
		var v []float64
		for _, x := range strings.Fields(s) {
			y, _ := strconv.ParseFloat(x, 64)
			v = append(v, y)
		}
		return v
	}
	p, d := f(out), f(string(direct))
	if len(p) != 5 || len(d) != 5 {
		b.Fatalf("client output: %q %q", out, direct)
	}
	fmt.Printf("\negress, %s requests each (µs; same server, same machine)\n", runs)
	fmt.Printf("%-34s %10s %10s %10s\n", "", "proxied", "direct", "added")
	for i, name := range []string{"request on a kept-alive conn p50", "request on a kept-alive conn p99", "request on a new connection p50", "request on a new connection p99"} {
		fmt.Printf("%-34s %10.0f %10.0f %10.0f\n", name, p[i], d[i], p[i]-d[i])
	}
	fmt.Printf("%-34s %10.0f %10.0f\n", "requests/s (one client)", p[4], d[4])
}
