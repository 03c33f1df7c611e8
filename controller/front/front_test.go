package front

import (
	"bufio"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
		name string
		argv []string
		json bool
	}{
		{[]string{"exec", "dev", "--", "true"}, true, "dev", []string{"true"}, false},
		{[]string{"exec", "dev", "true"}, true, "dev", []string{"true"}, false},
		{[]string{"sandbox", "exec", "dev", "--", "ls", "-l"}, true, "dev", []string{"ls", "-l"}, false},
		{[]string{"sb", "exec", "-o", "json", "dev", "--", "true"}, true, "dev", []string{"true"}, true},
		{[]string{"exec", "-it", "--timeout", "3s", "-e", "A=1", "dev", "--", "sh"}, true, "dev", []string{"sh"}, false},
		{[]string{"exec", "dev", "--", "ls", "--help"}, true, "dev", []string{"ls", "--help"}, false},
		{[]string{"exec", "--help"}, false, "", nil, false},
		{[]string{"exec", "dev", "--help", "--", "true"}, false, "", nil, false},
		{[]string{"exec", "--bogus", "dev", "--", "true"}, false, "", nil, false},
		{[]string{"exec", "-o", "yaml", "dev", "--", "true"}, false, "", nil, false},
		{[]string{"exec", "--timeout", "soon", "dev", "--", "true"}, false, "", nil, false},
		{[]string{"exec", "dev"}, false, "", nil, false},
		{[]string{"sync", "dev", "."}, false, "", nil, false},
		{[]string{"sandbox", "list"}, false, "", nil, false},
		{nil, false, "", nil, false},
	}
	for _, tt := range tests {
		c, ok := parse(tt.args)
		if ok != tt.ok {
			t.Errorf("parse(%q) ok = %v, want %v", tt.args, ok, tt.ok)
			continue
		}
		if ok && (c.name != tt.name || !slices.Equal(c.argv, tt.argv) || c.json != tt.json) {
			t.Errorf("parse(%q) = %q %q json=%v, want %q %q json=%v", tt.args, c.name, c.argv, c.json, tt.name, tt.argv, tt.json)
		}
	}
	c, _ := parse([]string{"exec", "-it", "--timeout", "3s", "-e", "A=1", "-e", "B=2", "-w", "/tmp", "--sh", "--idempotency-key", "k", "--home", "/h", "dev", "x"})
	if !c.f.TTY || !c.f.Interactive || c.f.Timeout != 3*time.Second || !slices.Equal(c.f.Env, []string{"A=1", "B=2"}) ||
		c.f.Dir != "/tmp" || !c.f.Shell || c.f.Key != "k" || c.home != "/h" {
		t.Errorf("flags: %+v home=%q", c.f, c.home)
	}
}

func TestReadHead(t *testing.T) {
	tests := []struct {
		in     string
		status int
		err    bool
		rest   string
	}{
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: darkshell-stream\r\nConnection: Upgrade\r\n\r\nFRAME", 101, false, "FRAME"},
		{"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 404, false, "{}"},
		{"HTTP/1.1 101\r\n", 0, true, ""},
		{"SSH-2.0-OpenSSH\r\n\r\n", 0, true, ""},
		{"HTTP/1.1 abc Bad\r\n\r\n", 0, true, ""},
		{"", 0, true, ""},
		{"HTTP/1.1 101 OK\r\n" + strings.Repeat("X: y\r\n", 200) + "\r\n", 0, true, ""},
	}
	for _, tt := range tests {
		r := bufio.NewReader(strings.NewReader(tt.in))
		status, err := readHead(r)
		if (err != nil) != tt.err || status != tt.status {
			t.Errorf("readHead(%.30q) = %d, %v; want %d, err=%v", tt.in, status, err, tt.status, tt.err)
			continue
		}
		if !tt.err {
			rest, _ := r.ReadString(0)
			if rest != tt.rest {
				t.Errorf("readHead(%.30q) left %q, want %q", tt.in, rest, tt.rest)
			}
		}
	}
}

// TestFrontStaysLight guards the front's start-up: none of the full CLI's
// heavy dependencies may creep into the darkshell binary (each adds
// package initialisation and page faults to every fresh exec).
func TestFrontStaysLight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/bohica-labs/darkshell/cmd/darkshell").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	heavy := []string{"net/http", "crypto/tls", "crypto/x509", "encoding/gob", "regexp", "github.com/spf13/cobra",
		"github.com/cilium/", "github.com/modelcontextprotocol/", "github.com/google/go-containerregistry/",
		"golang.org/x/crypto/ssh", "github.com/klauspost/", "go.opentelemetry.io/", "k8s.io/", "github.com/prometheus/",
		"github.com/bohica-labs/darkshell/controller/cli", "github.com/bohica-labs/darkshell/controller/client",
		"github.com/bohica-labs/darkshell/controller/api"}
	for _, dep := range strings.Fields(string(out)) {
		for _, h := range heavy {
			if dep == h || (strings.HasSuffix(h, "/") && strings.HasPrefix(dep, h)) {
				t.Errorf("the front imports %s (through one of its light packages): keep it in darkshell-core", dep)
			}
		}
	}
}
