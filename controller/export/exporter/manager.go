package exporter

import (
	"context"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/export"
	"log/slog"
	"maps"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Source is where the manager takes events from: the daemon's bus.
type Source interface {
	// Subscribe returns a bounded queue of every sandbox's events, a
	// counter of the events it dropped because the queue was full, and a
	// function that unsubscribes.
	Subscribe(queue int) (c <-chan protocol.Event, skipped func() uint64, cancel func())
}

// itemSource is a Source that hands out events already decoded with their
// JSON (Serve's line reader): the manager then encodes nothing again.
type itemSource interface {
	subscribeItems(queue int) (c <-chan *item, skipped func() uint64, cancel func())
}

// Options configure a Manager.
type Options struct {
	Store  *export.Store
	Source Source
	Log    *slog.Logger
	// Info names a sandbox's driver and blueprint (resource attributes).
	Info SandboxInfo
	// Usage reports resource use for the per-sandbox metrics.
	Usage UsageFunc
	// FlushInterval is how long events wait for a batch (default 1 s);
	// MetricInterval how often OTLP metrics are pushed (default 10 s).
	FlushInterval  time.Duration
	MetricInterval time.Duration
}

// Manager runs the configured exporters as one subscriber of the bus.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	specs   map[string]*export.Spec
	runners map[string]*runner
	broken  map[string]string
	metrics *metrics
	cancel  func()
	skipped func() uint64
	active  atomic.Bool
	lost    sync.Map // sandbox -> uint64, events lost inside sandboxes
	state   atomic.Pointer[dispatch]
	done    chan struct{}
	once    sync.Once
	looped  chan struct{} // closed when loop has returned (nil before Start)
}

// dispatch is what the event loop hands events to; swapped on reload.
type dispatch struct {
	runners []*runner
	metrics *metrics
	needs   needs // the encodings the runners use, made once per event
}

// NewManager returns a manager; Start loads the exporters.
func NewManager(opts Options) *Manager {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MetricInterval <= 0 {
		opts.MetricInterval = 10 * time.Second
	}
	m := &Manager{opts: opts, log: opts.Log, specs: map[string]*export.Spec{}, runners: map[string]*runner{}, broken: map[string]string{}, done: make(chan struct{})}
	m.state.Store(&dispatch{})
	return m
}

// Active reports whether any exporter runs: the daemon publishes its
// host-side events (exec calls, sync runs) only then.
func (m *Manager) Active() bool { return m.active.Load() }

// Start loads the exporters and subscribes to the source.
func (m *Manager) Start() error {
	var (
		ec      <-chan protocol.Event
		ic      <-chan *item
		skipped func() uint64
		cancel  func()
	)
	if is, ok := m.opts.Source.(itemSource); ok {
		ic, skipped, cancel = is.subscribeItems(64 << 10)
	} else {
		ec, skipped, cancel = m.opts.Source.Subscribe(64 << 10)
	}
	looped := make(chan struct{})
	m.mu.Lock()
	m.cancel, m.skipped, m.looped = cancel, skipped, looped
	m.mu.Unlock()
	go func() {
		defer close(looped)
		m.loop(ec, ic)
	}()
	return m.Reload()
}

// loop hands every event, as one item shared by all, to the metrics and
// the runners. One of ec and ic is nil.
func (m *Manager) loop(ec <-chan protocol.Event, ic <-chan *item) {
	for {
		var it *item
		select {
		case e := <-ec:
			it = &item{ev: e}
		case it = <-ic:
		case <-m.done:
			return
		}
		e := &it.ev
		if e.Kind == protocol.KindAlert && e.Lost > 0 && e.Sandbox != "" {
			m.lost.Store(e.Sandbox, e.Lost)
		}
		d := m.state.Load()
		if d.metrics != nil {
			d.metrics.observe(e)
		}
		if len(d.runners) == 0 {
			continue
		}
		it.prepare(d.needs)
		for _, r := range d.runners {
			r.offerItem(it)
		}
	}
}

// Reload brings the running exporters in line with the store: new ones
// start, removed ones stop (flushing), changed ones restart.
func (m *Manager) Reload() error {
	specs, err := m.opts.Store.List()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]*export.Spec{}
	for _, sp := range specs {
		want[sp.Name] = sp
	}
	metricsChanged := false
	for name, old := range m.specs {
		if nw, ok := want[name]; ok && reflect.DeepEqual(nw, old) {
			continue
		}
		if old.Type == export.TypePrometheus || old.Type == export.TypeOTLP {
			metricsChanged = true
		}
		if r := m.runners[name]; r != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r.close(ctx)
			cancel()
		}
		delete(m.runners, name)
		delete(m.broken, name)
		delete(m.specs, name)
	}
	for name, sp := range want {
		if _, ok := m.specs[name]; ok {
			continue
		}
		m.specs[name] = sp
		if sp.Type == export.TypePrometheus || (sp.Type == export.TypeOTLP && sp.HasSignal(export.SignalMetrics)) {
			metricsChanged = true
		}
		r, err := m.start(sp)
		if err != nil {
			m.broken[name] = err.Error()
			m.log.Warn("exporter not started", "exporter", name, "err", err)
			continue
		}
		if r != nil {
			m.runners[name] = r
		}
	}
	if metricsChanged || m.metrics == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.metrics.shutdown(ctx)
		cancel()
		m.metrics = nil
		var ms []*export.Spec
		for _, sp := range m.specs {
			if m.broken[sp.Name] == "" {
				ms = append(ms, sp)
			}
		}
		mt, err := newMetrics(ms, m.opts.MetricInterval, m.opts.Usage, m.lostCounts, m.log)
		if err != nil {
			m.log.Warn("metrics not started", "err", err)
			for _, sp := range ms {
				if sp.Type == export.TypePrometheus {
					m.broken[sp.Name] = err.Error()
				}
			}
		}
		m.metrics = mt
	}
	d := &dispatch{metrics: m.metrics}
	for _, r := range m.runners {
		d.runners = append(d.runners, r)
		d.needs.raw = d.needs.raw || r.spec.Type != export.TypeOTLP || r.spec.HasSignal(export.SignalLogs)
		d.needs.ocsf = d.needs.ocsf || r.spec.OCSF
	}
	m.state.Store(d)
	m.active.Store(len(d.runners) > 0 || d.metrics != nil)
	return nil
}

