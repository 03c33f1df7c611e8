package localinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// systemDirs are the host directories bound read-only into the sandbox.
var systemDirs = []string{"usr", "lib", "lib64", "lib32", "bin", "sbin", "etc", "opt"}

// devNodes are the host device nodes bound into the sandbox's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// imageSkip are top-level entries of a --rootfs dir that sandboxd makes
// itself (or that must not come from an image).
var imageSkip = map[string]bool{"proc": true, "dev": true, "sys": true, "tmp": true, "sandbox": true, "run": true}

// TrustDir is where the controller's trust files (the egress CA and a root
// bundle) appear inside the sandbox, read-only.
const TrustDir = "/run/darkshell"

// rootEntries lists what buildRoot binds: the host's system dirs, or every
// top-level entry of o.Rootfs but those sandboxd makes.
func rootEntries(o Options) (base string, names []string, err error) {
	if o.Rootfs == "" {
		return "/", systemDirs, nil
	}
	ents, err := os.ReadDir(o.Rootfs)
	if err != nil {
		return "", nil, fmt.Errorf("read rootfs: %w", err)
	}
	for _, e := range ents {
		if !imageSkip[e.Name()] {
			names = append(names, e.Name())
		}
	}
	return o.Rootfs, names, nil
}

// buildRoot builds the new root (package doc, step 4) and returns the
// top-level dirs it bound read-only.
func buildRoot(o Options) ([]string, error) {
	base, names, err := rootEntries(o)
	if err != nil {
		return nil, err
	}
	var bound []string
	err = buildRootFrom(o, base, names, &bound)
	return bound, err
}

func buildRootFrom(o Options, base string, names []string, bound *[]string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := o.RootDir
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	for _, d := range names {
		src := filepath.Join(base, d)
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(root, d)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			continue
		}
		if !fi.IsDir() {
			continue
		}
		if err := bindReadOnly(src, dst); err != nil {
			return err
		}
		*bound = append(*bound, "/"+d)
	}
	// /sandbox: the workspace, read-write.
	sb := filepath.Join(root, "sandbox")
	if err := os.Mkdir(sb, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(o.Workspace, sb, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind workspace: %w", err)
	}
	if err := unix.Mount("", sb, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount workspace nosuid: %w", err)
	}
	if err := mountFS(root, "tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	if o.CADir != "" {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(TrustDir)), 0o755); err != nil {
			return err
		}
		if err := bindReadOnly(o.CADir, filepath.Join(root, TrustDir)); err != nil {
			return fmt.Errorf("bind trust dir: %w", err)
		}
	}
	if err := mountFS(root, "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := buildDev(filepath.Join(root, "dev")); err != nil {
		return err
	}
	return pivot(root)
}

// mountFS mounts a fresh filesystem at root/name.
func mountFS(root, name, fstype string, flags uintptr, data string) error {
	dst := filepath.Join(root, name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fstype, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on /%s: %w", fstype, name, err)
	}
	return nil
}

// bindReadOnly bind-mounts src (recursively) on dst, read-only, nosuid, nodev.
func bindReadOnly(src, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	err := unix.MountSetattr(-1, dst, unix.AT_RECURSIVE, attr)
	if errors.Is(err, unix.ENOSYS) {
		err = unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	if err != nil {
		return fmt.Errorf("make %s read-only: %w", src, err)
	}
	return nil
}

func buildDev(dev string) error {
	if err := os.Mkdir(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range devNodes {
		dst := filepath.Join(dev, n)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+n, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("remount /dev/%s: %w", n, err)
		}
	}
	if err := mountFS(dev, "pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return err
	}
	if err := mountFS(dev, "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes root the new / and detaches the host's root.
func pivot(root string) error {
	old := filepath.Join(root, ".oldroot")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := os.Remove("/.oldroot"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make / read-only: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo, the only interface of a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
