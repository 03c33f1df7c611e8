package protocol

import (
	"bytes"
	"path"
	"strings"
	"testing"
)

// FuzzReadFrame: any input either decodes into frames within limits or errors; never panics.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, FrameStdout, []byte("hello")))
	f.Add([]byte{0x83, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x10, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			fr, err := ReadFrame(r, MaxControlPayload)
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxControlPayload || fr.Type == FrameInvalid {
				t.Fatalf("frame %s len %d escaped the limits", fr.Type, len(fr.Payload))
			}
		}
	})
}

// FuzzReadHello: noise, magic and hello frames in any shape.
func FuzzReadHello(f *testing.F) {
	var ok bytes.Buffer
	ok.WriteString("motd\n")
	WriteHello(&ok, NewHello(RoleSandboxd, "v", CapExec))
	f.Add(ok.Bytes())
	f.Add(append(Magic[:], AppendFrame(nil, FrameError, []byte(`{"code":"unsupported","message":"x"}`))...))
	f.Add(append(Magic[:], 0x01, 0, 0, 0, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, _, err := ReadHello(bytes.NewReader(in))
		if err == nil {
			if verr := h.Validate(); verr != nil {
				t.Fatalf("accepted invalid hello: %v", verr)
			}
		}
	})
}

// FuzzDecodeMsg: every message type's decoder validates what it accepts.
func FuzzDecodeMsg(f *testing.F) {
	seeds := []struct {
		t FrameType
		p string
	}{
		{FrameExecStart, `{"argv":["sh","-c","echo hi"],"env":["A=1"],"dir":"/sandbox","stdin":true,"pty":{"rows":24,"cols":80},"timeout_ms":5000,"durable":true,"grace_ms":1000,"idempotency_key":"k1","ring_bytes":4096}`},
		{FrameExecAttach, `{"id":"p1","offset":10,"stdin":true}`},
		{FrameExecStarted, `{"id":"p1","pid":42,"offset":0}`},
		{FrameSignal, `{"signal":15}`},
		{FrameResize, `{"rows":40,"cols":120}`},
		{FrameExit, `{"code":0,"duration_ms":3}`},
		{FrameError, `{"code":"not_found","message":"x"}`},
		{FrameInfoReply, `{"role":"sandboxd","protocol_min":1,"protocol_max":1,"build_version":"v","pid":1}`},
		{FrameSyncPush, `{"root":"/sandbox","delete":true,"checksum":true,"exclude":["*.o","a/b"]}`},
		{FrameSyncPull, `{"root":"work","dry_run":true}`},
		{FrameSyncEntries, `{"entries":[{"p":"a","y":"d","m":493,"t":1},{"p":"a/f","y":"f","m":420,"s":3,"t":2,"h":"` + strings.Repeat("0", 64) + `"},{"p":"l","y":"l","l":"../x"}]}`},
		{FrameSyncEntries, `{"entries":[{"p":"../x","y":"f"},{"p":"/etc/x","y":"f"}]}`},
		{FrameSyncNeed, `{"i":3,"sig":true}`},
		{FrameSyncFile, `{"i":3,"skip":"gone"}`},
		{FrameSyncPlan, `{"files":3,"bytes":100}`},
		{FrameSyncPush, `{"root":"/sandbox","include":["/.factory/","src/**/*.go"],"exclude":["!keep","build/"],"git_ignore":true}`},
		{FrameSyncSummary, `{"entries":3,"added":1,"modified":1,"deleted":0,"unchanged":1,"bytes_to_send":10,"sent_bytes":100,"recv_bytes":20}`},
	}
	for _, s := range seeds {
		f.Add(uint8(s.t), []byte(s.p))
	}
	f.Fuzz(func(t *testing.T, typ uint8, p []byte) {
		fr := Frame{Type: FrameType(typ), Payload: p}
		var m Validator
		switch fr.Type {
		case FrameExecStart:
			m = &ExecStart{}
		case FrameExecAttach:
			m = &ExecAttach{}
		case FrameExecStarted:
			m = &ExecStarted{}
		case FrameSignal:
			m = &SignalMsg{}
		case FrameResize:
			m = &ResizeMsg{}
		case FrameExit:
			m = &ExitMsg{}
		case FrameError:
			m = &ErrorMsg{}
		case FrameInfoReply:
			m = &Info{}
		case FrameHello:
			m = &Hello{}
		case FrameSyncPush, FrameSyncPull:
			m = &SyncRequest{}
		case FrameSyncEntries:
			m = &SyncEntries{}
		case FrameSyncNeed:
			m = &SyncNeed{}
		case FrameSyncFile:
			m = &SyncFileHeader{}
		case FrameSyncSummary:
			m = &SyncSummary{}
		case FrameSyncPlan:
			m = &SyncPlan{}
		default:
			return
		}
		if err := DecodeMsg(fr, fr.Type, m); err == nil {
			if verr := m.Validate(); verr != nil {
				t.Fatalf("decoded invalid %s: %v", fr.Type, verr)
			}
			if es, ok := m.(*SyncEntries); ok {
				for _, e := range es.Entries {
					// An accepted path is relative, clean and confined.
					if path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == ".." || strings.HasPrefix(e.Path, "../") || strings.IndexByte(e.Path, 0) >= 0 {
						t.Fatalf("accepted path %q", e.Path)
					}
				}
			}
		}
	})
}
