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
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// docRecord is the record of the document sinks: the event in DarkShell's
// schema, or its OCSF mapping.
func docRecord(sp *export.Spec, e *protocol.Event) []byte {
	if sp.OCSF {
		return mustJSON(OCSF(e))
	}
	return mustJSON(e)
}

// httpSink posts batches to an HTTP API; body builds the request body.
type httpSink struct {
	sp     *export.Spec
	url    string
	ctype  string
	body   func(recs [][]byte) []byte
	check  func(status int, resp []byte) error
	client *http.Client
}

func (s *httpSink) records(e *protocol.Event) [][]byte { return [][]byte{docRecord(s.sp, e)} }

func (s *httpSink) send(ctx context.Context, recs [][]byte) error {
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
		body: func(recs [][]byte) []byte {
			var b bytes.Buffer
			for _, r := range recs {
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
				fmt.Fprintf(&b, `{"time":%.6f,"host":%q,"source":"darkshell","sourcetype":%q,"event":%s}`, ts, meta.Sandbox, st, r)
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
		body: func(recs [][]byte) []byte {
			var b bytes.Buffer
			for _, r := range recs {
				sum := sha256.Sum256(r)
				fmt.Fprintf(&b, `{"create":{"_index":%q,"_id":%q}}`+"\n", sp.Index, hex.EncodeToString(sum[:16]))
				b.Write(r)
				b.WriteByte('\n')
			}
			return b.Bytes()
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
