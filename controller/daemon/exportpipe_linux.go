package daemon

import (
	"os"
	"syscall"
)

// growPipe asks for a pipe of size bytes (F_SETPIPE_SZ); the kernel may
// refuse (an unprivileged user past its pipe quota), and then the pipe
// keeps its size: that costs only more, smaller writes.
func growPipe(w *os.File, size int) {
	rc, err := w.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETPIPE_SZ, uintptr(size))
	})
}
