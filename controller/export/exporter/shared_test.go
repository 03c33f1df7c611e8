package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// oddEvents are events of every kind OCSF maps, with strings encoding/json
// escapes (HTML, control characters, U+2028, invalid UTF-8).
func oddEvents() []*protocol.Event {
	code, uid := 3, 1000
	odd := "a<b>&\"q\"\\ \x01\t\n \u2028 é \xff"
	return []*protocol.Event{
		execEv("s", 5, 1, "5-1", "1-0", "sh", "-c", odd),
		ev(protocol.KindExit, "s", func(e *protocol.Event) { e.PID, e.ExitCode, e.UID, e.Signal = 5, &code, &uid, 9 }),
		ev(protocol.KindFileWrite, "s", func(e *protocol.Event) { e.Path, e.Intent, e.Result = "/sandbox/"+odd, "write,create", "ok" }),
		ev(protocol.KindFileRename, "s", func(e *protocol.Event) { e.Path, e.NewPath, e.Result, e.Errno = "/a", "/b", "denied", "EACCES" }),
		ev(protocol.KindPolicy, "s", func(e *protocol.Event) {
			e.Host, e.Port, e.Result, e.Rule, e.Path, e.Binary = "evil.example", 443, "deny", "default", "/x?y=<z>", "/usr/bin/curl"
		}),
		ev(protocol.KindMCPCall, "s", func(e *protocol.Event) { e.Server, e.Tool, e.Result, e.DurationNs = "fs", odd, "error", 5e6 }),
		ev(protocol.KindExecCall, "s", func(e *protocol.Event) { e.State, e.Argv, e.Message, e.Result = "ended", []string{"x"}, odd, "error" }),
		ev(protocol.KindSync, "s", func(e *protocol.Event) { e.CallID, e.Result = "up", "error" }),
		ev(protocol.KindInference, "s", func(e *protocol.Event) {
			e.Host, e.Path, e.DurationNs = "inference.local", "POST /v1/chat", 7e6
			e.Inference = &protocol.Inference{API: "openai", Model: "m", Prompt: odd, InputTokens: 3}
		}),
		ev(protocol.KindAlert, "s", func(e *protocol.Event) { e.Message, e.Rule = odd, "burst" }),
		ev(protocol.KindSandboxState, odd, func(e *protocol.Event) { e.State = "traced" }),
		ev(protocol.KindNetConnect, "s", func(e *protocol.Event) { e.Host, e.Port, e.Comm = "h", 80, "wget" }),
	}
}

// TestAppendJSONMatchesMarshal: the OCSF encoder writes what json.Marshal
// writes for every mapping.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	for _, e := range oddEvents() {
		o := OCSF(e)
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSON(nil, o); !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s\nwant %s", e.Kind, got, want)
		}
	}
}

