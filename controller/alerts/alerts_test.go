package alerts

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func execAt(sb string, at time.Duration, bin string) *protocol.Event {
	return &protocol.Event{Time: t0.Add(at), Sandbox: sb, Kind: protocol.KindExec, Binary: bin, PID: 5, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
}

// workload feeds windows of steady execs (perWindow of each binary), with
// extra events for the windows in burst; it returns the alert rules raised.
func workload(en *Engine, windows, perWindow int, burst map[int][]*protocol.Event) []string {
	var rules []string
	for w := range windows {
		for i := range perWindow {
			at := time.Duration(w)*time.Minute + time.Duration(i)*time.Minute/time.Duration(perWindow+1)
			for _, b := range []string{"/usr/bin/make", "/usr/bin/cc"} {
				for _, a := range en.Add(execAt("s", at, b)) {
					rules = append(rules, a.Rule)
				}
			}
		}
		for _, e := range burst[w] {
			for _, a := range en.Add(e) {
				rules = append(rules, a.Rule)
			}
		}
	}
	// Close the last window.
	for _, a := range en.Add(execAt("s", time.Duration(windows)*time.Minute+time.Second, "/usr/bin/make")) {
		rules = append(rules, a.Rule)
	}
	return rules
}

func TestSteadyWorkloadRaisesNothing(t *testing.T) {
	if got := workload(New(Config{}), 20, 30, nil); len(got) != 0 {
		t.Fatalf("a steady workload raised %v", got)
	}
}

func TestBurstRaisesExactlyTheExpectedAlerts(t *testing.T) {
	burst := map[int][]*protocol.Event{}
	// Window 8: 300 execs of make at once (rate), and one new binary.
	for i := range 300 {
		burst[8] = append(burst[8], execAt("s", 8*time.Minute+30*time.Second+time.Duration(i)*time.Millisecond, "/usr/bin/make"))
	}
	burst[8] = append(burst[8], execAt("s", 8*time.Minute+40*time.Second, "/usr/bin/curl"))
	// Window 10: a write under /etc and one in the workspace.
	burst[10] = []*protocol.Event{
		{Time: t0.Add(10*time.Minute + time.Second), Sandbox: "s", Kind: protocol.KindFileWrite, Path: "/etc/passwd", Result: "denied", Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
		{Time: t0.Add(10*time.Minute + 2*time.Second), Sandbox: "s", Kind: protocol.KindFileWrite, Path: "/sandbox/etc/x", Result: "ok", Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete},
	}
	// Window 12: 7 denied egress decisions in 3 s: one burst alert.
	for i := range 7 {
		burst[12] = append(burst[12], &protocol.Event{Time: t0.Add(12*time.Minute + time.Duration(i)*500*time.Millisecond), Sandbox: "s", Kind: protocol.KindPolicy,
			Host: fmt.Sprintf("h%d.example", i), Port: 443, Result: "deny", Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	}
	// Before the warm-up ends, a new binary is not an alert.
	burst[1] = []*protocol.Event{execAt("s", time.Minute+time.Second, "/usr/bin/git")}
	got := workload(New(Config{}), 16, 30, burst)
	want := []string{RuleFirstBinary, RuleRate + ":" + MetricExecs, RuleWatchedPath, RuleDenyBurst}
	if !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
}

func TestSandboxesApart(t *testing.T) {
	en := New(Config{Warmup: 1})
	en.Add(execAt("a", 0, "/bin/ls"))
	en.Add(execAt("a", 61*time.Second, "/bin/ls")) // a warm
	if al := en.Add(execAt("b", 62*time.Second, "/bin/cat")); len(al) != 0 {
		t.Fatalf("b is not warm: %v", al)
	}
	if al := en.Add(execAt("a", 63*time.Second, "/bin/cat")); len(al) != 1 || al[0].Sandbox != "a" || al[0].Binary != "/bin/cat" {
		t.Fatalf("a's first cat: %v", al)
	}
}

// TestInferenceTokensBaseline: steady inference use raises nothing; a
// window whose tokens jump far above the baseline raises rate:inference_tokens
// (and only that: the call count stays steady).
func TestInferenceTokensBaseline(t *testing.T) {
	en := New(Config{})
	infer := func(at time.Duration, tokens int64) []string {
		var rules []string
		e := &protocol.Event{Time: t0.Add(at), Sandbox: "s", Kind: protocol.KindInference, Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete,
			Inference: &protocol.Inference{API: "openai", InputTokens: tokens / 2, OutputTokens: tokens - tokens/2}}
		for _, a := range en.Add(e) {
			rules = append(rules, a.Rule)
		}
		return rules
	}
	var got []string
	for w := range 10 {
		for i := range 5 {
			tokens := int64(200)
			if w == 8 {
				tokens = 5000 // the same calls, 25x the tokens
			}
			got = append(got, infer(time.Duration(w)*time.Minute+time.Duration(i)*10*time.Second, tokens)...)
		}
		if w == 7 && len(got) != 0 {
			t.Fatalf("steady inference raised %v", got)
		}
	}
	got = append(got, infer(10*time.Minute+time.Second, 200)...)
	if want := []string{RuleRate + ":" + MetricTokens}; !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
}
