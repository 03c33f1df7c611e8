package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
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
	n := benchRuns()
	sshArgs := []string{"-F", "/dev/null", "-i", e.sshd.ClientKey, "-p", strconv.Itoa(e.sshd.Port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes", e.sshd.User + "@127.0.0.1"}
	cm := filepath.Join(b.TempDir(), "cm")
	cmArgs := append([]string{"-o", "ControlMaster=auto", "-o", "ControlPath=" + cm, "-o", "ControlPersist=120"}, sshArgs...)
	defer exec.Command("ssh", append([]string{"-O", "exit"}, cmArgs...)...).Run()

	cases := []latencyCase{
		{"api", n, func() error { return e.execTrue("s") }},
		{"cli", n, func() error {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "exec", "s", "--", "true")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
			return cmd.Run()
		}},
		{"ssh-cm", n, func() error { return exec.Command("ssh", append(cmArgs, "true")...).Run() }},
		{"ssh", min(n, 40), func() error { return exec.Command("ssh", append(sshArgs, "true")...).Run() }},
	}
	b.ResetTimer()
	res := latencies(b, cases)
	b.StopTimer()
	p50 := func(k string) time.Duration { return pct(res[k], 50) }
	printLatencies(fmt.Sprintf("exec true, %d runs each (fresh ssh: %d)", n, len(res["ssh"])), cases, res)
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
