package exporter

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// lineSource turns the daemon's lines into a bounded event queue.
type lineSource struct {
	c       chan protocol.Event
	skipped atomic.Uint64
	busLost atomic.Uint64
}

func (s *lineSource) Subscribe(int) (<-chan protocol.Event, func() uint64, func()) {
	return s.c, func() uint64 { return s.skipped.Load() + s.busLost.Load() }, func() {}
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
	src := &lineSource{c: make(chan protocol.Event, 64<<10)}
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
			var l export.Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				opts.Log.Warn("bad line from the daemon", "err", err)
				continue
			}
			switch {
			case l.Event != nil:
				select {
				case src.c <- *l.Event:
				default:
					src.skipped.Add(1)
				}
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
