package exporter

import (
	"context"
	"errors"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/export"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/bohica-labs/darkshell/protocol"
)

// UsageFunc reports the sandboxes' resource use when metrics are read.
type UsageFunc func(ctx context.Context) []export.Usage

// execBuckets are the exec latency histogram's bounds, in seconds.
var execBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// metrics holds the instruments the event stream updates; readers are
// the Prometheus handlers and OTLP periodic readers of the exporters.
type metrics struct {
	mp        *sdkmetric.MeterProvider
	servers   []*http.Server
	listeners []net.Listener
	lost      func() map[string]uint64 // events lost, by where

	execDur   metric.Float64Histogram
	execs     metric.Int64Counter
	procs     metric.Int64Counter
	policy    metric.Int64Counter
	mcpCalls  metric.Int64Counter
	mcpDur    metric.Float64Histogram
	syncBytes metric.Int64Counter
	syncFiles metric.Int64Counter
	emitted   metric.Int64Counter
	infCalls  metric.Int64Counter
	infTokens metric.Int64Counter
	infDur    metric.Float64Histogram

	// attrs caches the attribute sets of the two measurements every exec
	// makes (events by sandbox and kind, processes by sandbox and result):
	// building a set sorts and hashes it. Used by observe's goroutine only.
	attrs map[[3]string]metric.MeasurementOption
}

// maxAttrSets bounds metrics.attrs (cleared when full).
const maxAttrSets = 4096

// cached is the attribute set {sandbox, key=val}.
func (m *metrics) cached(sandbox, key, val string) metric.MeasurementOption {
	k := [3]string{sandbox, key, val}
	if o, ok := m.attrs[k]; ok {
		return o
	}
	if m.attrs == nil || len(m.attrs) >= maxAttrSets {
		m.attrs = map[[3]string]metric.MeasurementOption{}
	}
	o := metric.WithAttributes(attribute.String("sandbox", sandbox), attribute.String(key, val))
	m.attrs[k] = o
	return o
}

