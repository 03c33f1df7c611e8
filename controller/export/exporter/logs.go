package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// logSink sends every event as an OTLP log record: the body is the event
// (DarkShell's schema or OCSF) as a JSON string, attributes name its kind,
// sandbox, pid and result; alerts, denials and failures are WARN.
type logSink struct {
	sp   *export.Spec
	exp  sdklog.Exporter
	info SandboxInfo

	mu        sync.Mutex
	providers map[string]*sdklog.LoggerProvider
	capture   *captureProcessor
}

// captureProcessor collects the records a provider emits (with their
// resource and scope), so they can be exported as one batch.
type captureProcessor struct{ recs []sdklog.Record }

func (c *captureProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *captureProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *captureProcessor) Shutdown(context.Context) error   { return nil }
func (c *captureProcessor) ForceFlush(context.Context) error { return nil }

func newLogSink(sp *export.Spec, info SandboxInfo) (*logSink, error) {
	ctx := context.Background()
	var exp sdklog.Exporter
	var err error
	if sp.Protocol == export.ProtocolHTTP {
		u := sp.Endpoint
		if pu, perr := url.Parse(u); perr == nil && (pu.Path == "" || pu.Path == "/") {
			u = pu.JoinPath("v1", "logs").String()
		}
		exp, err = otlploghttp.New(ctx, otlploghttp.WithEndpointURL(u), otlploghttp.WithHeaders(sp.Headers),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}), otlploghttp.WithTimeout(sendTimeout))
	} else {
		exp, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpointURL(sp.Endpoint), otlploggrpc.WithHeaders(sp.Headers),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}), otlploggrpc.WithTimeout(sendTimeout))
	}
	if err != nil {
		return nil, err
	}
	return &logSink{sp: sp, exp: exp, info: info, providers: map[string]*sdklog.LoggerProvider{}, capture: &captureProcessor{}}, nil
}

// records: the event itself (its bytes are DarkShell's schema, shared
// with the other exporters).
func (s *logSink) records(dst []record, it *item) []record {
	return append(dst, record{b: it.doc(false), v: it})
}

func (s *logSink) provider(sandbox string) *sdklog.LoggerProvider {
	if p := s.providers[sandbox]; p != nil {
		return p
	}
	p := sdklog.NewLoggerProvider(sdklog.WithResource(sandboxResource(sandbox, s.info)), sdklog.WithProcessor(s.capture))
	if len(s.providers) > 4096 {
		clear(s.providers)
	}
	s.providers[sandbox] = p
	return p
}

func (s *logSink) send(ctx context.Context, recs []record) error {
	s.mu.Lock()
	s.capture.recs = s.capture.recs[:0]
	for _, r := range recs {
		it, ok := r.v.(*item)
		if !ok { // read back from the spool
			it = &item{raw: r.b}
			if json.Unmarshal(r.b, &it.ev) != nil {
				continue
			}
		}
		e := &it.ev
		body := string(it.doc(s.sp.OCSF))
		var rec otellog.Record
		rec.SetTimestamp(e.Time)
		rec.SetBody(attribute.StringValue(body))
		rec.SetEventName("darkshell." + e.Kind)
		sev, text := otellog.SeverityInfo, "INFO"
		if e.Kind == protocol.KindAlert || e.Result == "deny" || e.Result == protocol.ResultDenied || e.Result == protocol.ResultError {
			sev, text = otellog.SeverityWarn, "WARN"
		}
		rec.SetSeverity(sev)
		rec.SetSeverityText(text)
		attrs := []attribute.KeyValue{attribute.String("darkshell.event.kind", e.Kind), attribute.String("darkshell.sandbox.name", e.Sandbox)}
		if e.PID != 0 {
			attrs = append(attrs, attribute.Int("process.pid", e.PID))
		}
		if e.Result != "" {
			attrs = append(attrs, attribute.String("darkshell.result", e.Result))
		}
		rec.AddAttributes(attrs...)
		s.provider(e.Sandbox).Logger(scope.Name).Emit(ctx, rec)
	}
	batch := s.capture.recs
	s.capture.recs = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := s.exp.Export(ctx, batch); err != nil {
		return fmt.Errorf("unable to export %d log records: %w", len(batch), err)
	}
	return nil
}

func (s *logSink) close(ctx context.Context) error { return s.exp.Shutdown(ctx) }
