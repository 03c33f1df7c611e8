package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/bohica-labs/darkshell/controller/driver/localdriver"
)

// SaveOptions says what `sandbox image save` packs.
type SaveOptions struct {
	Base      string // the sandbox's image (archive/layout) or "" with Rootfs
	Rootfs    string // the sandbox's root directory, packed as a layer when there is no Base
	Workspace string // host dir of the sandbox's /sandbox
	Tag       string
	Output    string
	Dest      string
	// Secrets are values that must not be in the image (provider values):
	// a file holding one is stripped.
	Secrets []string
}

// SaveResult is what Save wrote and what it left out.
type SaveResult struct {
	Result
	Stripped []Stripped `json:"stripped"`
	Files    int        `json:"files"`
}

// Stripped is a workspace path left out of a saved image, and why.
type Stripped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// placeholderMark is how egress credential placeholders begin.
const placeholderMark = "darkshell-placeholder-"

// stripRule says why a workspace path is left out, or "".
func stripRule(rel string, isDir bool) string {
	base := path.Base(rel)
	switch {
	case base == ".darkshell":
		return "darkshell's own state (MCP client config)"
	case base == ".ssh" || base == ".gnupg" || base == ".aws" || base == ".kube" || base == ".docker" || base == ".azure":
		return "credential directory"
	case rel == ".config/gh" || rel == ".config/gcloud" || strings.HasPrefix(rel, ".config/gh/") || strings.HasPrefix(rel, ".config/gcloud/"):
		return "credential directory"
	case isDir:
		return ""
	case base == ".netrc" || base == ".git-credentials" || base == ".npmrc" || base == ".pypirc" || base == ".pgpass":
		return "credential file"
	case base == ".env" || strings.HasPrefix(base, ".env."):
		return "environment file"
	case strings.HasSuffix(base, "_history") || base == ".lesshst" || base == ".viminfo" || base == ".wget-hsts":
		return "shell or tool history"
	case strings.HasSuffix(base, ".swp") || strings.HasSuffix(base, ".tmp") || strings.HasSuffix(base, "~"):
		return "temporary file"
	}
	return ""
}

// Save packs the sandbox's root (its image or rootfs) and its workspace,
// sanitized, into a new image.
func Save(ctx context.Context, o SaveOptions) (*SaveResult, error) {
	if o.Output == "" {
		o.Output = OCIArchive
	}
	tag, err := name.NewTag(o.Tag)
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w", o.Tag, err)
	}
	var base v1.Image = empty.Image
	switch {
	case o.Base != "":
		img, cleanup, err := localdriver.OpenImage(o.Base)
		if err != nil {
			return nil, fmt.Errorf("the sandbox's image %s: %w", o.Base, err)
		}
		defer cleanup()
		base = img
	case o.Rootfs != "":
		l, err := dirLayer(o.Rootfs, "", nil)
		if err != nil {
			return nil, fmt.Errorf("rootfs %s: %w", o.Rootfs, err)
		}
		if base, err = mutate.AppendLayers(base, l.layer); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("the sandbox runs on the host's system directories, which are not packed into images: save sandboxes made with --image or --rootfs")
	}
	ws, err := dirLayer(o.Workspace, "sandbox", o.Secrets)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", o.Workspace, err)
	}
	img, err := mutate.AppendLayers(base, ws.layer)
	if err != nil {
		return nil, err
	}
	// The config keeps the base's, never the sandbox's environment (which
	// carries placeholders and the proxy address).
	if err := write(img, tag, Options{Output: o.Output, Dest: o.Dest}); err != nil {
		return nil, err
	}
	d, _ := img.Digest()
	ls, _ := img.Layers()
	cf, _ := img.ConfigFile()
	arch := "amd64"
	if cf != nil && cf.Architecture != "" {
		arch = cf.Architecture
	}
	return &SaveResult{Result: Result{Tag: tag.String(), Digest: d.String(), Arch: arch, Output: o.Output, Dest: o.Dest, Layers: len(ls)},
		Stripped: ws.stripped, Files: ws.files}, nil
}

type packed struct {
	layer    v1.Layer
	stripped []Stripped
	files    int
}

// dirLayer packs dir under prefix (a path in the image), leaving out what
// stripRule names (when secrets is non-nil: the workspace) and files that
// hold a placeholder or a secret value. Symlinks are kept as links.
func dirLayer(dir, prefix string, secrets []string) (*packed, error) {
	f, err := os.CreateTemp("", "darkshell-layer-*.tar")
	if err != nil {
		return nil, err
	}
	// The layer is read back from the file until the image is written; the
	// name goes now (the open descriptor keeps the data).
	os.Remove(f.Name())
	tw := tar.NewWriter(f)
	p := &packed{}
	sanitize := prefix != ""
	err = filepath.WalkDir(dir, func(full string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, full)
		rel = filepath.ToSlash(rel)
		if sanitize && rel != "." {
			if why := stripRule(rel, de.IsDir()); why != "" {
				p.stripped = append(p.stripped, Stripped{Path: "/" + path.Join(prefix, rel), Reason: why})
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := os.Lstat(full)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(full); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // devices, sockets, fifos
		}
		var data []byte
		if info.Mode().IsRegular() {
			if data, err = os.ReadFile(full); err != nil {
				return err
			}
			if sanitize {
				if why := secretIn(data, secrets); why != "" {
					p.stripped = append(p.stripped, Stripped{Path: "/" + path.Join(prefix, rel), Reason: why})
					return nil
				}
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = path.Join(prefix, rel)
		if h.Name == "." {
			return nil
		}
		if info.IsDir() {
			h.Name += "/"
		}
		if sanitize {
			h.Uid, h.Gid, h.Uname, h.Gname = 65000, 65000, "sandbox", "sandbox"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if data != nil {
			if _, err := tw.Write(data); err != nil {
				return err
			}
			p.files++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	p.layer, err = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(f, 0, size)), nil
	})
	return p, err
}

// secretIn says why data must not go into an image, or "".
func secretIn(data []byte, secrets []string) string {
	if bytes.Contains(data, []byte(placeholderMark)) {
		return "holds a credential placeholder"
	}
	for _, s := range secrets {
		if len(s) >= 4 && bytes.Contains(data, []byte(s)) {
			return "holds a provider's credential"
		}
	}
	return ""
}
