package exporter

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bohica-labs/darkshell/controller/export"

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

// traceSink sends spans over OTLP (gRPC or HTTP/protobuf). It writes
// the request (ExportTraceServiceRequest) itself with protowire and posts
// it as it is, as the log sink does: the SDK's span snapshots and
// protobuf-go's reflective marshalling of them were the largest cost of
// the exporter helper after the log SDK. TestTraceRequest holds the bytes
// to the OTLP types; the Jaeger tests (TestExportJaeger...) read the span
// trees back from a real Jaeger over gRPC and HTTP.
type traceSink struct {
	b   *spanBuilder
	out *otlpPoster
	res *resources
}

func newTraceSink(sp *export.Spec, info SandboxInfo) (*traceSink, error) {
	out, err := newOTLPPoster(sp, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", "traces")
	if err != nil {
		return nil, err
	}
	return &traceSink{b: newSpanBuilder(), out: out, res: newResources(info)}, nil
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
	spans := make([]*Span, 0, len(recs))
	for _, rec := range recs {
		sp, ok := rec.v.(*Span)
		if !ok {
			sp = new(Span)
			if err := json.Unmarshal(rec.b, sp); err != nil {
				continue // not ours: never retried
			}
		}
		spans = append(spans, sp)
	}
	req, n := s.request(spans)
	if n == 0 {
		return nil
	}
	if err := s.out.post(ctx, req); err != nil {
		return fmt.Errorf("unable to export %d spans: %w", n, err)
	}
	return nil
}

func (s *traceSink) close(context.Context) error { return s.out.close() }

// OTLP span kinds, status code and flags.
const (
	spanKindInternal  = 1
	spanKindServer    = 2
	spanKindClient    = 3
	statusCodeError   = 2
	spanFlagsSampled  = 0x01  // W3C trace flags: sampled
	spanFlagsHasIsRem = 0x100 // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (the parent is not remote)
)

// request encodes an ExportTraceServiceRequest of the spans: one
// ResourceSpans per sandbox (in the order they first come), each with one
// ScopeSpans. Spans with bad ids are left out; n is how many went in.
func (s *traceSink) request(spans []*Span) (req []byte, n int) {
	var order []string
	by := map[string][]byte{}
	var buf []byte
	for _, sp := range spans {
		var ok bool
		if buf, ok = appendSpan(buf[:0], sp); !ok {
			continue
		}
		n++
		if _, seen := by[sp.Sandbox]; !seen {
			order = append(order, sp.Sandbox)
		}
		b := protowire.AppendTag(by[sp.Sandbox], 2, protowire.BytesType) // spans
		by[sp.Sandbox] = protowire.AppendBytes(b, buf)
	}
	var scopeMsg []byte
	scopeMsg = protowire.AppendTag(scopeMsg, 1, protowire.BytesType) // name
	scopeMsg = protowire.AppendString(scopeMsg, scope.Name)
	if scope.Version != "" {
		scopeMsg = protowire.AppendTag(scopeMsg, 2, protowire.BytesType) // version
		scopeMsg = protowire.AppendString(scopeMsg, scope.Version)
	}
	for _, sb := range order {
		req = appendResourceGroup(req, s.res.get(sb), scopeMsg, by[sb])
	}
	return req, n
}

// appendResourceGroup appends field 1 of an export request (ResourceSpans
// or ResourceLogs: the same shape): the resource, one scope with its
// already encoded items (field 2 of the scope message), the schema URL.
func appendResourceGroup(req, res, scopeMsg, items []byte) []byte {
	// The sizes first, so that the items are copied once.
	scSize := protowire.SizeTag(1) + protowire.SizeBytes(len(scopeMsg)) + len(items)
	rSize := protowire.SizeTag(1) + protowire.SizeBytes(len(res)) + protowire.SizeTag(2) + protowire.SizeBytes(scSize) +
		protowire.SizeTag(3) + protowire.SizeBytes(len(resourceSchemaURL))
	req = protowire.AppendTag(req, 1, protowire.BytesType) // resource_spans / resource_logs
	req = protowire.AppendVarint(req, uint64(rSize))
	req = protowire.AppendTag(req, 1, protowire.BytesType) // resource
	req = protowire.AppendBytes(req, res)
	req = protowire.AppendTag(req, 2, protowire.BytesType) // scope_spans / scope_logs
	req = protowire.AppendVarint(req, uint64(scSize))
	req = protowire.AppendTag(req, 1, protowire.BytesType) // scope
	req = protowire.AppendBytes(req, scopeMsg)
	req = append(req, items...)                            // spans / log_records
	req = protowire.AppendTag(req, 3, protowire.BytesType) // schema_url
	return protowire.AppendString(req, resourceSchemaURL)
}

// appendSpan appends the fields of one OTLP Span; false if its ids are bad.
func appendSpan(b []byte, sp *Span) ([]byte, bool) {
	var tid [16]byte
	var sid, pid [8]byte
	if decodeID(tid[:], sp.TraceID) != nil || decodeID(sid[:], sp.SpanID) != nil {
		return b, false
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType) // trace_id
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, 2, protowire.BytesType) // span_id
	b = protowire.AppendBytes(b, sid[:])
	if sp.ParentID != "" && decodeID(pid[:], sp.ParentID) == nil && pid != [8]byte{} {
		b = protowire.AppendTag(b, 4, protowire.BytesType) // parent_span_id
		b = protowire.AppendBytes(b, pid[:])
	}
	if sp.Name != "" {
		b = protowire.AppendTag(b, 5, protowire.BytesType) // name
		b = protowire.AppendString(b, validUTF8(sp.Name))
	}
	kind := spanKindInternal
	switch sp.Kind {
	case "server":
		kind = spanKindServer
	case "client":
		kind = spanKindClient
	}
	b = protowire.AppendTag(b, 6, protowire.VarintType) // kind
	b = protowire.AppendVarint(b, uint64(kind))
	if t := sp.Start.UnixNano(); t > 0 {
		b = protowire.AppendTag(b, 7, protowire.Fixed64Type) // start_time_unix_nano
		b = protowire.AppendFixed64(b, uint64(t))
	}
	if t := sp.End.UnixNano(); t > 0 {
		b = protowire.AppendTag(b, 8, protowire.Fixed64Type) // end_time_unix_nano
		b = protowire.AppendFixed64(b, uint64(t))
	}
	b = appendAttrs(b, 9, sp.Attrs) // attributes
	for i := range sp.Events {
		ev := &sp.Events[i]
		var e []byte
		if t := ev.Time.UnixNano(); t > 0 {
			e = protowire.AppendTag(e, 1, protowire.Fixed64Type) // time_unix_nano
			e = protowire.AppendFixed64(e, uint64(t))
		}
		if ev.Name != "" {
			e = protowire.AppendTag(e, 2, protowire.BytesType) // name
			e = protowire.AppendString(e, validUTF8(ev.Name))
		}
		e = appendAttrs(e, 3, ev.Attrs)
		b = protowire.AppendTag(b, 11, protowire.BytesType) // events
		b = protowire.AppendBytes(b, e)
	}
	// status: always present (the SDK sends Unset as an empty Status).
	var st []byte
	if sp.Error {
		if sp.Message != "" {
			st = protowire.AppendTag(st, 2, protowire.BytesType) // message
			st = protowire.AppendString(st, validUTF8(sp.Message))
		}
		st = protowire.AppendTag(st, 3, protowire.VarintType) // code
		st = protowire.AppendVarint(st, statusCodeError)
	}
	b = protowire.AppendTag(b, 15, protowire.BytesType)
	b = protowire.AppendBytes(b, st)
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type) // flags
	return protowire.AppendFixed32(b, spanFlagsSampled|spanFlagsHasIsRem), true
}

