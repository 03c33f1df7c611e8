package state

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestRecords(t *testing.T) {
	h, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{Name: "dev-1", Driver: "ssh", Created: time.Now().UTC().Truncate(time.Second), SSH: &SSHTarget{User: "u", Host: "127.0.0.1", Port: 2222}}
	if err := h.Create(sb); err != nil {
		t.Fatal(err)
	}
	if err := h.Create(sb); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	got, err := h.Get("dev-1")
	if err != nil || got.SSH.Port != 2222 || !got.Created.Equal(sb.Created) {
		t.Fatalf("get: %+v %v", got, err)
	}
	fi, _ := os.Stat(h.recordPath("dev-1"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode())
	}
	l, _ := h.List()
	if len(l) != 1 {
		t.Fatalf("list %d", len(l))
	}
	if err := h.Delete("dev-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Get("dev-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := h.Delete("dev-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{"a": true, "dev-1": true, "-x": false, "X": false, "../etc": false, "": false, "a_b": false} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
}
