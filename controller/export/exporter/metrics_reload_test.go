package exporter

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
)

// TestMetricsRelisten: a reload shuts the Prometheus endpoint down and
// listens on the same address at once; that must work even when the old
// server's Serve goroutine has not started yet (CI saw "address already
// in use" when a second exporter was added right after the first).
func TestMetricsRelisten(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	specs := []*export.Spec{{Name: "p", Type: export.TypePrometheus, Listen: addr}}
	log := slog.New(slog.DiscardHandler)
	for i := range 50 {
		m, err := newMetrics(specs, time.Second, nil, nil, log)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		m.shutdown(context.Background())
	}
}
