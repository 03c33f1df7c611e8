package probes

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tracepointIDs returns the ids of the tracepoints group/name for names,
// from tracefs. Names whose event does not exist on this kernel (a syscall
// the architecture lacks, one newer than the kernel) are left out. The
// tracefs is one already mounted anywhere (/proc/self/mountinfo), else a
// detached mount of this process's own (fsopen/fsmount): it is attached to
// no mount namespace, nobody else can see it, and closing its descriptor
// frees it, so nothing can be left mounted on the host.
func tracepointIDs(group string, names []string) (ids map[string]uint64, how string, err error) {
	if dir := mountedTracefs(); dir != "" {
		root, err := os.OpenRoot(dir)
		if err == nil {
			defer root.Close()
			ids, err = readIDs(root, group, names)
			if err == nil {
				return ids, "tracefs at " + dir, nil
			}
		}
	}
	root, err := detachedTracefs()
	if err != nil {
		return nil, "", err
	}
	defer root.Close()
	ids, err = readIDs(root, group, names)
	if err != nil {
		return nil, "", err
	}
	return ids, "a detached tracefs mount", nil
}

// mountedTracefs is a tracefs mount point of this process's mount
// namespace, or "".
func mountedTracefs() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "36 35 0:30 / /sys/kernel/tracing rw,... shared:13 - tracefs tracefs rw"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fs) < 1 || fs[0] != "tracefs" {
			continue
		}
		dir := unescapeMountinfo(fields[4])
		if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
			return dir
		}
	}
	return ""
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// detachedTracefs mounts a tracefs that belongs to no mount namespace
// (fsopen, fsmount; Linux 5.2 and CAP_SYS_ADMIN) and returns its root.
// Closing the root frees the mount.
func detachedTracefs() (*os.Root, error) {
	fsfd, err := unix.Fsopen("tracefs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen tracefs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("create a tracefs instance: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsmount tracefs: %w", err)
	}
	// The mount descriptor is an O_PATH directory: reopen it as a Root
	// through /proc/self/fd (Root needs a path), then drop it.
	defer unix.Close(mfd)
	root, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", mfd))
	if err != nil {
		return nil, fmt.Errorf("open the detached tracefs: %w", err)
	}
	return root, nil
}

// readIDs reads events/group/NAME/id for each name; a missing event is
// skipped, any other failure is an error.
func readIDs(root *os.Root, group string, names []string) (map[string]uint64, error) {
	ids := map[string]uint64{}
	for _, n := range names {
		b, err := root.ReadFile(filepath.Join("events", group, n, "id"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tracepoint %s/%s: %w", group, n, err)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("tracepoint %s/%s: id %q: %w", group, n, b, err)
		}
		ids[n] = id
	}
	return ids, nil
}
