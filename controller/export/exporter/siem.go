package exporter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
)

// httpSink posts batches to an HTTP API; body builds the request body.
// Its records are the event's document (DarkShell's schema or OCSF, the
// bytes shared with the other exporters), or what rec makes of it.
type httpSink struct {
	sp     *export.Spec
	url    string
	ctype  string
	rec    func(it *item, doc []byte) []byte
	body   func(recs []record) []byte
	check  func(status int, resp []byte) error
	client *http.Client
}

func (s *httpSink) records(dst []record, it *item) []record {
	doc := it.doc(s.sp.OCSF)
	if s.rec != nil {
		doc = s.rec(it, doc)
	}
	return append(dst, record{b: doc})
}

func (s *httpSink) send(ctx context.Context, recs []record) error {
	req, err := http.NewRequestWithContext(ctx, "POST", s.url, bytes.NewReader(s.body(recs)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", s.ctype)
	for k, v := range s.sp.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("unable to post %d records: %w", len(recs), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return s.check(resp.StatusCode, b)
}

func (s *httpSink) close(context.Context) error { s.client.CloseIdleConnections(); return nil }

// newSplunkSink sends to Splunk's HTTP Event Collector: POST
// /services/collector/event with concatenated JSON event objects
// ({"time": seconds, "host", "source", "sourcetype", "event"}), the token
// in an "Authorization: Splunk TOKEN" header (--header).
func newSplunkSink(sp *export.Spec) (*httpSink, error) {
	u, err := url.Parse(sp.Endpoint)
	if err != nil {
		return nil, err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/services/collector/event"
	}
	st := "darkshell:event"
	if sp.OCSF {
		st = "darkshell:ocsf"
	}
	return &httpSink{sp: sp, url: u.String(), ctype: "application/json", client: &http.Client{Timeout: sendTimeout},
		// The record is the HEC event object itself, made from the event
		// as it passes (no decoding of the document again).
		rec: func(it *item, doc []byte) []byte {
			ts := float64(it.ev.Time.UnixNano()) / 1e9
			if sp.OCSF {
				ts = float64(it.ev.Time.UnixMilli()) / 1e3 // OCSF time is in ms
			}
			return splunkEvent(make([]byte, 0, len(doc)+len(it.ev.Sandbox)+96), ts, it.ev.Sandbox, st, doc)
		},
		body: func(recs []record) []byte {
			n := 0
			for _, r := range recs {
				n += len(r.b) + 1
			}
			b := bytes.NewBuffer(make([]byte, 0, n))
			for _, rec := range recs {
				if r := rec.b; isSplunkEvent(r) {
					b.Write(r)
					b.WriteByte('\n')
					continue
				}
				// A document spooled by an earlier version: wrap it here.
				r := rec.b
				var meta struct {
					Time    time.Time `json:"time"`
					Sandbox string    `json:"sandbox"`
				}
				json.Unmarshal(r, &meta)
				ts := float64(meta.Time.UnixNano()) / 1e9
				if sp.OCSF {
					var o struct {
						Time   int64 `json:"time"`
						Device struct {
							Hostname string `json:"hostname"`
						} `json:"device"`
					}
					json.Unmarshal(r, &o)
					ts, meta.Sandbox = float64(o.Time)/1e3, o.Device.Hostname
				}
				b.Write(splunkEvent(nil, ts, meta.Sandbox, st, r))
				b.WriteByte('\n')
			}
			return b.Bytes()
		},
		check: func(status int, resp []byte) error {
			if status == http.StatusOK {
				return nil
			}
			return fmt.Errorf("splunk HEC answered %d: %s", status, strings.TrimSpace(string(resp)))
		}}, nil
}

// splunkEvent appends to dst a HEC event object: {"time": seconds,
// "host", "source", "sourcetype", "event": doc}.
func splunkEvent(dst []byte, ts float64, host, sourcetype string, doc []byte) []byte {
	dst = append(dst, `{"time":`...)
	dst = strconv.AppendFloat(dst, ts, 'f', 6, 64)
	dst = append(dst, `,"host":`...)
	dst = strconv.AppendQuote(dst, host)
	dst = append(dst, `,"source":"darkshell","sourcetype":`...)
	dst = strconv.AppendQuote(dst, sourcetype)
	dst = append(dst, `,"event":`...)
	dst = append(dst, doc...)
	return append(dst, '}')
}

// isSplunkEvent tells a HEC event object (a number after "time") from a
// document (DarkShell's "seq" or "time" string first, OCSF's keys sorted).
func isSplunkEvent(r []byte) bool {
	const p = `{"time":`
	return len(r) > len(p) && string(r[:len(p)]) == p && r[len(p)] != '"'
}

// newElasticSink sends to the Elasticsearch/OpenSearch _bulk API: NDJSON
// {"create":{"_index":I,"_id":ID}} + document lines. The id is a hash of
// the document, so a batch retried after a lost answer creates nothing
// twice (409 on an existing id counts as delivered).
func newElasticSink(sp *export.Spec) (*httpSink, error) {
	u, err := url.Parse(sp.Endpoint)
	if err != nil {
		return nil, err
	}
	u = u.JoinPath("_bulk")
	return &httpSink{sp: sp, url: u.String(), ctype: "application/x-ndjson", client: &http.Client{Timeout: sendTimeout},
		body: func(recs []record) []byte {
			n := 0
			for _, r := range recs {
				n += len(r.b) + 80 + len(sp.Index)
			}
			b := make([]byte, 0, n)
			for _, rec := range recs {
				r := rec.b
				sum := sha256.Sum256(r)
				// {"create":{"_index":%q,"_id":%q}} as fmt wrote it.
				b = append(b, `{"create":{"_index":`...)
				b = strconv.AppendQuote(b, sp.Index)
				b = append(b, `,"_id":"`...)
				b = hex.AppendEncode(b, sum[:16])
				b = append(b, `"}}`+"\n"...)
				b = append(b, r...)
				b = append(b, '\n')
			}
			return b
		},
		check: func(status int, resp []byte) error {
			if status != http.StatusOK {
				return fmt.Errorf("bulk API answered %d: %s", status, strings.TrimSpace(string(resp)))
			}
			var r struct {
				Errors bool `json:"errors"`
				Items  []map[string]struct {
					Status int             `json:"status"`
					Error  json.RawMessage `json:"error"`
				} `json:"items"`
			}
			if err := json.Unmarshal(resp, &r); err != nil {
				return fmt.Errorf("bulk API answer: %w", err)
			}
			if !r.Errors {
				return nil
			}
			for _, it := range r.Items {
				for _, res := range it {
					// 429 and 5xx are worth a retry; a document the index
					// refuses (4xx) would be refused again: it is dropped.
					if res.Status == http.StatusTooManyRequests || res.Status >= 500 {
						return fmt.Errorf("bulk item failed with %d: %s", res.Status, res.Error)
					}
				}
			}
			return nil
		}}, nil
}
