package protocol

import (
	"bytes"
	"strings"
	"testing"
)

// TestMCPConstants pins the MCP stream's on-wire values.
func TestMCPConstants(t *testing.T) {
	for ft, want := range map[FrameType]uint8{
		FrameMCPServe: 0x50, FrameMCPReady: 0xB4, FrameMCPStatus: 0xB5, FrameMCPEvent: 0xB6, FrameMCPLog: 0xB7,
	} {
		if uint8(ft) != want {
			t.Errorf("%s = 0x%02x, want 0x%02x", ft, uint8(ft), want)
		}
	}
	if MaxMCPName != 64 || MaxMCPGlobs != 256 || MaxMCPEvent != 65536 {
		t.Error("MCP limits changed")
	}
	if MCPBridge != "bridge" || MCPInSandbox != "in-sandbox" || MCPHTTP != "http" {
		t.Error("MCP transport names changed")
	}
}

func TestMCPValidate(t *testing.T) {
	good := []Validator{
		&MCPServe{Name: "fs", Argv: []string{"node", "x.js"}, Env: []string{"A=b"}, Addr: "127.0.0.1:0", Deny: []string{"write_*"}},
		&MCPReady{Addr: "127.0.0.1:7000", URL: "http://127.0.0.1:7000/mcp"},
		&MCPStatus{State: "running", PID: 3},
		&MCPEndpoint{Name: "a.b_c-1", Transport: MCPInSandbox, Path: "/mcp"},
	}
	for _, m := range good {
		if err := m.Validate(); err != nil {
			t.Errorf("%T: %v", m, err)
		}
	}
	bad := []Validator{
		(*MCPServe)(nil),
		&MCPServe{Name: "-x", Argv: []string{"a"}, Addr: "127.0.0.1:0"},
		&MCPServe{Name: "x", Addr: "127.0.0.1:0"},
		&MCPServe{Name: "x", Argv: []string{"a"}, Addr: "10.0.0.1:0"},
		&MCPServe{Name: "x", Argv: []string{"a\x00"}, Addr: "127.0.0.1:0"},
		&MCPServe{Name: "x", Argv: []string{"a"}, Env: []string{"=v"}, Addr: "127.0.0.1:0"},
		&MCPServe{Name: "x", Argv: []string{"a"}, Addr: "127.0.0.1:0", Allow: []string{"["}},
		&MCPServe{Name: strings.Repeat("x", 65), Argv: []string{"a"}, Addr: "127.0.0.1:0"},
		&MCPServe{Name: "a/b", Argv: []string{"a"}, Addr: "127.0.0.1:0"},
		&MCPReady{Addr: "127.0.0.1:1", URL: "file:///etc/passwd"},
		&MCPStatus{}, &MCPStatus{State: "x", PID: -1},
		&MCPEndpoint{Name: "x", Transport: "smtp", Path: "/mcp"},
		&MCPEndpoint{Name: "x", Transport: MCPBridge, Path: "mcp"},
	}
	for _, m := range bad {
		if err := m.Validate(); err == nil {
			t.Errorf("%T %+v: accepted", m, m)
		}
	}
}

// FuzzMCPDecode: MCP messages decode and validate or fail, never panic.
func FuzzMCPDecode(f *testing.F) {
	f.Add(uint8(FrameMCPServe), []byte(`{"name":"fs","argv":["node","a.js"],"addr":"127.0.0.1:0","deny":["w*"]}`))
	f.Add(uint8(FrameMCPServe), []byte(`{"name":"fs","argv":["n"],"addr":"127.0.0.1:0","rules":[{"method":"tools/call","tool":["r*"],"params":{"arguments.p":["/s/*"]}}],"deny_rules":[{"method":"*"}]}`))
	f.Add(uint8(FrameMCPReady), []byte(`{"addr":"127.0.0.1:1","url":"http://127.0.0.1:1/mcp"}`))
	f.Add(uint8(FrameMCPStatus), []byte(`{"state":"running","pid":2,"restarts":1}`))
	f.Fuzz(func(t *testing.T, typ uint8, p []byte) {
		var buf bytes.Buffer
		_ = WriteFrame(&buf, FrameType(typ|1), p)
		fr, err := ReadFrame(&buf, MaxControlPayload)
		if err != nil {
			return
		}
		fr.Type = FrameType(typ)
		for ft, m := range map[FrameType]Validator{
			FrameMCPServe: &MCPServe{}, FrameMCPReady: &MCPReady{}, FrameMCPStatus: &MCPStatus{},
		} {
			if DecodeMsg(fr, ft, m) == nil {
				if err := m.Validate(); err != nil {
					t.Fatalf("decoded %s fails validation: %v", ft, err)
				}
			}
		}
	})
}
