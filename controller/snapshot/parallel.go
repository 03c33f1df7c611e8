package snapshot

import (
	"context"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"sync"
)

// forEach is the worker loop of captures and restores: it hands every
// index of jobs to one of workers goroutines (<= 0: twice the CPUs, as
// chunk reads and writes wait on the disk), each running the function
// newWorker made for it (per-worker buffers live in its closure). It
// stops handing out work when ctx ends, waits for the workers, and
// returns ctx's error, else the first error a job returned (the other
// jobs still run: a capture reports its first unreadable file).
func forEach(ctx context.Context, workers int, jobs []int, newWorker func() func(i int) error) error {
	if workers <= 0 {
		workers = 2 * cpus.Max()
	}
	defer cpus.Widen()() // hashing and zstd spread over every CPU
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range workers {
		do := newWorker()
		wg.Go(func() {
			for i := range work {
				if err := do(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, i := range jobs {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return firstErr
}
