package exporter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	Store *export.Store
	Log   *slog.Logger
	// In carries export.Line JSON lines from the daemon; its end stops Serve.
	In io.Reader
	// Report receives an export.Report line every ReportEvery (default 500 ms).
	Report      io.Writer
	ReportEvery time.Duration
	// Info names a sandbox's driver and blueprint.
	Info           SandboxInfo
	FlushInterval  time.Duration
	MetricInterval time.Duration
}

// lineSource turns the daemon's lines into a bounded queue of events,
// each decoded once and kept with its JSON as the daemon sent it.
type lineSource struct {
	c       chan *item
	skipped atomic.Uint64
	busLost atomic.Uint64
}

func (s *lineSource) Subscribe(int) (<-chan protocol.Event, func() uint64, func()) {
	panic("lineSource hands out items") // the manager prefers subscribeItems
}

func (s *lineSource) subscribeItems(int) (<-chan *item, func() uint64, func()) {
	return s.c, func() uint64 { return s.skipped.Load() + s.busLost.Load() }, func() {}
}

// put queues it without blocking; a full queue drops it (counted).
func (s *lineSource) put(it *item) {
	select {
	case s.c <- it:
	default:
		s.skipped.Add(1)
	}
}

// eventLine decodes an event line ({"event":EVENT}, export.Line) once,
// keeping EVENT's bytes (a copy: line is the scanner's buffer). ok is
// false for any other line, and for one it cannot take apart this way.
func eventLine(line []byte) (it *item, ok bool) {
	if len(line) < len(export.EventLinePrefix)+2 || string(line[:len(export.EventLinePrefix)]) != export.EventLinePrefix || line[len(line)-1] != '}' {
		return nil, false
	}
	raw := bytes.Clone(line[len(export.EventLinePrefix) : len(line)-1])
	if raw[0] != '{' {
		return nil, false
	}
	it = &item{raw: clip(raw)}
	if events.DecodeEvent(raw, &it.ev) != nil {
		return nil, false // e.g. {"event":{...},"more":1}: decoded whole
	}
	return it, true
}

// Serve runs the exporters of opts.Store on the events read from opts.In
// until it ends (the daemon closed the pipe or exited) or ctx ends; then
// it flushes, keeping what it cannot send in the spools.
func Serve(ctx context.Context, opts ServeOptions) error {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = 500 * time.Millisecond
	}
	src := &lineSource{c: make(chan *item, 64<<10)}
	var usageMu sync.Mutex
	var usage []export.Usage
	m := NewManager(Options{Store: opts.Store, Source: src, Log: opts.Log, Info: opts.Info,
		Usage: func(context.Context) []export.Usage {
			usageMu.Lock()
			defer usageMu.Unlock()
			return usage
		},
		FlushInterval: opts.FlushInterval, MetricInterval: opts.MetricInterval})
	if err := m.Start(); err != nil {
		return err
	}
	report := func() {
		if opts.Report == nil {
			return
		}
		l, err := m.List()
		if err != nil {
			return
		}
		b, _ := json.Marshal(export.Report{Time: time.Now().UTC(), Exporters: l})
		opts.Report.Write(append(b, '\n'))
	}
	report()
	stopReports := make(chan struct{})
	go func() {
		t := time.NewTicker(opts.ReportEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report()
			case <-stopReports:
				return
			}
		}
	}()
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(opts.In)
		sc.Buffer(make([]byte, 256<<10), 8<<20)
		for sc.Scan() {
			if it, ok := eventLine(sc.Bytes()); ok {
				src.put(it)
				continue
			}
			var l export.Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				opts.Log.Warn("bad line from the daemon", "err", err)
				continue
			}
			switch {
			case l.Event != nil:
				src.put(&item{ev: *l.Event})
			case l.Reload:
				if err := m.Reload(); err != nil {
					opts.Log.Warn("reload failed", "err", err)
				}
				report()
			case l.Usage != nil:
				usageMu.Lock()
				usage = l.Usage
				usageMu.Unlock()
			case l.BusLost != nil:
				src.busLost.Store(*l.BusLost)
			}
		}
	}()
	select {
	case <-lines:
	case <-ctx.Done():
	}
	// Let the queued events reach the runners, then flush them.
	deadline := time.Now().Add(2 * time.Second)
	for len(src.c) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	close(stopReports)
	m.Close(cctx)
	report()
	return nil
}
