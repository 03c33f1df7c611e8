package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

func TestFeedDelayFor(t *testing.T) {
	for _, tc := range []struct {
		flush string
		want  time.Duration
	}{
		{"", feedDelay},
		{"garbage", feedDelay},
		{"0", feedDelay},
		{"-1s", feedDelay},
		{"5s", feedDelay},
		{"1s", feedDelay},
		{"100ms", 100 * time.Millisecond},
		{" 250ms ", 250 * time.Millisecond},
		{"1ms", 10 * time.Millisecond},
	} {
		if got := feedDelayFor(tc.flush); got != tc.want {
			t.Errorf("feedDelayFor(%q) = %v, want %v", tc.flush, got, tc.want)
		}
	}
	if feedDelay < time.Second {
		t.Errorf("feedDelay %v: the helper would wake more than once a second while events come", feedDelay)
	}
}

// TestExportFeedWaitsItsDelay: events that come while the feed naps go in
// one write, however far apart they come within the delay: the helper
// wakes once per delay, not once per event or per burst.
func TestExportFeedWaitsItsDelay(t *testing.T) {
	bus := events.NewBus(t.TempDir(), nil)
	defer bus.Close()
	w := &countingWriter{}
	p := &exportProc{bus: bus, log: slog.New(slog.DiscardHandler), usage: func(context.Context) []export.Usage { return nil },
		delay: 2 * time.Second}
	sub := bus.SubscribeLines(256)
	defer sub.Close()
	stop := make(chan struct{})
	go p.feed(w, sub, nil, stop)
	defer close(stop)
	for i := range 3 {
		bus.Publish(protocol.Event{Time: time.Now(), Sandbox: "sb", Kind: protocol.KindExec, PID: i + 2})
		time.Sleep(300 * time.Millisecond)
	}
	waitLines(t, w, 3, 10*time.Second)
	if writes, _ := w.get(); writes != 1 {
		t.Fatalf("3 events 300 ms apart took %d pipe writes with a 2 s delay, want 1", writes)
	}
}
