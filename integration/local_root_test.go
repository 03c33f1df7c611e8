package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// miniRoot builds a small root file system: bash and a few tools with the
// libraries ldd names, an /etc/os-release that marks it, and nothing else
// of the host.
func miniRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			os.MkdirAll(filepath.Join(dir, target), 0o755)
			os.Symlink(target, filepath.Join(dir, l))
		}
	}
	copyFile := func(src string) {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{real, src} {
			dst := filepath.Join(dir, p)
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if p == src && src != real {
				if err := os.Symlink(real, dst); err != nil && !os.IsExist(err) {
					// a parent may already be a symlink (merged /usr)
					continue
				}
				continue
			}
			b, err := os.ReadFile(real)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	libRe := regexp.MustCompile(`(/[^ ]+\.so[^ ]*)`)
	for _, tool := range []string{"bash", "sh", "cat", "ls", "id", "touch", "mkdir", "rm", "ln", "readlink", "env"} {
		bin, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		copyFile(bin)
		out, _ := exec.Command("ldd", bin).Output()
		for _, m := range libRe.FindAllString(string(out), -1) {
			copyFile(m)
		}
	}
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("ID=darkshell-mini\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nsandbox:x:65000:65000::/sandbox:/bin/bash\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.WriteFile(filepath.Join(dir, "app/data"), []byte("image data\n"), 0o644)
	return dir
}

// checkRoot asserts the sandbox runs on the mini root, not the host's.
func checkRoot(t *testing.T, e *env, name string) {
	t.Helper()
	if out := e.mustBash(name, "cat /etc/os-release /app/data"); !strings.Contains(out, "ID=darkshell-mini") || !strings.Contains(out, "image data") {
		t.Fatalf("not the image's root: %q", out)
	}
	// Host-only programs are absent; the workspace works; Landlock holds.
	e.refused(name, "if test -e /usr/bin/ssh -o -e /usr/bin/python3; then exit 0; fi; echo absent >&2; exit 1", "absent")
	e.mustBash(name, "echo hi > /sandbox/f && cat /sandbox/f")
	e.refused(name, "echo x > /app/data", "")
}

func TestLocalRootfsAndImage(t *testing.T) {
	e := newLocalEnv(t)
	root := miniRoot(t)

	t.Run("rootfs dir", func(t *testing.T) {
		e.t = t
		e.createLocal("mini", "--rootfs", root)
		checkRoot(t, e, "mini")
		out, _, _ := e.ds("sandbox", "get", "mini", "-o", "json")
		if !strings.Contains(out, root) {
			t.Fatalf("get does not show the rootfs: %s", out)
		}
	})
	img := layerImage(t, root)
	t.Run("docker save archive", func(t *testing.T) {
		e.t = t
		archive := filepath.Join(t.TempDir(), "mini.tar")
		tag, _ := name.NewTag("darkshell.test/mini:1")
		if err := tarball.WriteToFile(archive, tag, img); err != nil {
			t.Fatal(err)
		}
		e.createLocal("img", "--image", archive)
		checkRoot(t, e, "img")
		// stop/start reuses the unpacked image.
		e.lifecycleOp("stop", "img")
		e.lifecycleOp("start", "img")
		checkRoot(t, e, "img")
	})
	t.Run("OCI layout", func(t *testing.T) {
		e.t = t
		dir := filepath.Join(t.TempDir(), "layout")
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		e.createLocal("oci", "--image", dir)
		checkRoot(t, e, "oci")
	})
	t.Run("not an image", func(t *testing.T) {
		e.t = t
		bogus := filepath.Join(t.TempDir(), "x.tar")
		os.WriteFile(bogus, []byte("not a tar"), 0o600)
		_, errOut, code := e.ds("sandbox", "create", "bogus", "--image", bogus)
		if code == 0 || !strings.Contains(errOut, "--image") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if out, _, _ := e.ds("sandbox", "list", "-o", "json"); strings.Contains(out, `"bogus"`) {
			t.Fatal("a failed create left a record")
		}
	})
	t.Run("rootfs without a shell", func(t *testing.T) {
		e.t = t
		_, errOut, code := e.ds("sandbox", "create", "empty", "--rootfs", t.TempDir())
		if code == 0 || !strings.Contains(errOut, "no /bin/sh") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}

func TestLocalPolicy(t *testing.T) {
	e := newLocalEnv(t)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte(`version: 1
filesystem_policy:
  include_workdir: false
  read_only: [/usr, /lib, /etc, /proc]
  read_write: [/tmp, /dev/null]
landlock:
  compatibility: best_effort
process:
  run_as_user: "4242"
  run_as_group: "4242"
`), 0o600)
	e.createLocal("pol", "--policy", pol)
	if out := e.mustBash("pol", "id -u; id -g"); strings.Fields(out)[0] != "4242" || strings.Fields(out)[1] != "4242" {
		t.Fatalf("run_as_user: %q", out)
	}
	// Listed: readable / writable. Not listed: refused by Landlock (EACCES),
	// though mounted (the layer that refused is Landlock, not the mount).
	e.mustBash("pol", "cat /etc/hostname >/dev/null && echo ok > /tmp/x && cat /tmp/x")
	e.refused("pol", "ls /opt", "Permission denied")
	e.refused("pol", "echo x > /sandbox/f", "Permission denied")
	out, _, _ := e.ds("sandbox", "get", "pol", "-o", "json")
	var sb struct {
		Remote struct {
			Confined []string `json:"confined"`
		} `json:"remote"`
	}
	json.Unmarshal([]byte(out), &sb)
	if !strings.Contains(strings.Join(sb.Remote.Confined, ","), "policy") {
		t.Fatalf("confinements do not name the policy: %s", out)
	}

	// The default policy keeps /opt readable and /sandbox writable (control).
	e.createLocal("nopol")
	e.mustBash("nopol", "ls /opt >/dev/null && echo x > /sandbox/f")

	// The shipped investigation policy: the workspace is read-only, /tmp
	// writable, and the network denied by the proxy with its reason.
	abs, _ := filepath.Abs("../policies/investigation.yaml")
	e.createLocal("inv", "--policy", abs)
	e.mustBash("inv", "ls /sandbox >/dev/null && echo x > /tmp/x")
	e.refused("inv", "echo x > /sandbox/f", "Permission denied")
	if out, _, _ := e.bash("inv", "curl -sS --max-time 5 http://example.invalid/"); !strings.Contains(out, "no network_policies") {
		t.Fatalf("investigation network: %q", out)
	}

	// hard_requirement with a missing path: create fails and says why.
	hard := filepath.Join(t.TempDir(), "hard.yaml")
	os.WriteFile(hard, []byte("version: 1\nfilesystem_policy:\n  read_only: [/nonexistent-dir]\nlandlock:\n  compatibility: hard_requirement\n"), 0o600)
	_, errOut, code := e.ds("sandbox", "create", "hard", "--policy", hard)
	if code == 0 || !strings.Contains(errOut, "/nonexistent-dir") {
		t.Fatalf("hard_requirement with a missing path: exit %d: %s", code, errOut)
	}
	// An invalid policy is refused before anything is made, with positions.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nfilesystem_policy:\n  read_write: [relative]\n"), 0o600)
	_, errOut, code = e.ds("sandbox", "create", "bad", "--policy", bad)
	if code == 0 || !strings.Contains(errOut, bad+":3:") {
		t.Fatalf("invalid policy: exit %d: %s", code, errOut)
	}
}

func TestPolicyValidate(t *testing.T) {
	requireIntegration(t)
	e := &env{t: t, home: t.TempDir()}
	for _, f := range []string{"default", "investigation", "ticket-creation", "development"} {
		out, errOut, code := e.ds("policy", "validate", filepath.Join("..", "policies", f+".yaml"))
		if code != 0 || !strings.Contains(out, "valid") {
			t.Fatalf("%s: exit %d %s %s", f, code, out, errOut)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nfilesystem_policy:\n  read_only: [/usr]\n  writeable: [/x]\nnetwork_policies:\n  x:\n    endpoints: [{host: \"*\", port: 443}]\n"), 0o600)
	out, _, code := e.ds("policy", "validate", bad)
	if code != 1 || !strings.Contains(out, bad+":4:3") || !strings.Contains(out, "writeable") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, _, code = e.ds("policy", "validate", bad, "-o", "json")
	var res struct {
		Valid    bool
		Problems []struct{ Line int }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Valid || len(res.Problems) == 0 || res.Problems[0].Line != 4 {
		t.Fatalf("json: exit %d %v %s", code, err, out)
	}
}
