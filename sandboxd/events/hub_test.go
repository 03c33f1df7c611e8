package events

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

func ev(kind string, pid int) protocol.Event {
	e := protocol.Event{Time: time.Now(), Kind: kind, PID: pid, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
	if e.IsFile() {
		e.Path, e.Result = "/sandbox/x", protocol.ResultOK
	}
	return e
}

func testHello() protocol.EventsHello {
	return protocol.EventsHello{Sources: []string{protocol.SourceEBPF}, Fidelity: protocol.FidelityComplete}
}

func TestHubHistory(t *testing.T) {
	h := NewHub(4, testHello())
	for i := 1; i <= 6; i++ {
		k := protocol.KindExec
		if i%2 == 0 {
			k = protocol.KindFileWrite
		}
		h.Publish(ev(k, i))
	}
	cases := []struct {
		name string
		req  protocol.EventsRequest
		pids []int
	}{
		{"files, oldest evicted", protocol.EventsRequest{History: true, Files: true}, []int{3, 4, 5, 6}},
		{"no files", protocol.EventsRequest{History: true}, []int{3, 5}},
		{"since seq", protocol.EventsRequest{History: true, Files: true, SinceSeq: 4}, []int{5, 6}},
		{"since time", protocol.EventsRequest{History: true, Files: true, SinceUnixMs: time.Now().Add(time.Hour).UnixMilli()}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []int
			for _, e := range h.History(&c.req) {
				got = append(got, e.PID)
			}
			if len(got) != len(c.pids) {
				t.Fatalf("pids %v, want %v", got, c.pids)
			}
			for i := range got {
				if got[i] != c.pids[i] {
					t.Fatalf("pids %v, want %v", got, c.pids)
				}
			}
		})
	}
	if hello := h.Hello(); hello.Evicted != 2 || hello.HistoryCap != 4 || hello.Epoch == 0 {
		t.Fatalf("hello %+v: want 2 evicted, cap 4, an epoch", hello)
	}
}

// TestHubServe runs a real stream over a pipe: hello, history, end, then
// live events; a subscriber that does not read is skipped, not waited for.
func TestHubServe(t *testing.T) {
	h := NewHub(0, testHello())
	h.SetLost(func() uint64 { return 7 })
	h.Publish(ev(protocol.KindExec, 10))
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, a, &protocol.EventsRequest{History: true, Follow: true}) }()

	read := func() any {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := protocol.ReadFrame(b, protocol.MaxEventsPayload)
		if err != nil {
			t.Fatal(err)
		}
		m, err := protocol.DecodeEventsFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m, ok := read().(*protocol.EventsHello); !ok || m.Lost != 7 {
		t.Fatalf("first frame %+v", m)
	}
	if m, ok := read().(*protocol.EventsBatch); !ok || len(m.Events) != 1 || m.Events[0].PID != 10 || m.Lost != 7 {
		t.Fatalf("history %+v", m)
	}
	if m, ok := read().(*protocol.EventsEnd); !ok || m.LastSeq != 1 {
		t.Fatalf("end %+v", m)
	}
	h.Publish(ev(protocol.KindFileWrite, 11)) // not asked for
	h.Publish(ev(protocol.KindExit, 12))
	if m, ok := read().(*protocol.EventsBatch); !ok || len(m.Events) != 1 || m.Events[0].PID != 12 {
		t.Fatalf("live %+v", m)
	}
	// Publishing never blocks on a reader that stopped reading.
	start := time.Now()
	for i := 0; i < 3*subQueue; i++ {
		h.Publish(ev(protocol.KindExec, 100))
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Publish blocked on a slow subscriber")
	}
	b.Close()
	select {
	case err := <-done:
		if err != nil && err != io.ErrClosedPipe {
			t.Logf("serve ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end when the peer went away")
	}
}

func TestHubBatchLimits(t *testing.T) {
	h := NewHub(0, testHello())
	big := ev(protocol.KindExec, 1)
	big.Argv = make([]string, 160)
	for i := range big.Argv {
		big.Argv[i] = strings.Repeat("\x01", 100) // worst case: each byte escapes to \u0001
	}
	if err := big.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1200; i++ {
		h.Publish(big)
	}
	a, b := net.Pipe()
	go func() {
		if err := h.Serve(context.Background(), a, &protocol.EventsRequest{History: true}); err != nil {
			t.Error(err)
		}
		a.Close()
	}()
	n := 0
	for {
		f, err := protocol.ReadFrame(b, protocol.MaxEventsPayload)
		if err != nil {
			t.Fatalf("after %d events: %v", n, err)
		}
		m, err := protocol.DecodeEventsFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		if bt, ok := m.(*protocol.EventsBatch); ok {
			n += len(bt.Events)
		}
		if _, ok := m.(*protocol.EventsEnd); ok {
			break
		}
	}
	if n != 1200 {
		t.Fatalf("%d events, want 1200", n)
	}
	if s := encodedSize(&big); approxSize(&big) < s {
		t.Fatalf("approxSize %d below the encoded size %d", approxSize(&big), s)
	}
}
