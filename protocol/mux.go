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

// MuxConn wraps a carrier for yamux so that one exchange costs as few
// carrier writes as it can; on an SSH channel every write is a packet (an
// encryption, and a wake-up of sshd and of the far side).
//   - yamux writes a data frame's 12-byte header and its body with two
//     Writes: MuxConn sends a small frame's header and body in one. It
//     relies on yamux's one writer (its send loop) writing a body right
//     after the header that announces it.
//   - Opening a stream sends a window update with SYN, accepting one a
//     window update with ACK, each on its own. MuxConn holds such a frame
//     (at most holdOpen) and sends it with the next write: the request
//     frame the opener writes at once, or the accepter's first answer.
//     Frames with FIN or RST, pings and plain window updates flush at once.
//   - An exec stream's exit frame is its last: the stream's FIN follows at
//     once. MuxConn holds a small data frame that starts with an exit frame
//     (at most holdExit) and sends it with the FIN, so the end of a command
//     is one packet, not two.
func MuxConn(c io.ReadWriteCloser) io.ReadWriteCloser {
	return newCoalescer(c, holdOpen, holdExit)
}

func newCoalescer(c io.ReadWriteCloser, holdOpen, holdExit time.Duration) *coalescer {
	w := &coalescer{ReadWriteCloser: c, holdOpen: holdOpen, holdExit: holdExit}
	w.timer = time.AfterFunc(time.Hour, w.flushHeld)
	w.timer.Stop()
	return w
}

// maxCoalesce bounds the bodies copied to join their header; larger ones
// go out as they are (the extra packet is noise next to the data).
const maxCoalesce = 64 << 10

// holdOpen bounds how long a SYN or ACK waits for a frame to ride with.
const holdOpen = time.Millisecond

// holdExit bounds how long an exit frame waits for its stream's FIN, and
// maxExitHold the size of a data frame held for it.
const (
	holdExit    = 200 * time.Microsecond
	maxExitHold = 1024
)

// yamux header fields (github.com/hashicorp/yamux const.go).
const (
	muxTypeData         = 0
	muxTypeWindowUpdate = 1
	muxFlagSYN          = 1
	muxFlagACK          = 2
	muxFlagFIN          = 4
	muxFlagRST          = 8
	muxHeaderSize       = 12
)

type coalescer struct {
	io.ReadWriteCloser
	holdOpen, holdExit time.Duration // holdOpen and holdExit outside tests

	mu      sync.Mutex
	pending []byte // held bytes, written before or with the next write
	want    int    // body length a held data header announced; 0: none
	timer   *time.Timer
	err     error // a failed flush from the timer, reported by the next Write
}

func (w *coalescer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.want > 0 {
		want := w.want
		w.want = 0
		if len(p) == want {
			if want <= maxExitHold && FrameType(p[0]) == FrameExit {
				w.pending = append(w.pending, p...)
				w.timer.Reset(w.holdExit) // also cuts short a held SYN's wait
				return len(p), nil
			}
			return len(p), w.send(p)
		}
		// Not the announced body (never expected): keep the byte order.
		if err := w.send(nil); err != nil {
			return 0, err
		}
	}
	if len(p) == muxHeaderSize && p[0] == 0 {
		flags := binary.BigEndian.Uint16(p[2:4])
		switch {
		case p[1] == muxTypeData:
			if n := int(binary.BigEndian.Uint32(p[8:12])); n > 0 && n <= maxCoalesce {
				w.pending = append(w.pending, p...)
				w.want = n
				return len(p), nil
			}
		case p[1] == muxTypeWindowUpdate && flags&(muxFlagSYN|muxFlagACK) != 0 && flags&(muxFlagFIN|muxFlagRST) == 0:
			held := len(w.pending) > 0
			w.pending = append(w.pending, p...)
			if !held {
				w.timer.Reset(w.holdOpen)
			}
			return len(p), nil
		}
	}
	return len(p), w.send(p)
}

// send writes the held bytes and p in one write. Called with mu held.
func (w *coalescer) send(p []byte) error {
	b := p
	if len(w.pending) > 0 {
		w.timer.Stop()
		w.pending = append(w.pending, p...)
		b = w.pending
	}
	_, err := w.ReadWriteCloser.Write(b)
	w.pending = w.pending[:0]
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

// flushHeld writes a held SYN, ACK or exit frame that nothing came to join.
func (w *coalescer) flushHeld() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 && w.want == 0 && w.err == nil {
		_ = w.send(nil)
	}
}

func (w *coalescer) Close() error {
	w.timer.Stop()
	return w.ReadWriteCloser.Close()
}
