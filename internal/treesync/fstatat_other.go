//go:build linux && !amd64 && !arm64

package treesync

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatatZ is fstatat(2) for a NUL-terminated name at p.
func fstatatZ(fd int, p *byte, st *unix.Stat_t, flags int) error {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return unix.Fstatat(fd, unsafe.String(p, n), st, flags)
}
