package events

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// TestEncodeMatchesMarshal: each line is json.Marshal of its event and a
// newline (the host log's format before Encode existed), HTML escaping
// and odd strings included; Bytes is the lines in order.
func TestEncodeMatchesMarshal(t *testing.T) {
	code := 3
	es := []protocol.Event{
		{Seq: 1, Time: time.Unix(1, 5).UTC(), Sandbox: "sb", Kind: protocol.KindExec, PID: 2, Argv: []string{"sh", "-c", "a<b && c>d \u2028 \x01"}},
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExit, PID: 2, ExitCode: &code, Message: "bad utf-8 \xff"},
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindAlert, Lost: 7},
	}
	enc, err := Encode(es)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Len() != len(es) {
		t.Fatalf("%d lines for %d events", enc.Len(), len(es))
	}
	var all []byte
	for i := range es {
		want, _ := json.Marshal(&es[i])
		want = append(want, '\n')
		if got := enc.Line(i); !bytes.Equal(got, want) {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got, want)
		}
		if l := enc.Line(i); cap(l) != len(l) {
			t.Fatalf("line %d can be appended to in place (cap %d > len %d)", i, cap(l), len(l))
		}
		all = append(all, want...)
	}
	if !bytes.Equal(enc.Bytes(), all) {
		t.Fatalf("Bytes is not the lines in order")
	}
}

// TestLogAndExportShareBytes: what a line subscriber (the exporter pipe)
// gets is byte for byte what the host log got, and changing the event
// after Publish (its argv's array is shared with the caller) changes
// neither: both are the event as it was published.
func TestLogAndExportShareBytes(t *testing.T) {
	dir := t.TempDir()
	bus := NewBus(dir, nil)
	defer bus.Close()
	ls := bus.SubscribeLines(16)
	defer ls.Close()
	argv := []string{"curl", "https://example.invalid/?q=<x>"}
	e := protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: 9, Argv: argv, Binary: "/usr/bin/curl"}
	bus.Publish(e)
	bus.publish("sb", []protocol.Event{{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExit, PID: 9}, {Time: time.Now(), Sandbox: "sb", Kind: protocol.KindAlert, Message: "m"}})
	argv[1] = "CHANGED"
	e.Message = "CHANGED"
	var got []byte
	for range 3 {
		select {
		case l := <-ls.C:
			got = append(got, l...)
		case <-time.After(5 * time.Second):
			t.Fatal("no line")
		}
	}
	logged, err := os.ReadFile(filepath.Join(dir, "sb", LogName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(logged, got) {
		t.Fatalf("host log and line subscriber differ:\n log %s\nsub %s", logged, got)
	}
	if strings.Contains(string(logged), "CHANGED") || !strings.Contains(string(logged), `q=\u003cx\u003e`) {
		t.Fatalf("the log is not the event as published: %s", logged)
	}
	var first protocol.Event
	if err := json.Unmarshal(bytes.SplitN(logged, []byte("\n"), 2)[0], &first); err != nil || first.Argv[1] != "https://example.invalid/?q=<x>" {
		t.Fatalf("first line %+v %v", first, err)
	}
	if ls.Skipped() != 0 {
		t.Fatalf("skipped %d", ls.Skipped())
	}
}

// TestLineSubBounded: a line subscriber that does not read drops and
// counts; Publish never blocks; after Close it gets nothing.
func TestLineSubBounded(t *testing.T) {
	bus := NewBus(t.TempDir(), nil)
	defer bus.Close()
	ls := bus.SubscribeLines(2)
	for i := range 5 {
		bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: i})
	}
	if len(ls.C) != 2 || ls.Skipped() != 3 {
		t.Fatalf("queued %d skipped %d, want 2 and 3", len(ls.C), ls.Skipped())
	}
	ls.Close()
	<-ls.C
	<-ls.C
	bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec})
	if len(ls.C) != 0 || ls.Skipped() != 3 {
		t.Fatal("a closed subscriber still gets lines")
	}
}

// TestLogRotatesEncoded: a batch crossing the size limit is split at a
// line and the log rotates in between; no line is lost or cut.
func TestLogRotatesEncoded(t *testing.T) {
	dir := t.TempDir()
	lg, err := OpenLog(dir, 300, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var es []protocol.Event
	for i := range 10 {
		es = append(es, protocol.Event{Time: time.Unix(int64(i), 0).UTC(), Sandbox: "sb", Kind: protocol.KindExec, PID: i + 1})
	}
	if err := lg.WriteBatch(es); err != nil {
		t.Fatal(err)
	}
	files := lg.Files()
	if len(files) < 2 {
		t.Fatalf("no rotation: %v", files)
	}
	var pids []int
	for i := len(files) - 1; i >= 0; i-- {
		b, _ := os.ReadFile(files[i])
		if len(b) > 300 {
			t.Fatalf("%s has %d bytes > 300", files[i], len(b))
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			var e protocol.Event
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("cut line %q: %v", l, err)
			}
			pids = append(pids, e.PID)
		}
	}
	// keep=3: the oldest files may be gone, but what is left is in order
	// and ends with the last event.
	for i := 1; i < len(pids); i++ {
		if pids[i] != pids[i-1]+1 {
			t.Fatalf("pids out of order: %v", pids)
		}
	}
	if pids[len(pids)-1] != 10 {
		t.Fatalf("last event missing: %v", pids)
	}
}

// BenchmarkPublish is the bus's cost per event with the host log and an
// exporter line subscriber (one encoding shared by both).
func BenchmarkPublish(b *testing.B) {
	bus := NewBus(b.TempDir(), nil)
	defer bus.Close()
	ls := bus.SubscribeLines(1 << 16)
	defer ls.Close()
	code := 0
	es := []protocol.Event{
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: 2, PPID: 1, ExecID: "2-1", ParentExecID: "1-0", Binary: "/bin/true", Argv: []string{"true"}, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExit, PID: 2, ExecID: "2-1", ExitCode: &code, DurationNs: 1e6, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
	}
	b.ReportAllocs()
	for b.Loop() {
		bus.publish("sb", es)
		for len(ls.C) > 0 {
			<-ls.C
		}
	}
}

// BenchmarkEncode is one batch of two events encoded as log lines.
func BenchmarkEncode(b *testing.B) {
	code := 0
	es := []protocol.Event{
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: 2, PPID: 1, ExecID: "2-1", ParentExecID: "1-0", Binary: "/bin/true", Argv: []string{"true"}, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
		{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExit, PID: 2, ExecID: "2-1", ExitCode: &code, DurationNs: 1e6, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
	}
	b.ReportAllocs()
	for b.Loop() {
		Encode(es)
	}
}
