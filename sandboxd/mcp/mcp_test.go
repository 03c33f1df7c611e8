package mcp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/protocol"
)

func TestConfig(t *testing.T) {
	ws := t.TempDir()
	m := New(ws, nil, nil)
	m.Register(&protocol.MCPEndpoint{Name: "b", Transport: protocol.MCPBridge, Path: "/mcp"}, "127.0.0.1:7300")
	m.Register(&protocol.MCPEndpoint{Name: "a", Transport: protocol.MCPInSandbox, Path: "/mcp"}, "127.0.0.1:7301")
	c, err := ReadConfig(ws)
	if err != nil || len(c.MCPServers) != 2 || c.MCPServers["a"].URL != "http://127.0.0.1:7301/mcp" || c.MCPServers["b"].Transport != "bridge" {
		t.Fatalf("config = %+v, %v", c, err)
	}
	m.Unregister("a", "127.0.0.1:9999") // another listener's: kept
	m.Unregister("b", "127.0.0.1:7300")
	if c, _ := ReadConfig(ws); len(c.MCPServers) != 1 {
		t.Fatalf("after unregister: %+v", c)
	}
}

// TestConfigSymlink: a symlink planted in the workspace cannot redirect
// sandboxd's write of the config outside it.
func TestConfigSymlink(t *testing.T) {
	ws, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(ws, ".darkshell")); err != nil {
		t.Fatal(err)
	}
	m := New(ws, nil, nil)
	m.Register(&protocol.MCPEndpoint{Name: "x", Transport: protocol.MCPBridge, Path: "/mcp"}, "127.0.0.1:7300")
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("the config was written through the symlink: %v", ents)
	}
	if _, err := ReadConfig(ws); err == nil || !strings.Contains(err.Error(), "MCP client config") {
		t.Fatalf("reading through the symlink: %v", err)
	}
}
