package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/bohica-labs/darkshell/protocol"
)

// Opener opens a raw stream to sandboxd (session.Session satisfies it).
type Opener interface {
	Open(ctx context.Context) (net.Conn, error)
}

// Stream reads one sandboxd events stream.
type Stream struct {
	conn  net.Conn
	Hello protocol.EventsHello
	// End is set once the history is complete (FrameEventsEnd).
	End  *protocol.EventsEnd
	stop func() bool
}

// Open sends req on a new stream and reads the hello.
func Open(ctx context.Context, o Opener, req *protocol.EventsRequest) (*Stream, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("unable to open events stream: %w", err)
	}
	conn, err := o.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("unable to open events stream: %w", err)
	}
	s := &Stream{conn: conn}
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if err := protocol.WriteMsg(conn, protocol.FrameEvents, req); err != nil {
		s.Close()
		return nil, fmt.Errorf("unable to send events request: %w", err)
	}
	m, err := s.next()
	if err != nil {
		s.Close()
		return nil, err
	}
	h, ok := m.(*protocol.EventsHello)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("%w: events stream did not start with a hello", protocol.ErrBadFrame)
	}
	s.Hello = *h
	return s, nil
}

func (s *Stream) next() (any, error) {
	f, err := protocol.ReadFrame(s.conn, protocol.MaxEventsPayload)
	if err != nil {
		return nil, err
	}
	return protocol.DecodeEventsFrame(f)
}

// Next returns the next batch. After the history it returns an empty batch
// with s.End set once; io.EOF when the stream ended cleanly.
func (s *Stream) Next() (*protocol.EventsBatch, error) {
	m, err := s.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("unable to read events: %w", err)
	}
	switch m := m.(type) {
	case *protocol.EventsBatch:
		return m, nil
	case *protocol.EventsEnd:
		s.End = m
		return &protocol.EventsBatch{Lost: m.Lost}, nil
	}
	return nil, fmt.Errorf("%w: unexpected %T on an events stream", protocol.ErrBadFrame, m)
}

// Unbind detaches the stream from the context it was opened with: it then
// lives until Close or until sandboxd ends it.
func (s *Stream) Unbind() { s.stop() }

// Close ends the stream.
func (s *Stream) Close() error {
	s.stop()
	return s.conn.Close()
}
