package process

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// exitWaiter waits for a child's exit through its pidfd in the runtime's
// poller: the waiting goroutine parks like one blocked on a socket, where
// exec.Cmd.Wait would hold an OS thread in waitid(2) for the command's whole
// life, so the runtime hands that thread's P to another thread and back
// (several context switches per command, the largest cost of a short exec).
type exitWaiter struct {
	f *os.File // the pidfd, non-blocking, registered with the poller
}

// newExitWaiter takes ownership of pidfd.
func newExitWaiter(pidfd int) (*exitWaiter, error) {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return &exitWaiter{f: os.NewFile(uintptr(pidfd), "pidfd")}, nil
}

// wait reaps the child and returns its wait status and resource usage.
func (w *exitWaiter) wait() (syscall.WaitStatus, error) {
	defer w.f.Close()
	rc, err := w.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		info unix.Siginfo
		werr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			info = unix.Siginfo{}
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
			if werr == unix.EINTR {
				continue
			}
			// EAGAIN (non-blocking pidfd) or no child reported yet: wait for
			// the pidfd to become readable, which it does at exit.
			return werr != unix.EAGAIN && (werr != nil || siginfoPid(&info) != 0)
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return 0, fmt.Errorf("waitid on pidfd: %w", err)
	}
	return waitStatus(&info)
}

// The SIGCHLD fields of siginfo_t, after si_signo, si_errno, si_code and
// padding (64-bit Linux): si_pid at 16, si_uid at 20, si_status at 24.
// x/sys does not name them.
func siginfoPid(info *unix.Siginfo) int32 {
	return *(*int32)(unsafe.Add(unsafe.Pointer(info), 16))
}

func siginfoStatus(info *unix.Siginfo) int32 {
	return *(*int32)(unsafe.Add(unsafe.Pointer(info), 24))
}

// si_code values for SIGCHLD (<asm-generic/siginfo.h>).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// waitStatus converts waitid's report to the wait4-style status the rest
// of the package (and syscall.WaitStatus's methods) understand.
func waitStatus(info *unix.Siginfo) (syscall.WaitStatus, error) {
	st := siginfoStatus(info)
	switch info.Code {
	case cldExited:
		return syscall.WaitStatus(uint32(st&0xff) << 8), nil
	case cldKilled:
		return syscall.WaitStatus(uint32(st & 0x7f)), nil
	case cldDumped:
		return syscall.WaitStatus(uint32(st&0x7f) | 0x80), nil
	}
	return 0, errors.New("waitid: child reported neither an exit nor a death by signal")
}
