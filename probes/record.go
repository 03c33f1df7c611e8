package probes

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Raw record kinds (enum kind in bpf/trace.c).
const (
	KindExec = 1
	KindFork = 2
	KindExit = 3
	KindFile = 4
)

// RecordHeader is the size of a record's header (struct event in
// bpf/trace.c): fork and exit records are the header alone; exec and
// file records are followed by their data, only the bytes used.
const RecordHeader = int(unsafe.Sizeof(TraceEvent{}))

// Record is one ring buffer record, decoded by ParseRecord: the header,
// viewed in place, and the parts of its data, views of the sample. All of
// it is valid only while the sample's bytes are.
type Record struct {
	*TraceEvent
	// S1 (exec: the filename; file: the path) and S2 (file: the rename
	// target), without their NUL.
	S1, S2 []byte
	// Comps are the directory components, innermost first, each ending
	// with a NUL (see Dir).
	Comps []byte
	// Args is the exec's argv, NUL separated, as read from the process.
	Args []byte
}

// ParseRecord decodes sample b into r. A sample shorter than its header,
// or than the data lengths its header states, is refused with an error
// saying which; r then holds nothing valid.
func ParseRecord(b []byte, r *Record) error {
	if len(b) < RecordHeader {
		return fmt.Errorf("record of %d bytes, shorter than its %d-byte header", len(b), RecordHeader)
	}
	if uintptr(unsafe.Pointer(&b[0]))%unsafe.Alignof(TraceEvent{}) != 0 {
		// Ring buffer samples are 8-byte aligned; a copy may not be.
		b = append(make([]byte, 0, len(b)+8), b...)
		if uintptr(unsafe.Pointer(&b[0]))%unsafe.Alignof(TraceEvent{}) != 0 {
			return fmt.Errorf("record buffer is not %d-byte aligned", unsafe.Alignof(TraceEvent{}))
		}
	}
	h := (*TraceEvent)(unsafe.Pointer(&b[0]))
	data := b[RecordHeader:]
	need := int(h.S1Len) + int(h.S2Len) + int(h.CompsLen) + int(h.ArgsLen)
	if need > len(data) {
		return fmt.Errorf("kind %d record of %d data bytes, its header states %d", binary.NativeEndian.Uint32(b[kindOffset:]), len(data), need)
	}
	cut := func(n uint16) []byte {
		p := data[:n:n]
		data = data[n:]
		return p
	}
	*r = Record{TraceEvent: h}
	r.S1 = trimNUL(cut(h.S1Len))
	r.S2 = trimNUL(cut(h.S2Len))
	r.Comps = cut(h.CompsLen)
	r.Args = cut(h.ArgsLen)
	return nil
}

// kindOffset is where Kind sits in a record.
const kindOffset = unsafe.Offsetof(TraceEvent{}.Kind)

func trimNUL(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// Dir calls f with each directory component of r, innermost first.
func (r *Record) Dir(f func(comp []byte)) {
	c := r.Comps
	for len(c) > 0 {
		i := bytes.IndexByte(c, 0)
		if i < 0 {
			f(c)
			return
		}
		f(c[:i])
		c = c[i+1:]
	}
}
