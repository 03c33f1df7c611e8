package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// layerStat is what a restore must bring back of one path of a
// container's layer, read on the host through `podman mount`.
type layerStat struct {
	mode     os.FileMode
	uid, gid uint32
	mtimeNs  int64
	target   string // symlinks
	content  string // files
}

// layerStats reads paths of sandbox name's container root (absent paths
// are missing from the result).
func (pe *podmanEnv) layerStats(name string, paths ...string) map[string]layerStat {
	pe.t.Helper()
	ctr := pe.get(name).Extra.Container
	out, err := pe.podman("mount", ctr)
	if err != nil {
		pe.t.Fatal(err)
	}
	defer pe.podman("unmount", ctr)
	root := strings.TrimSpace(out)
	res := map[string]layerStat{}
	for _, p := range paths {
		hp := filepath.Join(root, p)
		fi, err := os.Lstat(hp)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			pe.t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := layerStat{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, mtimeNs: st.Mtim.Nano()}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			s.target, _ = os.Readlink(hp)
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(hp)
			s.content = string(b)
		}
		res[p] = s
	}
	return res
}

// TestPodmanSnapshotLayer: a snapshot of a podman sandbox holds the
// container's writable layer besides the workspace (changed, added and
// deleted image paths; modes, owners, symlinks, mtimes), and a restore
// after further changes brings back exactly that layer (in a container
// made anew from the image) and the workspace.
func TestPodmanSnapshotLayer(t *testing.T) {
	pe := newPodmanEnv(t)
	pe.createPodman("lay")
	pe.mustBash("lay", `set -e
echo kept > /sandbox/w
echo layer1 > /root/g
echo secret > /etc/somefile && chmod 0640 /etc/somefile && touch -d @1600000000.123456789 /etc/somefile
ln -s ../etc/somefile /root/link && touch -h -d @1600000100 /root/link
rm /etc/os-release
mkdir -p /opt/d && echo x > /opt/d/f && chmod 0750 /opt/d && touch -d @1600000200 /opt/d
chmod 4755 /opt/d/f`)
	paths := []string{"root/g", "etc/somefile", "root/link", "etc/os-release", "opt/d", "opt/d/f", "root/new", "etc/passwd"}
	want := pe.layerStats("lay", paths...)
	if _, ok := want["etc/os-release"]; ok {
		t.Fatal("the test's setup did not delete /etc/os-release")
	}
	if w := want["etc/somefile"]; w.mode != 0o640 || w.mtimeNs != 1600000000123456789 {
		t.Fatalf("setup: /etc/somefile %+v", w)
	}

	r := pe.snap("lay", "--name", "one")
	if r.Snapshot.LayerEntries == 0 || len(r.Snapshot.Layer) == 0 {
		t.Fatalf("the snapshot has no layer: %+v", r.Snapshot)
	}

	pe.mustBash("lay", `set -e
echo changed > /sandbox/w; echo extra > /sandbox/x
echo changed > /root/g
chmod 0600 /etc/somefile; echo other > /etc/somefile
rm /root/link; ln -s /nowhere /root/link
echo back > /etc/os-release
echo new > /root/new
rm -rf /opt/d
echo root:x:0:0::/:/bin/sh > /etc/passwd`)

	// As a restore killed mid-swap leaves it: the sandbox's container put
	// aside under its spare name. The next restore takes it back first.
	ctr := pe.get("lay").Extra.Container
	if _, err := pe.podman("rename", ctr, ctr+"-prev"); err != nil {
		t.Fatal(err)
	}
	res := pe.restore("lay", "one")
	if !res.Restarted {
		t.Fatalf("restore did not say the container was made anew: %+v", res)
	}
	got := pe.layerStats("lay", paths...)
	for _, p := range paths {
		w, wok := want[p]
		g, gok := got[p]
		if wok != gok {
			t.Errorf("/%s: present before %v, after restore %v", p, wok, gok)
			continue
		}
		if w != g {
			t.Errorf("/%s after restore:\n got %+v\nwant %+v", p, g, w)
		}
	}
	if out := pe.mustBash("lay", "cat /root/g /sandbox/w; ls /sandbox"); out != "layer1\nkept\nw\n" {
		t.Fatalf("in the restored sandbox: %q", out)
	}
	if c := pe.containers("lay"); len(c) != 1 || c[0] != pe.get("lay").Extra.Container {
		t.Fatalf("containers of the sandbox after restore: %v", c)
	}
	if g := pe.get("lay"); g.Phase != "Running" {
		t.Fatalf("phase %q after restore", g.Phase)
	}
	if out, errOut, code := pe.ds("sandbox", "snapshot", "lay", "--name", "two"); code != 0 || !strings.Contains(out, "with the container's layer") {
		t.Fatalf("snapshot after the restore: exit %d\n%s%s", code, out, errOut)
	}
}
