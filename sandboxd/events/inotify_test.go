package events

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

func TestInotify(t *testing.T) {
	dir := t.TempDir()
	in, err := NewInotify([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(0, testHello())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(ctx, hub)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o644))
	must(os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	must(os.Mkdir(filepath.Join(dir, "d"), 0o755))
	time.Sleep(100 * time.Millisecond) // the new directory's watch
	must(os.WriteFile(filepath.Join(dir, "d", "c"), nil, 0o644))
	must(os.Chmod(filepath.Join(dir, "b"), 0o600))
	must(os.Remove(filepath.Join(dir, "b")))
	type fe struct{ kind, path, newPath string }
	want := []fe{
		{protocol.KindFileWrite, dir + "/a", ""},
		{protocol.KindFileWrite, dir + "/a", ""},
		{protocol.KindFileRename, dir + "/a", dir + "/b"},
		{protocol.KindFileMkdir, dir + "/d", ""},
		{protocol.KindFileWrite, dir + "/d/c", ""},
		{protocol.KindFileWrite, dir + "/d/c", ""},
		{protocol.KindFileChmod, dir + "/b", ""},
		{protocol.KindFileUnlink, dir + "/b", ""},
	}
	var got []fe
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got = got[:0]
		for _, e := range hub.History(&protocol.EventsRequest{History: true, Files: true}) {
			if e.Source != protocol.SourceInotify || e.Fidelity != protocol.FidelityChanges {
				t.Fatalf("event %+v", e)
			}
			got = append(got, fe{e.Kind, e.Path, e.NewPath})
		}
		if slices.Equal(got, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("got  %v\nwant %v", got, want)
}

// rawInotify encodes one inotify event as the kernel delivers it.
func rawInotify(wd int32, mask, cookie uint32, name string) []byte {
	n := (len(name) + 1 + 7) &^ 7 // NUL-terminated, padded
	b := make([]byte, unix.SizeofInotifyEvent+n)
	ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
	ev.Wd, ev.Mask, ev.Cookie, ev.Len = wd, mask, cookie, uint32(n)
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

// TestInotifyRenameAcrossReads: the two halves of a rename may come in
// two reads; they still make one rename. A first half alone is a move out
// of the watched trees, reported as an unlink once renameGrace has passed.
func TestInotifyRenameAcrossReads(t *testing.T) {
	in := &Inotify{dirs: map[int32]string{1: "/w"}, pending: map[uint32]moveFrom{}}
	hub := NewHub(0, testHello())
	in.parse(rawInotify(1, unix.IN_MOVED_FROM, 7, "a"), hub)
	in.parse(rawInotify(1, unix.IN_MOVED_TO, 7, "b"), hub)
	in.parse(rawInotify(1, unix.IN_MOVED_FROM, 8, "gone"), hub)
	in.flushRenames(hub, time.Now()) // too soon: still waiting
	evs := hub.History(&protocol.EventsRequest{History: true, Files: true})
	if len(evs) != 1 || evs[0].Kind != protocol.KindFileRename || evs[0].Path != "/w/a" || evs[0].NewPath != "/w/b" {
		t.Fatalf("events %+v, want one rename /w/a -> /w/b", evs)
	}
	in.flushRenames(hub, time.Now().Add(renameGrace))
	evs = hub.History(&protocol.EventsRequest{History: true, Files: true})
	if len(evs) != 2 || evs[1].Kind != protocol.KindFileUnlink || evs[1].Path != "/w/gone" {
		t.Fatalf("events %+v, want the move out as an unlink of /w/gone", evs)
	}
}
