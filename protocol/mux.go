package protocol

import (
	"fmt"
	"io"
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
