package treesync

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/bohica-labs/darkshell/protocol"
)

// countWrites counts the writes that reach the stream.
type countWrites struct {
	bytes.Buffer
	n int
}

func (c *countWrites) Write(p []byte) (int, error) { c.n++; return c.Buffer.Write(p) }

// TestFrameBatcher: writes of any size come out as data frames of at most
// DataChunk bytes holding the same bytes, in few stream writes.
func TestFrameBatcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var out countWrites
	b := newFrameBatcher(protocol.NewWriter(&out), protocol.FrameSyncData)
	var want bytes.Buffer
	for i := range 400 {
		p := make([]byte, rng.IntN(3*protocol.DataChunk))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		want.Write(p)
		if _, err := b.Write(p); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	frames := 0
	for r := bytes.NewReader(out.Bytes()); ; frames++ {
		f, err := protocol.ReadFrame(r, protocol.MaxPayload)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != protocol.FrameSyncData || len(f.Payload) == 0 || len(f.Payload) > protocol.DataChunk {
			t.Fatalf("frame %s of %d bytes", f.Type, len(f.Payload))
		}
		got.Write(f.Payload)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the frames do not carry the bytes written")
	}
	if max := want.Len()/batchBytes + 10; out.n > max {
		t.Fatalf("%d stream writes for %d bytes, want at most %d", out.n, want.Len(), max)
	}
	if min := want.Len() / protocol.DataChunk; frames < min || frames > min+20 {
		t.Fatalf("%d frames for %d bytes: frames are not filled", frames, want.Len())
	}
}

// TestPrefetcher: the bytes come through in order, then the source's error.
func TestPrefetcher(t *testing.T) {
	data := make([]byte, 5*prefetchBlock+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	boom := errors.New("boom")
	p := newPrefetcher(io.MultiReader(bytes.NewReader(data), &errReader{boom}))
	defer p.close()
	got, err := io.ReadAll(io.LimitReader(p, int64(len(data))))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("after the data: %v, want the source's error", err)
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestConnReadAllocs: a conn reads a run of data frames with the same
// bytes coming out and without allocating a payload per frame; a frame of
// another type inside the data is refused.
func TestConnReadAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var in, want bytes.Buffer
	b := newFrameBatcher(protocol.NewWriter(&in), protocol.FrameSyncData)
	for range 64 {
		p := make([]byte, 1+rng.IntN(2*protocol.DataChunk))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		want.Write(p)
		b.Write(p)
	}
	b.Flush()
	stream := in.Bytes()
	c := newConn(splitRW{bytes.NewReader(stream), io.Discard})
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, want.Bytes()))
	}
	frames := float64(len(stream)) / protocol.DataChunk
	c = newConn(splitRW{bytes.NewReader(protocol.AppendFrame(nil, protocol.FrameSyncNeed, []byte("{}"))), io.Discard})
	if _, err := c.Read(got); !errors.Is(err, protocol.ErrUnexpectedFrame) {
		t.Fatalf("a need frame inside data: %v", err)
	}
	if raceEnabled {
		t.Skip("allocation counts differ under -race (make test-unit runs the Allocs tests again without it)")
	}
	// Bytes, not allocations: a frame's 5-byte header escapes through
	// io.ReadFull; a payload per frame would add 32 KiB each.
	read := func() uint64 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c := newConn(splitRW{bytes.NewReader(stream), io.Discard})
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}
	base := func() uint64 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		newConn(splitRW{bytes.NewReader(nil), io.Discard})
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}()
	// newConn's buffers, plus the one reused payload and a header each.
	if n := read(); n > base+protocol.DataChunk+uint64(frames)*64 {
		t.Fatalf("%d bytes allocated reading %.0f data frames (newConn alone: %d)", n, frames, base)
	}
}
