package provider

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/state"
)

func TestStore(t *testing.T) {
	h := &state.Home{Dir: t.TempDir()}
	s := Open(h)
	p := &Provider{Name: "gh", Type: "github", Credentials: map[string]string{"GITHUB_TOKEN": "ghp_secretvalue"}}
	if err := s.Create(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(p); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	fi, _ := os.Stat(filepath.Join(h.Dir, "providers", "gh.json"))
	di, _ := os.Stat(filepath.Join(h.Dir, "providers"))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("modes: file %v dir %v", fi.Mode(), di.Mode())
	}
	l, err := s.List()
	if err != nil || len(l) != 1 || l[0].Keys[0] != "GITHUB_TOKEN" {
		t.Fatalf("list = %+v, %v", l, err)
	}
	if b, _ := json.Marshal(l); strings.Contains(string(b), "ghp_secretvalue") {
		t.Fatalf("list shows a value: %s", b)
	}
	if _, err := s.Update("gh", map[string]string{"GITHUB_TOKEN": "ghp_rotated", "EXTRA": "x1234"}); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.Get("gh"); g.Credentials["GITHUB_TOKEN"] != "ghp_rotated" || len(g.Credentials) != 2 {
		t.Fatalf("after update: %+v", g.Summary())
	}
	if _, err := s.Update("gh", map[string]string{"GITHUB_TOKEN": "", "EXTRA": ""}); err == nil {
		t.Fatal("an update removing every credential was accepted")
	}
	for _, bad := range []*Provider{
		{Name: "Bad Name", Type: "generic", Credentials: map[string]string{"K": "v"}},
		{Name: "x", Type: "aws", Credentials: map[string]string{"K": "v"}},
		{Name: "x", Type: "generic"},
		{Name: "x", Type: "generic", Credentials: map[string]string{"1K": "v"}},
	} {
		if err := s.Create(bad); err == nil {
			t.Errorf("accepted %+v", bad.Summary())
		}
	}
	if err := s.Delete("gh"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("gh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.Get("../etc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("path-like name: %v", err)
	}
}
