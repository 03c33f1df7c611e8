package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/bohica-labs/darkshell/controller/export"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// sink is one exporter's backend: it turns events into records (in order,
// on one goroutine) and sends batches of records.
type sink interface {
	// records appends to dst the records an event makes (maybe none).
	records(dst []record, it *item) []record
	// send delivers one batch (records made by records, or read back from
	// the spool with only their bytes); an error keeps the batch for a retry.
	send(ctx context.Context, recs []record) error
	close(ctx context.Context) error
}

// Runner tuning.
const (
	defaultQueue   = 8192                   // events waiting for the builder
	batchMax       = 512                    // records per batch
	sendTimeout    = 10 * time.Second       // one send attempt
	backoffMin     = 250 * time.Millisecond // first retry delay
	backoffMax     = 30 * time.Second
	batchesInMem   = 4 // batches waiting for the sender before they go to the spool
	defaultFlushIn = time.Second
)

// runner feeds one sink: bounded event queue -> builder goroutine (records,
// batches) -> sender goroutine (send, retry with backoff, spool).
type runner struct {
	spec  *export.Spec
	sink  sink
	spool *Spool
	log   *slog.Logger
	flush time.Duration

	q       chan *item
	batches chan []record
	stop    chan struct{}
	done    sync.WaitGroup
	kick    chan struct{}

	received, dropped, sent, spoolDropped, failures atomic.Uint64
	lastErr                                         atomic.Pointer[string]
}

func newRunner(spec *export.Spec, s sink, spool *Spool, log *slog.Logger, flush time.Duration) *runner {
	if flush <= 0 {
		flush = defaultFlushIn
	}
	r := &runner{spec: spec, sink: s, spool: spool, log: log, flush: flush,
		q: make(chan *item, defaultQueue), batches: make(chan []record, batchesInMem),
		stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	r.done.Add(2)
	go r.build()
	go r.sender()
	return r
}

// offer hands e to the runner without blocking; a full queue drops it.
func (r *runner) offer(e *protocol.Event) { r.offerItem(&item{ev: *e}) }

// offerItem hands it (shared with the other runners, read-only) to the
// runner without blocking; a full queue drops it.
func (r *runner) offerItem(it *item) {
	if !r.spec.Wants(it.ev.Sandbox) {
		return
	}
	r.received.Add(1)
	select {
	case r.q <- it:
	default:
		r.dropped.Add(1)
	}
}

func (r *runner) stats() export.Stats {
	s := export.Stats{Received: r.received.Load(), Dropped: r.dropped.Load(), Sent: r.sent.Load(),
		SpoolDropped: r.spoolDropped.Load(), Failures: r.failures.Load()}
	if p := r.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	if r.spool != nil {
		s.SpoolBatches, s.SpoolBytes = r.spool.Len(), r.spool.Bytes()
	}
	return s
}

// build turns queued events into batches.
func (r *runner) build() {
	defer r.done.Done()
	t := time.NewTicker(r.flush)
	defer t.Stop()
	var batch []record
	emit := func() {
		if len(batch) == 0 {
			return
		}
		b := batch
		batch = nil
		select {
		case r.batches <- b:
		default:
			r.toSpool(b) // the sender is behind (backend slow or down)
		}
	}
	for {
		select {
		case it := <-r.q:
			batch = r.sink.records(batch, it)
			if len(batch) >= batchMax {
				emit()
			}
		case <-t.C:
			emit()
		case <-r.stop:
			for {
				select {
				case it := <-r.q:
					batch = r.sink.records(batch, it)
					continue
				default:
				}
				break
			}
			emit()
			close(r.batches)
			return
		}
	}
}

func (r *runner) toSpool(b []record) {
	if r.spool == nil {
		r.spoolDropped.Add(uint64(len(b)))
		return
	}
	bs := make([][]byte, len(b))
	for i := range b {
		bs[i] = b[i].bytes()
	}
	if err := r.spool.Put(bs); err != nil {
		r.spoolDropped.Add(uint64(len(b)))
		if errors.Is(err, ErrSpoolFull) {
			r.log.Warn("export spool full: records dropped", "exporter", r.spec.Name, "records", len(b))
		} else {
			r.log.Warn("export spool failed: records dropped", "exporter", r.spec.Name, "err", err)
		}
		return
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *runner) attempt(b []record) error {
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	err := r.sink.send(ctx, b)
	if err != nil {
		r.failures.Add(1)
		msg := err.Error()
		r.lastErr.Store(&msg)
		return err
	}
	r.sent.Add(uint64(len(b)))
	return nil
}

// sender sends batches; what fails goes to the spool, which it drains,
// oldest first, with backoff, before it takes new batches again.
func (r *runner) sender() {
	defer r.done.Done()
	backoff := backoffMin
	closing := false
	for {
		// Drain the spool first: it holds the oldest records.
		for r.spool != nil && r.spool.Len() > 0 {
			id, recs, ok, err := r.spool.Peek()
			if !ok {
				break
			}
			if err != nil {
				r.log.Warn("unreadable spool batch dropped", "exporter", r.spec.Name, "err", err)
				r.spoolDropped.Add(uint64(len(recs)))
				r.spool.Drop(id)
				continue
			}
			if err := r.attempt(spooled(recs)); err != nil {
				if closing {
					return // kept on disk for the next daemon
				}
				// Park new batches on disk while the backend is away.
				select {
				case b, ok := <-r.batches:
					if !ok {
						closing = true
					} else {
						r.toSpool(b)
					}
				case <-time.After(backoff):
				case <-r.stop:
					closing = true
				}
				backoff = min(backoff*2, backoffMax)
				continue
			}
			backoff = backoffMin
			r.spool.Drop(id)
		}
		if closing {
			return
		}
		select {
		case b, ok := <-r.batches:
			if !ok {
				return
			}
			if err := r.attempt(b); err != nil {
				r.log.Debug("export failed; spooling", "exporter", r.spec.Name, "err", err)
				r.toSpool(b)
			}
		case <-r.kick:
		}
	}
}

// close flushes what is queued (one attempt; failures stay spooled) and
// stops the runner.
func (r *runner) close(ctx context.Context) error {
	close(r.stop)
	r.done.Wait()
	return r.sink.close(ctx)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own record types always encode
	}
	return b
}
