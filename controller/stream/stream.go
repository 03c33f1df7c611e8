// Package stream is the client side of one exec stream: it sends the opening
// request, then turns the frames that follow into output, an exit status, and
// stdin/signal/resize messages. It works on any byte stream that carries the
// exec frames: a yamux stream to sandboxd, or a connection upgraded by the
// controller daemon's API.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/bohica-labs/darkshell/protocol"
)

// ErrNoExit is returned when the stream ends before an exit frame arrived.
var ErrNoExit = errors.New("exec stream ended without an exit status")

// Proc is one running (or finished) process seen through an exec stream.
type Proc struct {
	Started protocol.ExecStarted

	rw     io.ReadWriteCloser
	w      *protocol.Writer
	mu     sync.Mutex
	offset int64 // output bytes received so far (stdout+stderr)
	exited bool  // Wait read the exit: the stream ended cleanly
	once   sync.Once
}

// Releaser is a stream that can carry another exec once this one has ended
// cleanly (a reused daemon API connection): Close releases it instead.
type Releaser interface {
	Release() error
}

// Start sends req on rw and waits for the process to start.
func Start(ctx context.Context, rw io.ReadWriteCloser, req *protocol.ExecStart) (*Proc, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("exec request: %w", err)
	}
	return open(ctx, rw, protocol.FrameExecStart, req, 0)
}

// Attach re-attaches to process id on rw, asking for output from offset.
func Attach(ctx context.Context, rw io.ReadWriteCloser, req *protocol.ExecAttach) (*Proc, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("attach request: %w", err)
	}
	return open(ctx, rw, protocol.FrameExecAttach, req, req.Offset)
}

func open(ctx context.Context, rw io.ReadWriteCloser, t protocol.FrameType, req any, offset int64) (*Proc, error) {
	p := &Proc{rw: rw, w: protocol.NewWriter(rw)}
	stop := context.AfterFunc(ctx, func() { rw.Close() })
	defer stop()
	if err := p.w.Msg(t, req); err != nil {
		rw.Close()
		return nil, fmt.Errorf("send %s: %w", t, err)
	}
	f, err := protocol.ReadFrame(rw, protocol.MaxControlPayload)
	if err != nil {
		rw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == io.EOF {
			return nil, fmt.Errorf("%s: sandboxd closed the stream before answering", t)
		}
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	if f.Type == protocol.FrameError {
		rw.Close()
		return nil, protocol.ErrorFromFrame(f)
	}
	if err := protocol.DecodeMsg(f, protocol.FrameExecStarted, &p.Started); err != nil {
		rw.Close()
		return nil, err
	}
	p.offset = p.Started.Offset
	return p, nil
}

// Offset is the number of output bytes received so far; pass it to Attach
// after a disconnect to resume without duplicates.
func (p *Proc) Offset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.offset
}

// Wait copies output to stdout and stderr until the process exits, and
// returns its exit. Either writer may be nil to discard. An error frame from
// sandboxd is returned as *protocol.RemoteError; a stream that breaks before
// the exit returns an error wrapping ErrNoExit (the process may still run if it
// was durable: re-attach with Offset()).
func (p *Proc) Wait(stdout, stderr io.Writer) (*protocol.ExitMsg, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		f, err := protocol.ReadFrame(p.rw, protocol.MaxPayload)
		if err != nil {
			if err == io.EOF {
				return nil, ErrNoExit
			}
			return nil, fmt.Errorf("%w: %v", ErrNoExit, err)
		}
		switch f.Type {
		case protocol.FrameStdout, protocol.FrameStderr:
			p.mu.Lock()
			p.offset += int64(len(f.Payload))
			p.mu.Unlock()
			out := stdout
			if f.Type == protocol.FrameStderr {
				out = stderr
			}
			if _, err := out.Write(f.Payload); err != nil {
				return nil, fmt.Errorf("write output: %w", err)
			}
		case protocol.FrameExit:
			var m protocol.ExitMsg
			if err := protocol.DecodeMsg(f, protocol.FrameExit, &m); err != nil {
				return nil, err
			}
			p.mu.Lock()
			p.exited = true
			p.mu.Unlock()
			return &m, nil
		case protocol.FrameError:
			return nil, protocol.ErrorFromFrame(f)
		default:
			return nil, fmt.Errorf("%w: %s on an exec stream", protocol.ErrUnexpectedFrame, f.Type)
		}
	}
}

// Write sends stdin data.
func (p *Proc) Write(b []byte) (int, error) {
	if err := p.w.Data(protocol.FrameStdin, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// CloseStdin sends end-of-file on the process's stdin.
func (p *Proc) CloseStdin() error { return p.w.Frame(protocol.FrameStdinEOF, nil) }

// Signal forwards a signal to the process group.
func (p *Proc) Signal(sig int) error {
	return p.w.Msg(protocol.FrameSignal, &protocol.SignalMsg{Signal: sig})
}

// Resize changes the PTY window.
func (p *Proc) Resize(rows, cols uint16) error {
	return p.w.Msg(protocol.FrameResize, &protocol.ResizeMsg{Rows: rows, Cols: cols})
}

// Detach leaves a durable process running and closes the stream.
func (p *Proc) Detach() error {
	err := p.w.Frame(protocol.FrameDetach, nil)
	p.Close()
	return err
}

// Close closes the stream; a non-durable process is killed by sandboxd.
// After Wait returned the exit, a stream that can carry the next exec (a
// Releaser) is released for it instead.
func (p *Proc) Close() error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		if r, ok := p.rw.(Releaser); ok && exited {
			err = r.Release()
			return
		}
		err = p.rw.Close()
	})
	return err
}

// CopyStdin copies r to the process's stdin, then sends end-of-file.
func (p *Proc) CopyStdin(r io.Reader) error {
	buf := make([]byte, protocol.DataChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := p.w.Data(protocol.FrameStdin, buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return p.CloseStdin()
		}
		if err != nil {
			return err
		}
	}
}
