package exporter

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// logSink sends every event as an OTLP log record: the body is the event
// (DarkShell's schema or OCSF) as a JSON string, attributes name its kind,
// sandbox, pid and result; alerts, denials and failures are WARN.
//
// It writes the OTLP request (ExportLogsServiceRequest, protobuf) itself
// with protowire and posts it as it is, over gRPC
// (opentelemetry.proto.collector.logs.v1.LogsService/Export) or HTTP
// (POST /v1/logs, application/x-protobuf): the SDK's per-record objects
// and protobuf-go's reflective sizing and marshalling of them were the
// largest cost of the exporter helper in bench-export. TestLogRequest
// holds the bytes to the OTLP types (go.opentelemetry.io/proto/otlp);
// TestExportOTLPLogs sends them to a real OpenTelemetry Collector receiver.
type logSink struct {
	sp  *export.Spec
	out *otlpPoster
	res *resources
}

// OTLP log severities (SeverityNumber).
const (
	sevInfo = 9
	sevWarn = 13
)

func newLogSink(sp *export.Spec, info SandboxInfo) (*logSink, error) {
	out, err := newOTLPPoster(sp, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", "logs")
	if err != nil {
		return nil, err
	}
	return &logSink{sp: sp, out: out, res: newResources(info)}, nil
}

// otlpPoster posts encoded OTLP requests of one signal, as they are, over
// gRPC (a raw codec) or HTTP (application/x-protobuf).
type otlpPoster struct {
	post func(ctx context.Context, req []byte) error
	stop func() error
}

// newOTLPPoster makes the poster of sp's endpoint: method is the gRPC
// method, signal the HTTP path's last element (v1/SIGNAL, unless the
// endpoint has a path).
func newOTLPPoster(sp *export.Spec, method, signal string) (*otlpPoster, error) {
	u, err := url.Parse(sp.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint %q: %w", sp.Endpoint, err)
	}
	if sp.Protocol == export.ProtocolHTTP {
		if u.Path == "" || u.Path == "/" {
			u = u.JoinPath("v1", signal)
		}
		client := &http.Client{Timeout: sendTimeout}
		target := u.String()
		return &otlpPoster{
			post: func(ctx context.Context, req []byte) error { return postHTTP(ctx, client, target, sp.Headers, req) },
			stop: func() error { client.CloseIdleConnections(); return nil },
		}, nil
	}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if u.Scheme == "http" {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds), grpc.WithUserAgent("darkshell/"+protocol.BuildVersion))
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint %q: %w", sp.Endpoint, err)
	}
	var md metadata.MD
	if len(sp.Headers) > 0 {
		md = metadata.New(sp.Headers)
	}
	return &otlpPoster{
		post: func(ctx context.Context, req []byte) error {
			if md != nil {
				ctx = metadata.NewOutgoingContext(ctx, md)
			}
			var resp []byte
			return conn.Invoke(ctx, method, &req, &resp, grpc.ForceCodecV2(rawCodec{}))
		},
		stop: conn.Close,
	}, nil
}

// rawCodec hands gRPC a message already encoded (*[]byte) and keeps the
// answer's bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// postHTTP posts an OTLP/HTTP protobuf request.
func postHTTP(ctx context.Context, client *http.Client, target string, headers map[string]string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "darkshell/"+protocol.BuildVersion)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s: %s", target, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// records: the event itself (its bytes are DarkShell's schema, shared
// with the other exporters).
func (s *logSink) records(dst []record, it *item) []record {
	return append(dst, record{b: it.doc(false), v: it})
}

// resources caches the encoded Resource of each sandbox (its name,
// driver and blueprint: sandboxResource).
type resources struct {
	info SandboxInfo
	mu   sync.Mutex
	m    map[string][]byte
}

func newResources(info SandboxInfo) *resources {
	return &resources{info: info, m: map[string][]byte{}}
}

func (r *resources) get(sandbox string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.m[sandbox]; ok {
		return b
	}
	var b []byte
	for _, kv := range sandboxResource(sandbox, r.info).Attributes() {
		switch kv.Value.Type() { // attributes (ours are strings)
		case attribute.INT64:
			b = appendKV(b, 1, string(kv.Key), "", kv.Value.AsInt64(), true)
		case attribute.STRING:
			b = appendKV(b, 1, string(kv.Key), kv.Value.AsString(), 0, false)
		default:
			b = appendKV(b, 1, string(kv.Key), kv.Value.String(), 0, false)
		}
	}
	if len(r.m) > 4096 {
		clear(r.m)
	}
	r.m[sandbox] = b
	return b
}

// appendKV appends field num holding a KeyValue: key, and a string value
// (or an int one when isInt).
func appendKV(b []byte, num protowire.Number, k, sv string, iv int64, isInt bool) []byte {
	var vsize int
	if isInt {
		vsize = protowire.SizeTag(3) + protowire.SizeVarint(uint64(iv))
	} else {
		if !utf8.ValidString(sv) { // proto3 strings are UTF-8: a receiver refuses others
			sv = strings.ToValidUTF8(sv, "\uFFFD")
		}
		vsize = protowire.SizeTag(1) + protowire.SizeBytes(len(sv))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(k))+protowire.SizeTag(2)+protowire.SizeBytes(vsize)))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // key
	b = protowire.AppendString(b, k)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // value: AnyValue
	b = protowire.AppendVarint(b, uint64(vsize))
	if isInt {
		b = protowire.AppendTag(b, 3, protowire.VarintType) // int_value
		return protowire.AppendVarint(b, uint64(iv))
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType) // string_value
	return protowire.AppendString(b, sv)
}

