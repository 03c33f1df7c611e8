package syncer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestProfPush(t *testing.T) {
	src := os.Getenv("PROF_SRC")
	if src == "" {
		t.Skip()
	}
	home := t.TempDir()
	o := &pipeOpener{t: t, home: home}
	for i := range 2 {
		t0 := time.Now()
		sum, err := Push(context.Background(), o, src, "d", Options{Delete: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %v %+v", i, time.Since(t0), *sum)
	}
	_ = filepath.Join
}
