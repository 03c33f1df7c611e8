package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// TestExportPipeIsTheLogsBytes: the export pipe carries each event as
// {"event":EVENT} where EVENT is byte for byte the host log's line, each
// pipe line is a valid export.Line whose event is the one published, and
// changing the event after Publish changes neither the log nor the pipe.
func TestExportPipeIsTheLogsBytes(t *testing.T) {
	dir := t.TempDir()
	bus := events.NewBus(dir, nil)
	defer bus.Close()
	pr, pw := io.Pipe()
	p := &exportProc{bus: bus, log: slog.New(slog.DiscardHandler), usage: func(context.Context) []export.Usage { return nil }}
	sub := bus.SubscribeLines(64)
	defer sub.Close()
	stop := make(chan struct{})
	go p.feed(pw, sub, nil, stop)
	defer close(stop)

	code := 1
	argv := []string{"sh", "-c", `echo "<secret>" & exit 1`}
	published := []protocol.Event{
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExecCall, State: "started", CallID: "call-1", Argv: argv, Source: protocol.SourceDaemon},
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExit, PID: 4, ExitCode: &code, Message: "é \u2028"},
	}
	want := make([]protocol.Event, len(published))
	for i, e := range published {
		b, _ := json.Marshal(&e)
		json.Unmarshal(b, &want[i])
		bus.Publish(e)
	}
	argv[2] = "CHANGED" // the caller's array, shared with the published event

	sc := bufio.NewScanner(pr)
	var pipeEvents [][]byte
	for len(pipeEvents) < len(published) && sc.Scan() {
		l := sc.Bytes()
		if !bytes.HasPrefix(l, []byte(export.EventLinePrefix)) || l[len(l)-1] != '}' {
			t.Fatalf("pipe line not an event line: %s", l)
		}
		var line export.Line
		if err := json.Unmarshal(l, &line); err != nil || line.Event == nil {
			t.Fatalf("pipe line is not an export.Line: %s: %v", l, err)
		}
		if i := len(pipeEvents); !reflect.DeepEqual(*line.Event, want[i]) {
			t.Fatalf("pipe event %d:\n got %+v\nwant %+v", i, *line.Event, want[i])
		}
		pipeEvents = append(pipeEvents, append(bytes.Clone(l[len(export.EventLinePrefix):len(l)-1]), '\n'))
	}
	logged, err := os.ReadFile(filepath.Join(dir, "sb", events.LogName))
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(pipeEvents, nil); !bytes.Equal(got, logged) {
		t.Fatalf("pipe and host log differ:\npipe %s\n log %s", got, logged)
	}
	if bytes.Contains(logged, []byte("CHANGED")) {
		t.Fatalf("a change after Publish reached the log: %s", logged)
	}
}

// countingWriter counts writes and the newlines written.
type countingWriter struct {
	mu            sync.Mutex
	writes, lines int
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.lines += bytes.Count(b, []byte("\n"))
	return len(b), nil
}

func (w *countingWriter) Close() error { return nil }

func (w *countingWriter) get() (int, int) { w.mu.Lock(); defer w.mu.Unlock(); return w.writes, w.lines }

// TestExportPipeBatches: events published one at a time within feedDelay
// reach the pipe in one write, not one write each.
func TestExportPipeBatches(t *testing.T) {
	bus := events.NewBus(t.TempDir(), nil)
	defer bus.Close()
	w := &countingWriter{}
	p := &exportProc{bus: bus, log: slog.New(slog.DiscardHandler), usage: func(context.Context) []export.Usage { return nil }}
	sub := bus.SubscribeLines(256)
	defer sub.Close()
	stop := make(chan struct{})
	go p.feed(w, sub, nil, stop)
	defer close(stop)
	for i := range 100 {
		bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: i + 2})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, lines := w.get(); lines == 100 {
			break
		}
		if time.Now().After(deadline) {
			writes, lines := w.get()
			t.Fatalf("%d lines in %d writes, want 100", lines, writes)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// 100 publishes take far less than feedDelay; allow for a slow machine.
	if writes, _ := w.get(); writes > 5 {
		t.Fatalf("100 events took %d pipe writes", writes)
	}
}

// BenchmarkExportExecCall is what exporters add to one API exec in the
// daemon: its exec_call events (start and end) published to the bus (one
// encoding each, written to the host log, queued for the pipe) and
// written to the helper's pipe. Compare with the daemon's CPU per exec in
// make bench-export (~1.2-1.4 ms on the 2-core test host).
func BenchmarkExportExecCall(b *testing.B) {
	bus := events.NewBus(b.TempDir(), nil)
	defer bus.Close()
	pr, pw := io.Pipe()
	go io.Copy(io.Discard, pr)
	defer pw.Close()
	p := &exportProc{bus: bus, log: slog.New(slog.DiscardHandler), usage: func(context.Context) []export.Usage { return nil }}
	p.running.Store(true)
	sub := bus.SubscribeLines(64 << 10)
	defer sub.Close()
	stop := make(chan struct{})
	go p.feed(pw, sub, nil, stop)
	defer close(stop)
	d := &Daemon{bus: bus, exp: p}
	m := &protocol.ExecStart{Argv: []string{"true"}}
	b.ReportAllocs()
	for b.Loop() {
		ended := d.exportExecStart("sb", m)
		ended(42, &protocol.ExitMsg{Code: 0}, nil)
	}
}
