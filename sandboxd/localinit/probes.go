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
func loadProbes(log *slog.Logger) func() (*events.EBPF, *events.Hub) {
	start := time.Now()
	prep, err := events.PrepareEBPF()
	if err != nil {
		return func() (*events.EBPF, *events.Hub) { return probesFailed(log, err) }
	}
	type result struct {
		e   *events.EBPF
		err error
	}
	ch := make(chan result, 1)
	go func() {
		e, err := prep.Load(log.With("component", "ebpf"))
		ch <- result{e, err}
	}()
	return func() (*events.EBPF, *events.Hub) {
		r := <-ch
		// The kernel's BTF, decoded to load the probes, is garbage now:
		// give the memory back before the workload's limits apply.
		prep = nil
		debug.FreeOSMemory()
		if r.err != nil {
			return probesFailed(log, r.err)
		}
		log.Debug("eBPF probes loaded", "took", time.Since(start))
		return r.e, events.NewHub(0, r.e.Hello())
	}
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
