package mcp

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/mcpproxy"
)

// TestEventLogAsync: events recorded from many goroutines at once all
// reach the log (in each goroutine's order) and the sink, none dropped, and
// Logs sees every event recorded before it was called.
func TestEventLogAsync(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range []string{"a", "b"} {
		if err := h.Create(&state.Sandbox{Name: sb, Driver: "ssh", Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	m := NewManager(Options{Home: h, Providers: provider.Open(h)})
	var mu sync.Mutex
	sunk := map[string]int{}
	m.SetEventSink(func(sb string, ev mcpproxy.Event) { mu.Lock(); sunk[sb]++; mu.Unlock() })
	const workers, each = 8, 1000 // more than the queue holds: record must wait, not drop
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb := []string{"a", "b"}[w%2]
			for i := range each {
				m.record(sb, mcpproxy.Event{Kind: mcpproxy.KindCall, Server: fmt.Sprintf("w%d", w), Tool: fmt.Sprint(i)})
			}
		}()
	}
	wg.Wait()
	for _, sb := range []string{"a", "b"} {
		evs, err := m.Logs(sb, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != workers/2*each {
			t.Fatalf("sandbox %s: %d events logged, want %d", sb, len(evs), workers/2*each)
		}
		next := map[string]int{}
		for _, ev := range evs {
			if ev.Tool != fmt.Sprint(next[ev.Server]) {
				t.Fatalf("sandbox %s: %s's events out of order: got %s, want %d", sb, ev.Server, ev.Tool, next[ev.Server])
			}
			next[ev.Server]++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if sunk["a"] != workers/2*each || sunk["b"] != workers/2*each {
		t.Fatalf("sink saw %v", sunk)
	}
}
