package enginedriver

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

func TestMemoryFlag(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"512M", "536870912", false},
		{"512m", "536870912", false},
		{"1G", "1073741824", false},
		{"1.5GiB", "1610612736", false},
		{"64MB", "67108864", false},
		{"10485760", "10485760", false},
		{"1k", "", true}, // under the engines' minimum
		{"lots", "", true},
		{"-1G", "", true},
		{"12X", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := memoryFlag(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("memoryFlag(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--memory-limit") {
				t.Fatalf("error does not name the flag: %v", err)
			}
		})
	}
}

func TestLoadedRef(t *testing.T) {
	tests := []struct{ name, out, want string }{
		{"podman tag", "Getting image source signatures\nCopying blob sha256:906e\nLoaded image: localhost/mini:1\n", "localhost/mini:1"},
		{"podman several", "Loaded image(s): darkshell.test/a:1,darkshell.test/b:1\n", "darkshell.test/a:1"},
		{"docker tag", "Loaded image: mini:1\n", "mini:1"},
		{"docker id", "Loaded image ID: sha256:2a8338199afd\n", "sha256:2a8338199afd"},
		{"nothing", "Error: something\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadedRef(tt.out); got != tt.want {
				t.Fatalf("loadedRef = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEngineErrors(t *testing.T) {
	for _, tt := range []struct {
		stderr   string
		notFound bool
		hint     string
	}{
		{"Error: no container with name or id \"x\" found: no such container", true, ""},
		{"Error: No such container: x", true, ""},
		{"Error: x: image not known", true, ""},
		{"Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2", false, `runtime = "runc"`},
		{"error setting rlimits for ready process: error setting rlimit type 7: operation not permitted", false, "default_ulimits"},
		{"Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", false, "DOCKER_HOST"},
	} {
		e := &engineError{eng: "podman", args: []string{"run"}, code: 125, stderr: tt.stderr}
		if e.notFound() != tt.notFound {
			t.Errorf("%q: notFound %v", tt.stderr, e.notFound())
		}
		got := hint(e)
		if !errors.Is(got, e) {
			t.Errorf("hint does not wrap the engine error")
		}
		if tt.hint != "" && !strings.Contains(got.Error(), tt.hint) {
			t.Errorf("%q: hint %q lacks %q", tt.stderr, got, tt.hint)
		}
	}
}

// TestStateEnv: the engine's state variables recorded at create replace
// this process's values in every later call.
func TestStateEnv(t *testing.T) {
	t.Setenv("CONTAINERS_CONF", "/now.conf")
	t.Setenv("CONTAINERS_STORAGE_CONF", "/now-storage.conf")
	eng := Podman
	eng.Bin = "true" // any executable: only the command line is checked
	if got := eng.engineEnv(); !slices.Contains(got, "CONTAINERS_CONF=/now.conf") || !slices.Contains(got, "CONTAINERS_STORAGE_CONF=/now-storage.conf") {
		t.Fatalf("engineEnv = %v", got)
	}
	cmd, err := eng.command(context.Background(), []string{"CONTAINERS_CONF=/recorded.conf"}, "ps")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cmd.Env, "CONTAINERS_CONF=/recorded.conf") || slices.Contains(cmd.Env, "CONTAINERS_CONF=/now.conf") ||
		slices.ContainsFunc(cmd.Env, func(s string) bool { return strings.HasPrefix(s, "CONTAINERS_STORAGE_CONF=") }) {
		t.Fatalf("env of the engine call: %v", cmd.Env)
	}

	eng.Bin = "darkshell-no-such-engine"
	if _, err := eng.command(context.Background(), nil, "ps"); !errors.Is(err, ErrEngineMissing) || !strings.Contains(err.Error(), "apt-get install podman") {
		t.Fatalf("missing engine: %v", err)
	}
}

func TestContainerName(t *testing.T) {
	a, b := containerName(&state.Home{Dir: "/a"}, "box"), containerName(&state.Home{Dir: "/b"}, "box")
	if a == b || !strings.HasPrefix(a, "darkshell-box-") {
		t.Fatalf("container names %q and %q: two installations must not collide", a, b)
	}
}

func TestCheckOptions(t *testing.T) {
	d := Driver{Engine: Podman}
	for _, tt := range []struct {
		o    driver.CreateOptions
		want string
	}{
		{driver.CreateOptions{}, "needs --image"},
		{driver.CreateOptions{Image: "x", Rootfs: "/"}, "--rootfs is not supported"},
		{driver.CreateOptions{Image: "x", Unconfined: true}, "--unconfined is not supported"},
		{driver.CreateOptions{Image: "x", Policy: "version: 1"}, "--policy is not supported"},
		{driver.CreateOptions{Image: "x", Workspace: "/no/such/dir"}, "not an existing directory"},
		{driver.CreateOptions{Image: "x", Workspace: t.TempDir()}, ""},
	} {
		err := d.checkOptions(tt.o)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestRunArgsLimits(t *testing.T) {
	d := Driver{Engine: Docker} // no ulimit adjustment: easier to read
	sb := &state.Sandbox{Name: "box", Env: []string{"A=b c"}}
	x := Extra{Container: "darkshell-box-1", CreateOptions: driver.CreateOptions{CPULimit: "1.5", MemoryLimit: "512M", PidsLimit: 100}}
	args, limits, err := d.runArgs(&state.Home{Dir: "/h"}, sb, x)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--cpus=1.5", "--memory=536870912", "--memory-swap=536870912", "--pids-limit=100"}; !slices.Equal(limits, want) {
		t.Fatalf("limits %v, want %v", limits, want)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"--network none", "--cap-drop ALL", "--security-opt no-new-privileges", "--init",
		"--env A=b c", "--volume /sandbox", "--label darkshell.sandbox=box", "--pids-limit=100"} {
		if !strings.Contains(line, want) {
			t.Errorf("run args lack %q: %s", want, line)
		}
	}
	for _, bad := range []Extra{
		{CreateOptions: driver.CreateOptions{CPULimit: "zero"}},
		{CreateOptions: driver.CreateOptions{PidsLimit: -3}},
	} {
		if _, _, err := d.runArgs(&state.Home{Dir: "/h"}, sb, bad); err == nil {
			t.Errorf("%+v accepted", bad.CreateOptions)
		}
	}
}
