package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// DefaultHistory is how many events a Hub keeps by default (about 16 MiB
// when full: a few hundred commands with their file events).
const DefaultHistory = 32768

// subQueue is the bounded queue of one live subscriber.
const subQueue = 8192

// Hub numbers events, keeps the newest of them and fans them out.
// It is safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	ring    []protocol.Event
	next    int // index of the next write in ring
	full    bool
	seq     uint64
	evicted uint64
	subs    map[*sub]struct{}

	hello protocol.EventsHello
	lost  func() uint64 // the sources' loss counter
}

type sub struct {
	ch      chan protocol.Event
	files   bool
	skipped atomic.Uint64
}

// NewHub returns a Hub that keeps the newest capacity events (<= 0:
// DefaultHistory) and describes its sources with hello.
func NewHub(capacity int, hello protocol.EventsHello) *Hub {
	if capacity <= 0 {
		capacity = DefaultHistory
	}
	hello.HistoryCap = capacity
	hello.Epoch = time.Now().UnixNano()
	return &Hub{ring: make([]protocol.Event, capacity), subs: map[*sub]struct{}{}, hello: hello, lost: func() uint64 { return 0 }}
}

// SetLost installs the function that reads the sources' loss counter.
func (h *Hub) SetLost(f func() uint64) {
	h.mu.Lock()
	h.lost = f
	h.mu.Unlock()
}

// Lost is the sources' loss counter.
func (h *Hub) Lost() uint64 {
	h.mu.Lock()
	f := h.lost
	h.mu.Unlock()
	return f()
}

// Publish numbers e, stores it and hands it to every subscriber that
// wants it. It never blocks.
func (h *Hub) Publish(e protocol.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e.Seq = h.seq
	if h.full {
		h.evicted++
	}
	h.ring[h.next] = e
	h.next++
	if h.next == len(h.ring) {
		h.next = 0
		h.full = true
	}
	file := e.IsFile()
	for s := range h.subs {
		if file && !s.files {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.skipped.Add(1)
		}
	}
}

// History returns the retained events, oldest first, that match req.
func (h *Hub) History(req *protocol.EventsRequest) []protocol.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.historyLocked(req)
}

func (h *Hub) historyLocked(req *protocol.EventsRequest) []protocol.Event {
	var out []protocol.Event
	add := func(es []protocol.Event) {
		for _, e := range es {
			if e.Seq == 0 || e.Seq <= req.SinceSeq || (!req.Files && e.IsFile()) {
				continue
			}
			if req.SinceUnixMs > 0 && e.Time.UnixMilli() < req.SinceUnixMs {
				continue
			}
			out = append(out, e)
		}
	}
	if h.full {
		add(h.ring[h.next:])
	}
	add(h.ring[:h.next])
	return out
}

// Hello describes the hub's sources and counters now.
func (h *Hub) Hello() protocol.EventsHello {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.hello
	m.Lost = h.lost()
	m.Evicted = h.evicted
	return m
}

// Serve runs one events stream: hello, the history if asked, end, then live
// events if asked, until ctx ends or the peer goes away.
func (h *Hub) Serve(ctx context.Context, rw io.ReadWriter, req *protocol.EventsRequest) error {
	w := protocol.NewWriter(rw)
	hello := h.Hello()
	if err := w.Msg(protocol.FrameEventsHello, &hello); err != nil {
		return fmt.Errorf("unable to send events hello: %w", err)
	}
	// Subscribe and snapshot under one lock: no event is both in the
	// history and live, and none falls between them.
	var s *sub
	h.mu.Lock()
	var hist []protocol.Event
	if req.History {
		hist = h.historyLocked(req)
	}
	if req.Follow {
		s = &sub{ch: make(chan protocol.Event, subQueue), files: req.Files}
		h.subs[s] = struct{}{}
	}
	evicted := h.evicted
	h.mu.Unlock()
	if s != nil {
		defer func() {
			h.mu.Lock()
			delete(h.subs, s)
			h.mu.Unlock()
		}()
	}
	bw := &batcher{w: w, hub: h, sub: s}
	var last uint64
	for _, e := range hist {
		if err := bw.add(e); err != nil {
			return err
		}
		last = e.Seq
	}
	if err := bw.flush(); err != nil {
		return err
	}
	if err := w.Msg(protocol.FrameEventsEnd, &protocol.EventsEnd{Lost: h.Lost(), Evicted: evicted, LastSeq: last}); err != nil {
		return fmt.Errorf("unable to send events end: %w", err)
	}
	if s == nil {
		return nil
	}
	// The peer sends nothing more; a read ending means it went away.
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, rw)
		close(gone)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-gone:
			return nil
		case e := <-s.ch:
			if err := bw.add(e); err != nil {
				return err
			}
			// Drain what is queued without waiting, then flush.
			for more := true; more; {
				select {
				case e := <-s.ch:
					if err := bw.add(e); err != nil {
						return err
					}
				default:
					more = false
				}
			}
			if err := bw.flush(); err != nil {
				return err
			}
		case <-tick.C:
			// Report a grown loss counter even when nothing else happens.
			if l := h.Lost(); l != bw.lost {
				if err := bw.flushAlways(); err != nil {
					return err
				}
			}
		}
	}
}

// batcher groups events into frames under the batch and size limits.
type batcher struct {
	w     *protocol.Writer
	hub   *Hub
	sub   *sub
	batch []protocol.Event
	size  int
	lost  uint64
}

const batchBytes = 256 << 10

func (b *batcher) add(e protocol.Event) error {
	n := approxSize(&e)
	if len(b.batch) >= protocol.MaxEventBatch || (b.size+n > batchBytes && len(b.batch) > 0) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.batch = append(b.batch, e)
	b.size += n
	return nil
}

func (b *batcher) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	return b.flushAlways()
}

func (b *batcher) flushAlways() error {
	m := protocol.EventsBatch{Events: b.batch, Lost: b.hub.Lost()}
	if b.sub != nil {
		m.Skipped = b.sub.skipped.Load()
	}
	if m.Events == nil {
		m.Events = []protocol.Event{}
	}
	b.lost = m.Lost
	b.batch = b.batch[:0]
	b.size = 0
	if err := b.w.Msg(protocol.FrameEventsBatch, &m); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return nil
		}
		return fmt.Errorf("unable to send events: %w", err)
	}
	return nil
}

// approxSize bounds the JSON size of e from above, cheaply (an escape
// takes at most 6 bytes: \u0000).
func approxSize(e *protocol.Event) int {
	n := 600 + 6*(len(e.Binary)+len(e.Cwd)+len(e.Path)+len(e.NewPath)+len(e.Message)+len(e.Comm)+
		len(e.Sandbox)+len(e.ExecID)+len(e.ParentExecID)+len(e.Intent)+len(e.Errno)+len(e.State))
	for _, a := range e.Argv {
		n += 3 + 6*len(a)
	}
	return n
}

// encodedSize is exact; used by tests.
func encodedSize(e *protocol.Event) int {
	b, _ := json.Marshal(e)
	return len(b)
}
