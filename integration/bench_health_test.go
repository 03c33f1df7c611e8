package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkHealth times the health round trip of a quiet local sandbox
// (every check: sandboxd round trip, cgroups, disk, proxy, DNS,
// confinement) through the daemon API and as a fresh `darkshell sandbox
// health` (make bench-health), beside a plain API exec for scale; it
// prints p50/p99 and the sandboxd round trip the report measured.
func BenchmarkHealth(b *testing.B) {
	e := newLocalEnv(b)
	newEgressNet(b) // the DNS check asks the test's own resolver, never the machine's
	e.createLocal("h")
	n := min(benchRuns(), 100)
	var rtt []time.Duration
	cases := []latencyCase{
		{"health-api", n, func() error {
			r, err := e.c.Health(context.Background(), "h")
			if err != nil {
				return err
			}
			if !r.Healthy {
				return fmt.Errorf("a quiet sandbox is unhealthy: %v", r.Failing)
			}
			for _, c := range r.Checks {
				if c.Name == "sandboxd" && c.Value > 0 {
					rtt = append(rtt, time.Duration(c.Value*float64(time.Millisecond)))
				}
			}
			return nil
		}},
		{"health-cli", n, func() error {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "sandbox", "health", "h")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}},
		{"exec-api", n, func() error { return e.execTrue("h") }},
	}
	b.ResetTimer()
	res := latencies(b, cases)
	b.StopTimer()
	printLatencies(fmt.Sprintf("local sandbox health, %d runs each", n), cases, res)
	if len(rtt) > 0 {
		slices.Sort(rtt)
		fmt.Printf("sandboxd round trip inside the report: p50 %s\n", pct(rtt, 50).Round(time.Microsecond))
	}
}
