package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/bohica-labs/darkshell/controller/export"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put([][]byte{[]byte(`{"a":1}`), []byte(`{"a":2}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put([][]byte{[]byte(`{"a":3}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put([][]byte{[]byte(strings.Repeat("x", 90))}); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("over the bound: %v", err)
	}
	// Reopen: the batches survive, in order.
	s, err = OpenSpool(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || s.Bytes() != 24 {
		t.Fatalf("reopened: %d batches %d bytes", s.Len(), s.Bytes())
	}
	id, recs, ok, err := s.Peek()
	if !ok || err != nil || len(recs) != 2 || string(recs[1]) != `{"a":2}` {
		t.Fatalf("peek: %v %q %v", ok, recs, err)
	}
	s.Drop(id)
	_, recs, _, _ = s.Peek()
	if len(recs) != 1 || string(recs[0]) != `{"a":3}` || s.Bytes() != 8 {
		t.Fatalf("after drop: %q %d", recs, s.Bytes())
	}
}

func ev(kind, sandbox string, f func(*protocol.Event)) *protocol.Event {
	e := &protocol.Event{Time: time.Now(), Kind: kind, Sandbox: sandbox, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
	if f != nil {
		f(e)
	}
	return e
}

func execEv(sb string, pid, ppid int, id, parent string, argv ...string) *protocol.Event {
	return ev(protocol.KindExec, sb, func(e *protocol.Event) {
		e.PID, e.PPID, e.ExecID, e.ParentExecID, e.Argv, e.Binary = pid, ppid, id, parent, argv, "/usr/bin/"+argv[0]
	})
}

func exitEv(sb string, pid int, id string, code int) *protocol.Event {
	return ev(protocol.KindExit, sb, func(e *protocol.Event) { e.PID, e.ExecID, e.ExitCode = pid, id, &code })
}

func attr(sp Span, k string) any {
	for _, a := range sp.Attrs {
		if a.K == k {
			switch {
			case a.S != nil:
				return *a.S
			case a.I != nil:
				return *a.I
			case a.B != nil:
				return *a.B
			default:
				return a.SS
			}
		}
	}
	return nil
}

// TestSpanTree: an exec call parents the process it started, each process
// its children; an exec in the same pid ends the previous program's span;
// events of another sandbox stay apart.
func TestSpanTree(t *testing.T) {
	b := newSpanBuilder()
	var spans []Span
	add := func(e *protocol.Event) { spans = append(spans, b.add(e)...) }
	add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) {
		e.State, e.CallID, e.Argv, e.Source = "started", "c1", []string{"sh", "-c", "ls | wc -l"}, protocol.SourceDaemon
	}))
	add(execEv("a", 10, 1, "10-1", sandboxdExecID, "sh", "-c", "ls | wc -l"))
	add(execEv("a", 11, 10, "11-2", "10-1", "ls"))
	add(execEv("a", 12, 10, "12-3", "10-1", "wc", "-l"))
	add(execEv("b", 11, 1, "11-1", sandboxdExecID, "other")) // same ids, other sandbox
	add(ev(protocol.KindFileWrite, "a", func(e *protocol.Event) {
		e.PID, e.ExecID, e.Path, e.Result, e.Intent = 11, "11-2", "/sandbox/out", protocol.ResultOK, "write"
	}))
	add(exitEv("a", 11, "11-2", 0))
	add(execEv("a", 12, 10, "12-4", "12-3", "wc2")) // 12 execs again
	add(exitEv("a", 12, "12-4", 3))
	add(exitEv("a", 10, "10-1", 0))
	add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) {
		e.State, e.CallID, e.ExitCode, e.Source = "ended", "c1", new(int), protocol.SourceDaemon
	}))
	by := map[string]Span{}
	for _, s := range spans {
		by[s.Name] = s
	}
	if len(spans) != 5 {
		t.Fatalf("%d spans: %+v", len(spans), spans)
	}
	call, sh, ls, wc, wc2 := by["exec sh"], by["sh"], by["ls"], by["wc"], by["wc2"]
	for _, s := range []Span{sh, ls, wc, wc2} {
		if s.TraceID != call.TraceID {
			t.Errorf("%s in trace %s, want the exec call's %s", s.Name, s.TraceID, call.TraceID)
		}
	}
	if call.ParentID != "" || sh.ParentID != call.SpanID || ls.ParentID != sh.SpanID || wc.ParentID != sh.SpanID || wc2.ParentID != wc.SpanID {
		t.Errorf("parentage: call=%s sh=%s/%s ls=%s wc=%s/%s wc2=%s", call.SpanID, sh.SpanID, sh.ParentID, ls.ParentID, wc.SpanID, wc.ParentID, wc2.ParentID)
	}
	if attr(wc, "darkshell.replaced_by_exec") != true || attr(wc2, "process.exit.code") != int64(3) || !wc2.Error {
		t.Errorf("exec replacement / exit code: %+v %+v", wc.Attrs, wc2)
	}
	if len(ls.Events) != 1 || ls.Events[0].Name != protocol.KindFileWrite {
		t.Errorf("ls events: %+v", ls.Events)
	}
	if attr(sh, "process.pid") != int64(10) || attr(sh, "process.parent_pid") != int64(1) {
		t.Errorf("sh attrs: %+v", sh.Attrs)
	}
	// Sandbox b's process is open still; its stream ends: it ends incomplete.
	end := b.add(ev(protocol.KindSandboxState, "b", func(e *protocol.Event) { e.State = "untraced" }))
	if len(end) != 1 || end[0].Name != "other" || attr(end[0], "darkshell.incomplete") != true || end[0].TraceID == call.TraceID {
		t.Fatalf("sandbox end: %+v", end)
	}
}

