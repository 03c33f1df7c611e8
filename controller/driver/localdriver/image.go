package localdriver

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// prepareRoot checks --rootfs, or unpacks --image into the sandbox's state
// dir (once: a later start reuses it).
func prepareRoot(ctx context.Context, p paths, x Extra) error {
	switch {
	case x.Rootfs != "" && x.Image != "":
		return errors.New("--rootfs and --image are exclusive")
	case x.Rootfs != "":
		return checkRootfs(x.Rootfs)
	case x.Image != "":
		if _, err := os.Stat(p.imageRoot()); err == nil {
			return nil
		}
		if err := UnpackImage(ctx, x.Image, p.imageRoot()); err != nil {
			return fmt.Errorf("--image %s: %w", x.Image, err)
		}
		return checkRootfs(p.imageRoot())
	}
	return nil
}

func checkRootfs(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("rootfs %q must be an absolute path", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("rootfs %s is not an existing directory", dir)
	}
	for _, sh := range []string{"/bin/sh", "/usr/bin/sh"} {
		if fi, err := statIn(dir, sh); err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("rootfs %s has no /bin/sh: commands and shells could not run there (give a full root file system, e.g. an unpacked distribution image)", dir)
}

// UnpackImage flattens an OCI image (a docker/podman save archive, an OCI
// archive, or an OCI layout dir) into dst, which must not exist. Entries
// are written through an os.Root, so no path in the image (.., absolute
// names, symlinked parents) reaches outside dst; device nodes are skipped.
func UnpackImage(ctx context.Context, src, dst string) error {
	img, cleanup, err := openImage(src)
	if err != nil {
		return err
	}
	defer cleanup()
	tmp := dst + ".unpacking"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar(ctx, tar.NewReader(rc), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// OpenImage reads a docker/podman save archive, an OCI archive or an OCI
// layout dir; cleanup removes what it unpacked.
func OpenImage(src string) (v1.Image, func(), error) { return openImage(src) }

func openImage(src string) (v1.Image, func(), error) {
	nop := func() {}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, nop, err
	}
	if fi.IsDir() {
		img, err := fromLayout(src)
		return img, nop, err
	}
	names, err := tarNames(src)
	if err != nil {
		return nil, nop, fmt.Errorf("not an image archive: %w", err)
	}
	switch {
	case names["manifest.json"]:
		img, err := tarball.ImageFromPath(src, nil)
		return img, nop, err
	case names["oci-layout"] && names["index.json"]:
		dir, err := os.MkdirTemp("", "darkshell-oci-")
		if err != nil {
			return nil, nop, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		f, err := os.Open(src)
		if err != nil {
			cleanup()
			return nil, nop, err
		}
		defer f.Close()
		if err := untar(context.Background(), tar.NewReader(f), dir); err != nil {
			cleanup()
			return nil, nop, err
		}
		img, err := fromLayout(dir)
		if err != nil {
			cleanup()
			return nil, nop, err
		}
		return img, cleanup, nil
	}
	return nil, nop, errors.New("neither a docker/podman save archive (manifest.json) nor an OCI archive (oci-layout, index.json)")
}

func fromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform == nil || d.Platform.OS == "" || d.Platform.OS == "linux" {
			if d.MediaType.IsIndex() {
				continue
			}
			return idx.Image(d.Digest)
		}
	}
	return nil, errors.New("the OCI layout holds no linux image manifest")
}

func tarNames(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[path.Clean(strings.TrimPrefix(h.Name, "./"))] = true
	}
}

// untar writes a tar stream under dir through an os.Root.
func untar(ctx context.Context, tr *tar.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		name := path.Clean(strings.TrimLeft(h.Name, "/"))
		if name == "." {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("image entry %q leaves the root", h.Name)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("image entry %s: %w", name, err)
			}
		}
		mode := os.FileMode(h.Mode & 0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode.Perm()|0o700); err != nil {
				return fmt.Errorf("image entry %s: %w", name, err)
			}
			err = root.Chmod(name, mode)
		case tar.TypeReg:
			root.Remove(name)
			var f *os.File
			f, err = root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("image entry %s: %w", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = root.Chmod(name, mode)
			}
		case tar.TypeSymlink:
			root.Remove(name)
			err = root.Symlink(h.Linkname, name)
		case tar.TypeLink:
			root.Remove(name)
			err = root.Link(path.Clean(strings.TrimLeft(h.Linkname, "/")), name)
		default:
			continue // devices, fifos: /dev is built by sandboxd
		}
		if err != nil {
			return fmt.Errorf("image entry %s: %w", name, err)
		}
	}
}

// statIn stats p as the sandbox will see it with dir as its root: symlinks
// (absolute ones too) are resolved inside dir, never on the host.
func statIn(dir, p string) (os.FileInfo, error) {
	cur := "/"
	rest := strings.Split(strings.Trim(p, "/"), "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(dir, next))
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if len(rest) == 0 {
				return fi, nil
			}
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return nil, errors.New("too many symlinks")
		}
		target, err := os.Readlink(filepath.Join(dir, next))
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
	}
	return os.Lstat(filepath.Join(dir, cur))
}
