package exporter

import (
	"context"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/export"
	"io"
	"os"
	"sync"
)

// jsonlSink appends events (the one schema, DESIGN.md "Events") as JSON
// lines to a file or the daemon's stdout, for any log shipper to take.
type jsonlSink struct {
	sp   *export.Spec
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
}

func newJSONLSink(sp *export.Spec) (*jsonlSink, error) {
	if sp.File == "-" {
		return &jsonlSink{sp: sp, w: os.Stdout}, nil
	}
	f, err := os.OpenFile(sp.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", sp.File, err)
	}
	return &jsonlSink{sp: sp, path: sp.File, w: f, f: f}, nil
}

func (s *jsonlSink) records(dst []record, it *item) []record {
	return append(dst, record{b: it.doc(s.sp.OCSF)})
}

func (s *jsonlSink) send(ctx context.Context, recs []record) error {
	n := 0
	for _, r := range recs {
		n += len(r.b) + 1
	}
	buf := make([]byte, 0, n)
	for _, r := range recs {
		buf = append(buf, r.b...)
		buf = append(buf, '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("unable to write %s: %w", s.path, err)
	}
	return nil
}

func (s *jsonlSink) close(ctx context.Context) error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
