package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// EventsOptions selects what Events streams.
type EventsOptions struct {
	History  bool  // retained events first
	Follow   bool  // then live events until ctx ends
	Files    bool  // file events too
	SinceMs  int64 // Unix ms: skip older history
	SinceSeq uint64
}

// EventStream reads the JSON lines of the events route.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	// Sources, Fidelity, FileFidelity, FileProbe, Note and Lost describe
	// the sandbox's event sources (the route's X-Darkshell-Event-* headers).
	Sources      []string
	Fidelity     string
	FileFidelity string
	FileProbe    string
	Note         string
	Lost         uint64
}

// Events opens sandbox name's event stream.
func (c *Client) Events(ctx context.Context, name string, o EventsOptions) (*EventStream, error) {
	q := url.Values{}
	set := func(k string, b bool) {
		if b {
			q.Set(k, "1")
		}
	}
	set("history", o.History)
	set("follow", o.Follow)
	set("files", o.Files)
	if o.SinceMs > 0 {
		q.Set("since_ms", strconv.FormatInt(o.SinceMs, 10))
	}
	if o.SinceSeq > 0 {
		q.Set("since_seq", strconv.FormatUint(o.SinceSeq, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://darkshell/v1/sandboxes/"+url.PathEscape(name)+"/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, ErrDaemon) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decode(resp, nil)
	}
	h := resp.Header
	s := &EventStream{body: resp.Body, sc: bufio.NewScanner(resp.Body),
		Sources: h.Values("X-Darkshell-Event-Sources"), Fidelity: h.Get("X-Darkshell-Event-Fidelity"),
		FileFidelity: h.Get("X-Darkshell-Event-File-Fidelity"), Note: h.Get("X-Darkshell-Event-Note"),
		FileProbe: h.Get("X-Darkshell-Event-File-Probe")}
	s.Lost, _ = strconv.ParseUint(h.Get("X-Darkshell-Event-Lost"), 10, 64)
	s.sc.Buffer(make([]byte, 64<<10), 4*protocol.MaxEventsPayload)
	return s, nil
}

// Next returns the next event; io.EOF at the end of the stream.
func (s *EventStream) Next() (*protocol.Event, error) {
	for s.sc.Scan() {
		line := strings.TrimSpace(s.sc.Text())
		if line == "" {
			continue
		}
		var e protocol.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("unable to decode event: %w", err)
		}
		if e.Kind == protocol.KindAlert && e.Lost > s.Lost {
			s.Lost = e.Lost
		}
		return &e, nil
	}
	if err := s.sc.Err(); err != nil {
		return nil, fmt.Errorf("unable to read events: %w", err)
	}
	return nil, io.EOF
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// EventLogs returns the directory and files (newest first) of sandbox
// name's host event log.
func (c *Client) EventLogs(ctx context.Context, name string) (dir string, files []string, err error) {
	var out struct {
		Dir   string   `json:"dir"`
		Files []string `json:"files"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(name)+"/logs", nil, &out); err != nil {
		return "", nil, err
	}
	return out.Dir, out.Files, nil
}
