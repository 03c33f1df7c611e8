package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
	"golang.org/x/sys/unix"
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
	waitLines(t, w, 100, 5*time.Second)
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

// TestExportControlNeverWaitsOnThePipe: with the helper's pipe full (a
// helper that does not read), a reload request (export add/remove) and
// export list return at once: the feed, blocked in its write, holds no
// lock they take. Once the helper reads again, every event published
// meanwhile arrives, then the reload; stopping writes what was queued and
// closes the pipe.
func TestExportControlNeverWaitsOnThePipe(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus(t.TempDir(), nil)
	defer bus.Close()
	p := newExportProc(h, bus, func(context.Context) []export.Usage { return nil }, slog.New(slog.DiscardHandler))
	if err := p.store.Add(&export.Spec{Name: "j", Type: export.TypeJSONL, File: filepath.Join(t.TempDir(), "x")}); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// A helper as startLocked leaves it, that does not read its pipe.
	p.cmd, p.reload, p.stop, p.done = &exec.Cmd{}, make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	p.sub = bus.SubscribeLines(64 << 10)
	defer p.sub.Close()
	p.running.Store(true)
	fed := make(chan struct{})
	ww := &watchedWriter{w: pw}
	go func() { p.feed(ww, p.sub, p.reload, p.stop); close(fed) }()

	pipeSize, err := unix.FcntlInt(pr.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	pipeSize -= os.Getpagesize() // full: the last page is in use, maybe not filled
	published := 0
	full := func() bool {
		n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ) // FIONREAD
		return err == nil && n >= pipeSize
	}
	deadline := time.Now().Add(30 * time.Second)
	for !full() {
		if time.Now().After(deadline) {
			t.Fatalf("the pipe never filled (%d events published)", published)
		}
		for range 200 {
			published++
			bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: published, Binary: "/bin/true", Argv: []string{"true"}})
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 200 { // more, queued in the daemon behind the full pipe
		published++
		bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: published, Binary: "/bin/true", Argv: []string{"true"}})
	}
	// The feed is blocked in a write to the full pipe.
	for !ww.writing.Load() || !full() {
		if time.Now().After(deadline) {
			t.Fatal("the feed never blocked writing to the full pipe")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Control operations complete while the pipe stays full.
	ctl := make(chan struct{})
	go func() {
		defer close(ctl)
		for range 3 {
			p.sync() // export add/remove with exporters left: a reload
			if l, err := p.list(); err != nil || len(l) != 1 {
				t.Errorf("export list with a full pipe: %v %v", l, err)
			}
		}
	}()
	select {
	case <-ctl:
	case <-time.After(30 * time.Second):
		t.Fatal("export add/remove/list waited on the full pipe")
	}
	if !full() {
		t.Fatal("the pipe drained meanwhile: the test proves nothing")
	}

	// The helper reads again: every event arrives, then one reload.
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(p.stop) // stop: write what is queued, close the pipe
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var evs, reloads, after int
	for sc.Scan() {
		var l export.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("pipe line %q: %v", sc.Bytes(), err)
		}
		switch {
		case l.Event != nil:
			evs++
			if reloads > 0 {
				after++
			}
			if l.Event.PID != evs {
				t.Fatalf("event %d has pid %d: out of order or lost", evs, l.Event.PID)
			}
		case l.Reload:
			reloads++
		}
	}
	<-fed
	// Requests made while one is pending are one reload; the feed may take
	// one before it blocks, so two may come.
	if evs != published || reloads < 1 || reloads > 2 || after != 0 {
		t.Fatalf("got %d of %d events, %d reloads (%d events after the first), want every event then a reload", evs, published, reloads, after)
	}
	if n := p.sub.Skipped(); n != 0 {
		t.Fatalf("%d events dropped", n)
	}
}

// watchedWriter tells whether a Write is in progress.
type watchedWriter struct {
	w       io.WriteCloser
	writing atomic.Bool
}

func (w *watchedWriter) Write(b []byte) (int, error) {
	w.writing.Store(true)
	defer w.writing.Store(false)
	return w.w.Write(b)
}

func (w *watchedWriter) Close() error { return w.w.Close() }

// waitLines waits until w has taken n lines, failing after timeout.
func waitLines(t *testing.T, w *countingWriter, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		writes, lines := w.get()
		if lines == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lines in %d writes, want %d", lines, writes, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
