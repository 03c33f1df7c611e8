package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) the process pid has used,
// or 0 when it is gone.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(ut+st) * clockTick
}

// findProcs returns the pids of the processes whose command line contains
// every one of words and, with env set, whose environment holds env.
func findProcs(env string, words ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
next:
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, w := range words {
			if !bytes.Contains(cmd, []byte(w)) {
				continue next
			}
		}
		if env != "" {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if err != nil || !bytes.Contains(append([]byte{0}, b...), []byte("\x00"+env+"\x00")) {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// syncCPU measures the CPU a darkshell sync costs on each end: the daemon
// of installation home and the sandboxd agent under the sandbox's home.
type syncCPU struct{ daemon, sandboxd []int }

func newSyncCPU(home, sbHome string) *syncCPU {
	return &syncCPU{
		daemon:   findProcs("DARKSHELL_HOME="+home, "darkshell", "daemon"),
		sandboxd: findProcs("", sbHome, "sandboxd", "agent"),
	}
}

// read returns the CPU used so far by the daemon and by sandboxd.
func (s *syncCPU) read() (daemon, sandboxd time.Duration) {
	for _, p := range s.daemon {
		daemon += procCPU(p)
	}
	for _, p := range s.sandboxd {
		sandboxd += procCPU(p)
	}
	return daemon, sandboxd
}

// parseTimes reads the children's line of the shell builtin `times`
// ("0m0.120s 0m0.450s", the second line) as user + system CPU.
func parseTimes(out string) time.Duration {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return 0
	}
	var sum time.Duration
	for _, f := range strings.Fields(lines[len(lines)-1]) {
		m, s, ok := strings.Cut(strings.TrimSuffix(f, "s"), "m")
		if !ok {
			return 0
		}
		mi, err1 := strconv.Atoi(m)
		sf, err2 := strconv.ParseFloat(s, 64)
		if err1 != nil || err2 != nil {
			return 0
		}
		sum += time.Duration(mi)*time.Minute + time.Duration(sf*float64(time.Second))
	}
	return sum
}
