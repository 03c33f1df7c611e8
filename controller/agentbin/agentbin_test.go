package agentbin

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestMissingBuild(t *testing.T) {
	_, err := Binary("riscv64")
	if !errors.Is(err, ErrNotEmbedded) {
		t.Fatalf("err = %v, want ErrNotEmbedded", err)
	}
	for _, want := range []string{"built without an embedded sandboxd for linux/riscv64", "make build"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestSetForTest(t *testing.T) {
	restore := SetForTest("mips", []byte("hello"))
	b, err := Binary("mips")
	if err != nil || string(b) != "hello" {
		t.Fatalf("Binary = %q, %v", b, err)
	}
	sum, _ := SHA256("mips")
	if sum != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("SHA256 = %s", sum)
	}
	if !slices.Contains(Available(), "mips") {
		t.Fatalf("Available() = %v, want mips", Available())
	}
	restore()
	if _, err := Binary("mips"); err == nil {
		t.Fatal("override survived restore")
	}
}

func TestEnvBinary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sandboxd")
	os.WriteFile(p, []byte("dev build"), 0o755)
	t.Setenv(EnvBinary, p)
	b, err := Binary(runtime.GOARCH)
	if err != nil || string(b) != "dev build" {
		t.Fatalf("Binary = %q, %v", b, err)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	in := bytes.Repeat([]byte("\x7fELF sandboxd "), 5000)
	var z bytes.Buffer
	if err := Compress(&z, in); err != nil {
		t.Fatal(err)
	}
	out, err := decompress(z.Bytes())
	if err != nil || !bytes.Equal(in, out) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := decompress([]byte("not zstd")); err == nil {
		t.Fatal("decompress accepted garbage")
	}
}
