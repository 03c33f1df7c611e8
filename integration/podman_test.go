package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bohica-labs/darkshell/controller/client"
)

// podmanEnv is an installation whose podman keeps all its state (images,
// containers, volumes, runtime files) under one test-owned directory,
// through a containers.conf and a storage.conf the test writes and points
// CONTAINERS_CONF / CONTAINERS_STORAGE_CONF at (for the daemon too: it
// inherits the CLI's environment). Nothing of the machine's podman state is
// read or changed.
type podmanEnv struct {
	*env
	dir     string // podman's state
	archive string // the test image as a docker-archive file
}

// podmanConf is the containers.conf of the tests. runc, not crun: crun
// 1.8 refuses this host's hybrid cgroup layout. The ulimits are lowered
// because root here lacks CAP_SYS_RESOURCE (kernel-notes §9); the driver
// copes without this too (see TestPodmanWithoutUlimitConf).
const podmanConf = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "%[1]s/tmp"
volume_path = "%[1]s/volumes"
image_copy_tmp_dir = "%[1]s/tmp"
`

// requirePodman skips t (fails it under DARKSHELL_REQUIRE_ALL=1) unless
// rootful podman with runc and catatonit can run here.
func requirePodman(t testing.TB) {
	t.Helper()
	requireIntegration(t)
	for _, bin := range []string{"podman", "runc", "conmon"} {
		if _, err := exec.LookPath(bin); err != nil {
			requireFeature(t, bin+" (install it with `make deps`, i.e. apt-get install podman runc catatonit)")
		}
	}
	if _, err := os.Stat("/usr/libexec/podman/catatonit"); err != nil {
		requireFeature(t, "catatonit, podman's --init (apt-get install catatonit)")
	}
	if os.Geteuid() != 0 {
		requireFeature(t, "root: the podman tests run rootful podman (rootless: see docs/drivers.md)")
	}
}

// newPodmanEnv makes a podman-backed installation and the test image.
// Everything the engine made is removed at the end, and the test fails if
// a container of this installation is still there.
func newPodmanEnv(t testing.TB) *podmanEnv {
	t.Helper()
	requirePodman(t)
	dir, err := os.MkdirTemp("", "ds-podman-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "volumes"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	conf := filepath.Join(dir, "containers.conf")
	storage := filepath.Join(dir, "storage.conf")
	os.WriteFile(conf, fmt.Appendf(nil, podmanConf, dir), 0o600)
	os.WriteFile(storage, fmt.Appendf(nil, "[storage]\ndriver = \"vfs\"\ngraphroot = \"%[1]s/root\"\nrunroot = \"%[1]s/run\"\n", dir), 0o600)
	setenv(t, "CONTAINERS_CONF", conf)
	setenv(t, "CONTAINERS_STORAGE_CONF", storage)
	t.Cleanup(func() { cleanupPodman(t, dir) })

	e := &env{t: t, home: t.TempDir()}
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(e.cleanup)
	t.Cleanup(func() {
		ents, _ := os.ReadDir(filepath.Join(e.home, "sandboxes"))
		for _, d := range ents {
			e.c.Delete(context.Background(), d.Name())
		}
	})
	pe := &podmanEnv{env: e, dir: dir, archive: filepath.Join(dir, "image.tar")}
	writeToolImage(t, pe.archive, "darkshell.test/tools:1")
	return pe
}

// setenv sets an environment variable for the rest of the test (t.Setenv
// needs a *testing.T; benchmarks use this too).
func setenv(t testing.TB, k, v string) {
	old, had := os.LookupEnv(k)
	os.Setenv(k, v)
	t.Cleanup(func() {
		if had {
			os.Setenv(k, old)
		} else {
			os.Unsetenv(k)
		}
	})
}

// cleanupPodman removes every container, volume and image of the test's
// podman, then its state directory (unmounting what podman left mounted).
func cleanupPodman(t testing.TB, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, _ := exec.CommandContext(ctx, "podman", "ps", "-aq").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("containers left after the test's sandboxes were deleted: %s", bytes.TrimSpace(out))
	}
	for _, args := range [][]string{{"rm", "-af", "-v", "-t", "0"}, {"volume", "prune", "-f"}, {"rmi", "-af"}} {
		exec.CommandContext(ctx, "podman", args...).Run()
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, l := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				mounts = append(mounts, f[4])
			}
		}
		slices.Reverse(mounts)
		for _, m := range mounts {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("podman state dir: %v", err)
	}
}

// podman runs the test's podman and returns its stdout.
func (pe *podmanEnv) podman(args ...string) (string, error) {
	pe.t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %v: %v: %s", args, err, errb.String())
	}
	return out.String(), nil
}

// createPodman creates a podman sandbox from the test image (or args' --image).
func (pe *podmanEnv) createPodman(name string, args ...string) {
	pe.t.Helper()
	if !slices.Contains(args, "--image") {
		args = append(args, "--image", pe.archive)
	}
	out, errOut, code := pe.ds(append([]string{"sandbox", "create", name, "--driver", "podman"}, args...)...)
	if code != 0 {
		pe.t.Fatalf("create %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
	}
}

// containers lists this installation's containers of sandbox name (any state).
func (pe *podmanEnv) containers(name string) []string {
	pe.t.Helper()
	out, err := pe.podman("ps", "-a", "--filter", "label=darkshell.sandbox="+name, "--filter", "label=darkshell.home="+pe.home, "--format", "{{.Names}}")
	if err != nil {
		pe.t.Fatal(err)
	}
	return strings.Fields(out)
}

// writeToolImage writes a one-layer image made of host binaries: the
// shells and tools the conformance suite and injection use, their
// libraries, an /etc/passwd and nothing else. No sandboxd: the driver has
// to push it.
func writeToolImage(t testing.TB, archive, tag string) {
	t.Helper()
	dir := toolRoot(t, "bash", "sh", "cat", "ls", "id", "touch", "mkdir", "rm", "uname", "chmod", "mv",
		"sha256sum", "tr", "sleep", "head", "tail", "seq", "stty", "env", "true", "ln", "grep", "echo")
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, ref, layerImage(t, dir)); err != nil {
		t.Fatal(err)
	}
}

// layerImage turns dir into a one-layer image.
func layerImage(t testing.TB, dir string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	cmd := exec.Command("tar", "-C", dir, "-cf", "-", ".")
	cmd.Stdout = &buf
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// toolRoot builds a root file system from host binaries and the libraries
// ldd names for them.
func toolRoot(t testing.TB, tools ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ds-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			os.MkdirAll(filepath.Join(dir, target), 0o755)
			os.Symlink(target, filepath.Join(dir, l))
		}
	}
	copyIn := func(src string) {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, real)
		if _, err := os.Stat(dst); err == nil {
			return
		}
		b, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if src != real { // e.g. /usr/bin/sh -> dash
			if l := filepath.Join(dir, src); l != dst {
				os.MkdirAll(filepath.Dir(l), 0o755)
				os.Symlink(real, l)
			}
		}
	}
	libRe := regexp.MustCompile(`(/[^ ]+\.so[^ ]*)`)
	for _, tool := range tools {
		bin, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		copyIn(bin)
		out, _ := exec.Command("ldd", bin).Output()
		for _, m := range libRe.FindAllString(string(out), -1) {
			copyIn(m)
		}
	}
	for _, d := range []string{"etc", "tmp", "root"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID=darkshell-tools\n"), 0o644)
	return dir
}

// podmanGet is `sandbox get -o json` for a podman sandbox.
type podmanGet struct {
	Driver    string `json:"driver"`
	Phase     string `json:"phase"`
	Reason    string `json:"reason"`
	Resources *struct {
		MemoryBytes      int64 `json:"memory_bytes"`
		MemoryLimitBytes int64 `json:"memory_limit_bytes"`
		OOMKills         int64 `json:"oom_kills"`
		Pids             int64 `json:"pids"`
		PidsLimit        int64 `json:"pids_limit"`
	} `json:"resources"`
	Extra struct {
		Container string   `json:"container"`
		Limits    []string `json:"limits"`
	} `json:"extra"`
}

func (pe *podmanEnv) get(name string) podmanGet {
	pe.t.Helper()
	out, errOut, code := pe.ds("sandbox", "get", name, "-o", "json")
	if code != 0 {
		pe.t.Fatalf("get %s: exit %d %s", name, code, errOut)
	}
	var g podmanGet
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		pe.t.Fatalf("get %s: %v\n%s", name, err, out)
	}
	return g
}

// TestPodmanLimits: the limits become engine flags, the engine applies
// them to the container's cgroups, and they hold against a fork burst and
// a memory hog.
func TestPodmanLimits(t *testing.T) {
	pe := newPodmanEnv(t)
	pe.createPodman("lim", "--cpu-limit", "1.5", "--memory-limit", "64M", "--pids-limit", "40")

	g := pe.get("lim")
	if g.Resources == nil || g.Resources.MemoryLimitBytes != 64<<20 || g.Resources.PidsLimit != 40 {
		t.Fatalf("get shows the wrong limits: %+v", g.Resources)
	}
	if want := []string{"--cpus=1.5", "--memory=67108864", "--memory-swap=67108864", "--pids-limit=40"}; !slices.Equal(g.Extra.Limits, want) {
		t.Fatalf("limits %v, want %v", g.Extra.Limits, want)
	}
	// The kernel's view from inside (cgroup v1 here; v2 files as fallback).
	out := pe.mustBash("lim", `cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max
cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max`)
	if f := strings.Fields(out); len(f) != 4 || f[0] != "150000" || f[1] != "100000" || f[2] != "67108864" || f[3] != "40" {
		t.Fatalf("cgroup limits inside the container: %q, want quota 150000/100000, 67108864 bytes, 40 pids", out)
	}
	// A memory hog is killed at the limit (tail keeps a line with no newline).
	_, errOut, code := pe.ds("exec", "lim", "--", "sh", "-c", "head -c 300000000 /dev/zero | tail -n 1 >/dev/null")
	if code != 128+9 {
		t.Fatalf("300 MB under a 64 MiB limit: exit %d (want 137, SIGKILL by the OOM killer), stderr %q", code, errOut)
	}
	pe.mustBash("lim", "true")
	if g := pe.get("lim"); g.Resources.OOMKills < 1 || g.Resources.MemoryBytes <= 0 || g.Resources.Pids < 2 {
		t.Fatalf("get after the OOM kill: %+v; want oom_kills >= 1 and the memory and pids in use (init, shell, sandboxd)", *g.Resources)
	}
	// Forks past the limit fail; the sandbox survives.
	_, errOut, _ = pe.ds("exec", "lim", "--", "sh", "-c", "for i in $(seq 60); do sleep 1 & done; wait")
	if !strings.Contains(errOut, "fork") && !strings.Contains(errOut, "Resource temporarily unavailable") {
		t.Fatalf("60 forks under a 40 pids limit did not fail: %q", errOut)
	}
	waitFor(t, 10*time.Second, "the sandbox to fork again", func() bool { _, _, code := pe.bash("lim", "true"); return code == 0 })

	// Bad values are refused before anything is made.
	for _, args := range [][]string{{"--memory-limit", "lots"}, {"--cpu-limit", "-1"}, {"--memory-limit", "1k"}} {
		_, errOut, code := pe.ds(append([]string{"sandbox", "create", "bad", "--driver", "podman", "--image", pe.archive}, args...)...)
		if code == 0 || !strings.Contains(errOut, args[0]) {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if c := pe.containers("bad"); len(c) > 0 {
		t.Fatalf("a refused create left containers: %v", c)
	}
}

// TestPodmanLifecycle: stop keeps the container's files and the pushed
// sandboxd, start brings it back, and a container killed behind
// darkshell's back shows as Failed with the reason.
func TestPodmanLifecycle(t *testing.T) {
	pe := newPodmanEnv(t)
	pe.createPodman("lc")
	pe.mustBash("lc", "echo kept > /sandbox/f; echo layer > /root/g")
	if g := pe.get("lc"); g.Phase != "Running" {
		t.Fatalf("phase %q after create", g.Phase)
	}
	if out, _, _ := pe.ds("sandbox", "list"); !strings.Contains(out, "podman:"+pe.get("lc").Extra.Container) || !strings.Contains(out, "Running") {
		t.Fatalf("list does not show the container and phase:\n%s", out)
	}
	pe.lifecycleOp("stop", "lc")
	if g := pe.get("lc"); g.Phase != "Stopped" {
		t.Fatalf("phase %q after stop", g.Phase)
	}
	_, errOut, code := pe.ds("exec", "lc", "--", "true")
	if code != 125 || !strings.Contains(errOut, "sandbox start lc") {
		t.Fatalf("exec in a stopped sandbox: exit %d, stderr %q; want 125 and a hint to start it", code, errOut)
	}
	pe.lifecycleOp("start", "lc")
	if out := pe.mustBash("lc", "cat /sandbox/f /root/g"); out != "kept\nlayer\n" {
		t.Fatalf("after stop/start: %q", out)
	}
	log, _ := os.ReadFile(filepath.Join(pe.home, "logs", "daemon.log"))
	if n := strings.Count(string(log), "pushed sandboxd"); n != 1 {
		t.Fatalf("sandboxd was pushed %d times; once (at create) is enough:\n%s", n, log)
	}

	if _, err := pe.podman("kill", pe.get("lc").Extra.Container); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the killed container to show as Failed", func() bool { return pe.get("lc").Phase == "Failed" })
	if g := pe.get("lc"); !strings.Contains(g.Reason, "exit code") {
		t.Fatalf("reason %q", g.Reason)
	}
	pe.lifecycleOp("start", "lc")
	pe.mustBash("lc", "test -f /sandbox/f")
}

// TestPodmanImages: --image as a reference in the engine's store, a
// workspace bind mount, --env, and the errors for what cannot work.
func TestPodmanImages(t *testing.T) {
	pe := newPodmanEnv(t)
	if _, err := pe.podman("load", "-i", pe.archive); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "host-file"), []byte("from the host\n"), 0o644)
	pe.createPodman("ref", "--image", "darkshell.test/tools:1", "--workspace", ws, "--env", "GREETING=hello there")
	if out := pe.mustBash("ref", `cat /sandbox/host-file; echo "$GREETING"; pwd; cat /etc/os-release`); out != "from the host\nhello there\n/sandbox\nID=darkshell-tools\n" {
		t.Fatalf("got %q", out)
	}
	pe.mustBash("ref", "echo back > /sandbox/from-sandbox")
	if b, _ := os.ReadFile(filepath.Join(ws, "from-sandbox")); string(b) != "back\n" {
		t.Fatalf("workspace bind mount: %q", b)
	}
	// Confinement the driver asks of the engine.
	st := pe.mustBash("ref", "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; ls /sys/class/net")
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(st, want) {
			t.Errorf("%q missing in:\n%s", want, st)
		}
	}
	if nets := strings.Fields(st[strings.LastIndex(st, "NoNewPrivs"):])[2:]; !slices.Equal(nets, []string{"lo"}) {
		t.Errorf("network interfaces %v, want only lo", nets)
	}
	if out := pe.mustBash("ref", "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(out, "init -- /bin/sh") {
		t.Errorf("pid 1 is %q, want the engine's init", out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no image", nil, "needs --image"},
		{"unknown image", []string{"--image", "localhost/no-such-image:1"}, "podman load"},
		{"not an archive", []string{"--image", "/etc/hostname"}, "unable to load the archive"},
		{"image without sh", []string{"--image", pe.archiveOf(t, "nosh")}, "no /bin/sh"},
		{"rootfs", []string{"--rootfs", "/"}, "--rootfs is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe.t = t
			_, errOut, code := pe.ds(append([]string{"sandbox", "create", "bad", "--driver", "podman"}, tc.args...)...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, errOut, tc.want)
			}
			if c := pe.containers("bad"); len(c) > 0 {
				t.Fatalf("a failed create left containers: %v", c)
			}
			if _, err := os.Stat(filepath.Join(pe.home, "sandboxes", "bad")); err == nil {
				t.Fatal("a failed create left a record")
			}
		})
	}
}

// archiveOf writes an image with no shell at all (only `cat`).
func (pe *podmanEnv) archiveOf(t testing.TB, what string) string {
	dir := toolRoot(t, "cat")
	os.Remove(filepath.Join(dir, "bin"))
	archive := filepath.Join(pe.dir, what+".tar")
	ref, _ := name.NewTag("darkshell.test/" + what + ":1")
	if err := tarball.WriteToFile(archive, ref, layerImage(t, dir)); err != nil {
		t.Fatal(err)
	}
	return archive
}

// TestPodmanWithoutUlimitConf: with a containers.conf that does not lower
// the default ulimits, the driver still starts containers on a host where
// root lacks CAP_SYS_RESOURCE (it passes --ulimit itself).
func TestPodmanWithoutUlimitConf(t *testing.T) {
	pe := newPodmanEnv(t)
	conf := os.Getenv("CONTAINERS_CONF")
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, regexp.MustCompile(`(?m)^default_ulimits.*\n`).ReplaceAll(b, nil), 0o600)
	pe.createPodman("ul")
	out := pe.mustBash("ul", "cat /proc/self/limits")
	if !strings.Contains(out, "Max open files") {
		t.Fatalf("limits: %q", out)
	}
}

// BenchmarkPodmanExec: `exec true` through the warm daemon API, through a
// fresh CLI process, and `podman exec CONTAINER true` (the engine's own
// exec, which is what each command would cost without the warm session),
// in one run (make bench-podman).
func BenchmarkPodmanExec(b *testing.B) {
	pe := newPodmanEnv(b)
	pe.createPodman("bench")
	ctr := pe.get("bench").Extra.Container
	n := benchRuns()
	cases := []latencyCase{
		{"api", n, func() error { return pe.execTrue("bench") }},
		{"cli", n, func() error {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "exec", "bench", "--", "true")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+pe.home)
			return cmd.Run()
		}},
		{"podman-exec", min(n, 40), func() error { return exec.Command("podman", "exec", ctr, "true").Run() }},
	}
	b.ResetTimer()
	res := latencies(b, cases)
	b.StopTimer()
	printLatencies(fmt.Sprintf("podman: exec true, %d runs (podman exec: %d)", n, len(res["podman-exec"])), cases, res)
	fmt.Printf("ratios: api/podman-exec %.4fx, cli/podman-exec %.3fx\n",
		ratio(pct(res["api"], 50), pct(res["podman-exec"], 50)), ratio(pct(res["cli"], 50), pct(res["podman-exec"], 50)))

	// create (image already loaded, sandboxd pushed each time) to the first
	// exec completed, then delete.
	var creates []time.Duration
	for i := range 5 {
		name := fmt.Sprintf("c%d", i)
		t0 := time.Now()
		pe.createPodman(name, "--image", "darkshell.test/tools:1")
		pe.mustBash(name, "true")
		creates = append(creates, time.Since(t0))
		if _, errOut, code := pe.ds("sandbox", "delete", name); code != 0 {
			b.Fatalf("delete: %s", errOut)
		}
	}
	slices.Sort(creates)
	fmt.Printf("create to first exec (podman run + sandboxd push), 5 runs: p50 %s, max %s\n", pct(creates, 50).Round(time.Millisecond), creates[4].Round(time.Millisecond))
}

// TestDockerWithoutEngine: the docker driver shares the podman driver's
// code, but this machine has at most the docker client and no engine, so
// only its failure is exercised: create says what is missing and leaves
// nothing behind.
func TestDockerWithoutEngine(t *testing.T) {
	requireIntegration(t)
	e := &env{t: t, home: t.TempDir()}
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(e.cleanup)
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Output(); err == nil {
		t.Skipf("a Docker engine (%s) answers here: this test is for machines without one", bytes.TrimSpace(out))
	}
	_, errOut, code := e.ds("sandbox", "create", "d", "--driver", "docker", "--image", "busybox")
	want := "Cannot connect to the Docker daemon"
	if _, err := exec.LookPath("docker"); err != nil {
		want = "`docker` is not in PATH"
	}
	if code != 1 || !strings.Contains(errOut, "docker is not usable here") || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, errOut, want)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "d")); err == nil {
		t.Fatal("a failed create left a record")
	}
}

// TestPodmanRootless runs darkshell (CLI and daemon) as the unprivileged
// user nobody, with rootless podman keeping its state in a test-owned
// directory. nobody has no /etc/subuid range here, so podman maps just
// that one uid ("single mapping"): container root is nobody on the host.
// Limits are refused: rootless podman on cgroup v1 would ignore them.
func TestPodmanRootless(t *testing.T) {
	requirePodman(t)
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		requireFeature(t, "runuser (util-linux), to run darkshell as an unprivileged user")
	}
	dir, err := os.MkdirTemp("", "ds-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	pe := &podmanEnv{env: &env{t: t}, dir: dir, archive: filepath.Join(dir, "image.tar")}
	writeToolImage(t, pe.archive, "darkshell.test/tools:1")
	for _, f := range []string{"darkshell", "darkshell-core", "sandboxd"} {
		b, err := os.ReadFile(filepath.Join(binDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o755)
	}
	os.WriteFile(filepath.Join(dir, "containers.conf"), []byte("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "storage.conf"), fmt.Appendf(nil, "[storage]\ndriver = \"vfs\"\ngraphroot = \"%[1]s/home/storage\"\nrunroot = \"%[1]s/run/storage\"\n", dir), 0o644)
	for _, d := range []string{"home", "run"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
		os.Chown(filepath.Join(dir, d), 65534, 65534)
	}
	as := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(runuser, append([]string{"-u", "nobody", "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + dir + "/home", "XDG_RUNTIME_DIR=" + dir + "/run", "DARKSHELL_HOME=" + dir + "/home/ds",
			"CONTAINERS_CONF=" + dir + "/containers.conf", "CONTAINERS_STORAGE_CONF=" + dir + "/storage.conf"}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	ds := filepath.Join(dir, "darkshell")
	t.Cleanup(func() {
		as(ds, "daemon", "stop")
		as("podman", "rm", "-af", "-t", "0")
		// The rootless pause process podman started for this user namespace.
		if b, err := os.ReadFile(filepath.Join(dir, "run", "libpod", "tmp", "pause.pid")); err == nil {
			var pid int
			if fmt.Sscan(string(b), &pid); pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(dir)
	})

	if out, errOut, code := as(ds, "sandbox", "create", "rl", "--driver", "podman", "--image", pe.archive); code != 0 {
		t.Fatalf("rootless create: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := as(ds, "exec", "rl", "--", "sh", "-c", "cat /proc/self/uid_map; echo x > /sandbox/f && cat /sandbox/f")
	if code != 0 || len(strings.Fields(out)) != 4 || strings.Fields(out)[1] != "65534" || !strings.HasSuffix(out, "x\n") {
		t.Fatalf("rootless exec: exit %d, stdout %q, stderr %q; want container root mapped to 65534", code, out, errOut)
	}
	_, errOut, code = as(ds, "sandbox", "create", "lim", "--driver", "podman", "--image", pe.archive, "--memory-limit", "64M")
	if code == 0 || !strings.Contains(errOut, "rootless podman on a cgroup v1 host") {
		// On a cgroup v2 host with delegation the limits would be enforced.
		if b, _ := os.ReadFile("/proc/self/cgroup"); strings.Contains(string(b), ":memory:") {
			t.Fatalf("limits with rootless podman on cgroup v1: exit %d, stderr %q; want a refusal", code, errOut)
		}
	}
	if out, errOut, code := as(ds, "sandbox", "delete", "rl"); code != 0 {
		t.Fatalf("delete: %d %s %s", code, out, errOut)
	}
	if out, _, _ := as("podman", "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %s", out)
	}
}

// TestPodmanCarrierLoss: when the `podman exec` client that carries the
// warm session dies, the next command re-dials (no push again) and the
// session's sandboxd side goes away instead of piling up.
func TestPodmanCarrierLoss(t *testing.T) {
	pe := newPodmanEnv(t)
	pe.createPodman("cl")
	ctr := pe.get("cl").Extra.Container
	pe.mustBash("cl", "true")
	// This container's sandboxd serves only (in its pid namespace): other
	// suites run sandboxd serve at the same time.
	out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", ctr).Output()
	if err != nil {
		t.Fatalf("podman inspect %s: %v", ctr, err)
	}
	ctrNS, _ := os.Readlink("/proc/" + strings.TrimSpace(string(out)) + "/ns/pid")
	serves := func() []int {
		var in []int
		for _, pid := range pgrep("sandboxd", "serve", "--workdir") {
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); ctrNS != "" && ns == ctrNS {
				in = append(in, pid)
			}
		}
		return in
	}
	carriers := pgrep("podman exec -i " + ctr)
	if len(carriers) != 1 {
		t.Fatalf("want one warm carrier, found %v", carriers)
	}
	before := len(serves())
	syscall.Kill(carriers[0], syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the dead carrier's sandboxd to exit", func() bool { return len(serves()) < before })
	if out := pe.mustBash("cl", "echo again"); out != "again\n" {
		t.Fatalf("after the carrier died: %q", out)
	}
	if c := pgrep("podman exec -i " + ctr); len(c) != 1 || c[0] == carriers[0] {
		t.Fatalf("carriers after re-dial: %v (old %d)", c, carriers[0])
	}
	log, _ := os.ReadFile(filepath.Join(pe.home, "logs", "daemon.log"))
	if n := strings.Count(string(log), "pushed sandboxd"); n != 1 {
		t.Fatalf("sandboxd pushed %d times", n)
	}
}
