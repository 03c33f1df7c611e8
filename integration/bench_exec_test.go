package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// BenchmarkExec measures `exec true` four ways against the same sshd, in one
// run, and prints p50/p99 and ratios (make bench-exec):
//   - api: through the warm daemon API (Go client, upgraded stream);
//   - cli: `darkshell exec s -- true` as a fresh process each time;
//   - ssh: a fresh `ssh host true` each time (full handshake);
//   - ssh-cm: `ssh` through a warm ControlMaster.
//
// The sshd sessions see an empty $HOME, so no shell start-up files run for
// either side.
func BenchmarkExec(b *testing.B) {
	e := newEnv(b)
	e.create("s")
	ctx := context.Background()
	n := benchRuns()
	sshArgs := []string{"-F", "/dev/null", "-i", e.sshd.ClientKey, "-p", strconv.Itoa(e.sshd.Port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes", e.sshd.User + "@127.0.0.1"}
	cm := filepath.Join(b.TempDir(), "cm")
	cmArgs := append([]string{"-o", "ControlMaster=auto", "-o", "ControlPath=" + cm, "-o", "ControlPersist=120"}, sshArgs...)
	defer exec.Command("ssh", append([]string{"-O", "exit"}, cmArgs...)...).Run()

	cases := []struct {
		name string
		n    int
		run  func() error
	}{
		{"api", n, func() error {
			p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"true"}})
			if err != nil {
				return err
			}
			defer p.Close()
			x, err := p.Wait(nil, nil)
			if err == nil && x.Status() != 0 {
				err = fmt.Errorf("status %d", x.Status())
			}
			return err
		}},
		{"cli", n, func() error {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "exec", "s", "--", "true")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
			return cmd.Run()
		}},
		{"ssh-cm", n, func() error { return exec.Command("ssh", append(cmArgs, "true")...).Run() }},
		{"ssh", min(n, 40), func() error { return exec.Command("ssh", append(sshArgs, "true")...).Run() }},
	}
	res := map[string][]time.Duration{}
	b.ResetTimer()
	for _, c := range cases {
		for range 3 { // warm up: daemon session, page cache, ControlMaster
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
		ds := make([]time.Duration, 0, c.n)
		for range c.n {
			t0 := time.Now()
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		res[c.name] = ds
		b.ReportMetric(float64(pct(ds, 50).Microseconds()), c.name+"-p50-µs")
	}
	b.StopTimer()
	p50 := func(k string) time.Duration { return pct(res[k], 50) }
	fmt.Printf("\nexec true, %d runs each (fresh ssh: %d)\n", n, len(res["ssh"]))
	fmt.Printf("%-8s %10s %10s\n", "mode", "p50", "p99")
	for _, c := range cases {
		fmt.Printf("%-8s %10s %10s\n", c.name, pct(res[c.name], 50).Round(time.Microsecond), pct(res[c.name], 99).Round(time.Microsecond))
	}
	fmt.Printf("ratios: cli/ssh-cm %.2fx, cli/ssh %.3fx, api/ssh-cm %.3fx\n",
		ratio(p50("cli"), p50("ssh-cm")), ratio(p50("cli"), p50("ssh")), ratio(p50("api"), p50("ssh-cm")))
	fmt.Printf("targets: api p50 < 2ms: %v; cli p50 < 10ms: %v; cli < ssh-cm: %v; cli < 0.2x ssh: %v\n",
		p50("api") < 2*time.Millisecond, p50("cli") < 10*time.Millisecond, p50("cli") < p50("ssh-cm"), ratio(p50("cli"), p50("ssh")) < 0.2)
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (len(ds) - 1) * p / 100
	return ds[i]
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// benchRuns is how many execs each mode measures (DARKSHELL_BENCH_RUNS, default 300).
func benchRuns() int {
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_BENCH_RUNS")); err == nil && v > 0 {
		return v
	}
	return 300
}
