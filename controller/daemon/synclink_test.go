package daemon

import (
	"testing"

	"github.com/bohica-labs/darkshell/controller/state"
)

func TestLocalLink(t *testing.T) {
	for _, c := range []struct {
		sb   state.Sandbox
		want bool
	}{
		{state.Sandbox{Driver: "local"}, true},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "127.0.0.1", Port: 2222}}, true},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "::1"}}, true},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "localhost"}}, true},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{UnixSocket: "/run/s.sock"}}, true},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "127.0.0.1", ProxyCommand: "ssh -W %h:%p jump"}}, false},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "build.example.com"}}, false},
		{state.Sandbox{Driver: "ssh", SSH: &state.SSHTarget{Host: "10.0.0.5"}}, false},
		{state.Sandbox{Driver: "ssh"}, false},
		{state.Sandbox{Driver: "kubernetes"}, false},
	} {
		if got := localLink(&c.sb); got != c.want {
			t.Errorf("localLink(%s %+v) = %v, want %v", c.sb.Driver, c.sb.SSH, got, c.want)
		}
	}
}