// appendLogRecord appends the LogRecord of one event (its fields).
func appendLogRecord(b []byte, e *protocol.Event, body []byte, observed time.Time) []byte {
	if !e.Time.IsZero() {
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type) // time_unix_nano
		b = protowire.AppendFixed64(b, uint64(e.Time.UnixNano()))
	}
	sev, text := sevInfo, "INFO"
	if e.Kind == protocol.KindAlert || e.Result == "deny" || e.Result == protocol.ResultDenied || e.Result == protocol.ResultError {
		sev, text = sevWarn, "WARN"
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType) // severity_number
	b = protowire.AppendVarint(b, uint64(sev))
	b = protowire.AppendTag(b, 3, protowire.BytesType) // severity_text
	b = protowire.AppendString(b, text)
	// body: AnyValue{string_value}
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(body))))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, body)
	attr := func(k, sv string, iv int64, isInt bool) {
		b = appendKV(b, 6, k, sv, iv, isInt) // attributes
	}
	attr("darkshell.event.kind", e.Kind, 0, false)
	attr("darkshell.sandbox.name", e.Sandbox, 0, false)
	if e.PID != 0 {
		attr("process.pid", "", int64(e.PID), true)
	}
	if e.Result != "" {
		attr("darkshell.result", e.Result, 0, false)
	}
	b = protowire.AppendTag(b, 11, protowire.Fixed64Type) // observed_time_unix_nano
	b = protowire.AppendFixed64(b, uint64(observed.UnixNano()))
	b = protowire.AppendTag(b, 12, protowire.BytesType) // event_name
	return protowire.AppendString(b, "darkshell."+e.Kind)
}

// request encodes an ExportLogsServiceRequest of the items: one
// ResourceLogs per sandbox (in the order they first come), each with one
// ScopeLogs of its records.
func (s *logSink) request(its []*item, observed time.Time) []byte {
	var order []string
	recs := map[string][]byte{}
	var lr []byte
	for _, it := range its {
		sb := it.ev.Sandbox
		if _, ok := recs[sb]; !ok {
			order = append(order, sb)
		}
		lr = appendLogRecord(lr[:0], &it.ev, it.doc(s.sp.OCSF), observed)
		r := protowire.AppendTag(recs[sb], 2, protowire.BytesType) // log_records
		recs[sb] = protowire.AppendBytes(r, lr)
	}
	var scopeMsg []byte
	scopeMsg = protowire.AppendTag(scopeMsg, 1, protowire.BytesType) // name
	scopeMsg = protowire.AppendString(scopeMsg, scope.Name)
	var req []byte
	for _, sb := range order {
		res, lrs := s.res.get(sb), recs[sb]
		// The sizes first, so that the records are copied once.
		slSize := protowire.SizeTag(1) + protowire.SizeBytes(len(scopeMsg)) + len(lrs)
		rlSize := protowire.SizeTag(1) + protowire.SizeBytes(len(res)) + protowire.SizeTag(2) + protowire.SizeBytes(slSize) +
			protowire.SizeTag(3) + protowire.SizeBytes(len(resourceSchemaURL))
		req = protowire.AppendTag(req, 1, protowire.BytesType) // resource_logs
		req = protowire.AppendVarint(req, uint64(rlSize))
		req = protowire.AppendTag(req, 1, protowire.BytesType) // resource
		req = protowire.AppendBytes(req, res)
		req = protowire.AppendTag(req, 2, protowire.BytesType) // scope_logs
		req = protowire.AppendVarint(req, uint64(slSize))
		req = protowire.AppendTag(req, 1, protowire.BytesType) // scope
		req = protowire.AppendBytes(req, scopeMsg)
		req = append(req, lrs...)                              // log_records
		req = protowire.AppendTag(req, 3, protowire.BytesType) // schema_url
		req = protowire.AppendString(req, resourceSchemaURL)
	}
	return req
}

func (s *logSink) send(ctx context.Context, recs []record) error {
	its := make([]*item, 0, len(recs))
	for _, r := range recs {
		it, ok := r.v.(*item)
		if !ok { // read back from the spool
			it = &item{raw: r.b}
			if events.DecodeEvent(r.b, &it.ev) != nil {
				continue
			}
		}
		its = append(its, it)
	}
	if len(its) == 0 {
		return nil
	}
	if err := s.out.post(ctx, s.request(its, time.Now())); err != nil {
		return fmt.Errorf("unable to export %d log records: %w", len(its), err)
	}
	return nil
}

func (s *logSink) close(context.Context) error { return s.out.close() }

func (o *otlpPoster) close() error {
	if o == nil || o.stop == nil {
		return nil
	}
	return o.stop()
}
