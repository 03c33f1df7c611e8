package localinit

import (
	"context"
	"errors"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/sandboxd/events"
)

// ProbeFDs are the descriptors of the sandbox's share of the host's eBPF
// probes, inherited from the controller: its ring buffer and knobs (package
// probes) and duplicates of the probe set's links, held so the probes stay
// attached while this sandbox runs even if the controller exits.
type ProbeFDs struct {
	Ring  int   `json:"ring"`
	Knobs int   `json:"knobs"`
	Links []int `json:"links"`
}

// keep reports whether fd is one of p's.
func (p *ProbeFDs) keep(fd int) bool {
	if p == nil {
		return false
	}
	if fd == p.Ring || fd == p.Knobs {
		return true
	}
	for _, l := range p.Links {
		if fd == l {
			return true
		}
	}
	return false
}

// openProbes takes over the probe descriptors (while bpf() is allowed: it
// asks the kernel what they are). Every one is made close-on-exec, so no
// sandbox process inherits them. Without descriptors (the controller could
// not load the probes: no privilege, or an old kernel) it returns nil and
// the server uses the procfs and inotify fallbacks.
func openProbes(p *ProbeFDs, log *slog.Logger) (*events.EBPF, *events.Hub) {
	if p == nil {
		log.Warn("no eBPF probes from the controller, falling back to procfs+inotify")
		return nil, nil
	}
	for _, fd := range append([]int{p.Ring, p.Knobs}, p.Links...) {
		unix.CloseOnExec(fd)
	}
	e, err := events.OpenEBPF(p.Ring, p.Knobs, log.With("component", "ebpf"))
	if err != nil {
		if errors.Is(err, events.ErrNotSupported) {
			log.Warn("eBPF tracing unavailable, falling back to procfs+inotify", "err", err)
		} else {
			log.Error("unable to read the eBPF probes, falling back to procfs+inotify", "err", err)
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
