package main

import (
	"runtime"
	"testing"
)

func TestOneProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		env  string
		pre  int
		want int
	}{
		{env: "", pre: 4, want: 1},
		{env: "3", pre: 3, want: 3}, // the runtime took $GOMAXPROCS at start; it is kept
	} {
		t.Setenv("GOMAXPROCS", tc.env)
		runtime.GOMAXPROCS(tc.pre)
		if got := oneProc(); got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
			t.Errorf("GOMAXPROCS=%q (runtime at %d): oneProc() = %d, runtime at %d; want %d", tc.env, tc.pre, got, runtime.GOMAXPROCS(0), tc.want)
		}
	}
}
