package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestSelector(t *testing.T) {
	labels := map[string]string{"team": "infra", "tier": "gpu"}
	tests := []struct {
		sel     string
		match   bool
		wantErr bool
	}{
		{"team=infra", true, false},
		{"team==infra", true, false},
		{"team=web", false, false},
		{"team!=web", true, false},
		{"team!=infra", false, false},
		{"team=infra,tier=gpu", true, false},
		{"team=infra,tier=cpu", false, false},
		{"tier", true, false},
		{"owner", false, false},
		{"!owner", true, false},
		{"!team", false, false},
		{"owner!=x", true, false},
		{"", false, true},
		{"a=b,,c", false, true},
		{"=v", false, true},
		{"a=b=c", false, true},
	}
	for _, tt := range tests {
		s, err := ParseSelector(tt.sel)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%q: err %v", tt.sel, err)
		}
		if err == nil && s.Matches(labels) != tt.match {
			t.Errorf("%q matches %v: %v, want %v", tt.sel, labels, !tt.match, tt.match)
		}
	}
	if s, _ := ParseSelector(" a == b , !c,d "); s.String() != "a=b,!c,d" {
		t.Errorf("String: %q", s.String())
	}
}

func TestRunParallelAndOrdered(t *testing.T) {
	var cur, peak atomic.Int32
	names := []string{"c", "a", "b", "e", "d", "f"}
	res := Run(context.Background(), names, 3, func(ctx context.Context, n string) string {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		cur.Add(-1)
		return n
	})
	if got := peak.Load(); got != 3 {
		t.Errorf("peak parallelism %d, want 3", got)
	}
	want := []string{"a", "b", "c", "d", "e", "f"}
	for i := range want {
		if res[i] != want[i] {
			t.Fatalf("results %v, want %v", res, want)
		}
	}
}
