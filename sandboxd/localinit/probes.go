package localinit

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/bohica-labs/darkshell/sandboxd/events"
)

// loadProbes reads the kernel's BTF (from the host's /sys, so before the
// new root) and loads the eBPF trace probes in the background; the
// returned function waits for them and must be called before privileges
// are dropped. Without probes it returns (nil, nil) and the server uses
// the fallbacks.
//
// prepared (returned first) must be waited for before the root changes:
// decoding the kernel's BTF reads /sys. The collector is off while the
// BTF is decoded (it is all garbage afterwards, so collecting midway only
// costs time); the returned release gives the memory back and must run
// before the workload starts (it is quick to call right after ready).
func loadProbes(log *slog.Logger) (prepared func(), done func() (*events.EBPF, *events.Hub), release func()) {
	start := time.Now()
	gc := debug.SetGCPercent(-1)
	type result struct {
		e   *events.EBPF
		err error
	}
	prepCh := make(chan struct{})
	ch := make(chan result, 1)
	go func() {
		prep, err := events.PrepareEBPF()
		close(prepCh)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		e, err := prep.Load(log.With("component", "ebpf"))
		ch <- result{e, err}
	}()
	prepared = func() { <-prepCh }
	release = func() {
		debug.SetGCPercent(gc)
		debug.FreeOSMemory()
	}
	done = func() (*events.EBPF, *events.Hub) {
		r := <-ch
		if r.err != nil {
			return probesFailed(log, r.err)
		}
		log.Debug("eBPF probes loaded", "took", time.Since(start))
		return r.e, events.NewHub(0, r.e.Hello())
	}
	return prepared, done, release
}

func probesFailed(log *slog.Logger, err error) (*events.EBPF, *events.Hub) {
	if errors.Is(err, events.ErrNotSupported) {
		log.Warn("eBPF tracing unavailable, falling back to procfs+inotify", "err", err)
	} else {
		log.Error("unable to load eBPF probes, falling back to procfs+inotify", "err", err)
	}
	return nil, nil
}

// runProbes enables the probes and reads the ring buffer into hub until
// ctx ends; called after lock-down, it needs no bpf() (mmap and epoll only).
func runProbes(ctx context.Context, e *events.EBPF, hub *events.Hub, log *slog.Logger) {
	if e == nil {
		return
	}
	if err := e.Enable(); err != nil {
		log.Error("unable to enable the eBPF probes", "err", err)
		return
	}
	go func() {
		if err := e.Run(ctx, hub); err != nil {
			log.Error("eBPF event reader stopped", "err", err)
		}
	}()
}
