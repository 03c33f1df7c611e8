package events

import (
	"encoding/binary"
	"unsafe"

	"github.com/bohica-labs/darkshell/probes"
)

// decodeRecord views a ring buffer sample as the probe's event struct. The
// kernel wrote it with the host's layout (bpf2go's HostLayout), cut short
// by kind (probes.Record*): an exec record is whole and is viewed in place,
// valid while b is; a shorter one (fork and exit: the header; file: up to
// Args) is copied into scratch, the rest zeroed, and scratch is returned.
// A sample shorter than its kind needs is refused.
func decodeRecord(b []byte, scratch *probes.TraceEvent) (*probes.TraceEvent, bool) {
	if len(b) < probes.RecordHeader {
		return nil, false
	}
	if len(b) >= probes.RecordExec {
		return (*probes.TraceEvent)(unsafe.Pointer(&b[0])), true
	}
	// The header is there; read Kind from its bytes: a *TraceEvent over a
	// shorter sample would straddle its allocation (checkptr refuses it).
	kind := binary.NativeEndian.Uint32(b[kindOffset:])
	switch {
	case kind == rawExec:
		return nil, false
	case kind == rawFile && len(b) < probes.RecordFile:
		return nil, false
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(scratch)), probes.RecordExec)
	n := copy(dst, b)
	clear(dst[n:])
	return scratch, true
}

// kindOffset is where Kind sits in a record.
const kindOffset = unsafe.Offsetof(probes.TraceEvent{}.Kind)
