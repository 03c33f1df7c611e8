package events

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

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
