package protocol

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// writes records every Write the carrier gets.
type writes struct {
	mu sync.Mutex
	io.ReadWriteCloser
	sizes []int
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.ReadWriteCloser.Write(p)
}

type pipeEnd struct {
	io.Reader
	io.WriteCloser
}

func (p pipeEnd) Close() error { return p.WriteCloser.Close() }

// TestMuxConnCoalesces: through real yamux sessions, small data frames
// reach the carrier as one write each (header and body together), large
// ones still arrive intact, and nothing is reordered.
func TestMuxConnCoalesces(t *testing.T) {
	ar, bw := io.Pipe()
	br, aw := io.Pipe()
	ca := &writes{ReadWriteCloser: pipeEnd{ar, aw}}
	cli, err := yamux.Client(MuxConn(ca), MuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := yamux.Server(MuxConn(pipeEnd{br, bw}), MuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	defer srv.Close()
	go func() {
		for {
			st, err := srv.AcceptStream()
			if err != nil {
				return
			}
			go func() { io.Copy(st, st); st.Close() }()
		}
	}()
	st, err := cli.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: several frames, some above the coalescing bound
	msgs := [][]byte{[]byte("hello"), bytes.Repeat([]byte{7}, 1000), big, []byte("bye")}
	for _, m := range msgs {
		ca.mu.Lock()
		ca.sizes = nil
		ca.mu.Unlock()
		if _, err := st.Write(m); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(m))
		if _, err := io.ReadFull(st, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, m) {
			t.Fatalf("echo of %d bytes differs", len(m))
		}
		if len(m) < 2000 {
			ca.mu.Lock()
			sizes := append([]int(nil), ca.sizes...)
			ca.mu.Unlock()
			found := false
			for _, s := range sizes {
				if s == 12+len(m) || s == 24+len(m) { // the first carries the SYN too
					found = true
				}
				if s == len(m) {
					t.Fatalf("a %d-byte body was written apart from its header: writes %v", len(m), sizes)
				}
			}
			if !found {
				t.Fatalf("no joined write of %d bytes: %v", 12+len(m), sizes)
			}
		}
	}
}

// muxPair is a yamux client and server over MuxConn on in-memory pipes;
// cw and sw record the client's and the server's carrier writes.
func muxPair(t *testing.T) (cli, srv *yamux.Session, cw, sw *writes) {
	t.Helper()
	return muxPairHold(t, holdOpen, holdExit)
}

// muxPairHold is muxPair with the coalescers' hold times: tests that count
// what rides together hold long, so a slow machine (-race, a busy CI)
// does not flush a held frame before its partner comes.
func muxPairHold(t *testing.T, open, exit time.Duration) (cli, srv *yamux.Session, cw, sw *writes) {
	t.Helper()
	ar, bw := io.Pipe()
	br, aw := io.Pipe()
	cw = &writes{ReadWriteCloser: pipeEnd{ar, aw}}
	sw = &writes{ReadWriteCloser: pipeEnd{br, bw}}
	cfg := MuxConfig()
	cfg.EnableKeepAlive = false // no pings among the counted writes
	cli, err := yamux.Client(newCoalescer(cw, open, exit), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = yamux.Server(newCoalescer(sw, open, exit), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return cli, srv, cw, sw
}

func (w *writes) take() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sizes
	w.sizes = nil
	return s
}

// TestMuxConnOpenRidesWithRequest: a stream's SYN leaves in the same carrier
// write as the opener's request, the accepter's ACK in the same write as its
// answer: one write each way for a request and its reply.
func TestMuxConnOpenRidesWithRequest(t *testing.T) {
	cli, srv, cw, sw := muxPairHold(t, 10*time.Second, holdExit)
	go func() {
		st, err := srv.AcceptStream()
		if err != nil {
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(st, buf); err == nil {
			st.Write([]byte("world!"))
		}
	}()
	st, err := cli.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "world!" {
		t.Fatalf("reply %q, %v", got, err)
	}
	if c := cw.take(); len(c) != 1 || c[0] != 12+12+5 {
		t.Errorf("opener's carrier writes %v, want one of SYN+header+request (29 bytes)", c)
	}
	if s := sw.take(); len(s) != 1 || s[0] != 12+12+6 {
		t.Errorf("accepter's carrier writes %v, want one of ACK+header+reply (30 bytes)", s)
	}
}

// TestMuxConnHeldOpenFlushes: a SYN that no data follows still leaves within
// holdOpen, so a peer that waits for the accepter to speak first is served.
func TestMuxConnHeldOpenFlushes(t *testing.T) {
	cli, srv, cw, _ := muxPair(t)
	accepted := make(chan error, 1)
	go func() {
		st, err := srv.AcceptStream()
		if err == nil {
			_, err = st.Write([]byte("banner"))
		}
		accepted <- err
	}()
	st, err := cli.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("the server never accepted the stream: %v", err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "banner" {
		t.Fatalf("banner %q, %v", got, err)
	}
	if c := cw.take(); len(c) == 0 || c[0] != 12 {
		t.Errorf("opener's carrier writes %v, want the SYN alone (12 bytes) first", c)
	}
}

// TestMuxConnExitRidesWithFIN: an exit frame and the FIN that closes its
// stream leave in one carrier write; an exit frame without a FIN behind it
// still leaves within holdExit; other data is not held.
func TestMuxConnExitRidesWithFIN(t *testing.T) {
	exitFrame := func() []byte {
		var b bytes.Buffer
		if err := WriteMsg(&b, FrameExit, &ExitMsg{Code: 3}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()
	t.Run("with the FIN", func(t *testing.T) {
		cli, srv, _, sw := muxPairHold(t, 10*time.Second, 10*time.Second)
		done := make(chan error, 1)
		go func() {
			st, err := srv.AcceptStream()
			if err != nil {
				done <- err
				return
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(st, buf); err != nil {
				done <- err
				return
			}
			if _, err := st.Write(exitFrame); err != nil {
				done <- err
				return
			}
			done <- st.Close()
		}()
		st, err := cli.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.Write([]byte("hello"))
		got, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(got, exitFrame) {
			t.Fatalf("read %x, %v; want the exit frame then EOF", got, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The accepter never wrote before the exit, so its held ACK rides too.
		if s := sw.take(); len(s) != 1 || s[0] != 12+12+len(exitFrame)+12 {
			t.Errorf("accepter's carrier writes %v, want one of ACK+header+exit+FIN (%d bytes)", s, 12+12+len(exitFrame)+12)
		}
	})
	t.Run("alone", func(t *testing.T) {
		cli, srv, _, _ := muxPair(t)
		go func() {
			st, err := srv.AcceptStream()
			if err == nil {
				st.Write(exitFrame) // no Close: nothing follows
			}
		}()
		st, err := cli.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.Write([]byte("x"))
		got := make([]byte, len(exitFrame))
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, exitFrame) {
			t.Fatalf("read %x, %v; want the held exit frame to arrive alone", got, err)
		}
	})
}
