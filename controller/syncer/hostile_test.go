package syncer

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/protocol/delta"
)

// scriptOpener plays a hostile sandboxd with a script.
type scriptOpener struct {
	script func(s net.Conn, w *protocol.Writer)
}

func (o *scriptOpener) Open(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	go func() {
		defer s.Close()
		if _, err := protocol.ReadFrame(s, protocol.MaxPayload); err != nil {
			return
		}
		o.script(s, protocol.NewWriter(s))
		// Drain whatever the controller still writes (an error frame).
		buf := make([]byte, 4096)
		for {
			if _, err := s.Read(buf); err != nil {
				return
			}
		}
	}()
	return c, nil
}

func whole(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	ow := delta.NewOpWriter(&b)
	if _, err := delta.WriteWhole(bytes.NewReader(data), ow); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// serveList sends entries, then answers each need with ops(index).
func serveList(entries []protocol.SyncEntry, ops func(i int) []byte) func(net.Conn, *protocol.Writer) {
	return func(s net.Conn, w *protocol.Writer) {
		go func() {
			// Concurrently, so that an early refusal does not block on the pipe.
			if w.Msg(protocol.FrameSyncEntries, &protocol.SyncEntries{Entries: entries}) == nil {
				w.Frame(protocol.FrameSyncEntriesEnd, nil)
			}
		}()
		for {
			f, err := protocol.ReadFrame(s, protocol.MaxPayload)
			if err != nil {
				return
			}
			switch f.Type {
			case protocol.FrameSyncNeed:
				var n protocol.SyncNeed
				if protocol.DecodeMsg(f, f.Type, &n) != nil {
					return
				}
				w.Msg(protocol.FrameSyncFile, &protocol.SyncFileHeader{Index: n.Index})
				w.Data(protocol.FrameSyncData, ops(n.Index))
			case protocol.FrameSyncNeedEnd:
				w.Frame(protocol.FrameSyncDone, nil)
			case protocol.FrameSyncPlan:
			default:
				return
			}
		}
	}
}

func TestHostilePull(t *testing.T) {
	cases := []struct {
		name    string
		entries []protocol.SyncEntry
		ops     func(t *testing.T, i int) []byte
		setup   func(t *testing.T, dst, outside string)
		want    string // error substring; "" means success
		check   func(t *testing.T, dst string)
	}{
		{name: "dotdot", entries: []protocol.SyncEntry{{Path: "../x", Type: "f", Size: 1}}, want: "component"},
		{name: "dotdot-inner", entries: []protocol.SyncEntry{{Path: "a/../../x", Type: "d"}}, want: "component"},
		{name: "absolute", entries: []protocol.SyncEntry{{Path: "/etc/x", Type: "f", Size: 1}}, want: "absolute"},
		{name: "nul", entries: []protocol.SyncEntry{{Path: "a\x00b", Type: "d"}}, want: "NUL"},
		{name: "long", entries: []protocol.SyncEntry{{Path: strings.Repeat("a", 5000), Type: "d"}}, want: "path of"},
		{name: "symlink-parent", entries: []protocol.SyncEntry{
			{Path: "a", Type: "l", Link: "OUTSIDE"}, {Path: "a/x", Type: "f", Size: 3},
		}, want: "parent"},
		{name: "unlisted-parent", entries: []protocol.SyncEntry{{Path: "a/x", Type: "f", Size: 3}}, want: "parent"},
		{name: "duplicate", entries: []protocol.SyncEntry{{Path: "a", Type: "d"}, {Path: "a", Type: "f"}}, want: "twice"},
		{name: "temp-name", entries: []protocol.SyncEntry{{Path: ".~ds-sync-1", Type: "f"}}, want: "temporary"},
		{
			name:    "planted-symlink-trap",
			entries: []protocol.SyncEntry{{Path: "a", Type: "d", Mode: 0o755}, {Path: "a/x", Type: "f", Size: 3, Mode: 0o644}},
			ops:     func(t *testing.T, i int) []byte { return whole(t, []byte("abc")) },
			setup: func(t *testing.T, dst, outside string) {
				os.MkdirAll(dst, 0o755)
				if err := os.Symlink(outside, filepath.Join(dst, "a")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, dst string) {
				fi, err := os.Lstat(filepath.Join(dst, "a"))
				if err != nil || !fi.IsDir() {
					t.Fatalf("a should be a real directory now: %v", err)
				}
			},
		},
		{
			name:    "lying-size",
			entries: []protocol.SyncEntry{{Path: "f", Type: "f", Size: 3, Mode: 0o644}},
			ops:     func(t *testing.T, i int) []byte { return whole(t, bytes.Repeat([]byte("x"), 100_000)) },
			want:    "larger than 3",
		},
		{
			name:    "short-size",
			entries: []protocol.SyncEntry{{Path: "f", Type: "f", Size: 30, Mode: 0o644}},
			ops:     func(t *testing.T, i int) []byte { return whole(t, []byte("abc")) },
			want:    "announced with 30 bytes",
		},
		{
			name:    "bad-ops",
			entries: []protocol.SyncEntry{{Path: "f", Type: "f", Size: 3, Mode: 0o644}},
			ops:     func(t *testing.T, i int) []byte { return []byte{9, 0, 0, 0, 1, 1} },
			want:    "unable to receive",
		},
		{
			name:    "bad-copy",
			entries: []protocol.SyncEntry{{Path: "f", Type: "f", Size: 3, Mode: 0o644}},
			ops: func(t *testing.T, i int) []byte {
				var b bytes.Buffer
				ow := delta.NewOpWriter(&b)
				ow.Header(2048, 4096)
				ow.Copy(0, 2)
				ow.End(4096, [32]byte{})
				return b.Bytes()
			},
			want: "unable to receive",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "OUTSIDE")
			dst := filepath.Join(base, "dst")
			os.Mkdir(outside, 0o755)
			for i := range c.entries {
				if c.entries[i].Link == "OUTSIDE" {
					c.entries[i].Link = outside
				}
			}
			if c.setup != nil {
				c.setup(t, dst, outside)
			}
			ops := func(i int) []byte {
				if c.ops == nil {
					return nil
				}
				return c.ops(t, i)
			}
			o := &scriptOpener{script: serveList(c.entries, ops)}
			_, err := Pull(context.Background(), o, "x", dst, Options{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("written outside the target: %v", ents)
			}
			if ents, _ := os.ReadDir(base); len(ents) > 2 {
				t.Fatalf("written next to the target: %v", ents)
			}
			if _, err := os.Stat(dst); err == nil {
				noTemps(t, dst)
				if c.want != "" {
					if _, err := os.Lstat(filepath.Join(dst, "f")); err == nil {
						t.Fatal("refused file was written")
					}
				}
			}
			if c.check != nil {
				c.check(t, dst)
			}
		})
	}
}

// TestHostileReceiver: a sandbox that asks, on push, for entries that are
// not files or not in order is refused.
func TestHostileReceiver(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o644)
	os.Symlink("/etc/shadow", filepath.Join(src, "b"))
	for _, n := range []protocol.SyncNeed{{Index: 5}, {Index: 1}, {Index: 0, Sig: true}} {
		o := &scriptOpener{script: func(s net.Conn, w *protocol.Writer) {
			for {
				f, err := protocol.ReadFrame(s, protocol.MaxPayload)
				if err != nil || f.Type == protocol.FrameSyncEntriesEnd {
					break
				}
			}
			w.Msg(protocol.FrameSyncNeed, &n)
			if n.Sig {
				// A whole signature header with a bad version.
				w.Data(protocol.FrameSyncData, append([]byte{9, 8, 0, 0, 8, 0}, make([]byte, 12)...))
			}
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := Push(ctx, o, src, "x", Options{})
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Fatalf("need %+v: %v", n, err)
		}
		t.Logf("need %+v: %v", n, err)
	}
}
