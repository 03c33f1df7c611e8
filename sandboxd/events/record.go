package events

import (
	"unsafe"

	"github.com/bohica-labs/darkshell/probes"
)

// decodeRecord views a ring buffer sample as the probe's event struct. The
// kernel wrote it with the host's layout (bpf2go's HostLayout), so a copy
// is a decode; a short sample is refused.
func decodeRecord(b []byte) (*probes.TraceEvent, bool) {
	var r probes.TraceEvent
	if len(b) < int(unsafe.Sizeof(r)) {
		return nil, false
	}
	r = *(*probes.TraceEvent)(unsafe.Pointer(&b[0]))
	return &r, true
}
