package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// Exporter types.
const (
	TypeOTLP       = "otlp"          // OTLP traces and metrics (gRPC or HTTP/protobuf)
	TypeJSONL      = "jsonl"         // events as JSON lines to a file or the daemon's stdout
	TypePrometheus = "prometheus"    // the daemon serves /metrics on Listen
	TypeSplunk     = "splunk"        // Splunk HTTP Event Collector
	TypeElastic    = "elasticsearch" // Elasticsearch or OpenSearch _bulk API
)

// OTLP protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"
)

// Signals an OTLP exporter can send.
const (
	SignalTraces  = "traces"
	SignalMetrics = "metrics"
	SignalLogs    = "logs" // every event as an OTLP log record (opt-in)
)

// Types lists the exporter types.
var Types = []string{TypeOTLP, TypeJSONL, TypePrometheus, TypeSplunk, TypeElastic}

// ErrNotFound is returned for an exporter that has no record.
var ErrNotFound = errors.New("no such exporter")

// ErrExists is returned when adding an exporter whose name is taken.
var ErrExists = errors.New("exporter already exists")

// Spec is one configured exporter.
type Spec struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// OTLP: Endpoint is a URL (http:// is sent in plain text, https:// over
	// TLS); Protocol grpc (default) or http; Headers are sent with every
	// request (e.g. an API key); Signals default to traces and metrics.
	Endpoint string            `json:"endpoint,omitempty"`
	Protocol string            `json:"protocol,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Signals  []string          `json:"signals,omitempty"`
	// JSONL: File is an absolute path, or "-" for the daemon's stdout.
	File string `json:"file,omitempty"`
	// Prometheus: Listen is the host:port the daemon serves /metrics on.
	Listen string `json:"listen,omitempty"`
	// Elasticsearch: Index (default darkshell-events).
	Index string `json:"index,omitempty"`
	// OCSF maps events to OCSF classes (jsonl, splunk, elasticsearch,
	// OTLP logs) instead of DarkShell's own schema.
	OCSF bool `json:"ocsf,omitempty"`
	// Sandboxes limits the exporter to these sandboxes (a blueprint's
	// exporters name their sandbox); empty means every sandbox.
	Sandboxes []string `json:"sandboxes,omitempty"`
	// SpoolBytes bounds the on-disk spool of batches the backend refused
	// (0: DefaultSpoolBytes).
	SpoolBytes int64     `json:"spool_bytes,omitempty"`
	Created    time.Time `json:"created"`
}

// DefaultSpoolBytes bounds an exporter's on-disk spool.
const DefaultSpoolBytes = 64 << 20

// HasSignal reports whether an OTLP exporter sends signal s.
func (s *Spec) HasSignal(sig string) bool {
	if len(s.Signals) == 0 {
		return sig != SignalLogs
	}
	return slices.Contains(s.Signals, sig)
}

// Wants reports whether the exporter takes sandbox's events.
func (s *Spec) Wants(sandbox string) bool {
	return len(s.Sandboxes) == 0 || slices.Contains(s.Sandboxes, sandbox)
}

// Target is a one-line description of where the exporter sends.
func (s *Spec) Target() string {
	switch s.Type {
	case TypeOTLP:
		return fmt.Sprintf("%s (%s)", s.Endpoint, s.Protocol)
	case TypeJSONL:
		if s.File == "-" {
			return "daemon stdout"
		}
		return s.File
	case TypePrometheus:
		return "http://" + s.Listen + "/metrics"
	case TypeSplunk:
		return s.Endpoint + " (HEC)"
	case TypeElastic:
		return s.Endpoint + " (_bulk, index " + s.Index + ")"
	}
	return ""
}

// Redacted returns a copy with header values hidden (they often carry keys).
func (s Spec) Redacted() Spec {
	if len(s.Headers) > 0 {
		h := make(map[string]string, len(s.Headers))
		for k := range s.Headers {
			h[k] = "<redacted>"
		}
		s.Headers = h
	}
	return s
}

// Normalize fills in defaults and checks the spec; errors say what to fix.
func (s *Spec) Normalize() error {
	if s.Name == "" {
		s.Name = s.Type
	}
	if err := validName(s.Name); err != nil {
		return err
	}
	for _, sb := range s.Sandboxes {
		if err := state.ValidName(sb); err != nil {
			return err
		}
	}
	if s.SpoolBytes < 0 {
		return errors.New("spool size must not be negative")
	}
	switch s.Type {
	case TypeSplunk, TypeElastic:
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--endpoint must be an http:// or https:// URL such as https://splunk:8088 or http://127.0.0.1:9200, not %q", s.Endpoint)
		}
		if s.Type == TypeElastic && s.Index == "" {
			s.Index = "darkshell-events"
		}
		if strings.ContainsAny(s.Index, " ,\\/*?\"<>|#") || strings.ToLower(s.Index) != s.Index {
			return fmt.Errorf("--index %q is not a valid index name: lower case, no spaces or , \\ / * ? \" < > | #", s.Index)
		}
		for k := range s.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				return fmt.Errorf("header name %q is not valid: use --header NAME=VALUE", k)
			}
		}
	case TypeOTLP:
		if s.Protocol == "" {
			s.Protocol = ProtocolGRPC
		}
		if s.Protocol != ProtocolGRPC && s.Protocol != ProtocolHTTP {
			return fmt.Errorf("--protocol must be grpc or http, not %q", s.Protocol)
		}
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--endpoint must be an http:// or https:// URL such as http://127.0.0.1:4317, not %q", s.Endpoint)
		}
		for k := range s.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				return fmt.Errorf("header name %q is not valid: use --header NAME=VALUE", k)
			}
		}
		for _, sig := range s.Signals {
			if sig != SignalTraces && sig != SignalMetrics && sig != SignalLogs {
				return fmt.Errorf("unknown signal %q: use traces, metrics or logs", sig)
			}
		}
	case TypeJSONL:
		if s.File == "" {
			return errors.New("jsonl needs --file PATH (or - for the daemon's stdout)")
		}
		if s.File != "-" && !filepath.IsAbs(s.File) {
			return fmt.Errorf("--file %q must be an absolute path (or -)", s.File)
		}
	case TypePrometheus:
		host, port, err := net.SplitHostPort(s.Listen)
		if err != nil || port == "" {
			return fmt.Errorf("--listen must be host:port such as 127.0.0.1:9464, not %q", s.Listen)
		}
		_ = host
	default:
		return fmt.Errorf("unknown exporter type %q: use one of %s", s.Type, strings.Join(Types, ", "))
	}
	return nil
}

// validName: 1-63 of [a-z0-9-_.], starting with a letter or digit.
func validName(n string) error {
	ok := len(n) >= 1 && len(n) <= 63
	for i := 0; ok && i < len(n); i++ {
		c := n[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_' || c == '.'))
	}
	if !ok {
		return fmt.Errorf("invalid exporter name %q: use 1-63 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit", n)
	}
	return nil
}

// Store keeps exporter records under $DARKSHELL_HOME/exporters (0600 files:
// headers may hold credentials).
type Store struct{ dir string }

// OpenStore returns the store of h.
func OpenStore(h *state.Home) *Store { return &Store{dir: filepath.Join(h.Dir, "exporters")} }

// Dir is the store's directory; spools live under Dir/spool.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+".json") }

// Add normalizes and writes a new exporter; ErrExists if its name is taken.
func (s *Store) Add(sp *Spec) error {
	if err := sp.Normalize(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", s.dir, err)
	}
	if _, err := os.Stat(s.path(sp.Name)); err == nil {
		return fmt.Errorf("%w: %s (remove it first, or pick another --name)", ErrExists, sp.Name)
	}
	if sp.Created.IsZero() {
		sp.Created = time.Now().UTC()
	}
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(s.path(sp.Name), append(b, '\n'), 0o600)
}

// Get reads one exporter.
func (s *Store) Get(name string) (*Spec, error) {
	if validName(name) != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (see `darkshell export list`)", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to read exporter %s: %w", name, err)
	}
	var sp Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("exporter record %s is corrupt: %w", s.path(name), err)
	}
	return &sp, nil
}

// List reads every exporter, sorted by name.
func (s *Store) List() ([]*Spec, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unable to list exporters: %w", err)
	}
	var out []*Spec
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		sp, err := s.Get(n)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes an exporter's record and its spool.
func (s *Store) Remove(name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return fmt.Errorf("unable to remove exporter %s: %w", name, err)
	}
	os.RemoveAll(filepath.Join(s.dir, "spool", name))
	return nil
}

// Stats are an exporter's counters.
type Stats struct {
	// Received events; Dropped because the exporter's queue was full.
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
	// Sent records; SpoolDropped records lost because the spool was full.
	Sent         uint64 `json:"sent"`
	SpoolDropped uint64 `json:"spool_dropped"`
	// Failures counts failed send attempts; LastError is the latest.
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error,omitempty"`
	// Spooled batches and bytes waiting on disk.
	SpoolBatches int   `json:"spool_batches"`
	SpoolBytes   int64 `json:"spool_bytes"`
}

