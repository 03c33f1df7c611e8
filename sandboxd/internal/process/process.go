package process

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

// Process is one command started by a Manager, with its output ring and at
// most one attached client.
type Process struct {
	m        *Manager
	id       string
	key      string
	argv     []string
	grace    time.Duration
	hasStdin bool
	log      *slog.Logger

	cmd     *exec.Cmd
	pid     int
	exited  *exitWaiter // reaps the command
	started time.Time
	master  *os.File   // pty master, nil without a pty
	stdin   *os.File   // write end of the stdin pipe, or master; nil without stdin
	outputs []*os.File // read ends: stdout, stderr (or the master)
	timeout *time.Timer
	readers sync.WaitGroup // output readers

	// exitAt is the main process's exit time in unix nanoseconds (0: running);
	// readers use it for the post-exit drain deadline.
	exitAt atomic.Int64

	stdinClosed atomic.Bool

	mu        sync.Mutex
	cond      sync.Cond // on mu: output appended, client moved or left, process finished
	ring      *ring
	client    *client
	durable   bool
	finished  bool // exited and output drained: exit is final
	exit      protocol.ExitMsg
	timedOut  bool
	abandoned bool // killed because its client left; forgotten once finished
	forgotten bool
	timer     *time.Timer // grace (running) or retention (finished) timer
	timerGen  uint64
}

// launch starts the command. On error nothing is left behind.
func (p *Process) launch(path string, argv, env []string, dir string, tty *protocol.PTY) error {
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: dir}
	var childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	var parentEnds []*os.File
	if tty != nil {
		master, slave, err := pty.Open()
		if err != nil {
			return errorf(protocol.CodeInternal, err, "unable to open a pseudo-terminal")
		}
		if err := pty.Setsize(slave, &pty.Winsize{Rows: tty.Rows, Cols: tty.Cols}); err != nil {
			closeAll([]*os.File{master, slave})
			return errorf(protocol.CodeInternal, err, "unable to size the pseudo-terminal")
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
		childEnds = append(childEnds, slave)
		parentEnds = append(parentEnds, master)
		p.master = master
		p.outputs = []*os.File{master}
		if p.hasStdin {
			p.stdin = master
		}
	} else {
		// Pdeathsig: a command does not outlive a killed sandboxd.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if p.hasStdin {
			r, w, err := pipe(1)
			if err != nil {
				return errorf(protocol.CodeInternal, err, "unable to create the stdin pipe")
			}
			cmd.Stdin = r
			childEnds = append(childEnds, r)
			parentEnds = append(parentEnds, w)
			p.stdin = w
		} else if f := devNull(); f != nil {
			cmd.Stdin = f // else exec.Cmd opens /dev/null itself
		}
		for _, dst := range []*io.Writer{&cmd.Stdout, &cmd.Stderr} {
			r, w, err := pipe(0)
			if err != nil {
				closeAll(childEnds)
				closeAll(parentEnds)
				return errorf(protocol.CodeInternal, err, "unable to create an output pipe")
			}
			*dst = w
			childEnds = append(childEnds, w)
			parentEnds = append(parentEnds, r)
			p.outputs = append(p.outputs, r)
		}
	}
	pidfd := -1
	cmd.SysProcAttr.PidFD = &pidfd
	p.started = time.Now()
	err := startOwned(cmd)
	closeAll(childEnds)
	if err != nil {
		closeAll(parentEnds)
		return startError(argv[0], err)
	}
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	if p.exited, err = newExitWaiter(pidfd); err != nil {
		// Started but not waitable through the poller: exec.Cmd.Wait reaps.
		p.log.Debug("pidfd wait unavailable", "err", err)
	}
	for i, f := range p.outputs {
		p.readers.Add(1)
		go p.read(f, i == 1)
	}
	return nil
}

// read copies one output file into the ring until EOF, or until the output
// stays idle for drainIdle after the main process exited (time spent waiting
// for a slow client does not count).
func (p *Process) read(f *os.File, stderr bool) {
	defer p.readers.Done()
	defer func() { _ = f.Close() }()
	buf := make([]byte, chunkSize)
	var waited time.Duration
	for {
		if at := p.exitAt.Load(); at != 0 {
			_ = f.SetReadDeadline(time.Unix(0, at).Add(drainIdle + waited))
		}
		n, err := f.Read(buf)
		if n > 0 {
			waited += p.append(stderr, buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			drainReady(f, buf, func(b []byte) { p.append(stderr, b) })
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) {
				p.log.Debug("output read ended", "err", err)
			}
			return
		}
	}
}