// newMetrics builds the meter provider for the metric exporters in specs
// (prometheus ones start serving /metrics). It returns nil when none wants
// metrics.
func newMetrics(specs []*export.Spec, interval time.Duration, usage UsageFunc, lost func() map[string]uint64, log *slog.Logger) (*metrics, error) {
	var opts []sdkmetric.Option
	m := &metrics{lost: lost}
	fail := func(err error) (*metrics, error) {
		m.shutdown(context.Background())
		return nil, err
	}
	for _, sp := range specs {
		switch {
		case sp.Type == export.TypePrometheus:
			reg := prometheus.NewRegistry()
			exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
			if err != nil {
				return fail(fmt.Errorf("exporter %s: %w", sp.Name, err))
			}
			opts = append(opts, sdkmetric.WithReader(exp))
			l, err := net.Listen("tcp", sp.Listen)
			if err != nil {
				return fail(fmt.Errorf("exporter %s: unable to listen on %s: %w", sp.Name, sp.Listen, err))
			}
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(l)
			m.servers = append(m.servers, srv)
			m.listeners = append(m.listeners, l)
			log.Info("serving Prometheus metrics", "exporter", sp.Name, "addr", l.Addr().String())
		case sp.Type == export.TypeOTLP && sp.HasSignal(export.SignalMetrics):
			exp, err := newMetricExporter(sp)
			if err != nil {
				return fail(fmt.Errorf("exporter %s: %w", sp.Name, err))
			}
			opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))))
		}
	}
	if len(opts) == 0 {
		return nil, nil
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(ServiceName), semconv.ServiceVersion(protocol.BuildVersion))
	m.mp = sdkmetric.NewMeterProvider(append(opts, sdkmetric.WithResource(res))...)
	mt := m.mp.Meter(scope.Name)
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.execDur, err = mt.Float64Histogram("darkshell.exec.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of control-API exec calls"), metric.WithExplicitBucketBoundaries(execBuckets...))
	add(err)
	m.execs, err = mt.Int64Counter("darkshell.exec.calls", metric.WithDescription("Control-API exec calls by result"))
	add(err)
	m.procs, err = mt.Int64Counter("darkshell.processes", metric.WithDescription("Sandbox processes that ended, by result"))
	add(err)
	m.policy, err = mt.Int64Counter("darkshell.policy.decisions", metric.WithDescription("Policy decisions by result, policy and rule"))
	add(err)
	m.mcpCalls, err = mt.Int64Counter("darkshell.mcp.calls", metric.WithDescription("MCP tool calls by server, tool and result"))
	add(err)
	m.mcpDur, err = mt.Float64Histogram("darkshell.mcp.call.duration", metric.WithUnit("s"),
		metric.WithDescription("MCP tool call latency"), metric.WithExplicitBucketBoundaries(execBuckets...))
	add(err)
	m.syncBytes, err = mt.Int64Counter("darkshell.sync.bytes", metric.WithUnit("By"), metric.WithDescription("Bytes a sync run put on the wire"))
	add(err)
	m.syncFiles, err = mt.Int64Counter("darkshell.sync.files", metric.WithDescription("Entries a sync run created, changed or deleted"))
	add(err)
	m.emitted, err = mt.Int64Counter("darkshell.events", metric.WithDescription("Events on the daemon's bus, by kind"))
	add(err)
	m.infCalls, err = mt.Int64Counter("darkshell.inference.calls", metric.WithDescription("Inference requests through inference.local, by API, model and result"))
	add(err)
	m.infTokens, err = mt.Int64Counter("darkshell.inference.tokens", metric.WithDescription("Inference tokens, by API, model and type (input, output)"))
	add(err)
	m.infDur, err = mt.Float64Histogram("darkshell.inference.duration", metric.WithUnit("s"),
		metric.WithDescription("Inference request latency, to the response's end"), metric.WithExplicitBucketBoundaries(execBuckets...))
	add(err)
	lostC, err := mt.Int64ObservableCounter("darkshell.events.lost", metric.WithDescription("Events lost, by where (sandbox ring buffer, bus, exporter queue, spool)"))
	add(err)
	memG, err := mt.Int64ObservableGauge("darkshell.sandbox.memory.usage", metric.WithUnit("By"), metric.WithDescription("Sandbox memory in use"))
	add(err)
	memL, err := mt.Int64ObservableGauge("darkshell.sandbox.memory.limit", metric.WithUnit("By"), metric.WithDescription("Sandbox memory limit"))
	add(err)
	pidsG, err := mt.Int64ObservableGauge("darkshell.sandbox.pids", metric.WithDescription("Sandbox processes"))
	add(err)
	pidsL, err := mt.Int64ObservableGauge("darkshell.sandbox.pids.limit", metric.WithDescription("Sandbox process limit"))
	add(err)
	cpuC, err := mt.Float64ObservableCounter("darkshell.sandbox.cpu.time", metric.WithUnit("s"), metric.WithDescription("Sandbox CPU time"))
	add(err)
	cpuL, err := mt.Float64ObservableGauge("darkshell.sandbox.cpu.limit", metric.WithDescription("Sandbox CPU limit, in CPUs"))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return fail(fmt.Errorf("unable to create instruments: %w", err))
	}
	_, err = mt.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if m.lost != nil {
			for where, n := range m.lost() {
				o.ObserveInt64(lostC, int64(n), metric.WithAttributes(attribute.String("where", where)))
			}
		}
		if usage == nil {
			return nil
		}
		for _, u := range usage(ctx) {
			a := metric.WithAttributes(attribute.String("sandbox", u.Sandbox))
			if u.MemoryBytes > 0 {
				o.ObserveInt64(memG, u.MemoryBytes, a)
			}
			if u.MemoryLimitBytes > 0 {
				o.ObserveInt64(memL, u.MemoryLimitBytes, a)
			}
			if u.Pids > 0 {
				o.ObserveInt64(pidsG, u.Pids, a)
			}
			if u.PidsLimit > 0 {
				o.ObserveInt64(pidsL, u.PidsLimit, a)
			}
			if u.CPUSeconds > 0 {
				o.ObserveFloat64(cpuC, u.CPUSeconds, a)
			}
			if u.CPULimit > 0 {
				o.ObserveFloat64(cpuL, u.CPULimit, a)
			}
		}
		return nil
	}, lostC, memG, memL, pidsG, pidsL, cpuC, cpuL)
	if err != nil {
		return fail(fmt.Errorf("unable to register metric callback: %w", err))
	}
	return m, nil
}

