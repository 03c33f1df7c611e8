package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// handoffByte opens a connection whose ancillary data carries the serve
// process's stdin and stdout (SCM_RIGHTS). The agent then reads and writes
// the SSH channel's pipes itself, so no relay copies every byte through the
// serve process.
const handoffByte = 'F'

// Handoff passes in and out to the agent over conn, closes this process's
// copies, and waits until the agent is done with them (it closes conn). The
// caller should exit afterwards: the channel ends when the agent closes the
// last copies of the pipes.
func Handoff(conn *net.UnixConn, in, out *os.File) error {
	rights := syscall.UnixRights(int(in.Fd()), int(out.Fd()))
	if _, _, err := conn.WriteMsgUnix([]byte{handoffByte}, rights, nil); err != nil {
		return fmt.Errorf("hand stdio to the agent: %w", err)
	}
	in.Close()
	out.Close()
	_, err := io.Copy(io.Discard, conn)
	conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("wait for the agent: %w", err)
	}
	return nil
}

// carrier returns the byte stream a new agent connection carries: the handed
// off stdin/stdout pair, or the connection itself when its peer relays.
func carrier(conn *net.UnixConn) (io.ReadWriteCloser, error) {
	buf := make([]byte, 1)
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("read the first message: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("parse handed-off descriptors: %w", err)
		}
		for _, m := range msgs {
			if got, err := syscall.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 1 && buf[0] == handoffByte && len(fds) == 2 {
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			if err := syscall.SetNonblock(fd, true); err != nil {
				closeFDs(fds)
				return nil, fmt.Errorf("handed-off descriptor: %w", err)
			}
		}
		return &fdCarrier{in: os.NewFile(uintptr(fds[0]), "stdin"), out: os.NewFile(uintptr(fds[1]), "stdout"), conn: conn}, nil
	}
	closeFDs(fds)
	if n == 0 {
		return nil, io.EOF
	}
	return &prefixConn{UnixConn: conn, first: buf[:n]}, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// fdCarrier reads the channel's stdin pipe and writes its stdout pipe.
// Closing it releases the pipes and the serve process waiting on conn.
type fdCarrier struct {
	in, out *os.File
	conn    *net.UnixConn
}

func (c *fdCarrier) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *fdCarrier) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *fdCarrier) Close() error {
	return errors.Join(c.in.Close(), c.out.Close(), c.conn.Close())
}

// prefixConn gives back the byte read while looking for descriptors.
type prefixConn struct {
	*net.UnixConn
	first []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.UnixConn.Read(p)
}
