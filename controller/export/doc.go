// Package export is the configuration side of event export, shared by the
// daemon, the CLI and the exporter helper: exporter records (Spec, kept by
// Store under $DARKSHELL_HOME/exporters), their counters (Stats, Status)
// and the line protocol between the daemon and darkshell-export (Line,
// Report). It has no OpenTelemetry or Prometheus dependency, so the
// darkshell binary's start-up does not pay for them; the exporters
// themselves are in controller/export/exporter. docs/export.md describes
// the mapping to OpenTelemetry and the configuration.
package export
