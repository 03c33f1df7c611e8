package events

import (
	"context"
	"log/slog"

	"github.com/bohica-labs/darkshell/protocol"
)

// StartFallback starts the procfs source for sandboxd's descendants and the
// inotify source on roots, publishing into a new Hub, and returns it. Used
// where BPF cannot be loaded; note says why, and is announced to readers.
func StartFallback(ctx context.Context, roots []string, note string, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hello := protocol.EventsHello{
		Sources:  []string{protocol.SourceProcfs},
		Fidelity: protocol.FidelityPolled,
		Note:     note,
	}
	var ino *Inotify
	if len(roots) > 0 {
		var err error
		ino, err = NewInotify(roots, log)
		if err != nil {
			log.Warn("no inotify file events", "err", err)
		} else {
			hello.Sources = append(hello.Sources, protocol.SourceInotify)
			hello.FileFidelity = protocol.FidelityChanges
		}
	}
	hub := NewHub(0, hello)
	if pf, err := NewProcfs(0, 0, log); err != nil {
		log.Warn("no procfs process events", "err", err)
	} else {
		go func() {
			if err := pf.Run(ctx, hub); err != nil {
				log.Warn("procfs source ended", "err", err)
			}
		}()
	}
	if ino != nil {
		go func() {
			if err := ino.Run(ctx, hub); err != nil {
				log.Warn("inotify source ended", "err", err)
			}
		}()
	}
	return hub
}
