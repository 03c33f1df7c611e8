// Command darkshell-export is the exporter helper of the darkshell daemon:
// the daemon starts it when exporters are configured and writes its event
// bus to its stdin as JSON lines; it runs the exporters (OTLP traces and
// metrics, Prometheus /metrics, JSON lines) and reports their counters on
// fd 3. It lives in its own program so that the OpenTelemetry, gRPC and
// Prometheus libraries stay out of the darkshell CLI's start-up. It is not
// meant to be run by hand.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/export/exporter"
	"github.com/bohica-labs/darkshell/controller/state"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: darkshell-export STATE_DIR  (started by the darkshell daemon; reads events on stdin, reports on fd 3)")
		os.Exit(2)
	}
	oneProc()
	lowerErr := lowerPriority(schedClass(), niceness())
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "export")
	if lowerErr != nil {
		log.Warn("unable to lower the helper's CPU priority", "err", lowerErr)
	}
	h, err := state.Open(os.Args[1])
	if err != nil {
		log.Error("no state dir", "err", err)
		os.Exit(1)
	}
	// $DARKSHELL_EXPORT_CPUPROFILE.PID: a CPU profile while it runs (benchmarks).
	if p := os.Getenv("DARKSHELL_EXPORT_CPUPROFILE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	report := os.NewFile(3, "report")
	if _, err := report.Stat(); err != nil {
		report = nil
	}
	dur := func(name string) time.Duration {
		d, _ := time.ParseDuration(os.Getenv(name))
		return d
	}
	err = exporter.Serve(ctx, exporter.ServeOptions{Store: export.OpenStore(h), Log: log, In: os.Stdin, Report: report,
		Info: func(name string) (string, string) {
			sb, err := h.Get(name)
			if err != nil {
				return "", ""
			}
			return sb.Driver, sb.Labels[export.LabelBlueprint]
		},
		FlushInterval: dur("DARKSHELL_EXPORT_FLUSH"), MetricInterval: dur("DARKSHELL_EXPORT_METRIC_INTERVAL")})
	if err != nil {
		log.Error("exporters failed", "err", err)
		os.Exit(1)
	}
}

// GC tuning of the helper, unless GOGC or GOMEMLIMIT say otherwise. Its
// live heap is small (bounded queues, batches of at most 512 records) and
// every event allocates (decoding, OCSF, OTLP records): at the default
// GOGC=100 the collector took ~13 % of its CPU in bench-export's CPU
// profiles. A larger GOGC collects less often; the soft memory limit keeps
// a backlog (full queues) from growing the heap past it.
const (
	helperGOGC     = 400
	helperMemLimit = 256 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(helperGOGC)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(helperMemLimit)
	}
}
