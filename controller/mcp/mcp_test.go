package mcp

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/mcpproxy"
	"github.com/bohica-labs/darkshell/protocol"
)

func TestRecordValidate(t *testing.T) {
	ok := Record{Sandbox: "sb", Name: "gh", Transport: protocol.MCPBridge, Argv: []string{"x"}, Port: 7300, Deny: []string{"d*"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(r *Record){
		"no command":          func(r *Record) { r.Argv = nil },
		"bad transport":       func(r *Record) { r.Transport = "smtp" },
		"http without url":    func(r *Record) { r.Transport = protocol.MCPHTTP; r.Argv = nil },
		"http with command":   func(r *Record) { r.Transport = protocol.MCPHTTP; r.URL = "http://x" },
		"in-sandbox provider": func(r *Record) { r.Transport = protocol.MCPInSandbox; r.Providers = []string{"p"} },
		"in-sandbox env key":  func(r *Record) { r.Transport = protocol.MCPInSandbox; r.EnvKeys = []string{"K"} },
		"bad glob":            func(r *Record) { r.Allow = []string{"["} },
		"bad env":             func(r *Record) { r.Env = []string{"=x"} },
		"bad name":            func(r *Record) { r.Name = "a/b" },
		"bad port":            func(r *Record) { r.Port = 0 },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRecordsAndLog(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Create(&state.Sandbox{Name: "sb", Driver: "ssh", Created: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ps := provider.Open(h)
	if err := ps.Create(&provider.Provider{Name: "p", Type: "generic", Credentials: map[string]string{"TOKEN": "tok-very-secret"}}); err != nil {
		t.Fatal(err)
	}
	m := NewManager(Options{Home: h, Providers: ps})
	r := &Record{Sandbox: "sb", Name: "a", Transport: protocol.MCPBridge, Argv: []string{"x"}, Port: m.freePort("sb"), Created: time.Now()}
	if r.Port != FirstPort {
		t.Fatalf("first port = %d", r.Port)
	}
	if err := m.records.Save(r); err != nil {
		t.Fatal(err)
	}
	if p := m.freePort("sb"); p != FirstPort+1 {
		t.Fatalf("second port = %d", p)
	}
	for i := 0; i < 5; i++ {
		m.record("sb", mcpproxy.Event{Kind: mcpproxy.KindCall, Server: "a", Tool: "t", Args: json.RawMessage(`{"q":"tok-very-secret"}`), Error: "saw tok-very-secret"})
	}
	m.record("sb", mcpproxy.Event{Kind: mcpproxy.KindPolicy, Server: "b", Tool: "x", Decision: "deny"})
	evs, err := m.Logs("sb", "a", 3)
	if err != nil || len(evs) != 3 {
		t.Fatalf("logs = %d, %v", len(evs), err)
	}
	b, _ := os.ReadFile(m.LogPath("sb"))
	if strings.Contains(string(b), "tok-very-secret") {
		t.Fatalf("the call log holds a provider value:\n%s", b)
	}
	if fi, _ := os.Stat(m.LogPath("sb")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v", fi.Mode())
	}
	// A record older than its sandbox is stale: never listed, deleted.
	old := &Record{Sandbox: "sb", Name: "old", Transport: protocol.MCPBridge, Argv: []string{"x"}, Port: 7310, Created: time.Now().Add(-2 * time.Hour)}
	m.records.Save(old)
	l, err := m.List("sb")
	if err != nil || len(l) != 1 || l[0].Name != "a" || l[0].State != "stopped" {
		t.Fatalf("list = %+v, %v", l, err)
	}
	if _, err := m.records.Get("sb", "old"); err == nil {
		t.Fatal("stale record kept")
	}
}
