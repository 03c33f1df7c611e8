package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// TestAlertsBurst: a steady scripted workload in a local sandbox raises no
// alert; a sudden burst of execs raises exactly one rate alert, which
// `darkshell alerts` lists and `sandbox watch` streams. Windows are 2 s
// (alerts.json) so the test takes seconds, not minutes.
func TestAlertsBurst(t *testing.T) {
	e := newLocalEnv(t)
	cfg := `{"window": 2000000000, "warmup": 2, "factor": 3, "min_count": 40, "watch_paths": ["/etc/"]}`
	if err := os.WriteFile(filepath.Join(e.home, "alerts.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.createLocal("al")
	if _, errOut, code := e.ds("exec", "al", "--", "true"); code != 0 {
		t.Fatalf("exec: %s", errOut)
	}
	var hello struct {
		Remote struct {
			EventFidelity string `json:"event_fidelity"`
		} `json:"remote"`
	}
	out, _, _ := e.ds("sandbox", "get", "al", "-o", "json")
	json.Unmarshal([]byte(out), &hello)
	if hello.Remote.EventFidelity != protocol.SourceEBPF {
		requireFeature(t, "eBPF process events (the polled fallback misses short execs; got "+hello.Remote.EventFidelity+")")
	}
	steady := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if _, errOut, code := e.ds("exec", "al", "--", "sh", "-c", "for i in 1 2 3 4; do /bin/true; done"); code != 0 {
				t.Fatalf("steady exec: %s", errOut)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	alertsNow := func() []protocol.Event {
		out, errOut, code := e.ds("alerts", "al", "-o", "json")
		if code != 0 {
			t.Fatalf("alerts: %s", errOut)
		}
		var l []protocol.Event
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("alerts %q: %v", out, err)
		}
		return l
	}
	steady(10 * time.Second) // 2 warm-up windows and 3 steady ones
	if l := alertsNow(); len(l) != 0 {
		t.Fatalf("a steady workload raised alerts: %+v", l)
	}
	// The burst: 400 execs at once.
	if _, errOut, code := e.ds("exec", "al", "--", "sh", "-c", "i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done"); code != 0 {
		t.Fatalf("burst: %s", errOut)
	}
	steady(5 * time.Second) // the burst's window closes
	var l []protocol.Event
	waitFor(t, 10*time.Second, "the rate alert", func() bool {
		l = alertsNow()
		return len(l) > 0
	})
	steady(3 * time.Second)
	l = alertsNow()
	var rules []string
	for _, a := range l {
		rules = append(rules, a.Rule)
	}
	if !slices.Equal(rules, []string{"rate:execs"}) {
		t.Fatalf("alerts %v, want exactly [rate:execs]: %+v", rules, l)
	}
	if l[0].Sandbox != "al" || l[0].Message == "" {
		t.Fatalf("alert: %+v", l[0])
	}
}
