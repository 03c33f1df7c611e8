package openshelldriver

import (
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/driver"
)

func TestParseSSHConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     SSHConfig
		wantErr  string
	}{
		{"openshell block", `Host openshell-box.default
    User sandbox
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    ProxyCommand /usr/local/bin/openshell ssh-proxy --gateway-name g --name box --workspace default
`, SSHConfig{"openshell-box.default", "sandbox", "/usr/local/bin/openshell ssh-proxy --gateway-name g --name box --workspace default"}, ""},
		{"equals form and case", "# managed\nhost=a\n  USER=\"u\"\n  proxycommand=nc %h %p\n", SSHConfig{"a", "u", "nc %h %p"}, ""},
		{"first block only", "Host a\n ProxyCommand one\nHost b\n ProxyCommand two\n User x\n", SSHConfig{"a", "", "one"}, ""},
		{"settings before Host ignored", "User root\nHost a\n ProxyCommand p\n", SSHConfig{"a", "", "p"}, ""},
		{"no host", "User sandbox\n", SSHConfig{}, "no Host block"},
		{"no proxy", "Host a\n User sandbox\n", SSHConfig{}, "no ProxyCommand"},
		{"proxy none", "Host a\n ProxyCommand none\n", SSHConfig{}, "no ProxyCommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSSHConfig(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestPhase(t *testing.T) {
	tests := []struct{ doc, phase string }{
		{`{"name":"a","phase":"Ready"}`, driver.PhaseRunning},
		{`{"sandbox":{"status":{"phase":"Stopped"}}}`, driver.PhaseStopped},
		{`[{"phase":"Provisioning"}]`, driver.PhasePending},
		{`{"phase":"Error"}`, driver.PhaseFailed},
		{`not json`, driver.PhaseFailed},
	}
	for _, tt := range tests {
		if got := MapPhase(findPhase(tt.doc)); got.Phase != tt.phase {
			t.Errorf("%s: phase %q, want %q", tt.doc, got.Phase, tt.phase)
		}
	}
}

func TestCheckOptions(t *testing.T) {
	for _, o := range []driver.CreateOptions{
		{Image: "x"}, {Policy: "p"}, {MemoryLimit: "1G"}, {Workspace: "/w"}, {Providers: []string{"p"}},
		{DriverOpts: map[string]string{"namespace": "x"}},
	} {
		if checkOptions(o) == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if err := checkOptions(driver.CreateOptions{DriverOpts: map[string]string{OptName: "a", OptGateway: "g", OptWorkspace: "w", OptCLI: "c"}}); err != nil {
		t.Error(err)
	}
}
