package events

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	sbevents "github.com/bohica-labs/darkshell/sandboxd/events"
)

// hubOpener serves each opened stream with a real sandboxd hub over a pipe.
type hubOpener struct{ hub *sbevents.Hub }

func (o hubOpener) Open(ctx context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	go func() {
		defer a.Close()
		f, err := protocol.ReadFrame(a, protocol.MaxPayload)
		if err != nil {
			return
		}
		var req protocol.EventsRequest
		if protocol.DecodeMsg(f, protocol.FrameEvents, &req) != nil {
			return
		}
		o.hub.Serve(context.Background(), a, &req)
	}()
	return b, nil
}

func event(kind string, pid int) protocol.Event {
	return protocol.Event{Time: time.Now(), Kind: kind, PID: pid, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
}

// TestBusPump: the pump feeds the host log and subscribers from a sandboxd
// stream, history included; a subscriber that does not read is skipped.
func TestBusPump(t *testing.T) {
	hub := sbevents.NewHub(0, protocol.EventsHello{Sources: []string{protocol.SourceEBPF}, Fidelity: protocol.FidelityComplete})
	hub.Publish(event(protocol.KindExec, 2))
	dir := t.TempDir()
	bus := NewBus(dir, nil)
	defer bus.Close()
	fast := bus.Subscribe("sb", 0)
	defer fast.Close()
	slow := bus.Subscribe("sb", 1)
	defer slow.Close()
	if err := bus.Pump(context.Background(), "sb", hubOpener{hub}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Pump(context.Background(), "sb", hubOpener{hub}); err != nil {
		t.Fatal(err) // a second pump is a no-op
	}
	hub.Publish(event(protocol.KindExit, 2))
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case e := <-fast.C:
			if e.Sandbox != "sb" {
				t.Fatalf("event without its sandbox: %+v", e)
			}
			got = append(got, e.Kind)
		case <-timeout:
			t.Fatalf("got %v", got)
		}
	}
	if strings.Join(got, ",") != "sandbox_state,exec,exit" {
		t.Fatalf("events %v, want sandbox_state,exec,exit", got)
	}
	if slow.Skipped() == 0 {
		t.Error("the slow subscriber skipped nothing")
	}
	if h, _, pumping := bus.Status("sb"); !pumping || h.Fidelity != protocol.FidelityComplete {
		t.Errorf("status: %+v pumping=%v", h, pumping)
	}
	// The host log has every event, as JSON lines.
	var lines []protocol.Event
	deadline := time.Now().Add(5 * time.Second)
	for len(lines) < 3 && time.Now().Before(deadline) {
		lines = readLog(t, filepath.Join(dir, "sb", LogName))
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 3 || lines[1].Kind != protocol.KindExec || lines[2].Kind != protocol.KindExit {
		t.Fatalf("host log: %+v", lines)
	}
}

func readLog(t *testing.T, p string) []protocol.Event {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []protocol.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e protocol.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(dir, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e := event(protocol.KindExec, 1)
	e.Binary = strings.Repeat("b", 300)
	for i := 0; i < 20; i++ {
		if err := l.Write(&e); err != nil {
			t.Fatal(err)
		}
	}
	files := l.Files()
	if len(files) != 3 || filepath.Base(files[0]) != LogName || filepath.Base(files[2]) != LogName+".2" {
		t.Fatalf("files %v, want the log and 2 rotated ones", files)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 1000 {
			t.Errorf("%s has %d bytes, limit 1000", f, st.Size())
		}
		if n := len(readLog(t, f)); n == 0 {
			t.Errorf("%s is empty", f)
		}
	}
}

// TestLogWriteBatch: a batch lands in order, split across rotations at
// the size limit exactly as single writes would be.
func TestLogWriteBatch(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(dir, 1000, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var batch []protocol.Event
	for i := 1; i <= 12; i++ {
		e := event(protocol.KindExec, i)
		e.Binary = strings.Repeat("b", 200)
		batch = append(batch, e)
	}
	if err := l.WriteBatch(batch[:1]); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteBatch(batch[1:]); err != nil {
		t.Fatal(err)
	}
	files := l.Files()
	if len(files) < 3 {
		t.Fatalf("files %v: a 12-event batch of ~300-byte lines did not rotate a 1000-byte log", files)
	}
	var pids []int
	for i := len(files) - 1; i >= 0; i-- { // oldest first
		st, _ := os.Stat(files[i])
		if st.Size() > 1000 {
			t.Errorf("%s has %d bytes, limit 1000", files[i], st.Size())
		}
		for _, e := range readLog(t, files[i]) {
			pids = append(pids, e.PID)
		}
	}
	for i, p := range pids {
		if p != i+1 {
			t.Fatalf("events out of order or missing across the files: pids %v", pids)
		}
	}
	if len(pids) != 12 {
		t.Fatalf("%d events logged, want 12: %v", len(pids), pids)
	}
	l.Close()
	if err := l.WriteBatch(batch[:2]); err == nil {
		t.Fatal("a closed log took a batch")
	}
}
