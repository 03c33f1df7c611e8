package exporter

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bohica-labs/darkshell/controller/export"
)

// otlpAttrs is what the OTLP exporters made of our attributes.
func otlpAttrs(as []Attr) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for _, a := range as {
		var v *commonpb.AnyValue
		switch {
		case a.S != nil:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: validUTF8(*a.S)}}
		case a.I != nil:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: *a.I}}
		case a.B != nil:
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: *a.B}}
		case a.SS != nil:
			arr := &commonpb.ArrayValue{}
			for _, s := range a.SS {
				arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: validUTF8(s)}})
			}
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}
		default:
			continue
		}
		out = append(out, &commonpb.KeyValue{Key: a.K, Value: v})
	}
	return out
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// wantTraceRequest is the request traceSink.request must encode, built
// with the OTLP types as the OTel SDK's exporter builds it (status always
// present, flags sampled with the parent known not remote).
func wantTraceRequest(s *traceSink, spans []*Span) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	by := map[string]*tracepb.ScopeSpans{}
	for _, sp := range spans {
		if len(sp.TraceID) != 32 || len(sp.SpanID) != 16 {
			continue
		}
		ss := by[sp.Sandbox]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: scope.Name, Version: scope.Version}}
			by[sp.Sandbox] = ss
			res := &resourcepb.Resource{}
			for _, kv := range sandboxResource(sp.Sandbox, s.res.info).Attributes() {
				res.Attributes = append(res.Attributes, strAttr(string(kv.Key), kv.Value.AsString()))
			}
			req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}, SchemaUrl: resourceSchemaURL})
		}
		kind := tracepb.Span_SPAN_KIND_INTERNAL
		switch sp.Kind {
		case "server":
			kind = tracepb.Span_SPAN_KIND_SERVER
		case "client":
			kind = tracepb.Span_SPAN_KIND_CLIENT
		}
		out := &tracepb.Span{TraceId: mustHex(sp.TraceID), SpanId: mustHex(sp.SpanID), Name: validUTF8(sp.Name), Kind: kind,
			StartTimeUnixNano: uint64(sp.Start.UnixNano()), EndTimeUnixNano: uint64(sp.End.UnixNano()),
			Attributes: otlpAttrs(sp.Attrs), Status: &tracepb.Status{}, Flags: 0x101}
		if sp.ParentID != "" {
			out.ParentSpanId = mustHex(sp.ParentID)
		}
		for _, ev := range sp.Events {
			out.Events = append(out.Events, &tracepb.Span_Event{Name: ev.Name, TimeUnixNano: uint64(ev.Time.UnixNano()), Attributes: otlpAttrs(ev.Attrs)})
		}
		if sp.Error {
			out.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: sp.Message}
		}
		ss.Spans = append(ss.Spans, out)
	}
	return req
}

// TestTraceRequest: the OTLP traces request written with protowire
// decodes, with the OTLP types, to what the SDK's exporter sent: spans
// with parents, kinds, attributes of every type, events, error status,
// one resource per sandbox; spans with bad ids are left out; over HTTP it
// reaches a receiver at /v1/traces with the headers.
func TestTraceRequest(t *testing.T) {
	t0 := time.Unix(1700000000, 7)
	b := newSpanBuilder()
	var spans []*Span
	for _, e := range oddEvents() {
		for _, sp := range b.add(e) {
			spans = append(spans, &sp)
		}
	}
	ss := []string{"sh", "-c", "x\xff"}
	yes := true
	spans = append(spans,
		&Span{TraceID: newID(16), SpanID: newID(8), ParentID: newID(8), Name: "true", Kind: "internal", Start: t0, End: t0.Add(time.Millisecond), Sandbox: "a",
			Attrs:  []Attr{aS("process.executable.path", "/bin/true"), aI("process.pid", 7), aSS("process.command_args", ss), aB("darkshell.incomplete", true), {K: "empty"}},
			Events: []SpanEvt{{Name: "file_write", Time: t0, Attrs: []Attr{aS("file.path", "/x")}}, {Name: "net_connect", Time: t0.Add(1)}}},
		&Span{TraceID: newID(16), SpanID: newID(8), Name: "exec sh", Kind: "server", Start: t0, End: t0, Sandbox: "b", Error: true, Message: "exit 3",
			Attrs: []Attr{{K: "b", B: &yes}}},
		&Span{TraceID: newID(16), SpanID: newID(8), Name: "tools/call x", Kind: "client", Start: t0, End: t0, Sandbox: "a", Error: true},
		&Span{TraceID: "nothex", SpanID: newID(8), Name: "bad", Sandbox: "a"},
	)
	info := func(sb string) (string, string) { return "local", "" }
	s := &traceSink{res: newResources(info)}
	req, n := s.request(spans)
	if n != len(spans)-1 {
		t.Fatalf("%d spans encoded of %d (one bad)", n, len(spans))
	}
	var got coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(req, &got); err != nil {
		t.Fatalf("the request does not decode: %v", err)
	}
	if want := wantTraceRequest(s, spans); !proto.Equal(&got, want) {
		t.Fatalf("request\n got %v\nwant %v", &got, want)
	}

	var body []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ = io.ReadAll(r.Body)
		hdr = r.Header
	}))
	defer srv.Close()
	hs, err := newTraceSink(&export.Spec{Endpoint: srv.URL, Protocol: export.ProtocolHTTP, Headers: map[string]string{"X-Key": "k"}}, info)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.close(context.Background())
	recs := make([]record, len(spans))
	for i, sp := range spans {
		recs[i] = record{v: sp}
	}
	recs = append(recs, record{b: (&record{v: spans[0]}).bytes()}) // one read back from the spool
	if err := hs.send(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got.Reset()
	if err := proto.Unmarshal(body, &got); err != nil || hdr.Get("X-Key") != "k" || hdr.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("receiver: %v, headers %v", err, hdr)
	}
	count := 0
	for _, rs := range got.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			count += len(ss.Spans)
		}
	}
	if count != n+1 {
		t.Fatalf("receiver got %d spans, want %d", count, n+1)
	}
}
