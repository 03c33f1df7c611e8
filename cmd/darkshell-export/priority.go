package main

import (
	"os"
	"strconv"
	"syscall"
)

// defaultNice is the helper's CPU niceness: export is background work and
// must not take CPU from sandboxes when the machine is busy (on an idle
// one it changes nothing). Its queues are bounded: a helper that falls
// behind drops and counts, as for a slow backend. DARKSHELL_EXPORT_NICE
// overrides it (0: as the daemon).
const defaultNice = 10

// lowerPriority makes every thread of this process nice n. Linux keeps
// niceness per thread and a new thread takes its creator's, so renicing
// the threads that exist (again until none is new) covers those to come.
func lowerPriority(n int) error {
	if n <= 0 {
		return nil
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
			// Raising one's own niceness needs no privilege.
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
				return err
			}
			done[tid] = true
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// niceness is $DARKSHELL_EXPORT_NICE, or defaultNice.
func niceness() int {
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_EXPORT_NICE")); err == nil {
		return min(max(v, 0), 19)
	}
	return defaultNice
}
