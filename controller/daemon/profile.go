package daemon

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the daemon to
// $DARKSHELL_DAEMON_CPUPROFILE.PID while it serves (off when unset), for
// finding what a feature costs per exec (benchmarks set it); the returned
// function ends it.
func (d *Daemon) startProfile() func() {
	base := os.Getenv("DARKSHELL_DAEMON_CPUPROFILE")
	if base == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", base, os.Getpid()))
	if err != nil {
		d.log.Warn("cpu profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		d.log.Warn("cpu profile", "err", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
