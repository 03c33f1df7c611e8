//go:build linux

package treesync

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

// TestPlacer places new files and files over existing ones (linkat cannot
// replace: a temporary name renamed over) in each placing mode: the
// content, mode and mtime arrive, no temporary name stays, and a symlink
// planted at a name is replaced, never followed.
func TestPlacer(t *testing.T) {
	defer placeMode.Store(placeMode.Load())
	for _, tc := range []struct {
		name string
		mode int32
	}{
		{"tmpfile-empty-path", placeTmpfileEmpty},
		{"tmpfile-proc", placeTmpfileProc},
		{"temp-rename", placeTempRename},
	} {
		t.Run(tc.name, func(t *testing.T) {
			placeMode.Store(tc.mode)
			dir, outside := t.TempDir(), t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "sub", "old"), []byte("old content"), 0o600)
			os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644)
			os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dir, "sub", "link"))
			p := testPlacer(t, dir)
			mtime := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC).UnixNano()
			for _, e := range []protocol.SyncEntry{
				{Path: "top", Mode: 0o644, MtimeNs: mtime},
				{Path: "sub/new", Mode: 0o751, MtimeNs: mtime},
				{Path: "sub/old", Mode: 0o640, MtimeNs: mtime},
				{Path: "sub/link", Mode: 0o600, MtimeNs: mtime},
				{Path: "sub/empty", Mode: 0o666, MtimeNs: mtime},
			} {
				data := []byte("new content of " + e.Path)
				if e.Path == "sub/empty" {
					data = nil
				}
				if err := p.place(&e, data); err != nil {
					t.Fatalf("place %s: %v", e.Path, err)
				}
				fi, err := os.Lstat(filepath.Join(dir, e.Path))
				if err != nil {
					t.Fatal(err)
				}
				if !fi.Mode().IsRegular() || uint32(fi.Mode().Perm()) != e.Mode || fi.ModTime().UnixNano() != mtime {
					t.Fatalf("%s: mode %v mtime %v, want regular %o at %v", e.Path, fi.Mode(), fi.ModTime(), e.Mode, time.Unix(0, mtime))
				}
				if b, _ := os.ReadFile(filepath.Join(dir, e.Path)); !bytes.Equal(b, data) {
					t.Fatalf("%s: content %q, want %q", e.Path, b, data)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep" {
				t.Fatalf("the symlink was followed: victim holds %q", b)
			}
			filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && strings.HasPrefix(fi.Name(), TempPrefix) {
					t.Errorf("temporary file left: %s", p)
				}
				return nil
			})
		})
	}
}

// TestPlacerUsesTmpfile: on a file system that takes O_TMPFILE (ext4, tmpfs
// and most others do) the placer keeps to it.
func TestPlacerUsesTmpfile(t *testing.T) {
	defer placeMode.Store(placeMode.Load())
	placeMode.Store(placeTmpfileEmpty)
	dir := t.TempDir()
	p := testPlacer(t, dir)
	if err := p.place(&protocol.SyncEntry{Path: "f", Mode: 0o644}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := placeMode.Load(); m == placeTempRename {
		t.Skipf("%s refuses O_TMPFILE or linkat: the placer fell back to temporary names", dir)
	}
}

// TestSmallFilesRead: the sender reads a small file whole, and says why not
// when it changed size or type since the scan.
func TestSmallFilesRead(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "f"), []byte("hello"), 0o644)
	os.Symlink("f", filepath.Join(dir, "d", "l"))
	r := testRoot(t, dir)
	s := newSmallFiles(r)
	defer s.close()
	if b, skip := s.read(&protocol.SyncEntry{Path: "d/f", Size: 5}); skip != "" || string(b) != "hello" {
		t.Fatalf("read: %q, %q", b, skip)
	}
	for _, e := range []protocol.SyncEntry{{Path: "d/f", Size: 4}, {Path: "d/f", Size: 9}, {Path: "d/l", Size: 1}, {Path: "d/gone", Size: 1}} {
		if _, skip := s.read(&e); skip == "" {
			t.Errorf("%s with size %d: read, want a reason to skip", e.Path, e.Size)
		}
	}
}

