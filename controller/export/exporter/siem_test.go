package exporter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// No Splunk or Elasticsearch installs here (neither is a Go module or a
// Debian package), so these tests use STAND-INS: httptest servers that
// check requests against the vendors' documented formats (Splunk HEC
// /services/collector/event; the Elasticsearch/OpenSearch _bulk API) and
// answer as the vendors document, including outages.

// hecStandIn is a stand-in Splunk HEC endpoint.
type hecStandIn struct {
	t      *testing.T
	mu     sync.Mutex
	events []map[string]any
	down   atomic.Bool
}

func (h *hecStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.down.Load() {
		http.Error(w, `{"text":"Server is busy","code":9}`, http.StatusServiceUnavailable)
		return
	}
	if r.Method != "POST" || r.URL.Path != "/services/collector/event" {
		http.Error(w, `{"text":"Not found","code":404}`, 404)
		return
	}
	if r.Header.Get("Authorization") != "Splunk 00000000-test-token" {
		http.Error(w, `{"text":"Invalid token","code":4}`, http.StatusForbidden)
		return
	}
	dec := json.NewDecoder(r.Body)
	var got []map[string]any
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			http.Error(w, `{"text":"Invalid data format","code":6}`, 400)
			return
		}
		if _, ok := ev["event"]; !ok {
			http.Error(w, `{"text":"Event field is required","code":12}`, 400)
			return
		}
		if _, ok := ev["time"].(float64); !ok {
			http.Error(w, `{"text":"Invalid data format","code":6}`, 400)
			return
		}
		got = append(got, ev)
	}
	h.mu.Lock()
	h.events = append(h.events, got...)
	h.mu.Unlock()
	io.WriteString(w, `{"text":"Success","code":0}`)
}

func (h *hecStandIn) n() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.events) }

// bulkStandIn is a stand-in Elasticsearch/OpenSearch _bulk endpoint that
// keeps documents by _id (create of an existing id: 409 in the item).
type bulkStandIn struct {
	mu   sync.Mutex
	docs map[string]map[string]any
	down atomic.Bool
	// lose makes the next answer fail after the documents were stored
	// (the client must retry without creating duplicates).
	lose atomic.Bool
}