// TestLateEvents: the sandbox's events arrive after the exec call ended
// (the pump replays its history late): the process still goes under it.
func TestLateEvents(t *testing.T) {
	b := newSpanBuilder()
	start := time.Now()
	b.add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) {
		e.Time, e.State, e.CallID, e.Argv = start, "started", "c1", []string{"ls", "/"}
	}))
	call := b.add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) { e.Time, e.State, e.CallID = start.Add(10*time.Millisecond), "ended", "c1" }))
	x := execEv("a", 10, 1, "10-1", sandboxdExecID, "ls", "/")
	x.Time = start.Add(2 * time.Millisecond)
	b.add(x)
	y := exitEv("a", 10, "10-1", 0)
	y.Time = start.Add(8 * time.Millisecond)
	ls := b.add(y)
	if len(call) != 1 || len(ls) != 1 || ls[0].ParentID != call[0].SpanID || ls[0].TraceID != call[0].TraceID {
		t.Fatalf("call %+v, ls %+v", call, ls)
	}
	// A later run of the same argv, long after, is not linked to it.
	x = execEv("a", 11, 1, "11-2", sandboxdExecID, "ls", "/")
	x.Time = start.Add(time.Minute)
	b.add(x)
	again := b.add(exitEv("a", 11, "11-2", 0))
	if len(again) != 1 || again[0].ParentID != "" {
		t.Fatalf("a later ls was linked: %+v", again)
	}
}

// TestLeafSpans: MCP calls and policy decisions are children of the one
// exec call in progress, else roots of their own.
func TestLeafSpans(t *testing.T) {
	b := newSpanBuilder()
	mcp := func() []Span {
		return b.add(ev(protocol.KindMCPCall, "a", func(e *protocol.Event) {
			e.Server, e.Tool, e.Result, e.DurationNs, e.Source = "fs", "read_file", protocol.ResultOK, int64(time.Millisecond), protocol.SourceBridge
		}))
	}
	alone := mcp()
	if len(alone) != 1 || alone[0].ParentID != "" || alone[0].Name != "tools/call read_file" || attr(alone[0], "gen_ai.tool.name") != "read_file" {
		t.Fatalf("mcp alone: %+v", alone)
	}
	if !alone[0].End.After(alone[0].Start) {
		t.Fatal("mcp span has no duration")
	}
	b.add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) { e.State, e.CallID, e.Argv = "started", "c1", []string{"agent"} }))
	in := mcp()
	pol := b.add(ev(protocol.KindPolicy, "a", func(e *protocol.Event) {
		e.Host, e.Port, e.Result, e.Rule, e.Source = "example.com", 443, "deny", "default", protocol.SourceDaemon
	}))
	call := b.add(ev(protocol.KindExecCall, "a", func(e *protocol.Event) { e.State, e.CallID = "ended", "c1" }))
	if len(call) != 1 || in[0].ParentID != call[0].SpanID || in[0].TraceID != call[0].TraceID || pol[0].ParentID != call[0].SpanID {
		t.Fatalf("children of the exec call: call=%+v mcp=%+v policy=%+v", call, in, pol)
	}
	if !pol[0].Error || attr(pol[0], "darkshell.policy.result") != "deny" {
		t.Fatalf("deny: %+v", pol[0])
	}
	// An inference exchange is a GenAI chat span; its texts stay out of it.
	inf := b.add(ev(protocol.KindInference, "a", func(e *protocol.Event) {
		e.Host, e.Path, e.Result, e.DurationNs, e.Source = "inference.local", "POST /v1/messages", protocol.ResultOK, int64(time.Second), protocol.SourceDaemon
		e.Inference = &protocol.Inference{API: "anthropic", Model: "claude-x", Status: 200, InputTokens: 12, OutputTokens: 34, Prompt: "user: secret-ish", StopReason: "end_turn"}
	}))
	if len(inf) != 1 || inf[0].Name != "chat claude-x" || attr(inf[0], "gen_ai.system") != "anthropic" || attr(inf[0], "gen_ai.usage.output_tokens") != int64(34) {
		t.Fatalf("inference span: %+v", inf)
	}
	for _, a := range inf[0].Attrs {
		if a.S != nil && strings.Contains(*a.S, "secret-ish") {
			t.Fatalf("prompt text in a span attribute: %+v", a)
		}
	}
}

