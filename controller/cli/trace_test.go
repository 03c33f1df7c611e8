package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/protocol"
)

func code(n int) *int { return &n }

// TestTreeRender builds a tree from events and checks the drawing:
// parentage by indentation, exit codes, signals, file lines, filters.
func TestTreeRender(t *testing.T) {
	t0 := time.Unix(0, 0)
	evs := []protocol.Event{
		{Kind: protocol.KindFork, PID: 10, PPID: 1, Time: t0},
		{Kind: protocol.KindExec, PID: 10, PPID: 1, Argv: []string{"sh", "-c", "x"}, Binary: "/usr/bin/sh", Time: t0},
		{Kind: protocol.KindFork, PID: 11, PPID: 10, Time: t0},
		{Kind: protocol.KindExec, PID: 11, PPID: 10, Argv: []string{"curl", "h"}, Binary: "/usr/bin/curl", Time: t0},
		{Kind: protocol.KindFileWrite, PID: 11, Path: "/sandbox/out", Intent: "write,create", Result: protocol.ResultOK},
		{Kind: protocol.KindFileWrite, PID: 11, Path: "/etc/x\x1b[2J", Result: protocol.ResultDenied, Errno: "EACCES"},
		{Kind: protocol.KindExit, PID: 11, Signal: 9, DurationNs: 2e6},
		{Kind: protocol.KindFileWrite, PID: 0, Path: "/home/a"},
		{Kind: protocol.KindExit, PID: 10, ExitCode: code(3), DurationNs: 5e6},
		{Kind: protocol.KindAlert, Message: "3 events lost"},
	}
	cases := []struct {
		name    string
		f       traceFlags
		want    []string
		notWant []string
	}{
		{"all", traceFlags{files: true}, []string{
			"[10] sh -c x  (exit 3, 5ms)",
			"  [11] curl h  (killed by signal 9, 2ms)",
			"      · write /sandbox/out [write,create]",
			"      · write /etc/x?[2J DENIED (EACCES)",
			"[-] file changes without a process",
			"! 3 events lost",
		}, nil},
		{"path filter", traceFlags{files: true, path: "/sandbox"}, []string{"· write /sandbox/out"}, []string{"/etc/x"}},
		{"binary filter", traceFlags{binary: "curl"}, []string{"[10] sh -c x", "[11] curl h"}, nil},
		{"pid subtree", traceFlags{pid: 11}, []string{"[11] curl h"}, []string{"[10]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := newTree(c.f)
			for i := range evs {
				e := evs[i]
				if e.IsFile() && !c.f.files {
					continue
				}
				tr.add(&e)
			}
			var b bytes.Buffer
			tr.render(&b, &client.EventStream{Sources: []string{"ebpf"}, Fidelity: "complete"})
			out := b.String()
			if !strings.HasPrefix(out, "sources: ebpf (fidelity: complete), lost events: 0\n") {
				t.Errorf("header: %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(out, w) {
					t.Errorf("unexpected %q in:\n%s", w, out)
				}
			}
		})
	}
}
