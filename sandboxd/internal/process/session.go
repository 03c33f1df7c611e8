package process

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// client is one exec stream attached to a process.
type client struct {
	rw    io.ReadWriteCloser
	w     *protocol.Writer
	stdin bool // the client may send stdin frames

	off  int64 // next output offset to send; guarded by Process.mu
	gone bool  // taken over or left; guarded by Process.mu

	kickOnce sync.Once
}

func newClient(rw io.ReadWriteCloser, stdin bool) *client {
	return &client{rw: rw, w: protocol.NewWriter(rw), stdin: stdin}
}

// kick ends the client's stream: it unblocks a pending read (a yamux stream
// only half-closes on Close) and closes it.
func (c *client) kick() {
	c.kickOnce.Do(func() {
		if d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
			_ = d.SetReadDeadline(time.Now())
		}
		_ = c.rw.Close()
	})
}

// join makes rw the process's client, taking over from a previous one, and
// returns the ExecStarted reply for it. Replay starts at off, or at the oldest
// byte the ring still holds.
func (p *Process) join(rw io.ReadWriteCloser, off int64, stdin bool) (*client, protocol.ExecStarted, error) {
	c := newClient(rw, stdin && p.hasStdin)
	p.mu.Lock()
	if p.forgotten || p.abandoned {
		p.mu.Unlock()
		return nil, protocol.ExecStarted{}, errorf(protocol.CodeNoProcess, nil, "process %s has ended and is no longer kept", p.id)
	}
	var lost int64
	if off < p.ring.start {
		lost = p.ring.start - off
		off = p.ring.start
	}
	off = min(off, p.ring.end)
	c.off = off
	old := p.client
	if old != nil {
		old.gone = true
	}
	p.client = c
	p.stopTimerLocked()
	p.cond.Broadcast()
	p.mu.Unlock()
	if old != nil {
		p.log.Debug("client taken over by a new attach")
		old.kick()
	}
	return c, protocol.ExecStarted{ID: p.id, PID: p.pid, Attached: true, Offset: off, Lost: lost}, nil
}

// serve runs an attached client's stream: the reply, then output (sender
// goroutine) and client frames (this goroutine) until either ends.
func (p *Process) serve(ctx context.Context, c *client, started protocol.ExecStarted) {
	stop := context.AfterFunc(ctx, c.kick)
	defer stop()
	if err := c.w.Msg(protocol.FrameExecStarted, &started); err != nil {
		p.leave(c, false)
		c.kick()
		return
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		p.send(c)
	}()
	detached, ferr := p.input(c)
	p.leave(c, detached)
	if ferr != nil {
		_ = c.w.Error(ferr.Code, "%s", ferr.Msg)
	}
	c.kick()
	<-sent
}

// send streams output from the client's offset, then the exit.
func (p *Process) send(c *client) {
	buf := make([]byte, protocol.DataChunk)
	p.mu.Lock()
	for {
		for !c.gone && c.off >= p.ring.end && !p.finished {
			p.cond.Wait()
		}
		if c.gone {
			p.mu.Unlock()
			return
		}
		c.off = max(c.off, p.ring.start)
		if c.off < p.ring.end {
			n, stderr := p.ring.read(c.off, buf)
			c.off += int64(n)
			p.cond.Broadcast() // a reader may wait for room
			p.mu.Unlock()
			t := protocol.FrameStdout
			if stderr {
				t = protocol.FrameStderr
			}
			if err := c.w.Frame(t, buf[:n]); err != nil {
				c.kick()
				return
			}
			p.mu.Lock()
			continue
		}
		exit := p.exit
		p.mu.Unlock()
		if err := c.w.Msg(protocol.FrameExit, &exit); err != nil {
			c.kick()
			return
		}
		p.leave(c, false)
		c.kick()
		return
	}
}

// input handles the client's frames. It returns detached when the client
// left with FrameDetach, and a protocol error to report when it misbehaved.
func (p *Process) input(c *client) (detached bool, ferr *Error) {
	for {
		f, err := protocol.ReadFrame(c.rw, protocol.MaxPayload)
		if err != nil {
			if errors.Is(err, protocol.ErrFrameTooLarge) {
				return false, errorf(protocol.CodeLimit, nil, "%v", err)
			}
			return false, nil
		}
		switch f.Type {
		case protocol.FrameStdin:
			if !c.stdin {
				return false, errorf(protocol.CodeBadRequest, nil, "stdin frame refused: this stream did not ask for stdin")
			}
			p.writeStdin(f.Payload)
		case protocol.FrameStdinEOF:
			if c.stdin {
				p.closeStdin()
			}
		case protocol.FrameSignal:
			var m protocol.SignalMsg
			if err := protocol.DecodeMsg(f, protocol.FrameSignal, &m); err != nil {
				return false, errorf(protocol.CodeBadRequest, nil, "%v", err)
			}
			p.signal(syscall.Signal(m.Signal))
		case protocol.FrameResize:
			var m protocol.ResizeMsg
			if err := protocol.DecodeMsg(f, protocol.FrameResize, &m); err != nil {
				return false, errorf(protocol.CodeBadRequest, nil, "%v", err)
			}
			if err := p.resize(m.Rows, m.Cols); err != nil {
				p.log.Debug("resize", "err", err)
			}
		case protocol.FrameDetach:
			return true, nil
		default:
			return false, errorf(protocol.CodeBadRequest, nil, "unexpected %s frame on an exec stream", f.Type)
		}
	}
}

// leave detaches c if it is still the process's client and applies the
// lifecycle rules: a deliberate detach makes the process durable; a
// non-durable process whose client vanished is killed; a durable one waits
// for a re-attach for the grace period; a finished one is forgotten (or kept
// for the grace period when durable).
func (p *Process) leave(c *client, detached bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.gone = true
	if p.client != c {
		return
	}
	p.client = nil
	p.cond.Broadcast()
	if detached {
		p.durable = true
	}
	switch {
	case p.finished && p.durable:
		p.scheduleLocked(p.grace)
	case p.finished:
		p.forgetLocked()
	case p.durable:
		p.log.Debug("client left; keeping the process for re-attach", "grace", p.grace)
		p.scheduleLocked(p.grace)
	default:
		p.log.Debug("client left; killing the process group", "pid", p.pid)
		p.abandoned = true
		p.signalGroup(syscall.SIGKILL)
	}
}
