// Package cpus decides how many OS threads run Go code at once
// (GOMAXPROCS) in DarkShell's long-running processes, the daemon and
// sandboxd.
//
// Those processes mostly relay small messages and fork commands. With
// several Ps, every hand-off between goroutines wakes an idle thread that
// then finds nothing to do, and a thread blocked in a system call has its
// P handed to another thread: on a virtual machine, where waking an idle
// vCPU is expensive, that was a dozen extra context switches and a few
// hundred µs per exec. So the processes run with one P (latency mode) and
// widen to every CPU while they do bulk work: when asked (Widen, around a
// sync) and when the monitor sees the process keep its one P busy.
//
// The GOMAXPROCS environment variable, when set, wins: the runtime keeps
// what it says and nothing here changes it.
package cpus

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

var (
	mu       sync.Mutex
	maxProcs = runtime.GOMAXPROCS(0) // what the runtime chose at start
	enabled  bool
	holds    int       // Widen calls not yet released
	busyTil  time.Time // the monitor's widening lasts until then
	wide     bool      // GOMAXPROCS is maxProcs now
)

// Monitor tuning: every sample period the process's CPU time is read; a
// period in which it used more than busyShare of one CPU widens for hold.
var (
	samplePeriod = 100 * time.Millisecond
	busyShare    = 0.8
	hold         = 2 * time.Second
)

// LatencyMode narrows GOMAXPROCS to one and starts the monitor. It does
// nothing when GOMAXPROCS is set in the environment, when
// DARKSHELL_LATENCY_MODE=0, or on a one-CPU machine. Call it once, early in
// main. Started with the environment Env gives, the process also keeps the
// runtime's monitor thread out of its deep sleep (see sysmon.go); the
// setting is removed from the environment here either way.
func LatencyMode() {
	forgetSysmon()
	if os.Getenv("GOMAXPROCS") != "" || os.Getenv("DARKSHELL_LATENCY_MODE") == "0" || maxProcs < 2 {
		return
	}
	mu.Lock()
	if enabled {
		mu.Unlock()
		return
	}
	enabled = true
	runtime.GOMAXPROCS(1)
	mu.Unlock()
	go monitor()
}

// Max is the number of CPUs bulk work may spread over: size worker pools
// with it, not with runtime.GOMAXPROCS(0), which is 1 in latency mode.
func Max() int { return maxProcs }

// Widen lets the process use every CPU until release is called. Calls
// nest; release is idempotent.
func Widen() (release func()) {
	mu.Lock()
	holds++
	apply()
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			holds--
			apply()
			mu.Unlock()
		})
	}
}

// apply sets GOMAXPROCS from holds and the monitor's verdict. Called with
// mu held.
func apply() {
	if !enabled {
		return
	}
	want := holds > 0 || time.Now().Before(busyTil)
	if want == wide {
		return
	}
	wide = want
	if want {
		runtime.GOMAXPROCS(maxProcs)
	} else {
		runtime.GOMAXPROCS(1)
	}
}

// monitor widens while the process keeps one CPU busy (many concurrent
// commands, a large output stream, encryption of bulk traffic) and
// narrows again hold after it stops. An idle process is sampled less
// often, down to every 10 sample periods, so a host with many idle
// sandboxes does not wake each sandboxd 10 times a second.
func monitor() {
	period := samplePeriod
	last, at := cpuTime(), time.Now()
	t := time.NewTimer(period)
	for now := range t.C {
		cur := cpuTime()
		used, elapsed := cur-last, now.Sub(at)
		last, at = cur, now
		mu.Lock()
		// Narrow or wide, a period that used more than busyShare
		// of one CPU keeps (or makes) the process wide for hold.
		if float64(used) > busyShare*float64(elapsed) {
			busyTil = now.Add(hold)
		}
		apply()
		mu.Unlock()
		if float64(used) < 0.05*float64(elapsed) {
			period = min(2*period, 10*samplePeriod)
		} else {
			period = samplePeriod
		}
		t.Reset(period)
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
