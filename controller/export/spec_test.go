package export

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/state"
)

func TestSpecNormalize(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
		check   func(*Spec) bool
	}{
		{"otlp default grpc", Spec{Type: TypeOTLP, Endpoint: "http://127.0.0.1:4317"}, "", func(s *Spec) bool { return s.Protocol == ProtocolGRPC && s.Name == "otlp" }},
		{"otlp http", Spec{Name: "j", Type: TypeOTLP, Endpoint: "https://x:4318", Protocol: "http"}, "", nil},
		{"otlp bad protocol", Spec{Type: TypeOTLP, Endpoint: "http://x:1", Protocol: "udp"}, "--protocol must be grpc or http", nil},
		{"otlp no scheme", Spec{Type: TypeOTLP, Endpoint: "127.0.0.1:4317"}, "--endpoint must be an http:// or https:// URL", nil},
		{"otlp bad header", Spec{Type: TypeOTLP, Endpoint: "http://x:1", Headers: map[string]string{"a b": "c"}}, "header name", nil},
		{"otlp bad signal", Spec{Type: TypeOTLP, Endpoint: "http://x:1", Signals: []string{"spans"}}, "unknown signal", nil},
		{"splunk", Spec{Type: TypeSplunk, Endpoint: "https://splunk:8088"}, "", nil},
		{"elastic default index", Spec{Type: TypeElastic, Endpoint: "http://127.0.0.1:9200"}, "", func(s *Spec) bool { return s.Index == "darkshell-events" }},
		{"elastic bad index", Spec{Type: TypeElastic, Endpoint: "http://127.0.0.1:9200", Index: "A b"}, "not a valid index name", nil},
		{"otlp logs opt-in", Spec{Type: TypeOTLP, Endpoint: "http://x:1"}, "", func(s *Spec) bool { return !s.HasSignal(SignalLogs) && s.HasSignal(SignalTraces) }},
		{"jsonl no file", Spec{Type: TypeJSONL}, "jsonl needs --file", nil},
		{"jsonl relative", Spec{Type: TypeJSONL, File: "x.jsonl"}, "must be an absolute path", nil},
		{"jsonl stdout", Spec{Type: TypeJSONL, File: "-"}, "", nil},
		{"prometheus", Spec{Type: TypePrometheus, Listen: "127.0.0.1:9464"}, "", nil},
		{"prometheus no port", Spec{Type: TypePrometheus, Listen: "127.0.0.1"}, "--listen must be host:port", nil},
		{"unknown type", Spec{Type: "kafka"}, "unknown exporter type", nil},
		{"bad name", Spec{Name: "-x", Type: TypeJSONL, File: "-"}, "invalid exporter name", nil},
		{"bad sandbox", Spec{Type: TypeJSONL, File: "-", Sandboxes: []string{"A"}}, "invalid sandbox name", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := tt.spec
			err := sp.Normalize()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil && !tt.check(&sp) {
				t.Fatalf("normalized to %+v", sp)
			}
		})
	}
}

func TestStore(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := OpenStore(h)
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("empty store: %v %v", l, err)
	}
	sp := &Spec{Type: TypeOTLP, Endpoint: "http://127.0.0.1:4317", Headers: map[string]string{"authorization": "Bearer s3cret"}}
	if err := s.Add(sp); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(&Spec{Type: TypeOTLP, Endpoint: "http://127.0.0.1:4317"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v", err)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "otlp.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode: %v %v", fi, err)
	}
	got, err := s.Get("otlp")
	if err != nil || got.Headers["authorization"] != "Bearer s3cret" || got.Created.IsZero() {
		t.Fatalf("get: %+v %v", got, err)
	}
	if r := got.Redacted(); r.Headers["authorization"] == "Bearer s3cret" || got.Headers["authorization"] != "Bearer s3cret" {
		t.Fatal("redaction must hide the value in the copy only")
	}
	if err := s.Remove("otlp"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("otlp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
}
