package localdriver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/sandboxd/localinit"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"64M": 64 << 20, "64m": 64 << 20, "64MiB": 64 << 20, "1.5G": 3 << 29, "2Gi": 2 << 30,
		"1T": 1 << 40, "4194304": 4 << 20, "512KB": -1, "lots": -1, "": -1, "-1G": -1, "0": -1, "1M": -1,
	} {
		got, err := parseSize(in)
		if want < 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// TestInitConfigWire: the controller's initConfig decodes into sandboxd's
// localinit.Options field for field.
func TestInitConfigWire(t *testing.T) {
	in := initConfig{Name: "n", Workspace: "/w", RootDir: "/r", Socket: "/s", HostKey: "/h",
		AuthorizedKey: "/a", UID: 7, GID: 8, Unconfined: true, Report: []string{"cgroup-v2"}, WorkloadCgroups: []string{"/c"},
		FS: &policy.FSRules{ReadOnly: []string{"/ro"}, ReadWrite: []string{"/rw"}, Hard: true}, Rootfs: "/img", UserNS: true, Env: []string{"A=1"}, CADir: "/ca"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var o localinit.Options
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	want := localinit.Options{Name: "n", Workspace: "/w", RootDir: "/r", Socket: "/s", HostKey: "/h",
		AuthorizedKey: "/a", UID: 7, GID: 8, Unconfined: true, Extra: []string{"cgroup-v2"}, WorkloadCgroups: []string{"/c"},
		FS: &localinit.FSPolicy{ReadOnly: []string{"/ro"}, ReadWrite: []string{"/rw"}, Hard: true}, Rootfs: "/img", UserNS: true, Env: []string{"A=1"}, CADir: "/ca"}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("decoded %+v, want %+v", o, want)
	}
	if n := reflect.TypeOf(initConfig{}).NumField(); n != reflect.TypeOf(localinit.Options{}).NumField()-1 {
		t.Fatalf("initConfig has %d fields; localinit.Options has others (besides Logger): keep them in step", n)
	}
}

func TestStatIn(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "usr/bin/dash"), []byte("x"), 0o755)
	os.Symlink("usr/bin", filepath.Join(dir, "bin"))
	os.Symlink("/usr/bin/dash", filepath.Join(dir, "usr/bin/sh")) // absolute: inside dir, not the host
	os.Symlink("/etc/passwd", filepath.Join(dir, "hostfile"))
	os.Symlink("loop", filepath.Join(dir, "loop"))
	if fi, err := statIn(dir, "/bin/sh"); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("/bin/sh: %v %v", fi, err)
	}
	if _, err := statIn(dir, "/hostfile"); err == nil {
		t.Fatal("an absolute symlink was resolved on the host")
	}
	if _, err := statIn(dir, "/loop"); err == nil {
		t.Fatal("a symlink loop resolved")
	}
	if _, err := statIn(dir, "/../../bin/sh"); err != nil {
		t.Fatalf(".. above the root stays at the root: %v", err)
	}
	if err := checkRootfs(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no /bin/sh") {
		t.Fatalf("empty rootfs: %v", err)
	}
	if err := checkRootfs(dir); err != nil {
		t.Fatal(err)
	}
}
