// Package agentbin holds the static sandboxd builds embedded in darkshell,
// which the controller pushes into sandboxes that lack sandboxd or run
// another version of it (see controller/inject).
//
// The builds live in bin/ as sandboxd-linux-<arch>.zst, written by
// `go run ./controller/agentbin/gen` during `make build`. For development a
// raw (uncompressed) sandboxd for the host's architecture can be supplied
// instead with DARKSHELL_SANDBOXD_BINARY=/path/to/sandboxd.
package agentbin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// EnvBinary names an environment variable pointing at a raw sandboxd binary
// for the host's architecture; it takes precedence over the embedded build.
const EnvBinary = "DARKSHELL_SANDBOXD_BINARY"

// MaxSize bounds a decompressed sandboxd build.
const MaxSize = 256 << 20

// ErrNotEmbedded is wrapped by errors for architectures without a build.
var ErrNotEmbedded = errors.New("no embedded sandboxd")

//go:embed bin
var embedded embed.FS

type entry struct {
	bin []byte
	sum string
}

var (
	mu        sync.Mutex
	cache     = map[string]entry{}
	overrides = map[string][]byte{}
)

// Name is the file name of the compressed build for goarch in bin/.
func Name(goarch string) string { return "sandboxd-linux-" + goarch + ".zst" }

// Binary returns the decompressed sandboxd for linux/goarch. The result is
// cached and shared: callers must not modify it.
func Binary(goarch string) ([]byte, error) {
	e, err := load(goarch)
	return e.bin, err
}

// SHA256 returns the hex sha256 of the decompressed sandboxd for linux/goarch.
func SHA256(goarch string) (string, error) {
	e, err := load(goarch)
	return e.sum, err
}

// Available lists the architectures a sandboxd build is available for.
func Available() []string {
	mu.Lock()
	var archs []string
	for a := range overrides {
		archs = append(archs, a)
	}
	mu.Unlock()
	if p := os.Getenv(EnvBinary); p != "" {
		archs = append(archs, runtime.GOARCH)
	}
	ents, _ := fs.ReadDir(embedded, "bin")
	for _, e := range ents {
		n := e.Name()
		if a, ok := strings.CutPrefix(n, "sandboxd-linux-"); ok && strings.HasSuffix(a, ".zst") {
			archs = append(archs, strings.TrimSuffix(a, ".zst"))
		}
	}
	slices.Sort(archs)
	return slices.Compact(archs)
}

// SetForTest makes Binary(goarch) return bin until the returned function is
// called. Tests use it to inject a freshly built sandboxd.
func SetForTest(goarch string, bin []byte) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	prev, had := overrides[goarch]
	overrides[goarch] = bin
	delete(cache, goarch)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if had {
			overrides[goarch] = prev
		} else {
			delete(overrides, goarch)
		}
		delete(cache, goarch)
	}
}

func load(goarch string) (entry, error) {
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := overrides[goarch]; ok {
		return entry{bin, sum(bin)}, nil
	}
	if p := os.Getenv(EnvBinary); p != "" && goarch == runtime.GOARCH {
		// Not cached: a developer rebuilding sandboxd wants the new one.
		bin, err := os.ReadFile(p)
		if err != nil {
			return entry{}, fmt.Errorf("unable to read sandboxd from %s=%s: %w", EnvBinary, p, err)
		}
		return entry{bin, sum(bin)}, nil
	}
	if e, ok := cache[goarch]; ok {
		return e, nil
	}
	z, err := embedded.ReadFile("bin/" + Name(goarch))
	if errors.Is(err, fs.ErrNotExist) {
		return entry{}, fmt.Errorf("%w: this darkshell was built without an embedded sandboxd for linux/%s: run `make build` (or set %s to a sandboxd binary for development)",
			ErrNotEmbedded, goarch, EnvBinary)
	}
	if err != nil {
		return entry{}, fmt.Errorf("unable to read embedded sandboxd for linux/%s: %w", goarch, err)
	}
	bin, err := decompress(z)
	if err != nil {
		return entry{}, fmt.Errorf("embedded sandboxd for linux/%s is corrupt (%w): run `make build`", goarch, err)
	}
	e := entry{bin, sum(bin)}
	cache[goarch] = e
	return e, nil
}

func decompress(z []byte) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderMaxMemory(MaxSize))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	bin, err := io.ReadAll(io.LimitReader(d, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(bin) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	return bin, nil
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Compress encodes a sandboxd binary the way bin/ stores it (used by gen).
func Compress(w io.Writer, bin []byte) error {
	e, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return err
	}
	if _, err := e.Write(bin); err != nil {
		e.Close()
		return err
	}
	return e.Close()
}
