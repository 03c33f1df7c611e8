package integration

import (
	"archive/tar"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImagePush: `image build --push` sends the image to a registry: a
// real OCI distribution registry (go-containerregistry's pkg/registry, an
// in-memory implementation of the distribution API) served on loopback by
// the test, as no outside registry may be used. The image is pulled back
// by digest with a registry client, by podman, and run by the local driver.
func TestImagePush(t *testing.T) {
	e := newLocalEnv(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	tag, _ := name.NewTag("darkshell.test/mini:1")
	if err := tarball.WriteToFile(base, tag, layerImage(t, miniRoot(t))); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	ref := host + "/darkshell/pushed:1"

	out, errOut, code := e.ds("image", "build", "--base", base, "--push", ref, "-o", "json")
	if code != 0 {
		t.Fatalf("build --push: %d %s %s", code, out, errOut)
	}
	var res struct {
		Tag, Digest, Pushed, Dest, Sandboxd string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Pushed != host+"/darkshell/pushed@"+res.Digest || res.Dest != "" {
		t.Fatalf("result: %s", out)
	}
	// Pull it back by tag: the same digest, the label and the binary.
	img, err := remote.Image(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Digest {
		t.Fatalf("pulled digest %s, pushed %s", d, res.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil || cf.Config.Labels["org.darkshell.sandboxd.version"] != res.Sandboxd {
		t.Fatalf("config: %v %+v", err, cf)
	}
	layers, _ := img.Layers()
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		found = found || h.Name == "usr/local/bin/sandboxd" && h.Size > 1<<20 && h.Mode&0o111 != 0
	}
	rc.Close()
	if !found {
		t.Fatal("the pushed image's top layer has no executable usr/local/bin/sandboxd")
	}
	// The local driver runs the pulled image.
	lay := filepath.Join(dir, "pulled")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	e.createLocal("pulled", "--image", lay)
	v, _, _ := e.ds("version")
	if got := e.mustBash("pulled", "/usr/local/bin/sandboxd version"); !strings.Contains(got, strings.Fields(v)[1]) {
		t.Fatalf("sandboxd in the pulled image: %q, darkshell %q", got, v)
	}

	// Errors name what went wrong: no registry there, a bad reference.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	if _, errOut, code := e.ds("image", "build", "--base", base, "--push", closed+"/x/y:1"); code == 0 || !strings.Contains(errOut, "push to "+closed) {
		t.Fatalf("push to a closed port: %d %q", code, errOut)
	}
	if _, errOut, code := e.ds("image", "build", "--base", base, "--push", host+"/Upper/Case:1"); code == 0 || !strings.Contains(errOut, "REGISTRY/REPO:TAG") {
		t.Fatalf("bad reference: %d %q", code, errOut)
	}

	t.Run("podman pulls it", func(t *testing.T) {
		pe := newPodmanEnv(t)
		if out, err := pe.podman("pull", "--tls-verify=false", ref); err != nil {
			t.Fatalf("podman pull: %v %s", err, out)
		}
		out, err := pe.podman("run", "--rm", "--network", "none", ref, "/usr/local/bin/sandboxd", "--version")
		if err != nil || !strings.Contains(out, strings.Fields(v)[1]) {
			t.Fatalf("sandboxd in podman: %v %q", err, out)
		}
	})
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
