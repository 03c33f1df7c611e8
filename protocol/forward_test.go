package protocol

import (
	"bytes"
	"testing"
)

// TestForwardConstants pins the forward stream's on-wire values.
func TestForwardConstants(t *testing.T) {
	for ft, want := range map[FrameType]uint8{
		FrameForwardListen: 0x40, FrameForwardConn: 0x41, FrameForwardDial: 0x42, FrameForwardReady: 0xB0,
	} {
		if uint8(ft) != want {
			t.Errorf("%s = 0x%02x, want 0x%02x", ft, uint8(ft), want)
		}
	}
	if MaxForwardTag != 128 || MaxForwardListeners != 256 {
		t.Errorf("forward limits changed: %d %d", MaxForwardTag, MaxForwardListeners)
	}
	if !FrameForwardListen.IsRequest() || !FrameForwardConn.IsRequest() || !FrameForwardDial.IsRequest() || FrameForwardReady.IsRequest() {
		t.Error("request ranges wrong")
	}
}

func TestValidLoopbackAddr(t *testing.T) {
	for a, ok := range map[string]bool{
		"127.0.0.1:80": true, "127.1.2.3:0": true, "[::1]:65535": true, "localhost:1": true,
		"10.0.0.1:80": false, "0.0.0.0:80": false, "127.0.0.1:65536": false, "127.0.0.1:-1": false,
		"127.0.0.1": false, "example.com:80": false, "[fe80::1%lo]:80": false, "127.0.0.1:+80": false,
	} {
		if err := ValidLoopbackAddr(a); (err == nil) != ok {
			t.Errorf("ValidLoopbackAddr(%q) = %v, want ok=%v", a, err, ok)
		}
	}
}

func TestForwardValidate(t *testing.T) {
	good := []Validator{
		&ForwardListen{Addr: "127.0.0.1:0", Tag: "rfwd:8080"},
		&ForwardListen{Addr: "127.0.0.1:0", Tag: "mcp:x", MCP: &MCPEndpoint{Name: "x", Transport: MCPBridge, Path: "/mcp"}},
		&ForwardConn{Tag: "t", Peer: "127.0.0.1:5555"},
		&ForwardDial{Addr: "127.0.0.1:22"},
		&ForwardReady{Addr: "127.0.0.1:22"},
	}
	for _, m := range good {
		if err := m.Validate(); err != nil {
			t.Errorf("%T %+v: %v", m, m, err)
		}
	}
	bad := []Validator{
		(*ForwardListen)(nil), &ForwardListen{Addr: "127.0.0.1:0"}, &ForwardListen{Addr: "1.2.3.4:5", Tag: "t"},
		&ForwardListen{Addr: "127.0.0.1:0", Tag: "a b"},
		&ForwardListen{Addr: "127.0.0.1:0", Tag: "t", MCP: &MCPEndpoint{Name: "", Transport: MCPBridge, Path: "/mcp"}},
		(*ForwardConn)(nil), &ForwardConn{}, &ForwardDial{Addr: "127.0.0.1:0"}, &ForwardDial{Addr: "8.8.8.8:53"},
		(*ForwardReady)(nil), &ForwardReady{Addr: "x"},
	}
	for _, m := range bad {
		if err := m.Validate(); err == nil {
			t.Errorf("%T %+v: accepted", m, m)
		}
	}
}

// FuzzForwardDecode: forward messages decode and validate or fail, never panic.
func FuzzForwardDecode(f *testing.F) {
	f.Add(uint8(FrameForwardListen), []byte(`{"addr":"127.0.0.1:0","tag":"t","mcp":{"name":"x","transport":"bridge","path":"/mcp"}}`))
	f.Add(uint8(FrameForwardConn), []byte(`{"tag":"t","peer":"127.0.0.1:1"}`))
	f.Add(uint8(FrameForwardDial), []byte(`{"addr":"[::1]:22"}`))
	f.Add(uint8(FrameForwardReady), []byte(`{"addr":"127.0.0.1:22"}`))
	f.Fuzz(func(t *testing.T, typ uint8, p []byte) {
		var buf bytes.Buffer
		_ = WriteFrame(&buf, FrameType(typ|1), p)
		fr, err := ReadFrame(&buf, MaxControlPayload)
		if err != nil {
			return
		}
		fr.Type = FrameType(typ)
		for ft, m := range map[FrameType]Validator{
			FrameForwardListen: &ForwardListen{}, FrameForwardConn: &ForwardConn{},
			FrameForwardDial: &ForwardDial{}, FrameForwardReady: &ForwardReady{},
		} {
			if DecodeMsg(fr, ft, m) == nil {
				if err := m.Validate(); err != nil {
					t.Fatalf("decoded %s fails validation: %v", ft, err)
				}
			}
		}
	})
}
