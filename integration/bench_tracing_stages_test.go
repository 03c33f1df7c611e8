package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd/events"
)

// BenchmarkTracingStages splits the exec loop's tracing overhead by stage, in
// interleaved rounds of every mode: off (no probes); attached (probes
// loaded and scoped, but switched off: the attach cost and an idle
// reader); nofiles (process events only); deferred (every event, the
// reader started after the workload: the producers' cost without a
// reader competing for the CPUs); on (what bench-trace's "on" runs do).
// For each: the median wall time, the workload's own CPU and the reader's
// (up to the drain after the workload; not its close, once per sandbox).
// DARKSHELL_BENCH_RUNS: rounds (default 5); DARKSHELL_BENCH_STAGES: a
// comma-separated subset of the modes (default all). Not part of
// bench-trace (make bench-trace-stages).
func BenchmarkTracingStages(b *testing.B) {
	if os.Geteuid() != 0 {
		requireFeature(b, "root (loading eBPF)")
	}
	b.Logf("load average at start: %s", loadAvg())
	hub := events.NewHub(0, protocol.EventsHello{Sources: []string{protocol.SourceEBPF}, Fidelity: protocol.FidelityComplete})
	for i := range events.DefaultHistory {
		hub.Publish(protocol.Event{Kind: protocol.KindFork, PID: i + 2, PPID: 1, Comm: "prefill",
			Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete})
	}
	const n, par = 1500, 2
	script := execLoop(n, par)
	run := func(mode string) (wall, work, self time.Duration) {
		runtime.GC()
		if mode == "off" {
			c0 := cpuSelf()
			d, cpu := runInPidNSCPU(b, script, nil, nil)
			return d, cpu, cpuSelf() - c0
		}
		e, err := events.LoadEBPF(nil)
		if err != nil {
			requireFeature(b, "eBPF tracing: "+err.Error())
		}
		defer e.Close()
		debug.FreeOSMemory() // the loading's garbage, which sandboxd never has
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		c0 := cpuSelf()
		if mode != "deferred" {
			go func() { e.Run(ctx, hub); close(done) }()
		}
		scope := func(pid int) error {
			if err := e.ScopeToPID(pid); err != nil {
				return err
			}
			switch mode {
			case "attached":
				return e.Disable()
			case "nofiles":
				return e.SetFiles(false)
			}
			return nil
		}
		d, cpu := runInPidNSCPU(b, script, nil, scope)
		if mode == "deferred" {
			go func() { e.Run(ctx, hub); close(done) }()
		}
		time.Sleep(300 * time.Millisecond)
		self = cpuSelf() - c0 // not the reader's close: once per sandbox
		cancel()
		<-done
		return d, cpu, self
	}
	modes := []string{"off", "attached", "nofiles", "deferred", "on"}
	if m := os.Getenv("DARKSHELL_BENCH_STAGES"); m != "" {
		modes = strings.Split(m, ",")
	}
	s := map[string]*samples{}
	for _, m := range modes {
		s[m] = &samples{}
	}
	for round := range benchEnvInt("DARKSHELL_BENCH_RUNS", 5) {
		// Each round starts with another mode: a drift of the machine's
		// load favours none.
		for i := range modes {
			m := modes[(round+i)%len(modes)]
			d, work, self := run(m)
			s[m].add(d, work, self)
		}
	}
	base := s[modes[0]]
	var lines []string
	for _, m := range modes {
		w, c, r := spreadOf(s[m].wall).med, spreadOf(s[m].cpu).med, spreadOf(s[m].self).med
		lines = append(lines, fmt.Sprintf("    %-9s wall %.3f s (%+.1f%%), workload CPU %.3f s (%+.1f%%, %+.1f µs per exec), reader %.1f ms (%.1f µs per exec)",
			m, w.Seconds(), 100*(w.Seconds()/spreadOf(base.wall).med.Seconds()-1),
			c.Seconds(), 100*(c.Seconds()/spreadOf(base.cpu).med.Seconds()-1),
			float64((c-spreadOf(base.cpu).med).Microseconds())/float64(n*par),
			ms(r), float64(r.Microseconds())/float64(n*par)))
	}
	b.Logf("exec loop (%d execs of /bin/true, %d loops), medians of %d rounds (load average now %s):\n%s",
		n*par, par, len(base.wall), loadAvg(), strings.Join(lines, "\n"))
}
