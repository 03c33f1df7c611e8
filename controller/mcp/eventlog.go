package mcp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/bohica-labs/darkshell/mcpproxy"
)

// The call log is written off the call's path: record queues the event and
// one goroutine per Manager redacts, appends and publishes queued events in
// batches (one open and one write per sandbox per batch), in order. The
// queue is bounded and record blocks when it is full, so no event is ever
// dropped; Logs flushes it first, so a caller reads what it recorded.

const (
	eventQueue = 4096
	// lingerFor is how long the writer waits for more events before it
	// writes a batch (the log and the event stream lag by at most this).
	lingerFor = 20 * time.Millisecond
)

type logItem struct {
	sandbox string
	ev      mcpproxy.Event
	flushed chan struct{} // set: a flush marker, closed when everything before it is written
}

// record queues an event for the sandbox's log and the sink.
func (m *Manager) record(sandbox string, ev mcpproxy.Event) {
	m.logOnce.Do(m.startLog)
	m.logQ <- logItem{sandbox: sandbox, ev: ev}
}

// flushLog returns once every event queued before it is written.
func (m *Manager) flushLog() {
	m.logOnce.Do(m.startLog)
	done := make(chan struct{})
	m.logQ <- logItem{flushed: done}
	<-done
}

func (m *Manager) startLog() {
	m.logQ = make(chan logItem, eventQueue)
	go m.writeLog()
}

func (m *Manager) writeLog() {
	batch := make([]logItem, 0, 256)
	// Log files stay open while events come, and are closed after a
	// second without any (a busy server costs one write per batch).
	files := map[string]*os.File{}
	idle := time.NewTimer(time.Hour)
	for {
		var it logItem
		select {
		case it = <-m.logQ:
		case <-idle.C:
			for sb, f := range files {
				_ = f.Close()
				delete(files, sb)
			}
			continue
		}
		batch = append(batch[:0], it)
		// Linger a little for more: a busy server's events then cost one
		// write per batch, not one per call. A flush ends the wait.
		linger := time.NewTimer(lingerFor)
	more:
		for len(batch) < cap(batch) && batch[len(batch)-1].flushed == nil {
			select {
			case it := <-m.logQ:
				batch = append(batch, it)
			case <-linger.C:
				break more
			}
		}
		linger.Stop()
		m.writeBatch(batch, files)
		idle.Reset(time.Second)
	}
}

func (m *Manager) writeBatch(batch []logItem, files map[string]*os.File) {
	lines := map[string][]byte{}
	var order []string
	for i := range batch {
		it := &batch[i]
		if it.flushed != nil {
			continue
		}
		// Redacted again with every provider value.
		it.ev.Args = m.red.JSON(it.ev.Args)
		it.ev.Error = m.red.String(it.ev.Error)
		b, err := json.Marshal(it.ev)
		if err != nil {
			continue
		}
		if _, ok := lines[it.sandbox]; !ok {
			order = append(order, it.sandbox)
		}
		lines[it.sandbox] = append(append(lines[it.sandbox], b...), '\n')
	}
	for _, sb := range order {
		f := files[sb]
		if f == nil {
			p := m.LogPath(sb)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				continue
			}
			var err error
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
				continue
			}
			files[sb] = f
		}
		if _, err := f.Write(lines[sb]); err != nil {
			_ = f.Close()
			delete(files, sb)
		}
	}
	m.mu.Lock()
	sink := m.sink
	m.mu.Unlock()
	for i := range batch {
		it := &batch[i]
		if it.flushed != nil {
			close(it.flushed)
			continue
		}
		if sink != nil {
			sink(it.sandbox, it.ev)
		}
	}
}
