package events

import (
	"unsafe"

	"github.com/bohica-labs/darkshell/probes"
)

// decodeRecord views a ring buffer sample as the probe's event struct,
// without copying: the kernel wrote it with the host's layout (bpf2go's
// HostLayout). The view is valid while b is; a short sample is refused.
func decodeRecord(b []byte) (*probes.TraceEvent, bool) {
	if len(b) < int(unsafe.Sizeof(probes.TraceEvent{})) {
		return nil, false
	}
	return (*probes.TraceEvent)(unsafe.Pointer(&b[0])), true
}
