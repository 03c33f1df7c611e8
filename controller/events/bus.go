package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// DefaultQueue is a subscriber's queue length.
const DefaultQueue = 4096

// Bus is the daemon's event bus: per sandbox, one pump reads sandboxd's
// events stream and publishes into the bus; the bus hands every event to
// the sandbox's host log and to every subscriber, through bounded queues.
type Bus struct {
	logDir string // per-sandbox logs go to logDir/<sandbox>/events.jsonl
	log    *slog.Logger

	mu    sync.Mutex
	sbs   map[string]*sandboxBus
	all   map[*Sub]struct{} // subscribers to every sandbox (exporters)
	lines map[*LineSub]struct{}
	close bool
}

type sandboxBus struct {
	subs    map[*Sub]struct{}
	log     *Log
	noLog   bool // the log could not be opened (warned once)
	pumping bool
	lastSeq uint64
	epoch   int64
	hello   protocol.EventsHello
	lost    uint64
}

// Sub is one subscriber. Read C; Skipped counts events dropped because the
// subscriber was slow.
type Sub struct {
	C       chan protocol.Event
	skipped atomic.Uint64
	bus     *Bus
	name    string
	every   bool
	once    sync.Once
}

// Skipped is how many events this subscriber missed because its queue was full.
func (s *Sub) Skipped() uint64 { return s.skipped.Load() }

// Close unsubscribes.
func (s *Sub) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		if s.every {
			delete(s.bus.all, s)
		} else if sb := s.bus.sbs[s.name]; sb != nil {
			delete(sb.subs, s)
		}
		s.bus.mu.Unlock()
	})
}

// NewBus returns a bus writing host logs under logDir.
func NewBus(logDir string, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{logDir: logDir, log: log, sbs: map[string]*sandboxBus{}, all: map[*Sub]struct{}{}, lines: map[*LineSub]struct{}{}}
}

// LogDir is the host log directory of sandbox name.
func (b *Bus) LogDir(name string) string { return filepath.Join(b.logDir, name) }

func (b *Bus) sandbox(name string) *sandboxBus {
	sb := b.sbs[name]
	if sb == nil {
		sb = &sandboxBus{subs: map[*Sub]struct{}{}}
		b.sbs[name] = sb
	}
	return sb
}

// openLog opens sandbox name's host event log if it is not open (b.mu held).
func (b *Bus) openLog(name string, sb *sandboxBus) {
	if sb.log != nil || sb.noLog {
		return
	}
	lg, err := OpenLog(b.LogDir(name), 0, 0)
	if err != nil {
		sb.noLog = true // said once
		b.log.Warn("no host event log", "sandbox", name, "err", err)
		return
	}
	sb.log = lg
}

// Subscribe returns a subscriber to sandbox name's events (queue <= 0:
// DefaultQueue).
func (b *Bus) Subscribe(name string, queue int) *Sub {
	if queue <= 0 {
		queue = DefaultQueue
	}
	s := &Sub{C: make(chan protocol.Event, queue), bus: b, name: name}
	b.mu.Lock()
	b.sandbox(name).subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// SubscribeAll returns a subscriber to the events of every sandbox (queue
// <= 0: DefaultQueue). Exporters use it: like every subscriber, a full
// queue drops (and counts) instead of blocking Publish.
func (b *Bus) SubscribeAll(queue int) *Sub {
	if queue <= 0 {
		queue = DefaultQueue
	}
	s := &Sub{C: make(chan protocol.Event, queue), bus: b, every: true}
	b.mu.Lock()
	b.all[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// LineSub is a subscriber to every sandbox's events as JSON lines: the
// very bytes the host log got (Encoded.Line), shared, so they must not be
// written to. Skipped counts lines dropped because the subscriber was slow.
type LineSub struct {
	C       chan []byte
	skipped atomic.Uint64
	bus     *Bus
	once    sync.Once
}

// Skipped is how many events this subscriber missed because its queue was full.
func (s *LineSub) Skipped() uint64 { return s.skipped.Load() }

// Close unsubscribes.
func (s *LineSub) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.lines, s)
		s.bus.mu.Unlock()
	})
}

