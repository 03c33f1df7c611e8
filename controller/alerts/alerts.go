// Package alerts keeps per-sandbox rolling baselines of what the event
// stream measures and raises alert events: when a rate departs from its
// baseline beyond a threshold, and on rules (first use of a binary, a
// write under a watched path, a burst of denied egress). Alerts go back
// on the daemon's bus, so watch, webhooks, the host log and every
// exporter see them; `darkshell alerts NAME` lists them.
//
// Time is the events' own: windows roll over when an event's time passes
// the window's end, so the engine is deterministic for a given stream.
package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Rule names carried in an alert's Rule field.
const (
	RuleRate        = "rate"         // rate:<metric>
	RuleFirstBinary = "first_binary" // a binary not seen during the baseline
	RuleWatchedPath = "watched_write"
	RuleDenyBurst   = "egress_deny_burst"
)

// Metrics with baselines.
const (
	MetricExecs    = "execs"            // exec events
	MetricBinaries = "binaries"         // distinct binaries executed
	MetricWrites   = "file_writes"      // file writes, deletes, renames
	MetricEgress   = "egress:"          // allowed egress connections, per host
	MetricMCP      = "mcp:"             // MCP tool calls, per tool
	MetricDenied   = "egress_denied"    // denied egress decisions
	MetricTokens   = "inference_tokens" // inference tokens, input + output
	MetricInfer    = "inference_calls"  // inference requests
)

// Config tunes the engine; zero fields take the defaults.
type Config struct {
	// Window is a baseline bucket (default 1 minute).
	Window time.Duration `json:"window,omitempty"`
	// Warmup windows pass before any rate or first-use alert (default 3).
	Warmup int `json:"warmup,omitempty"`
	// Factor: a window above Factor x its baseline alerts (default 3).
	Factor float64 `json:"factor,omitempty"`
	// MinCount: a window below it never alerts (default 20).
	MinCount int `json:"min_count,omitempty"`
	// Alpha weights the newest window in the baseline EWMA (default 0.3).
	Alpha float64 `json:"alpha,omitempty"`
	// WatchPaths: a write (or attempt) under one of them alerts.
	WatchPaths []string `json:"watch_paths,omitempty"`
	// DenyBurst denials of egress within DenyWindow alert (default 5 in 10 s).
	DenyBurst  int           `json:"deny_burst,omitempty"`
	DenyWindow time.Duration `json:"deny_window,omitempty"`
}

// DefaultWatchPaths are watched when the config names none.
var DefaultWatchPaths = []string{"/etc/", "/usr/", "/bin/", "/sbin/", "/lib/", "/root/.ssh/", "/sandbox/.git/hooks/"}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.Warmup <= 0 {
		c.Warmup = 3
	}
	if c.Factor <= 0 {
		c.Factor = 3
	}
	if c.MinCount <= 0 {
		c.MinCount = 20
	}
	if c.Alpha <= 0 || c.Alpha > 1 {
		c.Alpha = 0.3
	}
	if c.WatchPaths == nil {
		c.WatchPaths = DefaultWatchPaths
	}
	if c.DenyBurst <= 0 {
		c.DenyBurst = 5
	}
	if c.DenyWindow <= 0 {
		c.DenyWindow = 10 * time.Second
	}
}

// ConfigFile is the engine's config in a state dir.
func ConfigFile(home string) string { return filepath.Join(home, "alerts.json") }

