package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultNice is the helper's CPU niceness when it runs SCHED_BATCH (the
// default class) or SCHED_OTHER. DARKSHELL_EXPORT_NICE overrides it (0: as
// the daemon).
const defaultNice = 10

// Scheduling classes of the helper ($DARKSHELL_EXPORT_SCHED).
const (
	// schedIdle: every thread runs SCHED_IDLE. Export is
	// background work: a sandbox's task (or the daemon's) that wakes on a
	// core the helper runs on preempts it at once, and the helper runs on
	// what the machine leaves. Nice 10 does not promise that: under EEVDF
	// a nice-10 task that is on a core keeps it for its slice, and each
	// exec's wake-ups of the daemon, sandboxd and the process wait behind
	// it. On an idle machine it changes nothing. The queues that lead to
	// the helper are bounded (the daemon's subscription drops and counts
	// when the helper falls behind, as for a slow backend), so a starved
	// helper never holds a sandbox back. It is not the default:
	// bench-export showed no gain over nice 10 beyond the noise (the cost
	// left is the helper's and the backends' CPU on a small machine, not
	// wake-up latency), and on a machine busy for long a SCHED_IDLE task
	// gets about 0.3 % of a core (weight 3 against 1024; nice 10: 110), so
	// the helper would fall behind and drop where nice 10 keeps up.
	// schedBatch keeps nice 10's share and gives up wake-up preemption.
	schedIdle = "idle"
	// schedBatch (the default): SCHED_BATCH at the niceness of
	// $DARKSHELL_EXPORT_NICE. It has SCHED_OTHER's CPU share at that
	// niceness (nice 10: weight 110 against 1024, enough to keep up on a
	// machine busy for long, unlike SCHED_IDLE), but a helper thread that
	// wakes never preempts the task on the core: the scheduler treats it
	// as CPU-bound background work and lets the tick decide. The helper
	// wakes for every pipe write of the daemon and its runtime's monitor
	// thread (sysmon) polls every 20-40 µs while it works (perf:
	// sysmon's nanosleeps were about half of the helper's context
	// switches during bench-export's traced loops); in SCHED_OTHER each of
	// those wake-ups may preempt the sandbox's exec path on the core it
	// lands on, in SCHED_BATCH none does. Any process may move its own
	// threads between SCHED_OTHER and SCHED_BATCH at the same niceness.
	schedBatch = "batch"
	// schedNormal: SCHED_OTHER at the niceness of $DARKSHELL_EXPORT_NICE
	// (the default before SCHED_BATCH).
	schedNormal = "normal"
)

// lowerPriority puts every thread of this process in the scheduling
// class sched (schedBatch, schedIdle or schedNormal) at niceness nice. Linux keeps
// both per thread and a new thread takes its creator's, so setting the
// threads that exist (again until none is new) covers those to come, the
// Go runtime's included.
func lowerPriority(sched string, nice int) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Nice: int32(nice)}
	switch sched {
	case schedIdle:
		attr.Policy = unix.SCHED_IDLE
	case schedBatch:
		attr.Policy = unix.SCHED_BATCH
	case schedNormal:
		if nice <= 0 {
			return nil
		}
		attr.Policy = unix.SCHED_NORMAL
	default:
		return fmt.Errorf("DARKSHELL_EXPORT_SCHED=%q: want %q, %q or %q", sched, schedBatch, schedIdle, schedNormal)
	}
	done := map[int]bool{}
	for range 4 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh++
			// Lowering one's own priority needs no privilege.
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
				return fmt.Errorf("sched_setattr on thread %d: %w", tid, err)
			}
			done[tid] = true
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// schedClass is $DARKSHELL_EXPORT_SCHED, or schedBatch.
func schedClass() string {
	if v := strings.TrimSpace(os.Getenv("DARKSHELL_EXPORT_SCHED")); v != "" {
		return strings.ToLower(v)
	}
	return schedBatch
}

// niceness is $DARKSHELL_EXPORT_NICE, or defaultNice.
func niceness() int {
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_EXPORT_NICE")); err == nil {
		return min(max(v, 0), 19)
	}
	return defaultNice
}