// maxLateDrain bounds drainReady: a background process that keeps writing
// to an inherited pipe after the main process exited cannot hold the exit.
const maxLateDrain = 1 << 20

// drainReady hands to sink what f holds right now, without waiting for more.
// A reader scheduled late (a busy sandboxd, one P) can find its drain
// deadline already passed, and the poller then refuses the read without
// looking at the pipe: output written before the exit would be lost.
func drainReady(f *os.File, buf []byte, sink func([]byte)) {
	if f.SetReadDeadline(time.Time{}) != nil {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for total := 0; total < maxLateDrain; {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf) // non-blocking: EAGAIN when empty
			return true
		}); err != nil || rerr != nil || n <= 0 {
			return
		}
		sink(buf[:n])
		total += n
	}
}

// append adds b to the ring. While a client is attached it never drops
// bytes that client has not sent yet: it waits for the client instead
// (back-pressure on the process). It returns how long it waited after the
// main process had exited.
func (p *Process) append(stderr bool, b []byte) (waited time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(b) > 0 {
		n := min(len(b), p.ring.limit)
		if c := p.client; c != nil {
			free := p.ring.free(c.off)
			if free <= 0 {
				start := time.Now()
				p.cond.Wait()
				if at := p.exitAt.Load(); at != 0 {
					if e := time.Unix(0, at); e.After(start) {
						start = e
					}
					if d := time.Since(start); d > 0 {
						waited += d
					}
				}
				continue
			}
			n = min(n, free)
		}
		p.ring.write(stderr, b[:n])
		b = b[n:]
		p.cond.Broadcast()
	}
	return waited
}

// wait reaps the main process, drains its output and records the exit.
func (p *Process) wait() {
	defer p.m.wg.Done()
	var ws syscall.WaitStatus
	reaped := false
	if p.exited != nil {
		var err error
		ws, err = p.exited.wait()
		reaped = err == nil
		if err != nil {
			p.log.Warn("waiting for the command", "pid", p.pid, "err", err)
		}
		_ = p.cmd.Process.Release()
	} else {
		_ = p.cmd.Wait()
		if p.cmd.ProcessState != nil {
			ws, reaped = p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		}
	}
	// Disowned last: a reaper scanning /proc holds the lock it takes.
	defer disown(p.pid)
	now := time.Now()
	p.exitAt.Store(now.UnixNano())
	deadlines := true
	for _, f := range p.outputs {
		if err := f.SetReadDeadline(now.Add(drainIdle)); err != nil && !errors.Is(err, os.ErrClosed) {
			deadlines = false
		}
	}
	if deadlines {
		p.readers.Wait()
	} else {
		drained := make(chan struct{})
		go func() { p.readers.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(drainIdle):
		}
	}
	if p.timeout != nil {
		p.timeout.Stop()
	}
	if p.master == nil {
		p.closeStdin()
	}

	exit := exitStatus(ws, reaped)
	exit.DurationMs = now.Sub(p.started).Milliseconds()
	p.mu.Lock()
	defer p.mu.Unlock()
	exit.TimedOut = p.timedOut
	p.exit = exit
	p.finished = true
	p.cond.Broadcast()
	p.log.Debug("exited", "code", exit.Code, "signal", exit.Signal, "timed_out", exit.TimedOut, "output_bytes", p.ring.end)
	switch {
	case p.abandoned:
		p.forgetLocked()
	case p.client != nil:
		// The sender delivers the exit; leave decides about retention.
	case p.durable:
		p.scheduleLocked(p.grace)
	default:
		p.forgetLocked()
	}
}

// exitStatus converts a reaped process's wait status to an ExitMsg; a
// process that could not be reaped reports 255.
func exitStatus(ws syscall.WaitStatus, reaped bool) protocol.ExitMsg {
	switch {
	case !reaped:
		return protocol.ExitMsg{Code: 255}
	case ws.Signaled():
		return protocol.ExitMsg{Code: -1, Signal: int(ws.Signal())}
	}
	return protocol.ExitMsg{Code: ws.ExitStatus()}
}

// expire handles TimeoutMs: SIGTERM to the group, SIGKILL KillDelay later.
func (p *Process) expire() {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.timedOut = true
	p.mu.Unlock()
	p.log.Info("timeout expired: terminating the process group", "pid", p.pid)
	p.signalGroup(syscall.SIGTERM)
	time.AfterFunc(KillDelay, func() { p.signalGroup(syscall.SIGKILL) })
}

