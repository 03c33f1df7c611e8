package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte("x"), DataChunk*2+7)
	if err := w.Data(FrameStdout, big); err != nil {
		t.Fatal(err)
	}
	if err := w.Msg(FrameSignal, &SignalMsg{Signal: 15}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for range 3 {
		f, err := ReadFrame(&buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != FrameStdout || len(f.Payload) > DataChunk {
			t.Fatalf("frame %s of %d bytes", f.Type, len(f.Payload))
		}
		got = append(got, f.Payload...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("data mismatch after chunking")
	}
	f, err := ReadFrame(&buf, MaxControlPayload)
	if err != nil {
		t.Fatal(err)
	}
	var s SignalMsg
	if err := DecodeMsg(f, FrameSignal, &s); err != nil || s.Signal != 15 {
		t.Fatalf("signal %+v, %v", s, err)
	}
	if _, err := ReadFrame(&buf, 0); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		limit int
		want  error
	}{
		{"oversized", []byte{0x83, 0x00, 0x10, 0x00, 0x01}, 0, ErrFrameTooLarge},
		{"over control limit", AppendFrame(nil, FrameInfo, make([]byte, 100)), 99, ErrFrameTooLarge},
		{"truncated header", []byte{0x83, 0x00}, 0, ErrTruncated},
		{"truncated payload", []byte{0x83, 0x00, 0x00, 0x00, 0x09, 'a'}, 0, ErrTruncated},
		{"type zero", []byte{0x00, 0, 0, 0, 0}, 0, ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), tt.limit)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if err := WriteFrame(io.Discard, FrameStdout, make([]byte, MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("write oversized: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		m    Validator
		ok   bool
	}{
		{"exec ok", &ExecStart{Argv: []string{"true"}}, true},
		{"exec empty argv", &ExecStart{}, false},
		{"exec shell two args", &ExecStart{Argv: []string{"a", "b"}, Shell: true}, false},
		{"exec NUL", &ExecStart{Argv: []string{"a\x00b"}}, false},
		{"exec bad env", &ExecStart{Argv: []string{"x"}, Env: []string{"NOEQUALS"}}, false},
		{"exec empty env key", &ExecStart{Argv: []string{"x"}, Env: []string{"=v"}}, false},
		{"exec negative timeout", &ExecStart{Argv: []string{"x"}, TimeoutMs: -1}, false},
		{"exec grace too long", &ExecStart{Argv: []string{"x"}, GraceMs: MaxGraceMs + 1}, false},
		{"exec key too long", &ExecStart{Argv: []string{"x"}, IdempotencyKey: strings.Repeat("k", MaxIDLen+1)}, false},
		{"exec key control char", &ExecStart{Argv: []string{"x"}, IdempotencyKey: "a\nb"}, false},
		{"exec ring too big", &ExecStart{Argv: []string{"x"}, RingBytes: MaxRing + 1}, false},
		{"exec pty zero size", &ExecStart{Argv: []string{"x"}, PTY: &PTY{}}, false},
		{"attach ok", &ExecAttach{ID: "p1", Offset: 3}, true},
		{"attach no id", &ExecAttach{}, false},
		{"attach negative", &ExecAttach{ID: "p1", Offset: -1}, false},
		{"signal zero", &SignalMsg{}, false},
		{"signal ok", &SignalMsg{Signal: 9}, true},
		{"resize zero", &ResizeMsg{Rows: 1}, false},
		{"exit ok", &ExitMsg{Code: 3}, true},
		{"exit code range", &ExitMsg{Code: 256}, false},
		{"exit signal", &ExitMsg{Code: -1, Signal: 9}, true},
		{"error no code", &ErrorMsg{}, false},
		{"hello bad role", &Hello{Role: "x", ProtocolMin: 1, ProtocolMax: 1, BuildVersion: "v"}, false},
		{"hello bad range", &Hello{Role: RoleSandboxd, ProtocolMin: 2, ProtocolMax: 1, BuildVersion: "v"}, false},
		{"hello no build", &Hello{Role: RoleSandboxd, ProtocolMin: 1, ProtocolMax: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	if s := (&ExitMsg{Code: 7}).Status(); s != 7 {
		t.Errorf("status %d", s)
	}
	if s := (&ExitMsg{Code: -1, Signal: 9}).Status(); s != 137 {
		t.Errorf("status %d", s)
	}
}

// TestReadFrameBuf: a payload that fits is read into the caller's buffer
// (no allocation per data frame), a bigger one into a fresh one; limits and
// truncation are checked as by ReadFrame.
func TestReadFrameBuf(t *testing.T) {
	buf := make([]byte, 8)
	in := AppendFrame(nil, FrameStdout, []byte("abcdef"))
	in = AppendFrame(in, FrameStdout, []byte("0123456789"))
	r := bytes.NewReader(in)
	f, err := ReadFrameBuf(r, 0, buf)
	if err != nil || string(f.Payload) != "abcdef" || &f.Payload[0] != &buf[0] {
		t.Fatalf("fitting frame: %q (in buf: %v), %v", f.Payload, err == nil && &f.Payload[0] == &buf[0], err)
	}
	f, err = ReadFrameBuf(r, 0, buf)
	if err != nil || string(f.Payload) != "0123456789" || &f.Payload[0] == &buf[0] {
		t.Fatalf("bigger frame: %q, %v", f.Payload, err)
	}
	if string(buf[:6]) != "abcdef" {
		t.Fatalf("a bigger frame wrote into the buffer: %q", buf)
	}
	if _, err := ReadFrameBuf(bytes.NewReader(AppendFrame(nil, FrameInfo, make([]byte, 100))), 99, make([]byte, 200)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the limit with room in buf: %v", err)
	}
	if _, err := ReadFrameBuf(bytes.NewReader([]byte{0x83, 0x00, 0x00, 0x00, 0x09, 'a'}), 0, buf); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
}