// appendAttrs appends each attribute as field num (a KeyValue).
func appendAttrs(b []byte, num protowire.Number, attrs []Attr) []byte {
	for _, a := range attrs {
		switch {
		case a.S != nil:
			b = appendKV(b, num, a.K, *a.S, 0, false)
		case a.I != nil:
			b = appendKV(b, num, a.K, "", *a.I, true)
		case a.B != nil:
			v := protowire.AppendTag(nil, 2, protowire.VarintType) // bool_value
			v = protowire.AppendVarint(v, protowire.EncodeBool(*a.B))
			b = appendKVValue(b, num, a.K, v)
		case a.SS != nil:
			var arr []byte
			for _, s := range a.SS {
				arr = protowire.AppendTag(arr, 1, protowire.BytesType) // values: AnyValue
				arr = protowire.AppendVarint(arr, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(validUTF8(s)))))
				arr = protowire.AppendTag(arr, 1, protowire.BytesType) // string_value
				arr = protowire.AppendString(arr, validUTF8(s))
			}
			v := protowire.AppendTag(nil, 5, protowire.BytesType) // array_value
			v = protowire.AppendBytes(v, arr)
			b = appendKVValue(b, num, a.K, v)
		}
	}
	return b
}

// appendKVValue appends field num holding KeyValue{key, value: v} (v is
// an encoded AnyValue's fields).
func appendKVValue(b []byte, num protowire.Number, k string, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(k))+protowire.SizeTag(2)+protowire.SizeBytes(len(v))))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // key
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // value
	return protowire.AppendBytes(b, v)
}

// validUTF8 is s with invalid UTF-8 replaced (proto3 strings are UTF-8: a
// receiver refuses the request otherwise).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func decodeID(dst []byte, s string) error {
	if hex.DecodedLen(len(s)) != len(dst) {
		return fmt.Errorf("bad id %q", s)
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

