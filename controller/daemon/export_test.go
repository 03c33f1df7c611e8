package daemon

import (
	"encoding/json"
	"testing"

	"github.com/bohica-labs/darkshell/protocol"
)

// TestExitTap: the tap finds the started pid and the exit in an exec
// stream however the bytes are split, and ignores output frames.
func TestExitTap(t *testing.T) {
	var stream []byte
	add := func(ft protocol.FrameType, v any) {
		var p []byte
		switch v := v.(type) {
		case []byte:
			p = v
		default:
			p, _ = json.Marshal(v)
		}
		stream = protocol.AppendFrame(stream, ft, p)
	}
	add(protocol.FrameExecStarted, &protocol.ExecStarted{ID: "x", PID: 42})
	add(protocol.FrameStdout, make([]byte, 70000))
	add(protocol.FrameStderr, []byte{})
	add(protocol.FrameExit, &protocol.ExitMsg{Code: 3})
	for _, chunk := range []int{1, 2, 3, 5, 7, 4096, len(stream)} {
		tap := &exitTap{}
		for i := 0; i < len(stream); i += chunk {
			tap.Write(stream[i:min(i+chunk, len(stream))])
		}
		if tap.pid != 42 || tap.exit == nil || tap.exit.Code != 3 || tap.stray {
			t.Fatalf("chunk %d: pid %d exit %+v stray %v", chunk, tap.pid, tap.exit, tap.stray)
		}
	}
	// A header claiming more than a frame may hold stops the tap.
	tap := &exitTap{}
	tap.Write([]byte{byte(protocol.FrameStdout), 0xff, 0xff, 0xff, 0xff, 1, 2})
	if !tap.stray || tap.exit != nil {
		t.Fatal("an oversized frame must stop the tap")
	}
}
