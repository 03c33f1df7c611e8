package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Frame is one decoded frame. Payload is owned by the caller.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// ReadFrame reads one frame. A payload longer than limit (or MaxPayload when
// limit is 0) is refused with ErrFrameTooLarge without reading it; a stream
// that ends inside a frame gives ErrTruncated.
func ReadFrame(r io.Reader, limit int) (Frame, error) { return ReadFrameBuf(r, limit, nil) }

// ReadFrameBuf is ReadFrame reading the payload into buf when it fits
// (then the payload is valid only until buf is reused), so a reader of
// many data frames allocates none.
func ReadFrameBuf(r io.Reader, limit int, buf []byte) (Frame, error) {
	if limit <= 0 || limit > MaxPayload {
		limit = MaxPayload
	}
	var hdr [HeaderSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF && n == 0 {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("%w: header: %v", ErrTruncated, err)
	}
	t := FrameType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if t == FrameInvalid {
		return Frame{}, fmt.Errorf("%w: frame type 0", ErrBadFrame)
	}
	if n > uint32(limit) {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, t, n, limit)
	}
	var p []byte
	if uint32(cap(buf)) >= n {
		p = buf[:n]
	} else {
		p = make([]byte, n)
	}
	if _, err := io.ReadFull(r, p); err != nil {
		return Frame{}, fmt.Errorf("%w: %s payload: %v", ErrTruncated, t, err)
	}
	return Frame{Type: t, Payload: p}, nil
}

// AppendFrame appends the encoding of one frame to b.
func AppendFrame(b []byte, t FrameType, payload []byte) []byte {
	b = append(b, byte(t), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(payload)))
	return append(b, payload...)
}

// WriteFrame writes one frame with a single Write call.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, t, len(payload))
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderSize+len(payload)), t, payload))
	return err
}

// WriteMsg encodes m as JSON and writes it as one frame of type t.
func WriteMsg(w io.Writer, t FrameType, m any) error {
	p, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", t, err)
	}
	return WriteFrame(w, t, p)
}

// Validator is implemented by every message; Validate is called right after
// decoding, on both sides.
type Validator interface {
	Validate() error
}

// DecodeMsg decodes a frame payload into m and validates it. Unknown fields
// are ignored (newer peers may add optional fields); missing required fields fail.
func DecodeMsg(f Frame, want FrameType, m Validator) error {
	if f.Type != want {
		return fmt.Errorf("%w: got %s, want %s", ErrUnexpectedFrame, f.Type, want)
	}
	if err := json.Unmarshal(f.Payload, m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadFrame, f.Type, err)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, f.Type, err)
	}
	return nil
}

// Writer serialises frames from several goroutines onto one stream and splits
// data into DataChunk-sized frames.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Frame writes one frame.
func (fw *Writer) Frame(t FrameType, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, t, len(payload))
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.buf = AppendFrame(fw.buf[:0], t, payload)
	_, err := fw.w.Write(fw.buf)
	if cap(fw.buf) > 4*DataChunk {
		fw.buf = nil
	}
	return err
}

// Raw writes b, which holds whole frames (built with AppendFrame), in one
// write.
func (fw *Writer) Raw(b []byte) (int, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.w.Write(b)
}

// Msg writes m as a JSON frame of type t.
func (fw *Writer) Msg(t FrameType, m any) error {
	p, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", t, err)
	}
	return fw.Frame(t, p)
}

// Data writes p as one or more data frames of type t.
func (fw *Writer) Data(t FrameType, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), DataChunk)
		if err := fw.Frame(t, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Error writes a terminal error frame.
func (fw *Writer) Error(code, format string, args ...any) error {
	return fw.Msg(FrameError, &ErrorMsg{Code: code, Message: fmt.Sprintf(format, args...)})
}

// DataWriter adapts a Writer to io.Writer for one data frame type.
type DataWriter struct {
	W    *Writer
	Type FrameType
}

func (d DataWriter) Write(p []byte) (int, error) {
	if err := d.W.Data(d.Type, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// RemoteError is a FrameError received from the peer.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// AsRemoteError returns the RemoteError in err's chain, if any.
func AsRemoteError(err error) (*RemoteError, bool) {
	var re *RemoteError
	ok := errors.As(err, &re)
	return re, ok
}

// ErrorFromFrame decodes a FrameError into a *RemoteError (or a decode error).
func ErrorFromFrame(f Frame) error {
	var m ErrorMsg
	if err := DecodeMsg(f, FrameError, &m); err != nil {
		return err
	}
	return &RemoteError{Code: m.Code, Message: m.Message}
}

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameError:
		return "error"
	case FrameExecStart:
		return "exec-start"
	case FrameExecAttach:
		return "exec-attach"
	case FrameInfo:
		return "info"
	case FrameExecList:
		return "exec-list"
	case FrameExecStarted:
		return "exec-started"
	case FrameStdin:
		return "stdin"
	case FrameStdinEOF:
		return "stdin-eof"
	case FrameStdout:
		return "stdout"
	case FrameStderr:
		return "stderr"
	case FrameSignal:
		return "signal"
	case FrameResize:
		return "resize"
	case FrameExit:
		return "exit"
	case FrameDetach:
		return "detach"
	case FrameInfoReply:
		return "info-reply"
	case FrameExecListReply:
		return "exec-list-reply"
	case FrameExecDone:
		return "exec-done"
	}
	if n := syncFrameName(t); n != "" {
		return n
	}
	if n := forwardFrameName(t); n != "" {
		return n
	}
	if n := mcpFrameName(t); n != "" {
		return n
	}
	if n := eventsFrameName(t); n != "" {
		return n
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// IsRequest reports whether t may open a stream.
func (t FrameType) IsRequest() bool { return t >= 0x10 && t < 0x80 }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
