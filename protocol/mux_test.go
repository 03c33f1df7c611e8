package protocol

import (
	"bytes"
	"io"
	"sync"
	"testing"

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
				if s == 12+len(m) {
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
