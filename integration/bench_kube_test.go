package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkKubeExec measures `exec true` on a kubernetes sandbox three ways
// in one run (make bench-kube): through the warm daemon API, as a fresh
// `darkshell exec` process, and as `kubectl exec POD -- true` (the engine's
// own exec: an apiserver round trip and a new CRI exec every time). Then
// create-to-first-exec of a new sandbox (Pod start + sandboxd push).
func BenchmarkKubeExec(b *testing.B) {
	e, k := newKubeEnv(b)
	if out, errOut, code := e.ds(append([]string{"sandbox", "create", "kb"}, kubeArgs(k)...)...); code != 0 {
		b.Fatalf("create: %d %s %s", code, out, errOut)
	}
	r := kubeRec(b, e, "kb")
	n := benchRuns()
	cases := []latencyCase{
		{"api", n, func() error { return e.execTrue("kb") }},
		{"cli", n, func() error {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "exec", "kb", "--", "true")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
			return cmd.Run()
		}},
		{"kubectl", min(n, 50), func() error {
			return exec.Command(k.kubectl, "--kubeconfig", k.kubeconfig, "-n", r.Extra.Namespace, "exec", r.Extra.Pod, "--", "true").Run()
		}},
	}
	b.ResetTimer()
	res := latencies(b, cases)
	var creates []time.Duration
	for i := range 3 {
		name := fmt.Sprintf("kc%d", i)
		t0 := time.Now()
		if out, errOut, code := e.ds(append([]string{"sandbox", "create", name}, kubeArgs(k)...)...); code != 0 {
			b.Fatalf("create: %d %s %s", code, out, errOut)
		}
		if _, errOut, code := e.ds("exec", name, "--", "true"); code != 0 {
			b.Fatalf("first exec: %s", errOut)
		}
		creates = append(creates, time.Since(t0))
		e.ds("sandbox", "delete", name)
	}
	slices.Sort(creates)
	b.StopTimer()
	p50 := func(k string) time.Duration { return pct(res[k], 50) }
	printLatencies(fmt.Sprintf("kubernetes driver: exec true, %d runs each (kubectl: %d)", n, len(res["kubectl"])), cases, res)
	fmt.Printf("ratios: api/kubectl %.4fx, cli/kubectl %.3fx\n", ratio(p50("api"), p50("kubectl")), ratio(p50("cli"), p50("kubectl")))
	fmt.Printf("create to first exec (Pod start + sandboxd push), 3 runs: p50 %s, max %s\n", creates[1].Round(time.Millisecond), creates[2].Round(time.Millisecond))
}

// BenchmarkKubeSync: the bench corpus (gen-corpus.py, 2 GiB and ~30k
// files at scale 1; DARKSHELL_BENCH_SCALE for less) into a Pod with
// `darkshell sync` vs `kubectl cp`, then a re-sync after a one-file change
// (kubectl cp has no delta: it copies everything again).
func BenchmarkKubeSync(b *testing.B) {
	e, k := newKubeEnv(b)
	src := benchCorpus(b)
	if out, errOut, code := e.ds(append([]string{"sandbox", "create", "ks"}, kubeArgs(k)...)...); code != 0 {
		b.Fatalf("create: %d %s %s", code, out, errOut)
	}
	r := kubeRec(b, e, "ks")
	kubectl := func(args ...string) time.Duration {
		t0 := time.Now()
		cmd := exec.Command(k.kubectl, append([]string{"--kubeconfig", k.kubeconfig, "-n", r.Extra.Namespace}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("kubectl %v: %v %s", args, err, out)
		}
		return time.Since(t0)
	}
	sync := func() time.Duration {
		t0 := time.Now()
		if out, errOut, code := e.ds("sync", "ks", src+":/sandbox/ds", "--no-git-ignore"); code != 0 {
			b.Fatalf("sync: %d %s %s", code, out, errOut)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	dsInit := sync()
	kcInit := kubectl("cp", src, r.Extra.Pod+":/sandbox/kc")
	// Both copies hold the whole tree.
	count := func(dir string) string {
		out, _, _ := e.ds("exec", "ks", "--sh", "--", "find "+dir+" -type f | wc -l")
		return out
	}
	if a, c := count("/sandbox/ds"), count("/sandbox/kc"); a != c {
		b.Fatalf("file counts differ: darkshell %s, kubectl cp %s", a, c)
	}
	dsNone := sync()
	f := filepath.Join(src, "darkshell-bench-touch.txt")
	os.WriteFile(f, []byte(time.Now().String()), 0o644)
	defer os.Remove(f)
	dsSmall := sync()
	kcAgain := kubectl("cp", src, r.Extra.Pod+":/sandbox/kc2")
	b.StopTimer()
	fmt.Printf("\nkubernetes driver: sync of %s into a Pod\n", src)
	fmt.Printf("%-34s %10s\n", "initial: darkshell sync", dsInit.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "initial: kubectl cp", kcInit.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "no change: darkshell sync", dsNone.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "one file changed: darkshell sync", dsSmall.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "again: kubectl cp (no delta)", kcAgain.Round(time.Millisecond))
	fmt.Printf("ratios: initial %.2fx, one-file re-sync vs kubectl cp again %.4fx\n", ratio(dsInit, kcInit), ratio(dsSmall, kcAgain))
}
