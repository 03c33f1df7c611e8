// Package image builds images with sandboxd baked in: a base image read
// from an OCI layout or archive (or a docker/podman save archive) gets one
// layer holding the static sandboxd for its architecture and a default
// config, and is written as an OCI archive, an OCI layout or a docker
// archive that podman, docker and containerd load.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bohica-labs/darkshell/controller/agentbin"
	"github.com/bohica-labs/darkshell/controller/driver/localdriver"
	"github.com/bohica-labs/darkshell/protocol"
)

// Paths in built images.
const (
	SandboxdPath = "/usr/local/bin/sandboxd"
	ConfigPath   = "/etc/darkshell/sandboxd.json"
)

// Output formats.
const (
	OCIArchive    = "oci-archive"
	OCILayout     = "oci-layout"
	DockerArchive = "docker-archive"
)

// Options says what to build.
type Options struct {
	Base   string // base image: OCI layout dir, OCI archive, or docker/podman save archive
	Tag    string // e.g. darkshell/factory:1
	Output string // format (default oci-archive)
	Dest   string // file (archives) or directory (layout)
	// Labels and Env go into the image config.
	Labels map[string]string
	Env    []string
	// Push, if set, is a registry reference (REGISTRY/REPO:TAG) the image
	// is pushed to; Dest may then be empty (no local copy). Loopback
	// registries are spoken to over plain HTTP, others over HTTPS unless
	// Insecure. Credentials come from the docker/podman auth files.
	Push     string
	Insecure bool
	// Progress, if set, gets push progress (bytes done of total).
	Progress func(done, total int64)
}

// Result describes a built image.
type Result struct {
	Tag      string `json:"tag"`
	Digest   string `json:"digest"`
	Arch     string `json:"arch"`
	Output   string `json:"output"`
	Dest     string `json:"dest"`
	Sandboxd string `json:"sandboxd"` // version baked in
	Layers   int    `json:"layers"`
	// Pushed is the pushed image by digest (REGISTRY/REPO@sha256:...).
	Pushed string `json:"pushed,omitempty"`
}

// Build writes the base image plus a sandboxd layer to o.Dest.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Output == "" {
		o.Output = OCIArchive
	}
	if o.Push != "" {
		if _, err := pushRef(o.Push, o.Insecure); err != nil {
			return nil, err
		}
	}
	tag, err := name.NewTag(o.Tag)
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w", o.Tag, err)
	}
	base, cleanup, err := localdriver.OpenImage(o.Base)
	if err != nil {
		return nil, fmt.Errorf("base image %s: %w", o.Base, err)
	}
	defer cleanup()
	cfg, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	arch := cfg.Architecture
	if arch == "" {
		arch = "amd64"
	}
	bin, err := agentbin.Binary(arch)
	if err != nil {
		return nil, fmt.Errorf("no sandboxd for the base image's architecture %s: %w", arch, err)
	}
	layer, err := sandboxdLayer(bin)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "darkshell image build: add " + SandboxdPath + " " + protocol.BuildVersion, Created: v1.Time{Time: time.Now()}}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["org.darkshell.sandboxd.version"] = protocol.BuildVersion
	cf.Config.Labels["org.darkshell.sandboxd.path"] = SandboxdPath
	for k, v := range o.Labels {
		cf.Config.Labels[k] = v
	}
	cf.Config.Env = append(cf.Config.Env, o.Env...)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	if o.Dest != "" {
		if err := write(img, tag, o); err != nil {
			return nil, err
		}
	} else if o.Push == "" {
		return nil, errors.New("nowhere to write the image: give a destination or a registry to push to")
	}
	d, _ := img.Digest()
	ls, _ := img.Layers()
	res := &Result{Tag: tag.String(), Digest: d.String(), Arch: arch, Output: o.Output, Dest: o.Dest, Sandboxd: protocol.BuildVersion, Layers: len(ls)}
	if o.Dest == "" {
		res.Output = ""
	}
	if o.Push != "" {
		pushed, err := Push(ctx, img, o.Push, o.Insecure, o.Progress)
		if err != nil {
			return nil, err
		}
		res.Pushed = pushed
	}
	return res, nil
}

func write(img v1.Image, tag name.Tag, o Options) error {
	switch o.Output {
	case DockerArchive:
		return tarball.WriteToFile(o.Dest, tag, img)
	case OCILayout, OCIArchive:
		dir := o.Dest
		if o.Output == OCIArchive {
			tmp, err := os.MkdirTemp("", "darkshell-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		} else if _, err := os.Stat(dir); err == nil {
			return fmt.Errorf("%s exists: an OCI layout is written into a new directory", dir)
		}
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag.String()})); err != nil {
			return err
		}
		if o.Output == OCIArchive {
			return tarDir(dir, o.Dest)
		}
		return nil
	}
	return fmt.Errorf("output %q is not one of %s, %s, %s", o.Output, OCIArchive, OCILayout, DockerArchive)
}

// sandboxdLayer is one layer with the binary and a default config.
func sandboxdLayer(bin []byte) (v1.Layer, error) {
	conf, _ := json.MarshalIndent(map[string]any{"workdir": "/sandbox", "built_by": "darkshell image build", "version": protocol.BuildVersion}, "", "  ")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, d := range []string{"usr/", "usr/local/", "usr/local/bin/", "etc/", "etc/darkshell/", "sandbox/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: now}); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{SandboxdPath[1:], 0o755, bin}, {ConfigPath[1:], 0o644, conf}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// tarDir writes dir as a tar file (an OCI archive is a tarred layout).
func tarDir(dir, dest string) error {
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = tw.AddFS(os.DirFS(dir))
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dest)
		return errors.Join(fmt.Errorf("write %s", dest), err)
	}
	return nil
}
