package protocol

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Forward stream kinds and in-stream frames (spec.md section 7.5). On-wire
// constants like those of const.go; forward_test.go pins them.
//
// A forward moves TCP connections between the host and the sandbox's
// loopback over the yamux session, so no port is opened on either side's
// network:
//
//   - FrameForwardDial (controller -> sandboxd): connect to a loopback
//     address in the sandbox; after FrameForwardReady the stream carries the
//     connection's bytes (a host-side listener's `forward start PORT`).
//   - FrameForwardListen (controller -> sandboxd): listen on a loopback
//     address in the sandbox; after FrameForwardReady the stream stays open
//     for the listener's lifetime (either side closes it to stop). For every
//     accepted connection sandboxd opens a stream to the controller that
//     starts with FrameForwardConn and then carries the connection's bytes
//     (reverse forwards and MCP bridges).
const (
	// Requests.
	FrameForwardListen FrameType = 0x40 // ForwardListen
	FrameForwardConn   FrameType = 0x41 // ForwardConn, sandboxd -> controller
	FrameForwardDial   FrameType = 0x42 // ForwardDial

	// In-stream frames (range 0xB0-0xB3).
	FrameForwardReady FrameType = 0xB0 // ForwardReady: listening or connected
)

// Forward limits.
const (
	// MaxForwardTag bounds a listener tag.
	MaxForwardTag = 128
	// MaxForwardListeners bounds the listeners one sandboxd keeps.
	MaxForwardListeners = 256
)

// ForwardListen asks sandboxd to listen on a loopback address.
type ForwardListen struct {
	// Addr is "127.0.0.1:PORT" or "[::1]:PORT" (any 127/8 address); port 0
	// lets the kernel choose.
	Addr string `json:"addr"`
	// Tag is the controller's name for the listener; sandboxd echoes it in
	// every ForwardConn.
	Tag string `json:"tag"`
	// MCP, when set, registers the listener as the URL of a bridged MCP
	// server in the sandbox's generated client config.
	MCP *MCPEndpoint `json:"mcp,omitempty"`
}

func (m *ForwardListen) Validate() error {
	if m == nil {
		return errors.New("nil forward listen request")
	}
	if err := ValidLoopbackAddr(m.Addr); err != nil {
		return err
	}
	if err := validTag(m.Tag); err != nil {
		return err
	}
	if m.MCP != nil {
		return m.MCP.Validate()
	}
	return nil
}

// ForwardConn opens a stream from sandboxd for one accepted connection.
type ForwardConn struct {
	Tag  string `json:"tag"`
	Peer string `json:"peer,omitempty"` // the client's address in the sandbox
}

func (m *ForwardConn) Validate() error {
	if m == nil {
		return errors.New("nil forward connection")
	}
	if len(m.Peer) > 128 {
		return errors.New("peer address too long")
	}
	return validTag(m.Tag)
}

// ForwardDial asks sandboxd to connect to a loopback address.
type ForwardDial struct {
	Addr string `json:"addr"`
}

func (m *ForwardDial) Validate() error {
	if m == nil {
		return errors.New("nil forward dial request")
	}
	if err := ValidLoopbackAddr(m.Addr); err != nil {
		return err
	}
	if _, p, _ := net.SplitHostPort(m.Addr); p == "0" {
		return errors.New("cannot dial port 0")
	}
	return nil
}

// ForwardReady answers ForwardListen (the bound address) and ForwardDial.
type ForwardReady struct {
	Addr string `json:"addr"`
}

func (m *ForwardReady) Validate() error {
	if m == nil {
		return errors.New("nil forward ready")
	}
	return ValidLoopbackAddr(m.Addr)
}

// ValidLoopbackAddr checks that a is host:port with a loopback IP literal
// (or "localhost") and a port in 0..65535.
func ValidLoopbackAddr(a string) error {
	if len(a) > 64 {
		return errors.New("address too long")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q: %v", truncate(a, 64), err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.HasPrefix(port, "+") {
		return fmt.Errorf("address %q: bad port", truncate(a, 64))
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return fmt.Errorf("address %q: only loopback addresses are forwarded", truncate(a, 64))
	}
	return nil
}

func validTag(t string) error {
	if t == "" || len(t) > MaxForwardTag {
		return fmt.Errorf("tag of %d bytes: must be 1..%d", len(t), MaxForwardTag)
	}
	for _, c := range t {
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("tag %q: printable ASCII without spaces only", truncate(t, 40))
		}
	}
	return nil
}

func forwardFrameName(t FrameType) string {
	switch t {
	case FrameForwardListen:
		return "forward-listen"
	case FrameForwardConn:
		return "forward-conn"
	case FrameForwardDial:
		return "forward-dial"
	case FrameForwardReady:
		return "forward-ready"
	}
	return ""
}