// LoadConfig reads dir's alerts.json (absent: defaults).
func LoadConfig(home string) (Config, error) {
	var c Config
	b, err := os.ReadFile(ConfigFile(home))
	if errors.Is(err, os.ErrNotExist) {
		c.defaults()
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("unable to read %s: %w", ConfigFile(home), err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w (fields: window, warmup, factor, min_count, alpha, watch_paths, deny_burst, deny_window)", ConfigFile(home), err)
	}
	c.defaults()
	return c, nil
}

// Engine holds the baselines of every sandbox. It is used by one goroutine.
type Engine struct {
	cfg Config
	sbs map[string]*sandbox
}

type sandbox struct {
	start    time.Time // current window's start
	windows  int       // windows closed
	counts   map[string]int
	binaries map[string]bool // binaries of this window
	known    map[string]bool // binaries seen so far
	baseline map[string]float64
	denials  []time.Time
}

// New returns an engine.
func New(cfg Config) *Engine {
	cfg.defaults()
	return &Engine{cfg: cfg, sbs: map[string]*sandbox{}}
}

// Add takes one event and returns the alerts it raises (events of kind
// alert, ready to publish). Alerts themselves are ignored.
func (en *Engine) Add(e *protocol.Event) []protocol.Event {
	if e.Kind == protocol.KindAlert || e.Sandbox == "" {
		return nil
	}
	sb := en.sbs[e.Sandbox]
	if sb == nil {
		sb = &sandbox{start: e.Time, counts: map[string]int{}, binaries: map[string]bool{}, known: map[string]bool{}, baseline: map[string]float64{}}
		en.sbs[e.Sandbox] = sb
	}
	var out []protocol.Event
	for !e.Time.Before(sb.start.Add(en.cfg.Window)) {
		out = append(out, en.roll(e.Sandbox, sb)...)
	}
	alert := func(rule, msg string, f func(*protocol.Event)) {
		a := protocol.Event{Time: e.Time, Sandbox: e.Sandbox, Kind: protocol.KindAlert, Rule: rule, Message: msg,
			Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete}
		if f != nil {
			f(&a)
		}
		out = append(out, a)
	}
	warm := sb.windows >= en.cfg.Warmup
	switch e.Kind {
	case protocol.KindExec:
		sb.counts[MetricExecs]++
		if e.Binary != "" {
			if !sb.binaries[e.Binary] {
				sb.binaries[e.Binary] = true
				sb.counts[MetricBinaries]++
			}
			if !sb.known[e.Binary] {
				sb.known[e.Binary] = true
				if warm {
					alert(RuleFirstBinary, "first use of "+e.Binary+" (not run during the baseline)", func(a *protocol.Event) {
						a.Binary, a.PID, a.ExecID, a.Argv = e.Binary, e.PID, e.ExecID, e.Argv
					})
				}
			}
		}
	case protocol.KindFileWrite, protocol.KindFileUnlink, protocol.KindFileRename, protocol.KindFileChmod, protocol.KindFileMkdir, protocol.KindFileRmdir:
		sb.counts[MetricWrites]++
		for _, w := range en.cfg.WatchPaths {
			if under(e.Path, w) || (e.NewPath != "" && under(e.NewPath, w)) {
				alert(RuleWatchedPath, fmt.Sprintf("%s of %s under watched %s (%s)", e.Kind, e.Path, w, e.Result), func(a *protocol.Event) {
					a.Path, a.NewPath, a.PID, a.Binary, a.ExecID, a.Result = e.Path, e.NewPath, e.PID, e.Binary, e.ExecID, e.Result
				})
				break
			}
		}
	case protocol.KindPolicy:
		if e.Host == "" {
			break // MCP tool policy
		}
		if e.Result == "deny" {
			sb.counts[MetricDenied]++
			sb.denials = append(sb.denials, e.Time)
			cut := 0
			for cut < len(sb.denials) && e.Time.Sub(sb.denials[cut]) > en.cfg.DenyWindow {
				cut++
			}
			sb.denials = sb.denials[cut:]
			if len(sb.denials) == en.cfg.DenyBurst {
				alert(RuleDenyBurst, fmt.Sprintf("%d egress connections denied within %s (last: %s:%d)", len(sb.denials), en.cfg.DenyWindow, e.Host, e.Port),
					func(a *protocol.Event) { a.Host, a.Port, a.Rule = e.Host, e.Port, RuleDenyBurst })
			}
		} else if e.Result == "allow" {
			sb.counts[MetricEgress+e.Host]++
		}
	case protocol.KindMCPCall:
		sb.counts[MetricMCP+e.Tool]++
	case protocol.KindInference:
		sb.counts[MetricInfer]++
		if e.Inference != nil {
			sb.counts[MetricTokens] += int(e.Inference.InputTokens + e.Inference.OutputTokens)
		}
	}
	return out
}

// roll closes the sandbox's current window: rates far above their
// baseline alert, then the baselines take the window in.
func (en *Engine) roll(name string, sb *sandbox) []protocol.Event {
	var out []protocol.Event
	end := sb.start.Add(en.cfg.Window)
	keys := make([]string, 0, len(sb.counts)+len(sb.baseline))
	for k := range sb.counts {
		keys = append(keys, k)
	}
	for k := range sb.baseline {
		if _, ok := sb.counts[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := sb.counts[k]
		base, seen := sb.baseline[k]
		if sb.windows >= en.cfg.Warmup && n >= en.cfg.MinCount && float64(n) > en.cfg.Factor*base {
			msg := fmt.Sprintf("%s: %d in %s, baseline %.1f (threshold %.1fx)", k, n, en.cfg.Window, base, en.cfg.Factor)
			out = append(out, protocol.Event{Time: end, Sandbox: name, Kind: protocol.KindAlert, Rule: RuleRate + ":" + k, Message: msg,
				Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
		}
		if !seen {
			// A metric first seen: its baseline starts from the windows
			// before, which had none of it.
			base = 0
		}
		sb.baseline[k] = en.cfg.Alpha*float64(n) + (1-en.cfg.Alpha)*base
	}
	if len(sb.baseline) > 4096 { // bounded: per-host and per-tool keys
		for k, v := range sb.baseline {
			if v < 0.01 {
				delete(sb.baseline, k)
			}
		}
	}
	sb.windows++
	sb.start = end
	clear(sb.counts)
	clear(sb.binaries)
	return out
}

func under(p, dir string) bool {
	if p == "" {
		return false
	}
	d := strings.TrimSuffix(dir, "/")
	return p == d || strings.HasPrefix(p, d+"/")
}