// start makes the runner of a spec (nil for exporters without one).
func (m *Manager) start(sp *export.Spec) (*runner, error) {
	var s sink
	var err error
	switch sp.Type {
	case export.TypeOTLP:
		var sinks []sink
		if sp.HasSignal(export.SignalTraces) {
			ts, err := newTraceSink(sp, m.opts.Info)
			if err != nil {
				return nil, err
			}
			sinks = append(sinks, ts)
		}
		if sp.HasSignal(export.SignalLogs) {
			ls, err := newLogSink(sp, m.opts.Info)
			if err != nil {
				return nil, err
			}
			sinks = append(sinks, ls)
		}
		switch len(sinks) {
		case 0:
			return nil, nil
		case 1:
			s = sinks[0]
		default:
			s = &multiSink{sinks}
		}
	case export.TypeJSONL:
		s, err = newJSONLSink(sp)
	case export.TypeSplunk:
		s, err = newSplunkSink(sp)
	case export.TypeElastic:
		s, err = newElasticSink(sp)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	spool, err := OpenSpool(filepath.Join(m.opts.Store.Dir(), "spool", sp.Name), sp.SpoolBytes)
	if err != nil {
		s.close(context.Background())
		return nil, err
	}
	return newRunner(sp, s, spool, m.log.With("exporter", sp.Name), m.opts.FlushInterval), nil
}

// lostCounts are the events lost so far, by where.
func (m *Manager) lostCounts() map[string]uint64 {
	out := map[string]uint64{}
	m.lost.Range(func(_, v any) bool {
		out["sandbox"] += v.(uint64)
		return true
	})
	if m.skipped != nil {
		out["bus"] = m.skipped()
	}
	for _, r := range m.state.Load().runners {
		out["exporter_queue"] += r.dropped.Load()
		out["spool"] += r.spoolDropped.Load()
	}
	return out
}

// List is every configured exporter with its counters.
func (m *Manager) List() ([]export.Status, error) {
	specs, err := m.opts.Store.List()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]export.Status, 0, len(specs))
	for _, sp := range specs {
		st := export.Status{Spec: sp.Redacted(), Error: m.broken[sp.Name]}
		if r := m.runners[sp.Name]; r != nil {
			st.Stats = r.stats()
		}
		out = append(out, st)
	}
	return out, nil
}

// Flush waits until every runner has sent what it has (or timeout).
func (m *Manager) Flush(ctx context.Context) error {
	m.mu.Lock()
	rs := maps.Clone(m.runners)
	m.mu.Unlock()
	for name, r := range rs {
		for {
			st := r.stats()
			if len(r.q) == 0 && len(r.batches) == 0 && st.SpoolBatches == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("exporter %s not flushed: %w", name, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// Close stops every exporter, flushing what it can.
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.once.Do(func() { close(m.done) })
	if m.looped != nil {
		// An event the loop took is offered to the runners before they
		// close and flush (it holds no lock of ours).
		<-m.looped
	}
	for _, r := range m.runners {
		r.close(ctx)
	}
	m.runners = map[string]*runner{}
	m.metrics.shutdown(ctx)
	m.metrics = nil
	m.state.Store(&dispatch{})
	m.active.Store(false)
}

// multiSink is an OTLP exporter sending traces and logs: its records are
// tagged with the sink that made them ("<i>" prefix byte), and a batch
// goes to each sink with its own records. A failure retries the batch for
// both (the trace and log backends are usually one collector).
type multiSink struct{ sinks []sink }

func (m *multiSink) records(dst []record, it *item) []record {
	for i, s := range m.sinks {
		n := len(dst)
		dst = s.records(dst, it)
		for j := n; j < len(dst); j++ {
			dst[j].tag = byte('0' + i)
		}
	}
	return dst
}

func (m *multiSink) send(ctx context.Context, recs []record) error {
	per := make([][]record, len(m.sinks))
	for _, r := range recs {
		if r.tag == 0 { // read back from the spool: the tag is its first byte
			if len(r.b) == 0 {
				continue
			}
			r = record{tag: r.b[0], b: r.b[1:]}
		}
		if i := int(r.tag) - '0'; i >= 0 && i < len(m.sinks) {
			r.tag = 0
			per[i] = append(per[i], r)
		}
	}
	for i, s := range m.sinks {
		if len(per[i]) > 0 {
			if err := s.send(ctx, per[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *multiSink) close(ctx context.Context) error {
	var err error
	for _, s := range m.sinks {
		if e := s.close(ctx); e != nil && err == nil {
			err = e
		}
	}
	return err
}
