package treesync

import (
	"io/fs"
	"syscall"
)

func keyOf(fi fs.FileInfo) (sumKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sumKey{}, false
	}
	return sumKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}
