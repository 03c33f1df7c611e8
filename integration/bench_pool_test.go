package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/protocol"
)

// agentSandboxWarmClaimP50 is the published anchor: agent-sandbox's warm
// claim p50 on Kubernetes.
const agentSandboxWarmClaimP50 = 92 * time.Millisecond

// poolBench times create to first exec completed (through the daemon API,
// as DarkClaw creates sandboxes) n times with a warm pool (a claim) and
// cold times without one (a boot), interleaved in one run. Before each
// warm create the pool is back to full, so a claim never waits on a refill.
func poolBench(b *testing.B, e *env, drv string, opts driver.CreateOptions, n, cold int) (warm, boot []time.Duration) {
	b.Helper()
	ctx := context.Background()
	const pool = "benchpool"
	if _, err := e.c.PoolSet(ctx, &api.PoolSpec{Name: pool, Driver: drv, Size: 2, Options: opts}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.c.PoolDelete(context.Background(), pool) })
	full := func() {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			st, err := e.c.PoolGet(ctx, pool)
			if err != nil {
				b.Fatal(err)
			}
			if st.Ready == st.Size && st.Starting == 0 {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("pool not refilled: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	one := func(name, label string) time.Duration {
		t0 := time.Now()
		v, err := e.c.Create(ctx, &api.CreateRequest{Name: name, Driver: drv, CreateOptions: opts, Labels: map[string]string{"darkshell.blueprint": label}})
		if err != nil {
			b.Fatal(err)
		}
		p, err := e.c.Exec(ctx, name, &protocol.ExecStart{Argv: []string{"true"}})
		if err != nil {
			b.Fatal(err)
		}
		x, err := p.Wait(nil, nil)
		p.Close()
		if err != nil || x.Status() != 0 {
			b.Fatalf("first exec in %s: %v %v", name, err, x)
		}
		d := time.Since(t0)
		if (v.Pool == pool) != (label == pool) {
			b.Fatalf("%s: claimed from %q, want a claim only from %s", name, v.Pool, pool)
		}
		if err := e.c.Delete(ctx, name); err != nil {
			b.Fatal(err)
		}
		return d
	}
	for i := range n {
		full()
		warm = append(warm, one(fmt.Sprintf("pw-%d", i), pool))
		if i < cold {
			boot = append(boot, one(fmt.Sprintf("pc-%d", i), "no-pool"))
		}
	}
	slices.Sort(warm)
	slices.Sort(boot)
	return warm, boot
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// BenchmarkPool (make bench-pool): create to first exec with a warm pool
// vs without, on the local driver and on the kubernetes test cluster, side
// by side with agent-sandbox's published warm claim p50 (92 ms), with
// ratios. The local figures print before the cluster starts.
func BenchmarkPool(b *testing.B) {
	n := benchRuns()
	type row struct {
		what       string
		warm, boot []time.Duration
	}
	var rows []row
	print := func() {
		fmt.Printf("\ncreate to first exec, warm pool (claim) vs none (boot); load average %s\n", loadAvg())
		fmt.Printf("%-12s %10s %10s %10s %10s %12s %14s\n", "driver", "pool p50", "pool p99", "boot p50", "boot p99", "pool/boot", "pool/anchor")
		for _, r := range rows {
			w, c := pct(r.warm, 50), pct(r.boot, 50)
			fmt.Printf("%-12s %10s %10s %10s %10s %11.3fx %13.3fx\n", r.what, w.Round(time.Microsecond), pct(r.warm, 99).Round(time.Microsecond),
				c.Round(time.Microsecond), pct(r.boot, 99).Round(time.Microsecond), ratio(w, c), ratio(w, agentSandboxWarmClaimP50))
		}
		fmt.Printf("anchor: agent-sandbox warm claim p50 on Kubernetes %s (published)\n", agentSandboxWarmClaimP50)
	}
	{
		e := newLocalEnv(b)
		if _, err := e.c.Version(context.Background()); err != nil {
			b.Fatal(err)
		}
		w, c := poolBench(b, e, "local", driver.CreateOptions{}, n, n)
		rows = append(rows, row{"local", w, c})
		b.ReportMetric(float64(pct(w, 50).Microseconds()), "local-pool-p50-µs")
		fmt.Printf("local: %d claims, %d boots (runs of %d)", len(w), len(c), n)
		print()
	}
	if os.Getenv("DARKSHELL_BENCH_POOL_KUBE") == "0" {
		return
	}
	e, k := newKubeEnv(b)
	kn := min(n, 30)
	w, c := poolBench(b, e, "kubernetes", driver.CreateOptions{Image: kubeImage,
		DriverOpts: map[string]string{"kubeconfig": k.kubeconfig, "pull-policy": "Never"}}, kn, min(kn, 5))
	rows = append(rows, row{"kubernetes", w, c})
	b.ReportMetric(float64(pct(w, 50).Microseconds()), "kube-pool-p50-µs")
	fmt.Printf("kubernetes: %d claims, %d boots", len(w), len(c))
	print()
}