// Status is one exporter as `export list` shows it.
type Status struct {
	Spec
	Stats Stats  `json:"stats"`
	Error string `json:"error,omitempty"` // why it does not run
}

// Usage is one sandbox's resource use against its limits (0: unknown).
type Usage struct {
	Sandbox          string
	CPUSeconds       float64
	CPULimit         float64 // CPUs
	MemoryBytes      int64
	MemoryLimitBytes int64
	Pids             int64
	PidsLimit        int64
}

// Line is one JSON line the daemon writes to the exporter helper
// (darkshell-export) on its stdin: exactly one field is set.
//
// An event line is EventLinePrefix, the event's JSON as the host log has
// it, and "}": the daemon writes the log's bytes without encoding them
// again and the helper takes the event's bytes from the line as they are.
type Line struct {
	// Event is one event of the bus.
	Event *protocol.Event `json:"event,omitempty"`
	// Reload: the exporter records changed; read them again.
	Reload bool `json:"reload,omitempty"`
	// Usage is the sandboxes' resource use, sent now and then.
	Usage []Usage `json:"usage,omitempty"`
	// BusLost is how many events the daemon's bus dropped because the
	// helper read too slowly (cumulative).
	BusLost *uint64 `json:"bus_lost,omitempty"`
}

// EventLinePrefix starts every Line that carries an event.
const EventLinePrefix = `{"event":`

// Report is one JSON line the helper writes on its report pipe (fd 3):
// the state of every exporter.
type Report struct {
	Time      time.Time `json:"time"`
	Exporters []Status  `json:"exporters"`
}

// HelperName is the exporter helper's executable.
const HelperName = "darkshell-export"

// LabelBlueprint is the sandbox label naming the blueprint it was made
// from (exported as the resource attribute darkshell.blueprint.name).
const LabelBlueprint = "darkshell.blueprint"
