package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEventsWireConstants pins the events stream's on-wire values.
func TestEventsWireConstants(t *testing.T) {
	frames := map[FrameType]uint8{
		FrameEvents: 0x30, FrameEventsHello: 0xA0, FrameEventsBatch: 0xA1, FrameEventsEnd: 0xA2,
	}
	for ft, want := range frames {
		if uint8(ft) != want {
			t.Errorf("%s = 0x%02x, want 0x%02x", ft, uint8(ft), want)
		}
	}
	if !FrameEvents.IsRequest() || FrameEventsBatch.IsRequest() {
		t.Error("FrameEvents must be a request type and the in-stream frames must not")
	}
	ints := map[string][2]int{
		"MaxEventBatch":     {MaxEventBatch, 512},
		"MaxEventArgv":      {MaxEventArgv, 256},
		"MaxEventString":    {MaxEventString, 4096},
		"MaxEventArgvBytes": {MaxEventArgvBytes, 16384},
		"MaxEventsPayload":  {MaxEventsPayload, 1 << 20},
	}
	for n, v := range ints {
		if v[0] != v[1] {
			t.Errorf("%s = %d, want %d", n, v[0], v[1])
		}
	}
	strs := map[string]string{
		KindExec: "exec", KindFork: "fork", KindExit: "exit", KindFileOpen: "file_open",
		KindFileWrite: "file_write", KindFileUnlink: "file_unlink", KindFileRename: "file_rename",
		KindFileMkdir: "file_mkdir", KindFileRmdir: "file_rmdir", KindFileChmod: "file_chmod",
		KindSandboxState: "sandbox_state", SourceEBPF: "ebpf", SourceProcfs: "procfs",
		SourceInotify: "inotify", FidelityComplete: "complete", FidelityPolled: "polled",
		FidelityChanges: "changes", ResultDenied: "denied", CapEvents: "events",
	}
	for got, want := range strs {
		if got != want {
			t.Errorf("events constant %q, want %q", got, want)
		}
	}
	for _, ft := range []FrameType{FrameEvents, FrameEventsHello, FrameEventsBatch, FrameEventsEnd} {
		if strings.HasPrefix(ft.String(), "frame(") {
			t.Errorf("0x%02x has no name", uint8(ft))
		}
	}
}

func okEvent() Event {
	zero := 0
	return Event{Seq: 1, Time: time.Unix(1, 0), Kind: KindExit, PID: 2, PPID: 1, ExitCode: &zero,
		Source: SourceEBPF, Fidelity: FidelityComplete}
}

func TestEventValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Event)
		ok     bool
	}{
		{"ok", func(*Event) {}, true},
		{"file", func(e *Event) { e.Kind = KindFileWrite; e.Path = "/sandbox/a"; e.Result = ResultDenied }, true},
		{"unknown kind", func(e *Event) { e.Kind = "boom" }, false},
		{"unknown source", func(e *Event) { e.Source = "guess" }, false},
		{"unknown fidelity", func(e *Event) { e.Fidelity = "perfect" }, false},
		{"negative pid", func(e *Event) { e.PID = -1 }, false},
		{"bad signal", func(e *Event) { e.Signal = 500 }, false},
		{"long path", func(e *Event) { e.Path = strings.Repeat("a", MaxEventString+1) }, false},
		{"not utf8", func(e *Event) { e.Binary = "\xff\xfe" }, false},
		{"argv limit", func(e *Event) { e.Argv = make([]string, MaxEventArgv+1) }, false},
		{"argv bytes", func(e *Event) {
			e.Argv = []string{strings.Repeat("a", 4096), strings.Repeat("a", 4096), strings.Repeat("a", 4096), strings.Repeat("a", 4096), "a"}
		}, false},
		{"bad result", func(e *Event) { e.Result = "maybe" }, false},
		// Inference events are the host relay's: a sandbox cannot forge them.
		{"inference kind", func(e *Event) { e.Kind = KindInference; e.Source = SourceDaemon }, false},
		{"inference payload", func(e *Event) { e.Inference = &Inference{API: "openai"} }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := okEvent()
			c.mutate(&e)
			if err := e.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, c.ok)
			}
		})
	}
	var nilEv *Event
	if nilEv.Validate() == nil {
		t.Error("nil event validated")
	}
}

func TestClampArgv(t *testing.T) {
	long := make([]string, 400)
	for i := range long {
		long[i] = strings.Repeat("é", 3000) // 6000 bytes, cut inside a rune
	}
	e := okEvent()
	e.Argv = ClampArgv(long)
	if err := e.Validate(); err != nil {
		t.Fatalf("clamped argv invalid: %v", err)
	}
	if got := ClampArgv([]string{"a", "b"}); len(got) != 2 || got[1] != "b" {
		t.Fatalf("short argv changed: %q", got)
	}
}

func TestEventsRequestValidate(t *testing.T) {
	cases := []struct {
		req EventsRequest
		ok  bool
	}{
		{EventsRequest{History: true}, true},
		{EventsRequest{Follow: true, Files: true}, true},
		{EventsRequest{}, false},
		{EventsRequest{History: true, SinceUnixMs: -1}, false},
	}
	for i, c := range cases {
		if err := c.req.Validate(); (err == nil) != c.ok {
			t.Errorf("case %d: Validate = %v, want ok=%v", i, err, c.ok)
		}
	}
}

func TestEventsFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	batch := EventsBatch{Events: []Event{okEvent()}, Lost: 3}
	if err := WriteMsg(&buf, FrameEventsBatch, &batch); err != nil {
		t.Fatal(err)
	}
	if err := WriteMsg(&buf, FrameEventsBatch, &EventsBatch{Events: make([]Event, MaxEventBatch+1)}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(&buf, MaxEventsPayload)
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeEventsFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*EventsBatch)
	if got.Lost != 3 || len(got.Events) != 1 || got.Events[0].Kind != KindExit || *got.Events[0].ExitCode != 0 {
		t.Fatalf("round trip: %+v", got)
	}
	f, err = ReadFrame(&buf, MaxEventsPayload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeEventsFrame(f); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized batch: %v, want ErrInvalid", err)
	}
	if _, err := DecodeEventsFrame(Frame{Type: FrameStdout}); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("foreign frame: %v", err)
	}
}

// FuzzEventsDecoder feeds arbitrary bytes to the events stream decoder: it
// must never panic, and whatever it accepts must validate again.
func FuzzEventsDecoder(f *testing.F) {
	var buf bytes.Buffer
	WriteMsg(&buf, FrameEventsBatch, &EventsBatch{Events: []Event{okEvent()}})
	f.Add(buf.Bytes())
	buf.Reset()
	WriteMsg(&buf, FrameEventsHello, &EventsHello{Sources: []string{SourceEBPF}, Fidelity: FidelityComplete})
	f.Add(buf.Bytes())
	f.Add([]byte{byte(FrameEventsEnd), 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := ReadFrame(r, MaxEventsPayload)
			if err != nil {
				return
			}
			m, err := DecodeEventsFrame(fr)
			if err != nil {
				continue
			}
			if v, ok := m.(Validator); ok && v.Validate() != nil {
				t.Fatalf("accepted message fails validation: %+v", m)
			}
		}
	})
}
