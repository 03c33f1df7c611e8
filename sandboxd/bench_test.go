package sandboxd_test

import (
	"testing"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
)

// BenchmarkExecTrue is the in-process floor of an exec: stream open,
// request, fork/exec of true, exit frame. No SSH, no daemon.
func BenchmarkExecTrue(b *testing.B) {
	c := dial(b, sandboxd.New(sandboxd.Options{}))
	for b.Loop() {
		if _, _, err := c.Run(b, &protocol.ExecStart{Argv: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInfo is the in-process floor of a request/reply stream.
func BenchmarkInfo(b *testing.B) {
	c := dial(b, sandboxd.New(sandboxd.Options{}))
	var info protocol.Info
	for b.Loop() {
		if err := c.Request(b, protocol.FrameInfo, &protocol.InfoRequest{}, protocol.FrameInfoReply, &info); err != nil {
			b.Fatal(err)
		}
	}
}
