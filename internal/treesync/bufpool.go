package treesync

import (
	"math/bits"
	"sync"
)

// bufPool recycles the buffers of small whole files (up to smallFile
// bytes) by power-of-two size class: without it an initial upload
// allocates, zeroes and collects every byte it moves, on both ends (the
// sender's encoded files, the receiver's rebuilt ones).
type bufPool [bufClasses]sync.Pool

// bufClasses covers sizes up to 1<<(bufClasses-1) = smallFile.
const bufClasses = 21

// smallBufs is shared by every sender and receiver of the process.
var smallBufs bufPool

// sizeClass is the smallest c with 1<<c >= n.
func sizeClass(n int) int { return bits.Len(uint(max(n, 1) - 1)) }

// get returns a buffer of length n (its content is garbage).
func (bp *bufPool) get(n int) []byte {
	c := sizeClass(n)
	if c >= len(bp) {
		return make([]byte, n)
	}
	if b, ok := bp[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// put hands b back; b must not be used after. Buffers not from get are
// dropped.
func (bp *bufPool) put(b []byte) {
	c := sizeClass(cap(b))
	if c >= len(bp) || cap(b) != 1<<c {
		return
	}
	b = b[:0]
	bp[c].Put(&b)
}
