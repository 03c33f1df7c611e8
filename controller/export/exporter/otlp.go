package exporter

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/export"
	"net/url"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/bohica-labs/darkshell/protocol"
)

// ServiceName is the OTel service.name of every span and metric.
const ServiceName = "darkshell"

// resourceSchemaURL is the semantic conventions' schema of our resources.
const resourceSchemaURL = semconv.SchemaURL

// scope names the instrumentation.
var scope = instrumentation.Scope{Name: "github.com/bohica-labs/darkshell/controller/export", Version: protocol.BuildVersion}

// SandboxInfo names a sandbox's driver and blueprint for resource attributes.
type SandboxInfo func(sandbox string) (driver, blueprint string)

// traceSink sends spans over OTLP (gRPC or HTTP/protobuf).
type traceSink struct {
	b    *spanBuilder
	exp  *otlptrace.Exporter
	info SandboxInfo

	mu  sync.Mutex
	res map[string]*resource.Resource
}

func newTraceSink(sp *export.Spec, info SandboxInfo) (*traceSink, error) {
	exp, err := newTraceExporter(sp)
	if err != nil {
		return nil, err
	}
	return &traceSink{b: newSpanBuilder(), exp: exp, info: info, res: map[string]*resource.Resource{}}, nil
}

func newTraceExporter(sp *export.Spec) (*otlptrace.Exporter, error) {
	ctx := context.Background()
	if sp.Protocol == export.ProtocolHTTP {
		u := sp.Endpoint
		if pu, err := url.Parse(u); err == nil && (pu.Path == "" || pu.Path == "/") {
			u = pu.JoinPath("v1", "traces").String()
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u), otlptracehttp.WithHeaders(sp.Headers),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(sendTimeout))
	}
	return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(sp.Endpoint), otlptracegrpc.WithHeaders(sp.Headers),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}), otlptracegrpc.WithTimeout(sendTimeout))
}

// records are the spans the event ends, kept decoded (their JSON is made
// only if they go to the spool).
func (s *traceSink) records(dst []record, it *item) []record {
	spans := s.b.add(&it.ev)
	for i := range spans {
		dst = append(dst, record{v: &spans[i]})
	}
	return dst
}

func (s *traceSink) resource(sandbox string) *resource.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.res[sandbox]; r != nil {
		return r
	}
	r := sandboxResource(sandbox, s.info)
	if len(s.res) > 4096 {
		clear(s.res)
	}
	s.res[sandbox] = r
	return r
}

// sandboxResource names the sandbox, its driver and blueprint.
func sandboxResource(sandbox string, info SandboxInfo) *resource.Resource {
	attrs := []attribute.KeyValue{semconv.ServiceName(ServiceName), semconv.ServiceVersion(protocol.BuildVersion),
		semconv.ServiceInstanceID(sandbox), attribute.String("darkshell.sandbox.name", sandbox)}
	if info != nil {
		drv, bp := info(sandbox)
		if drv != "" {
			attrs = append(attrs, attribute.String("darkshell.sandbox.driver", drv))
		}
		if bp != "" {
			attrs = append(attrs, attribute.String("darkshell.blueprint.name", bp))
		}
	}
	return resource.NewWithAttributes(resourceSchemaURL, attrs...)
}

func (s *traceSink) send(ctx context.Context, recs []record) error {
	ro := make([]sdktrace.ReadOnlySpan, 0, len(recs))
	for _, rec := range recs {
		sp, ok := rec.v.(*Span)
		if !ok {
			sp = new(Span)
			if err := json.Unmarshal(rec.b, sp); err != nil {
				continue // not ours: never retried
			}
		}
		stub, err := s.stub(sp)
		if err != nil {
			continue
		}
		ro = append(ro, stub.Snapshot())
	}
	if len(ro) == 0 {
		return nil
	}
	if err := s.exp.ExportSpans(ctx, ro); err != nil {
		return fmt.Errorf("unable to export %d spans: %w", len(ro), err)
	}
	return nil
}

func (s *traceSink) close(ctx context.Context) error { return s.exp.Shutdown(ctx) }

func (s *traceSink) stub(sp *Span) (tracetest.SpanStub, error) {
	var tid trace.TraceID
	var sid, pid trace.SpanID
	if err := decodeID(tid[:], sp.TraceID); err != nil {
		return tracetest.SpanStub{}, err
	}
	if err := decodeID(sid[:], sp.SpanID); err != nil {
		return tracetest.SpanStub{}, err
	}
	stub := tracetest.SpanStub{
		Name:                 sp.Name,
		SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
		SpanKind:             spanKind(sp.Kind),
		StartTime:            sp.Start,
		EndTime:              sp.End,
		Attributes:           otelAttrs(sp.Attrs),
		Resource:             s.resource(sp.Sandbox),
		InstrumentationScope: scope,
	}
	if sp.ParentID != "" {
		if err := decodeID(pid[:], sp.ParentID); err == nil {
			stub.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: pid, TraceFlags: trace.FlagsSampled})
		}
	}
	for _, ev := range sp.Events {
		stub.Events = append(stub.Events, sdktrace.Event{Name: ev.Name, Time: ev.Time, Attributes: otelAttrs(ev.Attrs)})
	}
	if sp.Error {
		stub.Status = sdktrace.Status{Code: codes.Error, Description: sp.Message}
	}
	return stub, nil
}

func decodeID(dst []byte, s string) error {
	if hex.DecodedLen(len(s)) != len(dst) {
		return fmt.Errorf("bad id %q", s)
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

func spanKind(k string) trace.SpanKind {
	switch k {
	case "server":
		return trace.SpanKindServer
	case "client":
		return trace.SpanKindClient
	}
	return trace.SpanKindInternal
}

func otelAttrs(in []Attr) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, a := range in {
		switch {
		case a.S != nil:
			out = append(out, attribute.String(a.K, *a.S))
		case a.I != nil:
			out = append(out, attribute.Int64(a.K, *a.I))
		case a.B != nil:
			out = append(out, attribute.Bool(a.K, *a.B))
		case a.SS != nil:
			out = append(out, attribute.StringSlice(a.K, a.SS))
		}
	}
	return out
}