func (b *bulkStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.down.Load() {
		http.Error(w, `{"error":"unavailable","status":503}`, http.StatusServiceUnavailable)
		return
	}
	if r.Method != "POST" || r.URL.Path != "/_bulk" || r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, `{"error":"bad request","status":400}`, 400)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if len(body) == 0 || body[len(body)-1] != '\n' {
		http.Error(w, `{"error":"The bulk request must be terminated by a newline [\n]","status":400}`, 400)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var items []string
	errs := false
	b.mu.Lock()
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if json.Unmarshal(sc.Bytes(), &action) != nil || !sc.Scan() {
			b.mu.Unlock()
			http.Error(w, `{"error":"malformed action/metadata line","status":400}`, 400)
			return
		}
		a, ok := action["create"]
		var doc map[string]any
		if !ok || json.Unmarshal(sc.Bytes(), &doc) != nil {
			b.mu.Unlock()
			http.Error(w, `{"error":"malformed","status":400}`, 400)
			return
		}
		if _, dup := b.docs[a.ID]; dup {
			errs = true
			items = append(items, `{"create":{"_index":"`+a.Index+`","_id":"`+a.ID+`","status":409,"error":{"type":"version_conflict_engine_exception"}}}`)
			continue
		}
		b.docs[a.ID] = doc
		items = append(items, `{"create":{"_index":"`+a.Index+`","_id":"`+a.ID+`","status":201}}`)
	}
	b.mu.Unlock()
	if b.lose.CompareAndSwap(true, false) {
		http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"took":1,"errors":`+map[bool]string{true: "true", false: "false"}[errs]+`,"items":[`+strings.Join(items, ",")+`]}`)
}

func (b *bulkStandIn) n() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.docs) }

func alertEv(i int) *protocol.Event {
	return ev(protocol.KindAlert, "s1", func(e *protocol.Event) { e.Message = itoa(int64(i)); e.Source = protocol.SourceDaemon })
}

// TestSplunkHEC: batches reach the HEC stand-in in its format; a 503
// outage spools, and every event arrives once it answers again.
func TestSplunkHEC(t *testing.T) {
	h := &hecStandIn{t: t}
	srv := httptest.NewServer(h)
	defer srv.Close()
	sp := &export.Spec{Name: "splunk", Type: export.TypeSplunk, Endpoint: srv.URL, Headers: map[string]string{"Authorization": "Splunk 00000000-test-token"}}
	if err := sp.Normalize(); err != nil {
		t.Fatal(err)
	}
	s, err := newSplunkSink(sp)
	if err != nil {
		t.Fatal(err)
	}
	spool, _ := OpenSpool(t.TempDir(), 0)
	r := newRunner(sp, s, spool, testLog(t), 20*time.Millisecond)
	defer r.close(context.Background())
	for i := range 300 {
		r.offer(alertEv(i))
	}
	waitFor(t, func() bool { return h.n() == 300 })
	h.down.Store(true)
	for i := 300; i < 800; i++ {
		r.offer(alertEv(i))
	}
	waitFor(t, func() bool { return spool.Len() > 0 })
	h.down.Store(false)
	waitFor(t, func() bool { return h.n() == 800 && spool.Len() == 0 })
	seen := map[string]bool{}
	for _, e := range h.events {
		ev := e["event"].(map[string]any)
		seen[ev["message"].(string)] = true
		if e["sourcetype"] != "darkshell:event" || e["host"] != "s1" || e["source"] != "darkshell" {
			t.Fatalf("HEC event metadata: %v", e)
		}
	}
	if len(seen) != 800 {
		t.Fatalf("%d distinct events of 800", len(seen))
	}
}

// TestElasticBulk: documents reach the _bulk stand-in; a lost answer
// (stored, then 504) is retried without duplicates; an outage spools.
func TestElasticBulk(t *testing.T) {
	b := &bulkStandIn{docs: map[string]map[string]any{}}
	srv := httptest.NewServer(b)
	defer srv.Close()
	sp := &export.Spec{Name: "es", Type: export.TypeElastic, Endpoint: srv.URL, OCSF: true}
	if err := sp.Normalize(); err != nil {
		t.Fatal(err)
	}
	s, err := newElasticSink(sp)
	if err != nil {
		t.Fatal(err)
	}
	spool, _ := OpenSpool(t.TempDir(), 0)
	r := newRunner(sp, s, spool, testLog(t), 20*time.Millisecond)
	defer r.close(context.Background())
	b.lose.Store(true)
	for i := range 200 {
		r.offer(alertEv(i))
	}
	waitFor(t, func() bool { return b.n() == 200 && spool.Len() == 0 && r.stats().Failures > 0 })
	b.down.Store(true)
	for i := 200; i < 600; i++ {
		r.offer(alertEv(i))
	}
	waitFor(t, func() bool { return spool.Len() > 0 })
	b.down.Store(false)
	waitFor(t, func() bool { return b.n() == 600 && spool.Len() == 0 })
	for _, d := range b.docs {
		if d["class_uid"] != float64(2004) || d["device"].(map[string]any)["hostname"] != "s1" {
			t.Fatalf("OCSF document: %v", d)
		}
	}
	if st := r.stats(); st.Dropped != 0 || st.SpoolDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOCSF(t *testing.T) {
	code := 2
	tests := []struct {
		name       string
		e          *protocol.Event
		class, typ int
		status     int
		check      string // a JSON fragment the mapping must contain
	}{
		{"exec", execEv("s", 5, 1, "5-1", "1-0", "ls", "-l"), 1007, 100701, 1, `"cmd_line":"ls -l"`},
		{"exit failed", ev(protocol.KindExit, "s", func(e *protocol.Event) { e.PID, e.ExitCode = 5, &code }), 1007, 100702, 2, `"exit_code":2`},
		{"file create", ev(protocol.KindFileWrite, "s", func(e *protocol.Event) { e.Path, e.Intent, e.Result = "/sandbox/a", "write,create", "ok" }), 1001, 100101, 1, `"path":"/sandbox/a"`},
		{"file denied", ev(protocol.KindFileWrite, "s", func(e *protocol.Event) { e.Path, e.Intent, e.Result, e.Errno = "/etc/x", "write", "denied", "EACCES" }), 1001, 100103, 2, `"status_detail":"EACCES"`},
		{"egress deny", ev(protocol.KindPolicy, "s", func(e *protocol.Event) { e.Host, e.Port, e.Result, e.Rule = "evil.example", 443, "deny", "default" }), 4001, 400105, 2, `"disposition":"Blocked"`},
		{"mcp", ev(protocol.KindMCPCall, "s", func(e *protocol.Event) { e.Server, e.Tool, e.Result = "fs", "read", "ok" }), 6003, 600399, 1, `"operation":"tools/call read"`},
		{"alert", alertEv(1), 2004, 200401, 1, `"title":"1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := OCSF(tt.e)
			b, _ := json.Marshal(o)
			if o["class_uid"] != tt.class || o["type_uid"] != tt.typ || o["status_id"] != tt.status || o["category_uid"] != tt.class/1000 {
				t.Fatalf("class %v type %v status %v: %s", o["class_uid"], o["type_uid"], o["status_id"], b)
			}
			if !strings.Contains(string(b), tt.check) || !strings.Contains(string(b), `"version":"1.3.0"`) {
				t.Fatalf("%s lacks %s", b, tt.check)
			}
		})
	}
}

// TestElasticBodyFormat: the _bulk body is what fmt.Fprintf made of each
// action line (index Go-quoted, id the document's hash), then the document.
func TestElasticBodyFormat(t *testing.T) {
	for _, index := range []string{"darkshell-events", "odd\"index\\é\x01"} {
		s, err := newElasticSink(&export.Spec{Name: "e", Endpoint: "http://127.0.0.1:1", Index: index})
		if err != nil {
			t.Fatal(err)
		}
		recs := []record{{b: []byte(`{"a":1}`)}, {b: []byte(`{"b":"<x>"}`)}}
		var want bytes.Buffer
		for _, r := range recs {
			sum := sha256.Sum256(r.b)
			fmt.Fprintf(&want, `{"create":{"_index":%q,"_id":%q}}`+"\n", index, hex.EncodeToString(sum[:16]))
			want.Write(r.b)
			want.WriteByte('\n')
		}
		if got := s.body(recs); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("index %q:\n got %s\nwant %s", index, got, want.Bytes())
		}
	}
}