// TestPlaceFresh: in a staged directory a file is created under its name
// (content, mode, mtime); a name that exists there, a planted symlink
// too, is an error and nothing is followed or replaced.
func TestPlaceFresh(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(dir, "stage", "sub"), 0o700)
	os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644)
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dir, "stage", "sub", "link"))
	os.WriteFile(filepath.Join(dir, "stage", "sub", "there"), []byte("old"), 0o644)
	p := testPlacer(t, dir)
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 1000, time.UTC).UnixNano()
	e := protocol.SyncEntry{Path: "real/sub/new", Mode: 0o751, MtimeNs: mtime}
	if err := p.placeAt("stage/sub", true, &e, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "stage", "sub", "new"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o751 || fi.ModTime().UnixNano() != mtime {
		t.Fatalf("new: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stage", "sub", "new")); string(b) != "fresh" {
		t.Fatalf("new holds %q", b)
	}
	for _, name := range []string{"link", "there"} {
		e := protocol.SyncEntry{Path: "real/sub/" + name, Mode: 0o644}
		err := p.placeAt("stage/sub", true, &e, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "real/sub/"+name) {
			t.Fatalf("%s: err %v, want an error naming the entry", name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep" {
		t.Fatalf("the symlink was followed: victim holds %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stage", "sub", "there")); string(b) != "old" {
		t.Fatalf("an existing file was replaced: %q", b)
	}
}

// restrictiveDefaultACL is a default ACL (user rwx, group and others
// nothing) in the kernel's xattr form: a file created under it gets its
// creation mode masked by the ACL, not by the umask.
func restrictiveDefaultACL() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 7}, {0x04, 0}, {0x20, 0}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// TestPlaceExactMode: a file is created with its own mode and left without
// an fchmod only where that mode comes out unchanged: bits the umask takes
// and directories with a default ACL (which replaces the umask) still get
// the fchmod, so every placed file ends with its entry's mode. Fresh
// (staged) and O_TMPFILE placement both.
func TestPlaceExactMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	defer placeMode.Store(placeMode.Load())
	placeMode.Store(placeTmpfileEmpty)
	dir := t.TempDir()
	for _, d := range []string{"plain", "acl"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	acl := true
	if err := unix.Setxattr(filepath.Join(dir, "acl"), "system.posix_acl_default", restrictiveDefaultACL(), 0); err != nil {
		t.Logf("no default ACL on %s (%v): only the umask cases run", dir, err)
		acl = false
	}
	p := testPlacer(t, dir)
	if p.umask != 0o022 {
		t.Fatalf("umask read as %o, want 022", p.umask)
	}
	for _, tc := range []struct {
		dir   string
		mode  uint32
		exact bool
	}{
		{"plain", 0o644, true},
		{"plain", 0o755, true},
		{"plain", 0o400, true},
		{"plain", 0o666, false}, // the umask takes group and other write
		{"plain", 0o777, false},
		{"acl", 0o644, false}, // the ACL would make it 0600
		{"acl", 0o700, false},
	} {
		if tc.dir == "acl" && !acl {
			continue
		}
		dfd, err := p.fds.get(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.exactMode(tc.dir, dfd, tc.mode); got != tc.exact {
			t.Errorf("exactMode(%s, %o) = %v, want %v", tc.dir, tc.mode, got, tc.exact)
		}
		for _, fresh := range []bool{true, false} {
			name := fmt.Sprintf("f%o-%v", tc.mode, fresh)
			e := protocol.SyncEntry{Path: tc.dir + "/" + name, Mode: tc.mode, MtimeNs: 1e18}
			if err := p.placeAt(tc.dir, fresh, &e, []byte("data")); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(dir, tc.dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if uint32(fi.Mode().Perm()) != tc.mode || fi.ModTime().UnixNano() != 1e18 {
				t.Errorf("%s: mode %o mtime %d, want %o and 1e18", e.Path, fi.Mode().Perm(), fi.ModTime().UnixNano(), tc.mode)
			}
		}
	}
}

// TestPlacerCreatesInTurn: a placer with a creation lock makes no new
// file while another holds it (fresh and O_TMPFILE placing both), and
// places it once the lock is free.
func TestPlacerCreatesInTurn(t *testing.T) {
	defer placeMode.Store(placeMode.Load())
	placeMode.Store(placeTmpfileEmpty)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "d"), 0o700)
	r := testRoot(t, dir)
	var mu sync.Mutex
	p := newPlacer(r)
	p.createMu = &mu
	defer p.close()
	for _, fresh := range []bool{true, false} {
		name := fmt.Sprintf("f-%v", fresh)
		mu.Lock()
		done := make(chan error, 1)
		go func() {
			done <- p.placeAt("d", fresh, &protocol.SyncEntry{Path: "d/" + name, Mode: 0o644}, []byte("x"))
		}()
		select {
		case err := <-done:
			mu.Unlock()
			t.Fatalf("fresh=%v: placed (%v) while another creation held the lock", fresh, err)
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Lstat(filepath.Join(dir, "d", name)); err == nil {
			t.Fatalf("fresh=%v: the file exists while the lock is held", fresh)
		}
		mu.Unlock()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "d", name)); err != nil || string(b) != "x" {
			t.Fatalf("fresh=%v: %q %v", fresh, b, err)
		}
	}
}

