package localinit

import (
	"context"
	"errors"
	"log/slog"

	"github.com/bohica-labs/darkshell/sandboxd/events"
)

// loadProbes loads the eBPF trace probes; it must run before privileges
// are dropped. Without them (nil, nil) the server uses the fallbacks.
func loadProbes(log *slog.Logger) (*events.EBPF, *events.Hub) {
	e, err := events.LoadEBPF(log.With("component", "ebpf"))
	if err != nil {
		if errors.Is(err, events.ErrNotSupported) {
			log.Warn("eBPF tracing unavailable, falling back to procfs+inotify", "err", err)
		} else {
			log.Error("unable to load eBPF probes, falling back to procfs+inotify", "err", err)
		}
		return nil, nil
	}
	return e, events.NewHub(0, e.Hello())
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
