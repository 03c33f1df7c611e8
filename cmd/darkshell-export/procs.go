package main

import (
	"os"
	"runtime"
)

// oneProc runs the helper's Go code on one thread at a time (GOMAXPROCS=1)
// unless $GOMAXPROCS says otherwise; it returns what GOMAXPROCS is then.
//
// Every event passes through several goroutines (the line reader, the
// manager's loop, each exporter's builder and sender). With one P per
// core, handing an event to a parked goroutine wakes another OS thread,
// which spins looking for work and parks again: bench-export counted 2-3
// context switches of the helper per traced exec, each a kernel wake-up on
// a core the sandbox's exec path wants. With one P the hand-offs are
// goroutine switches on the thread that is already running. The helper is
// a side-car that runs at a low priority: it has no use for a second core,
// and one busy thread is all it may take from the sandboxes.
func oneProc() int {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	return runtime.GOMAXPROCS(0)
}
