package inject

import (
	"os/exec"
	"testing"
)

func TestVersionDir(t *testing.T) {
	tests := []struct {
		base, version, want string
	}{
		{"", "dev", `"$HOME"'/.cache/darkshell/sandboxd/dev'`},
		{"~/x", "v1.2.3+dirty", `"$HOME"'/x/v1.2.3+dirty'`},
		{"$HOME/x/", "v1", `"$HOME"'/x/v1'`},
		{"/opt/it's here", "a/b $(rm)", `'/opt/it'\''s here/a_b___rm_'`},
		{"/o", "..", `'/o/_..'`},
	}
	for _, tt := range tests {
		if got := versionDir(tt.base, tt.version).String(); got != tt.want {
			t.Errorf("versionDir(%q, %q) = %s, want %s", tt.base, tt.version, got, tt.want)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", `"$HOME" $(x) ; \n`, "a\nb"} {
		out, err := exec.Command("sh", "-c", "printf %s "+quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh printf %s = %q, %v; want %q", quote(s), out, err, s)
		}
	}
}

func TestGoarch(t *testing.T) {
	tests := []struct {
		machine, want string
		ok            bool
	}{
		{"x86_64", "amd64", true},
		{"aarch64", "arm64", true},
		{"arm64", "arm64", true},
		{"armv7l", "", false},
		{"riscv64", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got, ok := goarch(tt.machine); got != tt.want || ok != tt.ok {
			t.Errorf("goarch(%q) = %q, %v", tt.machine, got, ok)
		}
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"build_version":"v1","sha256":"ab"}`, "v1", true},
		{"motd noise\n{\"build_version\":\"v2\"}\n", "v2", true},
		{"{\n  \"build_version\": \"v3\"\n}\n", "v3", true},
		{"garbage", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		v, ok := parseVersion(tt.in)
		if v.BuildVersion != tt.want || ok != tt.ok {
			t.Errorf("parseVersion(%q) = %+v, %v", tt.in, v, ok)
		}
	}
}
