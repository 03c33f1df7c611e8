package treesync

import (
	"os"
	"sync"
	"sync/atomic"
)

// sumKey identifies one version of a file: device, inode, size, mtime and
// ctime. Any write changes mtime and ctime, and ctime cannot be set back,
// so an equal key means equal content.
type sumKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

// maxSumCache bounds the remembered checksums; the cache starts over when full.
const maxSumCache = 1 << 21

// sums is the process's index of file checksums. sandboxd serves a session
// for as long as the daemon keeps it warm and the daemon is long-lived, so
// a --checksum sync of an unchanged tree hashes nothing the second time.
var sums = struct {
	sync.Mutex
	m map[sumKey]string
}{m: map[sumKey]string{}}

// hashed counts files hashed (tests).
var hashed atomic.Int64

// cachedSum returns the SHA-256 (hex) of the file p whose lstat is fi,
// hashing it only if this version of it has not been hashed before.
func cachedSum(r *os.Root, p string, fi finfo) (string, error) {
	k, ok := fi.key, fi.keyOK
	if ok {
		sums.Lock()
		s, hit := sums.m[k]
		sums.Unlock()
		if hit {
			return s, nil
		}
	}
	hashed.Add(1)
	s, err := fileSum(r, p)
	if err != nil || !ok {
		return s, err
	}
	// Only remember it if the file did not change while it was read.
	if fi2, err := r.Lstat(p); err == nil {
		if k2, ok := keyOf(fi2); ok && k2 == k {
			sums.Lock()
			if len(sums.m) >= maxSumCache {
				sums.m = map[sumKey]string{}
			}
			sums.m[k] = s
			sums.Unlock()
		}
	}
	return s, nil
}
