package cpus

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
)

// The Go runtime's monitor thread (sysmon) goes into a deep sleep whenever
// every P is idle, and the next goroutine to enter a system call wakes it;
// woken that way, it polls every 20 µs until the process is idle again. A
// latency-mode process is idle between every two steps of an exec (waiting
// for the request, for the child to exit, for the peer), so each exec paid
// for several of those wake-ups: measured on the 2-vCPU VM this was built
// on, sysmon was 58 % of sandboxd's context switches, and keeping it out of
// the deep sleep cut them from 14-18 to 5-6 per exec and sandboxd's CPU per
// exec by about 40 %. Out of the deep sleep, sysmon backs off to one
// wake-up every 10 ms while nothing needs it.
//
// The price is paid while idle: an awake sysmon wakes 100 times a second,
// which measured 4-4.5 ms of CPU per second per process there (against
// about 0.5 ms asleep), for the daemon (which an auto-started daemon pays
// until its 30-minute idle timeout) and each sandbox's sandboxd.
// DARKSHELL_SYSMON_AWAKE=0 where the processes start (in the daemon's
// environment for local sandboxes) keeps the deep sleep, for many mostly
// idle sandboxes on one host, and latency mode's one P.
//
// The runtime's one switch for that is a GODEBUG schedtrace period, read
// only at start-up. A period of 2^31-1 ms (24.8 days) keeps sysmon awake
// and prints a scheduler summary to stderr only on a fatal error and, on a
// machine up longer than 24.8 days, once per 24.8 days.
const sysmonAwake = "schedtrace=2147483647"

// wanted reports whether latency mode is on, and sysmon to stay awake, for
// a process with env.
func wanted(env []string) bool {
	get := func(k string) string {
		for _, kv := range slices.Backward(env) {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	// The opt-outs count from the child's environment or this process's
	// (the local driver builds init's environment from nothing).
	off := func(k string) bool { return get(k) == "0" || os.Getenv(k) == "0" }
	return get("GOMAXPROCS") == "" && !off("DARKSHELL_LATENCY_MODE") && !off("DARKSHELL_SYSMON_AWAKE") &&
		runtime.NumCPU() >= 2
}

// Env returns env, the environment of a child that will call LatencyMode
// (the daemon, a sandboxd agent or init), with the runtime setting latency
// mode wants added to GODEBUG. The child's LatencyMode removes it again, so
// nothing it starts inherits it. env is returned as is when latency mode is
// off for it (GOMAXPROCS set, DARKSHELL_LATENCY_MODE=0, one CPU) or sysmon
// may sleep (DARKSHELL_SYSMON_AWAKE=0).
func Env(env []string) []string {
	if !wanted(env) {
		return env
	}
	out := make([]string, 0, len(env)+1)
	godebug := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v // the last one wins, as for the runtime
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GODEBUG="+withSysmon(godebug))
}

// withSysmon adds the setting to a GODEBUG value, once.
func withSysmon(godebug string) string {
	if slices.Contains(strings.Split(godebug, ","), sysmonAwake) {
		return godebug
	}
	if godebug == "" {
		return sysmonAwake
	}
	return godebug + "," + sysmonAwake
}

// withoutSysmon removes the setting from a GODEBUG value.
func withoutSysmon(godebug string) string {
	return strings.Join(slices.DeleteFunc(strings.Split(godebug, ","), func(s string) bool {
		return s == sysmonAwake || s == ""
	}), ",")
}

// startedAwake: this process started with the setting Env adds
// (LatencyMode removes it from the environment, not from the runtime).
var startedAwake = slices.Contains(strings.Split(os.Getenv("GODEBUG"), ","), sysmonAwake)

// forgetSysmon removes the setting from this process's environment, so
// commands it starts do not inherit it. The runtime read it at start-up and
// keeps it.
func forgetSysmon() {
	v, ok := os.LookupEnv("GODEBUG")
	if !ok || !startedAwake {
		return
	}
	if v = withoutSysmon(v); v == "" {
		os.Unsetenv("GODEBUG")
	} else {
		os.Setenv("GODEBUG", v)
	}
}

// Reexec runs this program again, same arguments, with the environment Env
// gives, when latency mode is on and the process did not start with it. It
// returns only when there is nothing to do or the exec failed (the process
// then runs on without the setting). For long-lived processes started by
// hand (`darkshell daemon run`); spawners use Env and save the exec.
func Reexec() {
	env := os.Environ()
	if startedAwake || !wanted(env) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, Env(env))
}
