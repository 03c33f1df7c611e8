package protocol

import (
	"strings"
	"testing"
)

func TestValidSyncPath(t *testing.T) {
	good := []string{"a", "a/b", "ünï/日本", "a b/.hidden", "...", "a..b"}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "../a", "a/..", "a/./b", "a/../b", "a\x00b", "\xff", strings.Repeat("a", MaxSyncPath+1)}
	for _, p := range good {
		if err := ValidSyncPath(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range bad {
		if ValidSyncPath(p) == nil {
			t.Errorf("%q accepted", p)
		}
	}
	entries := []SyncEntry{
		{Path: "f", Type: "x"},
		{Path: "f", Type: SyncFile, Size: -1},
		{Path: "f", Type: SyncFile, Mode: 0o4755},
		{Path: "l", Type: SyncSymlink},
		{Path: "d", Type: SyncDir, Link: "x"},
		{Path: "d", Type: SyncDir, Size: 3},
	}
	for _, e := range entries {
		if e.Validate() == nil {
			t.Errorf("%+v accepted", e)
		}
	}
	if (&SyncRequest{Root: "/x", Exclude: []string{"[a"}}).Validate() == nil {
		t.Error("bad glob accepted")
	}
}
