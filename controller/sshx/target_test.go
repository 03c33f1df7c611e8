package sshx

import (
	"os/user"
	"testing"
)

func TestParseTarget(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "alice@example.com", want: Target{User: "alice", Host: "example.com", Port: 22}},
		{in: "alice@example.com:2222", want: Target{User: "alice", Host: "example.com", Port: 2222}},
		{in: "example.com", want: Target{User: me.Username, Host: "example.com", Port: 22}},
		{in: "bob@[::1]:2200", want: Target{User: "bob", Host: "::1", Port: 2200}},
		{in: "[::1]", want: Target{User: me.Username, Host: "::1", Port: 22}},
		{in: "bob@::1", want: Target{User: "bob", Host: "::1", Port: 22}},
		{in: "a@b@host", want: Target{User: "a@b", Host: "host", Port: 22}},
		{in: "", wantErr: true},
		{in: "alice@", wantErr: true},
		{in: "@host", wantErr: true},
		{in: "host:0", wantErr: true},
		{in: "host:70000", wantErr: true},
		{in: "host:ssh", wantErr: true},
		{in: "ho st", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseTarget(%q) = %+v, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.in, err)
			}
			if got.User != tt.want.User || got.Host != tt.want.Host || got.Port != tt.want.Port {
				t.Errorf("ParseTarget(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpandProxyCommand(t *testing.T) {
	tg := Target{User: "u", Host: "h.example", Port: 2022}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "nc %h %p", want: "nc h.example 2022"},
		{in: "ssh -W %h:%p %r@jump", want: "ssh -W h.example:2022 u@jump"},
		{in: "echo 100%%", want: "echo 100%"},
		{in: "bad %x", wantErr: true},
		{in: "bad %", wantErr: true},
	}
	for _, tt := range tests {
		got, err := expandProxyCommand(tt.in, tg)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("expandProxyCommand(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHostKeyAddr(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{Target{Host: "h", Port: 22}, "h:22"},
		{Target{Host: "::1", Port: 2222}, "[::1]:2222"},
		{Target{Host: "h", Port: 2222, HostKeyAlias: "sandbox-1"}, "sandbox-1:22"},
		{Target{UnixSocket: "/run/a b:c.sock"}, "unix./run/a_b_c.sock:22"},
	}
	for _, tt := range tests {
		if got := tt.t.hostKeyAddr(); got != tt.want {
			t.Errorf("%+v.hostKeyAddr() = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestTail(t *testing.T) {
	tl := NewTail(4)
	tl.Write([]byte("ab"))
	tl.Write([]byte("cdef"))
	if got := tl.String(); got != "cdef" || !tl.Truncated() {
		t.Fatalf("tail = %q truncated=%v, want \"cdef\" true", got, tl.Truncated())
	}
}
