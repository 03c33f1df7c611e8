package exporter

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// strAttr is a string attribute; invalid UTF-8 becomes U+FFFD (proto3
// strings must be UTF-8: receivers refuse the request otherwise).
func strAttr(k, v string) *commonpb.KeyValue {
	v = strings.ToValidUTF8(v, "\uFFFD")
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// wantLogRequest is the request logSink.request must encode, built with
// the OTLP types.
func wantLogRequest(s *logSink, its []*item, observed time.Time) *collogspb.ExportLogsServiceRequest {
	req := &collogspb.ExportLogsServiceRequest{}
	by := map[string]*logspb.ScopeLogs{}
	for _, it := range its {
		e := &it.ev
		sl := by[e.Sandbox]
		if sl == nil {
			sl = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: scope.Name}}
			by[e.Sandbox] = sl
			res := &resourcepb.Resource{}
			for _, kv := range sandboxResource(e.Sandbox, s.res.info).Attributes() {
				res.Attributes = append(res.Attributes, strAttr(string(kv.Key), kv.Value.AsString()))
			}
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{Resource: res, ScopeLogs: []*logspb.ScopeLogs{sl}, SchemaUrl: resourceSchemaURL})
		}
		sev, text := logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO"
		if e.Kind == protocol.KindAlert || e.Result == "deny" || e.Result == protocol.ResultDenied || e.Result == protocol.ResultError {
			sev, text = logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
		}
		lr := &logspb.LogRecord{TimeUnixNano: uint64(e.Time.UnixNano()), ObservedTimeUnixNano: uint64(observed.UnixNano()),
			SeverityNumber: sev, SeverityText: text, EventName: "darkshell." + e.Kind,
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(it.doc(s.sp.OCSF))}},
			Attributes: []*commonpb.KeyValue{strAttr("darkshell.event.kind", e.Kind), strAttr("darkshell.sandbox.name", e.Sandbox)}}
		if e.PID != 0 {
			lr.Attributes = append(lr.Attributes, &commonpb.KeyValue{Key: "process.pid", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(e.PID)}}})
		}
		if e.Result != "" {
			lr.Attributes = append(lr.Attributes, strAttr("darkshell.result", e.Result))
		}
		sl.LogRecords = append(sl.LogRecords, lr)
	}
	return req
}

// TestLogRequest: the OTLP logs request written with protowire decodes,
// with the OTLP types, to the request they would make: resources per
// sandbox (driver, blueprint), severities, attributes, bodies in
// DarkShell's schema or OCSF; and it is what reaches an OTLP/HTTP receiver.
func TestLogRequest(t *testing.T) {
	info := func(sb string) (string, string) {
		if sb == "a" {
			return "local", "bp"
		}
		return "", ""
	}
	code := 0
	var its []*item
	for _, e := range append(oddEvents(), execEv("a", 7, 1, "7-1", "1-0", "true"), exitEv("b", 7, "7-1", code), alertEv(3)) {
		its = append(its, &item{ev: *e})
	}
	its[0].ev.Sandbox = "b"
	observed := time.Unix(1700000000, 5)
	for _, ocsf := range []bool{false, true} {
		s := &logSink{sp: &export.Spec{OCSF: ocsf}, res: newResources(info)}
		var got collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(s.request(its, observed), &got); err != nil {
			t.Fatalf("ocsf %v: the request does not decode: %v", ocsf, err)
		}
		if want := wantLogRequest(s, its, observed); !proto.Equal(&got, want) {
			t.Fatalf("ocsf %v: request\n got %v\nwant %v", ocsf, &got, want)
		}
	}

	// Over HTTP: the receiver gets that request, with the headers.
	var body []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ = io.ReadAll(r.Body)
		hdr = r.Header
	}))
	defer srv.Close()
	s, err := newLogSink(&export.Spec{Endpoint: srv.URL, Protocol: export.ProtocolHTTP, Headers: map[string]string{"Authorization": "Bearer x"}}, info)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close(context.Background())
	var recs []record
	for _, it := range its {
		recs = s.records(recs, it)
	}
	if err := s.send(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	var got collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &got); err != nil || len(got.ResourceLogs) != 5 || hdr.Get("Content-Type") != "application/x-protobuf" || hdr.Get("Authorization") != "Bearer x" {
		t.Fatalf("receiver got %d resources (%v), headers %v", len(got.ResourceLogs), err, hdr)
	}
	// A refusal is an error (the batch is kept for a retry).
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) })
	if err := s.send(context.Background(), recs); err == nil {
		t.Fatal("a 503 counted as sent")
	}
}

// BenchmarkLogRequest: one batch of 512 records encoded.
func BenchmarkLogRequest(b *testing.B) {
	its := benchItems(256)
	for _, it := range its {
		it.prepare(needs{raw: true})
	}
	s := &logSink{sp: &export.Spec{}, res: newResources(nil)}
	b.ReportAllocs()
	for b.Loop() {
		s.request(its, time.Now())
	}
}
