package process

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// owned is the set of pids this package started and will reap itself. A
// PID 1 reaper (ReapOrphans) must leave them alone, or cmd.Wait would lose
// their exit status. The lock is held across fork and registration, so a
// child that exits at once is never mistaken for an orphan.
var owned = struct {
	sync.Mutex
	pids map[int]struct{}
}{pids: map[int]struct{}{}}

// startWrapper, if set, wraps every start (see SetStartWrapper).
var startWrapper func(start func() error) error

// SetStartWrapper makes every command start through f, which must call
// start (the fork and exec, done on the calling goroutine's thread) and
// return its error. The local driver uses it to fork from a thread that is
// in the workload cgroup, so the child is born there. Call it before serving.
func SetStartWrapper(f func(start func() error) error) { startWrapper = f }

// spawnCh feeds the spawner thread.
var (
	spawnOnce sync.Once
	spawnCh   = make(chan func())
)

// OnSpawnThread runs f on the one OS thread every command is forked from.
// Credentials, and with them a Landlock domain, are per thread: below
// Landlock ABI 8 every thread of a Go program restricted itself into a
// sibling domain, and a process may only inspect (ptrace-mode access to
// /proc/PID/fd, exe) processes of its own domain or a nested one. Forking
// and inspecting from the same thread keeps every command in the
// inspector's domain.
func OnSpawnThread(f func()) {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays the spawner
			for g := range spawnCh {
				g()
			}
		}()
	})
	done := make(chan struct{})
	spawnCh <- func() { f(); close(done) }
	<-done
}

// anyThread lets commands fork from any thread (see ForkFromAnyThread).
var anyThread atomic.Bool

// ForkFromAnyThread lets commands fork from the thread that serves the
// request, saving the hand-off to the spawner thread (tens of µs per exec).
// Only for a process whose threads share one set of credentials and one
// Landlock domain (sandboxd serve and agent, confined as a whole from
// outside; not sandboxd init, which restricts itself thread by thread), and
// where no goroutine exits locked to its thread: Pdeathsig fires when the
// forking thread ends, and the Go runtime ends a thread only then.
func ForkFromAnyThread() { anyThread.Store(true) }

// startOwned starts cmd (on the spawner thread unless ForkFromAnyThread)
// and registers its pid as owned.
func startOwned(cmd *exec.Cmd) error {
	owned.Lock()
	defer owned.Unlock()
	var err error
	start := func() {
		if startWrapper != nil {
			err = startWrapper(cmd.Start)
		} else {
			err = cmd.Start()
		}
	}
	if anyThread.Load() && startWrapper == nil {
		start()
	} else {
		OnSpawnThread(start)
	}
	if err != nil {
		return err
	}
	owned.pids[cmd.Process.Pid] = struct{}{}
	return nil
}

// disown forgets pid once it was reaped by its owner.
func disown(pid int) {
	owned.Lock()
	delete(owned.pids, pid)
	owned.Unlock()
}

// ReapOrphans reaps zombie children of this process that this package did
// not start: processes re-parented to sandboxd when it runs as PID 1 of a
// sandbox. It returns how many it reaped. Call it on SIGCHLD.
//
// Most SIGCHLDs are for commands whose own Wait reaps them, so it first
// peeks (waitid WNOWAIT): no zombie means nothing to do, a zombie that is
// not ours is reaped at once; only a zombie of ours, which may hide orphans
// behind it, costs a scan of /proc.
func ReapOrphans() int {
	owned.Lock()
	defer owned.Unlock()
	n := 0
	for {
		pid, ok := peekZombie()
		if !ok {
			return n
		}
		if _, mine := owned.pids[pid]; mine {
			return n + scanOrphans()
		}
		var ws syscall.WaitStatus
		if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p != pid {
			return n
		}
		n++
	}
}

// peekZombie returns a child that has exited, without reaping it.
func peekZombie() (int, bool) {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		return 0, false
	}
	pid := int(siginfoPid(&info))
	return pid, pid > 0
}

// scanOrphans reaps every zombie in /proc whose parent is this process and
// that is not owned. Called with owned locked.
func scanOrphans() int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if _, ok := owned.pids[pid]; ok {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(self) {
			continue
		}
		var ws syscall.WaitStatus
		if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p == pid {
			n++
		}
	}
	return n
}
