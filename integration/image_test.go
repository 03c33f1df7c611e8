package integration

import (
	"os"
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
	if err := tarball.WriteToFile(base, tag, layerImage(t, miniRoot(t))); err != nil {
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
		out, err := pe.podman("run", "--rm", "--network", "none", "darkshell.test/built:1", "/usr/local/bin/sandboxd", "--version")
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("sandboxd in podman: %v %q", err, out)
		}
	})
}

// TestImageSave: a sandbox's image plus its workspace becomes a new image,
// with credentials, histories, temp files and placeholders left out; a
// sandbox made from it starts with the saved workspace.
func TestImageSave(t *testing.T) {
	e := newLocalEnv(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	tag, _ := name.NewTag("darkshell.test/mini:1")
	if err := tarball.WriteToFile(base, tag, layerImage(t, miniRoot(t))); err != nil {
		t.Fatal(err)
	}
	const secret = "s3cret-save-0042"
	if _, errOut, code := e.ds("provider", "create", "--name", "tok", "--type", "generic", "--credential", "TOKEN="+secret); code != 0 {
		t.Fatal(errOut)
	}
	e.createLocal("orig", "--image", base, "--provider", "tok")
	e.mustBash("orig", `mkdir -p /sandbox/app /sandbox/.ssh && echo 'package main' > /sandbox/app/main.go &&
echo 'ls -la' > /sandbox/.bash_history && echo key > /sandbox/.ssh/id_rsa && echo "TOKEN=$TOKEN" > /sandbox/app/config.txt &&
echo x > /sandbox/notes.tmp && echo A=1 > /sandbox/.env && ln -s app/main.go /sandbox/link`)
	out := filepath.Join(dir, "saved.tar")
	if _, errOut, code := e.ds("sandbox", "image", "save", "orig", "darkshell.test/saved:1", "--dest", out); code != 2 || !strings.Contains(errOut, "--confirm") {
		t.Fatalf("without --confirm: %d %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("an image was written without --confirm")
	}
	res, errOut, code := e.ds("sandbox", "image", "save", "orig", "darkshell.test/saved:1", "--dest", out, "--confirm")
	if code != 0 {
		t.Fatalf("save: %d %s", code, errOut)
	}
	for _, want := range []string{"/sandbox/.bash_history", "/sandbox/.ssh", "/sandbox/app/config.txt", "/sandbox/notes.tmp", "/sandbox/.env", "placeholder"} {
		if !strings.Contains(res, want) {
			t.Errorf("the stripped list lacks %s:\n%s", want, res)
		}
	}
	e.createLocal("copy", "--image", out)
	got := e.mustBash("copy", "cat /sandbox/app/main.go /etc/os-release; readlink /sandbox/link; ls -A /sandbox /sandbox/app")
	if !strings.Contains(got, "package main") || !strings.Contains(got, "ID=darkshell-mini") || !strings.Contains(got, "app/main.go") {
		t.Fatalf("the saved workspace and root: %q", got)
	}
	for _, gone := range []string{".bash_history", ".ssh", "config.txt", "notes.tmp", ".env"} {
		if strings.Contains(got, gone) {
			t.Errorf("%s is in the saved image: %q", gone, got)
		}
	}
	if strings.Contains(e.mustBash("copy", "cat /sandbox/app/* 2>/dev/null; env"), secret) {
		t.Fatal("the secret reached the saved image")
	}
}
