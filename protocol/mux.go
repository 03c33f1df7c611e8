package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// MuxConfig is the yamux configuration both sides use on the carrier.
func MuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 1024
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 15 * time.Second
	c.StreamOpenTimeout = 15 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	c.LogOutput = io.Discard
	return c
}

// Handshake writes local's hello, reads the peer's and negotiates a version.
// On skew sandboxd tells the controller why (best effort) before returning the error.
func Handshake(rw io.ReadWriter, local Hello) (remote Hello, version int, err error) {
	// Write concurrently with the read: an unbuffered carrier must not deadlock
	// when both sides speak first.
	werr := make(chan error, 1)
	go func() { werr <- WriteHello(rw, local) }()
	remote, _, err = ReadHello(rw)
	if err != nil {
		return remote, 0, err
	}
	if err := <-werr; err != nil {
		return remote, 0, err
	}
	if remote.Role == local.Role {
		return remote, 0, fmt.Errorf("%w: peer is also a %s", ErrBadFrame, remote.Role)
	}
	version, err = Negotiate(local, remote)
	if err != nil {
		if local.Role == RoleSandboxd {
			// The controller reports skew itself; sandboxd tells it why it stops.
			_ = WriteMsg(rw, FrameError, &ErrorMsg{Code: CodeUnsupported, Message: err.Error()})
		}
		return remote, 0, err
	}
	return remote, version, nil
}

// MuxConn wraps a carrier for yamux. yamux writes a data frame's 12-byte
// header and its body with two Writes; on an SSH channel that is two
// packets (two encryptions, two wake-ups on the far side). MuxConn sends a
// small frame's header and body in one Write. It relies on yamux's one
// writer (its send loop) writing a body right after the header that
// announces it.
func MuxConn(c io.ReadWriteCloser) io.ReadWriteCloser { return &coalescer{ReadWriteCloser: c} }

// maxCoalesce bounds the bodies copied to join their header; larger ones
// go out as they are (the extra packet is noise next to the data).
const maxCoalesce = 64 << 10

type coalescer struct {
	io.ReadWriteCloser
	mu   sync.Mutex
	hdr  [12]byte
	want int // body length the held header announced; 0: none held
	buf  []byte
}

func (w *coalescer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.want > 0 {
		want := w.want
		w.want = 0
		if len(p) == want {
			w.buf = append(append(w.buf[:0], w.hdr[:]...), p...)
			if _, err := w.ReadWriteCloser.Write(w.buf); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		// Not the announced body (never expected): keep the byte order.
		if _, err := w.ReadWriteCloser.Write(w.hdr[:]); err != nil {
			return 0, err
		}
	}
	// A data frame header (version 0, type 0) announcing a small body.
	if len(p) == 12 && p[0] == 0 && p[1] == 0 {
		if n := int(binary.BigEndian.Uint32(p[8:12])); n > 0 && n <= maxCoalesce {
			copy(w.hdr[:], p)
			w.want = n
			return len(p), nil
		}
	}
	return w.ReadWriteCloser.Write(p)
}
