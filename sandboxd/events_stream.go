package sandboxd

import (
	"context"
	"io"
	"sync"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd/events"
)

// eventsState is the server's event hub: given at New (eBPF loaded by init
// before lock-down), or the procfs+inotify fallback started on the first
// events stream and kept for the server's life, so later streams get the
// history.
type eventsState struct {
	once sync.Once
	hub  *events.Hub
}

// fallbackNote is announced on streams served by the fallback sources.
const fallbackNote = "eBPF probes not loaded in this sandbox (unprivileged sandboxd): processes are polled from /proc and file changes come from inotify on the workspace"

func (s *Server) eventsHub() *events.Hub {
	s.ev.once.Do(func() {
		if s.ev.hub != nil {
			return
		}
		// The sources live as long as the process: a finished tree stays traceable.
		s.ev.hub = events.StartFallback(context.Background(), []string{s.dir}, fallbackNote, s.log.With("component", "events"))
	})
	return s.ev.hub
}

// serveEvents serves one events stream (FrameEvents).
func (s *Server) serveEvents(ctx context.Context, st io.ReadWriter, f protocol.Frame) error {
	var req protocol.EventsRequest
	if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
		return err
	}
	return s.eventsHub().Serve(ctx, st, &req)
}

// eventFidelity is the hello's event_fidelity: the best source available.
func eventFidelity(hub *events.Hub) string {
	if hub != nil {
		return protocol.SourceEBPF
	}
	return protocol.SourceProcfs
}