func newMetricExporter(sp *export.Spec) (sdkmetric.Exporter, error) {
	ctx := context.Background()
	if sp.Protocol == export.ProtocolHTTP {
		u := sp.Endpoint
		if pu, err := url.Parse(u); err == nil && (pu.Path == "" || pu.Path == "/") {
			u = pu.JoinPath("v1", "metrics").String()
		}
		return otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(u), otlpmetrichttp.WithHeaders(sp.Headers),
			otlpmetrichttp.WithTimeout(sendTimeout))
	}
	return otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(sp.Endpoint), otlpmetricgrpc.WithHeaders(sp.Headers),
		otlpmetricgrpc.WithTimeout(sendTimeout))
}

// observe updates the instruments from one event.
func (m *metrics) observe(e *protocol.Event) {
	ctx := context.Background()
	sb := attribute.String("sandbox", e.Sandbox)
	m.emitted.Add(ctx, 1, m.cached(e.Sandbox, "kind", e.Kind))
	switch e.Kind {
	case protocol.KindExecCall:
		if e.State != "ended" {
			return
		}
		a := metric.WithAttributes(sb, attribute.String("result", exitResult(e)))
		m.execDur.Record(ctx, float64(e.DurationNs)/1e9, a)
		m.execs.Add(ctx, 1, a)
	case protocol.KindExit:
		if e.ExecID != "" {
			m.procs.Add(ctx, 1, m.cached(e.Sandbox, "result", exitResult(e)))
		}
	case protocol.KindPolicy:
		m.policy.Add(ctx, 1, metric.WithAttributes(sb, attribute.String("result", e.Result),
			attribute.String("policy", e.Policy), attribute.String("rule", e.Rule)))
	case protocol.KindMCPCall:
		a := metric.WithAttributes(sb, attribute.String("server", e.Server), attribute.String("tool", e.Tool), attribute.String("result", e.Result))
		m.mcpCalls.Add(ctx, 1, a)
		if e.DurationNs > 0 {
			m.mcpDur.Record(ctx, float64(e.DurationNs)/1e9, a)
		}
	case protocol.KindInference:
		if in := e.Inference; in != nil {
			api, model := attribute.String("api", in.API), attribute.String("model", in.Model)
			m.infCalls.Add(ctx, 1, metric.WithAttributes(sb, api, model, attribute.String("result", e.Result)))
			m.infTokens.Add(ctx, in.InputTokens, metric.WithAttributes(sb, api, model, attribute.String("type", "input")))
			m.infTokens.Add(ctx, in.OutputTokens, metric.WithAttributes(sb, api, model, attribute.String("type", "output")))
			m.infDur.Record(ctx, float64(e.DurationNs)/1e9, metric.WithAttributes(sb, api, model))
		}
	case protocol.KindSync:
		a := metric.WithAttributes(sb, attribute.String("direction", e.CallID))
		m.syncBytes.Add(ctx, e.Bytes, a)
		m.syncFiles.Add(ctx, e.Files, a)
	}
}

// exitResult classes an exit: ok, failed (non-zero code), signaled, error
// (darkshell could not run it).
func exitResult(e *protocol.Event) string {
	switch {
	case e.Result == protocol.ResultError:
		return "error"
	case e.Signal != 0:
		return "signaled"
	case e.ExitCode != nil && *e.ExitCode != 0:
		return "failed"
	}
	return "ok"
}

func (m *metrics) shutdown(ctx context.Context) {
	if m == nil {
		return
	}
	for _, s := range m.servers {
		s.Close()
	}
	// Close does not see a listener whose Serve has not begun yet: close
	// each here, so a reload can listen on the same address at once.
	for _, l := range m.listeners {
		l.Close()
	}
	if m.mp != nil {
		m.mp.Shutdown(ctx)
	}
}
