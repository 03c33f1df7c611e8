package cpus

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("latency mode is off on a one-CPU machine")
	}
	for _, tc := range []struct {
		name    string
		in      []string
		godebug string // "" when env must come back unchanged
	}{
		{"no GODEBUG", []string{"PATH=/bin"}, sysmonAwake},
		{"other settings kept", []string{"GODEBUG=http2debug=1", "PATH=/bin"}, "http2debug=1," + sysmonAwake},
		{"added once", []string{"GODEBUG=" + sysmonAwake}, sysmonAwake},
		{"the last GODEBUG wins", []string{"GODEBUG=a=1", "GODEBUG=b=2"}, "b=2," + sysmonAwake},
		{"GOMAXPROCS set: off", []string{"GOMAXPROCS=4", "GODEBUG=a=1"}, ""},
		{"opted out", []string{"DARKSHELL_LATENCY_MODE=0"}, ""},
		{"sysmon may sleep", []string{"DARKSHELL_SYSMON_AWAKE=0", "GODEBUG=a=1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Env(slices.Clone(tc.in))
			if tc.godebug == "" {
				if !slices.Equal(got, tc.in) {
					t.Fatalf("Env(%q) = %q, want it unchanged", tc.in, got)
				}
				return
			}
			var gd []string
			for _, kv := range got {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					gd = append(gd, v)
				}
			}
			if len(gd) != 1 || gd[0] != tc.godebug {
				t.Fatalf("Env(%q) GODEBUG = %q, want exactly [%q]", tc.in, gd, tc.godebug)
			}
			for _, kv := range tc.in {
				if !strings.HasPrefix(kv, "GODEBUG=") && !slices.Contains(got, kv) {
					t.Fatalf("Env(%q) lost %q: %q", tc.in, kv, got)
				}
			}
		})
	}
}

// TestEnvParentOptOut: an opt-out in this process's environment holds for
// children whose environment is built from nothing (local init).
func TestEnvParentOptOut(t *testing.T) {
	t.Setenv("DARKSHELL_SYSMON_AWAKE", "0")
	in := []string{"PATH=/bin"}
	if got := Env(slices.Clone(in)); !slices.Equal(got, in) {
		t.Fatalf("Env(%q) = %q with DARKSHELL_SYSMON_AWAKE=0 here, want it unchanged", in, got)
	}
}

func TestWithoutSysmon(t *testing.T) {
	for in, want := range map[string]string{
		sysmonAwake:                       "",
		"a=1," + sysmonAwake:              "a=1",
		sysmonAwake + ",a=1,b=2":          "a=1,b=2",
		"a=1":                             "a=1",
		"schedtrace=1000":                 "schedtrace=1000", // the user's own trace stays
		"a=1," + sysmonAwake + "," + "b=": "a=1,b=",
	} {
		if got := withoutSysmon(in); got != want {
			t.Errorf("withoutSysmon(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLatencyModeForgetsSysmon runs this test binary as a child started
// with Env: the child's runtime has the setting, its environment (what its
// own children inherit) no longer has it after LatencyMode, and the
// user's other GODEBUG settings stay.
func TestLatencyModeForgetsSysmon(t *testing.T) {
	if os.Getenv("CPUS_TEST_CHILD") == "1" {
		LatencyMode()
		os.Stdout.WriteString("awake=" + map[bool]string{true: "yes", false: "no"}[startedAwake] + "\n")
		out, err := exec.Command("/bin/sh", "-c", `printf 'child GODEBUG=%s\n' "$GODEBUG"`).Output()
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.Write(out)
		return
	}
	if runtime.NumCPU() < 2 || os.Getenv("GOMAXPROCS") != "" {
		t.Skipf("latency mode is off here (CPUs %d, GOMAXPROCS=%q)", runtime.NumCPU(), os.Getenv("GOMAXPROCS"))
	}
	env := append(os.Environ(), "CPUS_TEST_CHILD=1", "GODEBUG=http2debug=1", "DARKSHELL_LATENCY_MODE=1")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLatencyModeForgetsSysmon$", "-test.count=1")
	cmd.Env = Env(env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "awake=yes\n") {
		t.Errorf("the child did not start with the setting:\n%s", out)
	}
	if !strings.Contains(string(out), "child GODEBUG=http2debug=1\n") {
		t.Errorf("a grandchild must see the user's GODEBUG without the setting:\n%s", out)
	}
}
