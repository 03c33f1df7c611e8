package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestStorePutPaths: both ways of writing a chunk (O_TMPFILE + link, and
// the named temporary file for file systems without O_TMPFILE) store it
// once, count its bytes once among concurrent writers of the same chunk,
// and leave no temporary file behind.
func TestStorePutPaths(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noTmpfile bool
	}{{"tmpfile", false}, {"named", true}} {
		t.Run(tc.name, func(t *testing.T) {
			old := noTmpfile.Load()
			noTmpfile.Store(tc.noTmpfile)
			defer noTmpfile.Store(old)
			st, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 100_000)
			for i := range data {
				data[i] = byte(i * 7 % 251)
			}
			h := HashOf(data)
			var added atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					n, err := st.Put(h, data)
					if err != nil {
						t.Error(err)
					}
					added.Add(n)
				})
			}
			wg.Wait()
			if added.Load() != st.Size(h) || added.Load() == 0 {
				t.Fatalf("8 concurrent puts added %d bytes, the chunk is %d", added.Load(), st.Size(h))
			}
			got, err := st.Get(h)
			if err != nil || string(got) != string(data) {
				t.Fatalf("get: %v", err)
			}
			if n, err := st.Put(h, data); n != 0 || err != nil {
				t.Fatalf("put of a known chunk: %d %v", n, err)
			}
			if ents, _ := os.ReadDir(filepath.Join(st.Dir(), "tmp")); len(ents) != 0 {
				t.Fatalf("temporary files left: %v", ents)
			}
		})
	}
}

// TestForEach: every job runs once, the first error is returned, a
// cancelled context stops handing out work.
func TestForEach(t *testing.T) {
	jobs := make([]int, 1000)
	for i := range jobs {
		jobs[i] = i
	}
	var seen [1000]atomic.Int32
	workers := atomic.Int32{}
	err := forEach(context.Background(), 3, jobs, func() func(int) error {
		workers.Add(1)
		return func(i int) error {
			seen[i].Add(1)
			if i == 500 {
				return errors.New("job 500")
			}
			return nil
		}
	})
	if err == nil || err.Error() != "job 500" {
		t.Fatalf("err = %v, want job 500", err)
	}
	if workers.Load() != 3 {
		t.Fatalf("%d workers, want 3", workers.Load())
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("job %d ran %d times", i, seen[i].Load())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	err = forEach(ctx, 2, jobs, func() func(int) error {
		return func(i int) error {
			if ran.Add(1) == 10 {
				cancel()
			}
			return nil
		}
	})
	if !errors.Is(err, context.Canceled) || ran.Load() >= 1000 {
		t.Fatalf("cancelled: err %v after %d jobs", err, ran.Load())
	}
}