// SubscribeLines returns a subscriber to the events of every sandbox as
// encoded JSON lines (queue <= 0: DefaultQueue). The exporter pipe uses
// it, so an event is encoded once for the log and the pipe. A full queue
// drops (and counts) instead of blocking Publish.
func (b *Bus) SubscribeLines(queue int) *LineSub {
	if queue <= 0 {
		queue = DefaultQueue
	}
	s := &LineSub{C: make(chan []byte, queue), bus: b}
	b.mu.Lock()
	b.lines[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish hands e (e.Sandbox names the sandbox) to the log and every
// subscriber. It never blocks.
func (b *Bus) Publish(e protocol.Event) { b.publish(e.Sandbox, []protocol.Event{e}) }

// publish delivers events of one sandbox, in order: one encoding and one
// log write for all of them, the same bytes to every line subscriber,
// then each event to every subscriber.
func (b *Bus) publish(name string, es []protocol.Event) {
	if len(es) == 0 {
		return
	}
	b.mu.Lock()
	sb := b.sandbox(name)
	if !b.close {
		b.openLog(name, sb)
	}
	for _, e := range es {
		if e.Seq > sb.lastSeq && e.Source != protocol.SourceDaemon {
			sb.lastSeq = e.Seq
		}
	}
	subs := make([]*Sub, 0, len(sb.subs)+len(b.all))
	for s := range sb.subs {
		subs = append(subs, s)
	}
	for s := range b.all {
		subs = append(subs, s)
	}
	var lsubs []*LineSub
	for s := range b.lines {
		lsubs = append(lsubs, s)
	}
	lg := sb.log
	b.mu.Unlock()
	if lg != nil || len(lsubs) > 0 {
		enc, err := Encode(es)
		if err != nil {
			b.log.Warn("event left out of the log and exporters", "sandbox", name, "err", err)
		}
		if lg != nil {
			if err := lg.WriteEncoded(enc); err != nil {
				b.log.Warn("unable to write the event log", "sandbox", name, "err", err)
			}
		}
		for i := range enc.Len() {
			line := enc.Line(i)
			for _, s := range lsubs {
				select {
				case s.C <- line:
				default:
					s.skipped.Add(1)
				}
			}
		}
	}
	for _, e := range es {
		for _, s := range subs {
			select {
			case s.C <- e:
			default:
				s.skipped.Add(1)
			}
		}
	}
}

// Status is what the bus knows of a sandbox's sources.
func (b *Bus) Status(name string) (hello protocol.EventsHello, lost uint64, pumping bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sb := b.sandbox(name)
	return sb.hello, sb.lost, sb.pumping
}

// Pump makes sure one pump reads sandbox name's events into the bus: it
// opens a stream with o (history since the last event seen, files, follow)
// and publishes until the stream ends or ctx ends. It returns at once if a
// pump runs already; else after the stream's hello.
func (b *Bus) Pump(ctx context.Context, name string, o Opener) error {
	b.mu.Lock()
	if b.close {
		b.mu.Unlock()
		return errors.New("event bus closed")
	}
	sb := b.sandbox(name)
	if sb.pumping {
		b.mu.Unlock()
		return nil
	}
	sb.pumping = true
	since := sb.lastSeq
	b.openLog(name, sb)
	b.mu.Unlock()
	st, err := Open(ctx, o, &protocol.EventsRequest{History: true, Follow: true, Files: true, SinceSeq: since})
	if err == nil && since > 0 && st.Hello.Epoch != sb.epoch {
		// sandboxd restarted: its sequence numbers start again.
		st.Close()
		st, err = Open(ctx, o, &protocol.EventsRequest{History: true, Follow: true, Files: true})
	}
	if err != nil {
		b.mu.Lock()
		sb.pumping = false
		b.mu.Unlock()
		return fmt.Errorf("unable to start the event pump of %s: %w", name, err)
	}
	st.Unbind() // ctx bounds the start only
	b.mu.Lock()
	sb.hello = st.Hello
	sb.epoch = st.Hello.Epoch
	b.mu.Unlock()
	go b.pump(name, sb, st)
	return nil
}

func (b *Bus) pump(name string, sb *sandboxBus, st *Stream) {
	defer st.Close()
	state := func(s, msg string) {
		b.Publish(protocol.Event{Time: time.Now(), Sandbox: name, Kind: protocol.KindSandboxState, State: s, Message: msg,
			Source: protocol.SourceDaemon, Fidelity: st.Hello.Fidelity})
	}
	msg := fmt.Sprintf("events from %s (fidelity %s)", strings.Join(st.Hello.Sources, "+"), st.Hello.Fidelity)
	if st.Hello.FileProbe != "" {
		msg += ", file audit on " + st.Hello.FileProbe
	}
	state("traced", msg)
	defer func() {
		b.mu.Lock()
		sb.pumping = false
		b.mu.Unlock()
		state("untraced", "the event stream from the sandbox ended (sandbox stopped or unreachable)")
	}()
	b.mu.Lock()
	lost := sb.lost
	b.mu.Unlock()
	for {
		batch, err := st.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				b.log.Debug("event pump ended", "sandbox", name, "err", err)
			}
			return
		}
		if batch.Lost > lost {
			b.Publish(protocol.Event{Time: time.Now(), Sandbox: name, Kind: protocol.KindAlert, Source: protocol.SourceDaemon,
				Fidelity: st.Hello.Fidelity, Lost: batch.Lost,
				Message: fmt.Sprintf("%d events lost in the sandbox (ring buffer full), %d in total", batch.Lost-lost, batch.Lost)})
			lost = batch.Lost
			b.mu.Lock()
			sb.lost = lost
			b.mu.Unlock()
		}
		for i := range batch.Events {
			batch.Events[i].Sandbox = name
		}
		b.publish(name, batch.Events)
	}
}

// Close closes the host logs; pumps end with their sessions.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.close = true
	for _, sb := range b.sbs {
		if sb.log != nil {
			sb.log.Close()
		}
	}
}
