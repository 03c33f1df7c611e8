package session

import (
	"fmt"
	"net"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// ForwardHandler serves one connection a sandbox-side listener accepted;
// conn carries the connection's bytes and is the handler's to close.
type ForwardHandler func(conn net.Conn, m *protocol.ForwardConn)

// HandleForward routes the streams sandboxd opens for the listener tagged
// tag to h, until the returned function is called.
func (s *Session) HandleForward(tag string, h ForwardHandler) (unregister func()) {
	s.inMu.Lock()
	if s.inbound == nil {
		s.inbound = map[string]ForwardHandler{}
	}
	s.inbound[tag] = h
	s.inMu.Unlock()
	return func() {
		s.inMu.Lock()
		delete(s.inbound, tag)
		s.inMu.Unlock()
	}
}

// acceptInbound serves the streams sandboxd opens (connections accepted by
// its loopback listeners) until the session ends.
func (s *Session) acceptInbound() {
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			return
		}
		go s.serveInbound(st)
	}
}

func (s *Session) serveInbound(st net.Conn) {
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := protocol.ReadFrame(st, protocol.MaxControlPayload)
	if err != nil {
		st.Close()
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	var m protocol.ForwardConn
	if err := protocol.DecodeMsg(f, protocol.FrameForwardConn, &m); err != nil {
		_ = protocol.WriteMsg(st, protocol.FrameError, &protocol.ErrorMsg{Code: protocol.CodeBadRequest, Message: err.Error()})
		st.Close()
		return
	}
	s.inMu.Lock()
	h := s.inbound[m.Tag]
	s.inMu.Unlock()
	if h == nil {
		_ = protocol.WriteMsg(st, protocol.FrameError, &protocol.ErrorMsg{Code: protocol.CodeNotFound,
			Message: fmt.Sprintf("no forward %q on the controller", m.Tag)})
		st.Close()
		return
	}
	h(st, &m)
}
