package process

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDrainReadyAfterDeadline: output already in the pipe when the drain
// deadline has passed is still delivered (a reader scheduled late under load
// used to lose it: CI's TestConcurrentExecs saw exit 0 with empty stdout).
func TestDrainReadyAfterDeadline(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()                    // held open, as by a background grandchild: no EOF
	want := strings.Repeat("x", 40000) // fits the pipe: written before the "exit"
	if _, err := w.WriteString(want); err != nil {
		t.Fatal(err)
	}
	if err := r.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Skipf("pipe not pollable: %v", err)
	}
	buf := make([]byte, chunkSize)
	if _, err := r.Read(buf); !os.IsTimeout(err) {
		t.Fatalf("read past the deadline: %v, want a timeout (the case drainReady exists for)", err)
	}
	var got bytes.Buffer
	drainReady(r, buf, func(b []byte) { got.Write(b) })
	if got.String() != want {
		t.Fatalf("drained %d bytes, want %d", got.Len(), len(want))
	}
}

// TestLateReaderKeepsOutput: a reader that first runs after the main process
// exited and the drain deadline passed still puts the pipe's contents in the
// ring.
func TestLateReaderKeepsOutput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	want := strings.Repeat("late output\n", 1000)
	if _, err := w.WriteString(want); err != nil {
		t.Fatal(err)
	}
	p := &Process{ring: newRing(0), log: slog.New(slog.DiscardHandler)}
	p.cond.L = &p.mu
	p.exitAt.Store(time.Now().Add(-time.Second).UnixNano())
	p.readers.Add(1)
	p.read(r, false)
	var got []byte
	dst := make([]byte, chunkSize)
	for off := p.ring.start; off < p.ring.end; {
		n, _ := p.ring.read(off, dst)
		got = append(got, dst[:n]...)
		off += int64(n)
	}
	if string(got) != want {
		t.Fatalf("ring holds %d bytes, want %d", len(got), len(want))
	}
}

// TestDrainReadyBounded: a writer that never stops cannot hold the drain.
func TestDrainReadyBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer w.Close()
		b := make([]byte, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Write(b); err != nil {
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	total := 0
	done := make(chan struct{})
	go func() {
		drainReady(r, make([]byte, chunkSize), func(b []byte) { total += len(b) })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drainReady did not return while the writer kept writing")
	}
	if total == 0 || total > maxLateDrain+chunkSize {
		t.Fatalf("drained %d bytes, want between 1 and %d", total, maxLateDrain+chunkSize)
	}
}
