// Package exporter runs the exporters of controller/export inside the
// darkshell-export helper: per exporter a bounded queue, a builder that
// turns events into records (spans, documents, log records) and a sender
// that batches, retries with backoff and spools what a backend refuses
// (Spool); OTLP traces, logs and metrics through the OpenTelemetry SDK,
// Prometheus /metrics through client_golang, Splunk HEC, the
// Elasticsearch/OpenSearch _bulk API and JSON lines, optionally in OCSF.
// It is kept out of the darkshell binary: its libraries' initialisation
// would slow every CLI start.
package exporter
