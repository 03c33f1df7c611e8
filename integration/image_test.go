package integration

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImageBuild: image build adds sandboxd to a base image; the local
// driver runs the result, and podman loads it and runs its sandboxd.
func TestImageBuild(t *testing.T) {
	e := newLocalEnv(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	tag, _ := name.NewTag("darkshell.test/mini:1")
	if err := tarball.WriteToFile(base, tag, imageOf(t, miniRoot(t))); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"oci-archive", "oci-layout", "docker-archive"} {
		dest := filepath.Join(dir, "built-"+format)
		out, errOut, code := e.ds("image", "build", "--base", base, "-t", "darkshell.test/built:1", "--output", format, "--dest", dest)
		if code != 0 || !strings.Contains(out, "built darkshell.test/built:1") {
			t.Fatalf("%s: %d %q %q", format, code, out, errOut)
		}
		name := strings.ReplaceAll(format, "-", "")
		e.createLocal(name, "--image", dest)
		got := e.mustBash(name, "/usr/local/bin/sandboxd version; cat /etc/darkshell/sandboxd.json; cat /etc/os-release")
		if !strings.Contains(got, "ID=darkshell-mini") || !strings.Contains(got, `"workdir": "/sandbox"`) {
			t.Fatalf("%s: inside: %q", format, got)
		}
		v, _, _ := e.ds("version")
		if build := strings.Fields(v)[1]; !strings.Contains(got, build) {
			t.Fatalf("%s: baked sandboxd %q is not this build %s", format, got, build)
		}
	}
	if _, _, code := e.ds("image", "build", "--base", filepath.Join(dir, "nope.tar"), "-t", "x:1"); code == 0 {
		t.Fatal("a missing base image was accepted")
	}

	t.Run("podman loads it", func(t *testing.T) {
		pe := newPodmanEnv(t)
		archive := filepath.Join(dir, "built-oci-archive")
		if out, err := pe.podman("load", "-i", archive); err != nil {
			t.Fatalf("podman load: %v %s", err, out)
		}
		out, err := pe.podman("run", "--rm", "--network", "none", "darkshell.test/built:1", "/usr/local/bin/sandboxd", "version")
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("sandboxd in podman: %v %q", err, out)
		}
	})
}