// TestPlacerPoolBatches: small files reach the placers in batches, handed
// over once a batch is full or on flush; stop hands over the rest, so
// every file is placed exactly once with its content.
func TestPlacerPoolBatches(t *testing.T) {
	dir := t.TempDir()
	rc := &receiver{r: testRoot(t, dir)}
	pl := rc.startPlacers()
	defer pl.stop()
	entries := make([]protocol.SyncEntry, 2*batchFiles+3)
	add := func(i int) {
		entries[i] = protocol.SyncEntry{Path: fmt.Sprintf("f%03d", i), Type: protocol.SyncFile, Mode: 0o644, MtimeNs: 1e18}
		data := smallBufs.get(8)[:0]
		data = fmt.Appendf(data, "file %d", i)
		entries[i].Size = int64(len(data))
		pl.add(placeJob{e: &entries[i], data: data, dir: "."})
	}
	placed := func() int {
		n := 0
		for i := range entries {
			if _, err := os.Lstat(filepath.Join(dir, fmt.Sprintf("f%03d", i))); err == nil {
				n++
			}
		}
		return n
	}
	for i := range batchFiles - 1 {
		add(i)
	}
	time.Sleep(50 * time.Millisecond)
	if n := placed(); n != 0 {
		t.Fatalf("%d files placed before their batch was handed over", n)
	}
	add(batchFiles - 1) // full: handed over
	for i := batchFiles; i < batchFiles+2; i++ {
		add(i)
	}
	pl.flush()
	for i := batchFiles + 2; i < len(entries); i++ {
		add(i)
	}
	if err := pl.stop(); err != nil {
		t.Fatal(err)
	}
	if n := placed(); n != len(entries) {
		t.Fatalf("%d of %d files placed", n, len(entries))
	}
	for i := range entries {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)))
		if err != nil || string(b) != fmt.Sprintf("file %d", i) {
			t.Fatalf("f%03d: %q, %v", i, b, err)
		}
	}
	pl.flush() // after stop: nothing to hand over, and no send on the closed channel
}

// testRoot opens dir as a root, closed when the test ends.
func testRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// testPlacer is a placer on dir, closed when the test ends.
func testPlacer(t *testing.T, dir string) *placer {
	t.Helper()
	p := newPlacer(testRoot(t, dir))
	t.Cleanup(p.close)
	return p
}