// signalGroup sends sig to the process group (with a pty: also to the
// terminal's foreground group, which an interactive shell moves jobs into).
func (p *Process) signalGroup(sig syscall.Signal) {
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.log.Debug("kill", "pgid", p.pid, "signal", sig, "err", err)
	}
	if p.master == nil {
		return
	}
	rc, err := p.master.SyscallConn()
	if err != nil {
		return
	}
	pg := 0
	_ = rc.Control(func(fd uintptr) { pg, _ = unix.IoctlGetInt(int(fd), unix.TIOCGPGRP) })
	if pg > 0 && pg != p.pid {
		_ = syscall.Kill(-pg, sig)
	}
}

// signal forwards a client's signal while the process runs.
func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	fin := p.finished
	p.mu.Unlock()
	if !fin {
		p.signalGroup(sig)
	}
}

// resize sets the pty window size. It uses the raw descriptor so that the
// master stays in non-blocking mode (pty.Setsize would switch it to blocking
// and lose read deadlines).
func (p *Process) resize(rows, cols uint16) error {
	if p.master == nil {
		return errors.New("process has no pty")
	}
	rc, err := p.master.SyscallConn()
	if err != nil {
		return fmt.Errorf("unable to resize pty: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("unable to resize pty: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("unable to resize pty: %w", ierr)
	}
	return nil
}

// writeStdin writes b to the process's stdin. Errors (the process closed its
// stdin or exited) are not the client's fault and are only logged.
func (p *Process) writeStdin(b []byte) {
	if p.stdin == nil || p.stdinClosed.Load() {
		return
	}
	if _, err := p.stdin.Write(b); err != nil {
		p.log.Debug("stdin write", "err", err)
	}
}

// closeStdin ends the process's input: closes the pipe, or sends the EOF
// character (^D) on a pty.
func (p *Process) closeStdin() {
	if p.stdin == nil {
		return
	}
	if p.master != nil {
		_, _ = p.master.Write([]byte{0x04})
		return
	}
	if p.stdinClosed.CompareAndSwap(false, true) {
		_ = p.stdin.Close()
	}
}

// scheduleLocked (re)arms the grace/retention timer. Called with mu held.
func (p *Process) scheduleLocked(d time.Duration) {
	p.stopTimerLocked()
	gen := p.timerGen
	p.timer = time.AfterFunc(d, func() { p.timerFired(gen) })
}

func (p *Process) stopTimerLocked() {
	p.timerGen++
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// timerFired ends the grace period: a finished process is forgotten, a
// running one that nobody re-attached to is killed.
func (p *Process) timerFired(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.timerGen || p.client != nil || p.forgotten {
		return
	}
	if p.finished {
		p.forgetLocked()
		return
	}
	p.log.Info("grace period expired without a client: killing the process group", "pid", p.pid)
	p.abandoned = true
	p.signalGroup(syscall.SIGKILL)
}

func (p *Process) forgetLocked() {
	if p.forgotten {
		return
	}
	p.forgotten = true
	p.stopTimerLocked()
	p.m.forget(p)
}

// shutdown kills the process group and disconnects the client (Manager.Close).
func (p *Process) shutdown() {
	p.mu.Lock()
	c := p.client
	p.client = nil
	if c != nil {
		c.gone = true
	}
	p.abandoned = true
	p.stopTimerLocked()
	if p.finished {
		p.forgetLocked()
	}
	fin := p.finished
	p.cond.Broadcast()
	p.mu.Unlock()
	if c != nil {
		c.kick()
	}
	if !fin {
		p.signalGroup(syscall.SIGKILL)
	}
}

// state describes the process for ExecList.
func (p *Process) state() protocol.ProcState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := protocol.ProcState{
		ID:             p.id,
		PID:            p.pid,
		Argv:           p.argv,
		IdempotencyKey: p.key,
		Running:        !p.finished,
		Attached:       p.client != nil,
		OutputBytes:    p.ring.end,
	}
	if p.finished {
		e := p.exit
		s.Exit = &e
	}
	return s
}

// devNull is /dev/null opened once for reading, the stdin of every command
// without one (exec.Cmd would open and close it per command); nil if it
// cannot be opened.
var devNull = sync.OnceValue(func() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
})

// pipe is os.Pipe for a child's stdio: only the end sandboxd keeps (0: the
// read end, 1: the write end) is non-blocking and in the poller; the
// child's end stays blocking, as exec wants it, without being registered
// and unregistered on the way.
func pipe(ours int) (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.SetNonblock(fds[ours], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}
