package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// latencyCase is one way of doing the same operation (e.g. exec true
// through the API, a fresh CLI, the peer tool), timed n times.
type latencyCase struct {
	name string
	n    int
	run  func() error
}

// latencies runs each case 3 times untimed (warm-up: sessions, page
// cache, ControlMaster), then n times timed; it returns the sorted
// durations by case name and reports each p50 as a benchmark metric.
func latencies(b *testing.B, cases []latencyCase) map[string][]time.Duration {
	b.Helper()
	res := map[string][]time.Duration{}
	for _, c := range cases {
		for range 3 {
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
		ds := make([]time.Duration, 0, c.n)
		for range c.n {
			t0 := time.Now()
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			ds = append(ds, time.Since(t0))
		}
		slices.Sort(ds)
		res[c.name] = ds
		b.ReportMetric(float64(pct(ds, 50).Microseconds()), c.name+"-p50-µs")
	}
	return res
}

// printLatencies prints a p50/p99 table of res in the order of cases.
func printLatencies(title string, cases []latencyCase, res map[string][]time.Duration) {
	w := 8
	for _, c := range cases {
		w = max(w, len(c.name))
	}
	fmt.Printf("\n%s\n%-*s %10s %10s\n", title, w, "mode", "p50", "p99")
	for _, c := range cases {
		fmt.Printf("%-*s %10s %10s\n", w, c.name, pct(res[c.name], 50).Round(time.Microsecond), pct(res[c.name], 99).Round(time.Microsecond))
	}
}
