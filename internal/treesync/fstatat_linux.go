//go:build linux && (amd64 || arm64)

package treesync

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatatZ is fstatat(2) for a NUL-terminated name at p (newfstatat on
// amd64, fstatat on arm64; both fill a unix.Stat_t).
func fstatatZ(fd int, p *byte, st *unix.Stat_t, flags int) error {
	_, _, e := unix.Syscall6(sysFstatat, uintptr(fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(st)), uintptr(flags), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
