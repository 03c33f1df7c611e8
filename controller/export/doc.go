// Package export sends the daemon's events to observability backends: OTLP
// traces (each sandbox process a span whose parent is its parent process),
// metrics (OTLP and a Prometheus /metrics address), and JSON lines.
//
// Exporters are records under $DARKSHELL_HOME/exporters (Spec, Store). The
// Manager subscribes to the event bus like any other sink and never blocks
// it: every exporter has a bounded queue (a full queue drops and counts),
// sends in batches, retries with backoff, and keeps the batches a backend
// refused in a bounded on-disk spool (Spool) that it drains, in order, once
// the backend is back; a full spool drops and counts. docs/export.md
// describes the mapping to OpenTelemetry and the configuration.
package export