// flakySink is a backend that can be switched off: sends fail while down.
type flakySink struct {
	mu   sync.Mutex
	down bool
	got  []string
}

// records keeps the event decoded, its bytes made only if it is spooled
// (as the trace sink does with spans).
func (f *flakySink) records(dst []record, it *item) []record { return append(dst, record{v: &it.ev}) }
func (f *flakySink) send(ctx context.Context, recs []record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("backend down")
	}
	for _, r := range recs {
		e, ok := r.v.(*protocol.Event)
		if !ok {
			e = new(protocol.Event)
			json.Unmarshal(r.b, e)
		}
		f.got = append(f.got, e.Message)
	}
	return nil
}
func (f *flakySink) close(context.Context) error { return nil }
func (f *flakySink) set(down bool)               { f.mu.Lock(); f.down = down; f.mu.Unlock() }
func (f *flakySink) n() int                      { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) }

// TestRunnerOutage: while the backend is down, batches go to the spool;
// once it is back, every event arrives exactly once. A spool that is too
// small drops and counts.
func TestRunnerOutage(t *testing.T) {
	fs := &flakySink{}
	spool, err := OpenSpool(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	sp := &export.Spec{Name: "t", Type: export.TypeJSONL}
	r := newRunner(sp, fs, spool, testLog(t), 20*time.Millisecond)
	defer r.close(context.Background())
	send := func(from, to int) {
		for i := from; i < to; i++ {
			r.offer(ev(protocol.KindAlert, "a", func(e *protocol.Event) { e.Message = itoa(int64(i)) }))
			if i%100 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	send(0, 1000)
	waitFor(t, func() bool { return fs.n() == 1000 })
	fs.set(true)
	send(1000, 3000)
	waitFor(t, func() bool { return spool.Len() > 0 && r.stats().Failures > 0 })
	fs.set(false)
	waitFor(t, func() bool { return fs.n() == 3000 && spool.Len() == 0 })
	seen := map[string]int{}
	for _, m := range fs.got {
		seen[m]++
	}
	for i := range 3000 {
		if seen[itoa(int64(i))] != 1 {
			t.Fatalf("event %d arrived %d times", i, seen[itoa(int64(i))])
		}
	}
	if st := r.stats(); st.Dropped != 0 || st.SpoolDropped != 0 || st.Sent != 3000 {
		t.Fatalf("stats %+v", st)
	}

	// A spool of 1 KiB cannot hold an outage: drops are counted.
	fs2 := &flakySink{down: true}
	small, _ := OpenSpool(t.TempDir(), 1024)
	r2 := newRunner(sp, fs2, small, testLog(t), 20*time.Millisecond)
	for i := range 500 {
		r2.offer(ev(protocol.KindAlert, "a", func(e *protocol.Event) { e.Message = itoa(int64(i)) }))
	}
	waitFor(t, func() bool { return r2.stats().SpoolDropped > 0 })
	r2.close(context.Background())
	st := r2.stats()
	if st.SpoolDropped+uint64(countSpooled(t, small)) != 500 {
		t.Fatalf("dropped %d + spooled %d != 500", st.SpoolDropped, countSpooled(t, small))
	}
}

func countSpooled(t *testing.T, s *Spool) int {
	n := 0
	for {
		id, recs, ok, err := s.Peek()
		if !ok || err != nil {
			return n
		}
		n += len(recs)
		s.Drop(id)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