// FuzzAppendJSON holds appendJSON to json.Marshal on arbitrary strings
// and numbers in nested maps.
func FuzzAppendJSON(f *testing.F) {
	f.Add("plain", "a<b>&\u2028\xff", int64(-3))
	f.Add("", "\x00\x1f\"\\", int64(1<<62))
	f.Fuzz(func(t *testing.T, k, s string, n int64) {
		v := map[string]any{k: s, "n": n, "i": int(n), "m": map[string]any{s: k, "b": true, "nil": nil}, "ss": []string{s, k}}
		want, err := json.Marshal(v)
		if err != nil {
			t.Skip()
		}
		if got := appendJSON(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// TestSplunkEventFormat: a HEC event object is what the former
// fmt.Sprintf made, and isSplunkEvent tells it from a document.
func TestSplunkEventFormat(t *testing.T) {
	for _, e := range oddEvents() {
		doc := mustJSON(e)
		ts := float64(e.Time.UnixNano()) / 1e9
		want := fmt.Sprintf(`{"time":%.6f,"host":%q,"source":"darkshell","sourcetype":%q,"event":%s}`, ts, e.Sandbox, "darkshell:event", doc)
		got := splunkEvent(nil, ts, e.Sandbox, "darkshell:event", doc)
		if string(got) != want {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		if !isSplunkEvent(got) || isSplunkEvent(doc) || isSplunkEvent(appendJSON(nil, OCSF(e))) {
			t.Fatalf("isSplunkEvent cannot tell %s", doc)
		}
	}
}

// TestSplunkSpooledDocuments: documents an earlier version spooled (the
// bare event) are still sent as HEC events, next to new records.
func TestSplunkSpooledDocuments(t *testing.T) {
	for _, ocsf := range []bool{false, true} {
		sp := &export.Spec{Name: "splunk", Type: export.TypeSplunk, Endpoint: "http://127.0.0.1:1", OCSF: ocsf}
		if err := sp.Normalize(); err != nil {
			t.Fatal(err)
		}
		s, err := newSplunkSink(sp)
		if err != nil {
			t.Fatal(err)
		}
		e := alertEv(7)
		it := &item{ev: *e}
		it.prepare(needs{raw: true, ocsf: true})
		fresh := s.records(nil, it)
		old := record{b: it.doc(ocsf)} // as the spool gives it back
		body := s.body([]record{fresh[0], old})
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != 2 || lines[0] != lines[1] {
			t.Fatalf("ocsf %v: new and spooled records differ:\n%s", ocsf, body)
		}
		var hec struct {
			Time  float64         `json:"time"`
			Host  string          `json:"host"`
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &hec); err != nil || hec.Host != "s1" || !bytes.Equal(hec.Event, it.doc(ocsf)) || int64(hec.Time) != e.Time.Unix() {
			t.Fatalf("ocsf %v: HEC event %s: %v", ocsf, lines[0], err)
		}
	}
}

// TestServeSharesTheDaemonsBytes: the helper takes an event line's bytes
// as they are: a JSON lines exporter writes exactly the daemon's bytes
// (the host log's line), for lines the daemon frames by hand and for a
// json.Marshal'd export.Line alike; a line with more than the event still
// works (decoded whole, the event encoded again).
func TestServeSharesTheDaemonsBytes(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := export.OpenStore(h)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	if err := store.Add(&export.Spec{Name: "j", Type: export.TypeJSONL, File: out}); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), ServeOptions{Store: store, In: pr, FlushInterval: 10 * time.Millisecond})
	}()
	var want []byte
	for i, e := range oddEvents() {
		raw := mustJSON(e)
		// Decoded and encoded again, the same JSON may differ in bytes
		// (an invalid UTF-8 byte's \ufffd comes back as the rune itself).
		var back protocol.Event
		json.Unmarshal(raw, &back)
		switch i % 3 {
		case 0: // as the daemon frames it: its bytes exactly
			fmt.Fprintf(pw, "%s%s}\n", export.EventLinePrefix, raw)
			want = append(append(want, raw...), '\n')
		case 1: // json.Marshal of an export.Line is framed the same way
			l, _ := json.Marshal(export.Line{Event: e})
			pw.Write(append(l, '\n'))
			want = append(append(want, raw...), '\n')
		case 2: // not only an event: decoded as a whole
			fmt.Fprintf(pw, "%s%s,\"usage\":[]}\n", export.EventLinePrefix, raw)
			want = append(append(want, mustJSON(&back)...), '\n')
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("exported lines differ from the daemon's:\n got %s\nwant %s", got, want)
	}
}

// TestEventLine: only a well-formed event line takes the fast path; the
// bytes kept are a copy (the scanner reuses its buffer) that an append
// cannot write past.
func TestEventLine(t *testing.T) {
	e := alertEv(1)
	raw := mustJSON(e)
	line := []byte(export.EventLinePrefix + string(raw) + "}")
	it, ok := eventLine(line)
	if !ok || !bytes.Equal(it.raw, raw) || it.ev.Message != "1" || cap(it.raw) != len(it.raw) {
		t.Fatalf("event line: ok %v raw %s", ok, it.raw)
	}
	clear(line)
	if !bytes.Equal(it.raw, raw) {
		t.Fatal("the item shares the scanner's buffer")
	}
	for _, bad := range []string{`{"reload":true}`, `{"event":null}`, `{"event":{"kind":"x"},"reload":true}`, `{"event":`, `{"event":"x"}`} {
		if _, ok := eventLine([]byte(bad)); ok {
			t.Fatalf("%s took the fast path", bad)
		}
	}
}

// benchItems is an exec and an exit, as the exec-heavy workload makes.
func benchItems(n int) []*item {
	code := 0
	out := make([]*item, 0, 2*n)
	for i := range n {
		id := itoa(int64(i+2)) + "-1"
		ex := execEv("bench", i+2, 1, id, "1-0", "true", itoa(int64(i)))
		xt := exitEv("bench", i+2, id, code)
		for _, e := range []*protocol.Event{ex, xt} {
			out = append(out, &item{ev: *e, raw: clip(mustJSON(e))})
		}
	}
	return out
}

// BenchmarkPrepareOCSF is the OCSF form of an event, made once for all
// exporters: appendJSON vs json.Marshal of the same map.
func BenchmarkPrepareOCSF(b *testing.B) {
	e := execEv("bench", 2, 1, "2-1", "1-0", "true", "x")
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendJSON(make([]byte, 0, 512), OCSF(e))
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(OCSF(e))
		}
	})
}

// BenchmarkEventLine is the helper's decoding of one pipe line.
func BenchmarkEventLine(b *testing.B) {
	line := []byte(export.EventLinePrefix + string(benchItems(1)[0].raw) + "}")
	b.ReportAllocs()
	for b.Loop() {
		eventLine(line)
	}
}

// BenchmarkRecords is the builder's work per event for each document
// sink and the trace sink (span building included).
func BenchmarkRecords(b *testing.B) {
	jsonl, _ := newJSONLSink(&export.Spec{Name: "j", File: filepath.Join(b.TempDir(), "x")})
	splunk, _ := newSplunkSink(&export.Spec{Name: "s", Endpoint: "http://127.0.0.1:1"})
	elastic, _ := newElasticSink(&export.Spec{Name: "e", Endpoint: "http://127.0.0.1:1", OCSF: true})
	logs := &logSink{sp: &export.Spec{}}
	for _, c := range []struct {
		name string
		s    sink
	}{{"jsonl", jsonl}, {"splunk", splunk}, {"elastic-ocsf", elastic}, {"otlp-logs", logs}, {"otlp-traces", &traceSink{b: newSpanBuilder()}}} {
		b.Run(c.name, func(b *testing.B) {
			its := benchItems(1024)
			for _, it := range its {
				it.prepare(needs{raw: true, ocsf: true})
			}
			recs := make([]record, 0, 4096)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				recs = c.s.records(recs[:0], its[i%len(its)])
				i++
			}
		})
	}
}
