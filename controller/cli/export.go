package cli

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/export"
)

func (a *app) exportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Send events, traces and metrics to OpenTelemetry, Prometheus or a JSON-lines file",
		Long: `Exporters are configured once per installation (kept in $DARKSHELL_HOME/exporters)
and run in the controller daemon as consumers of its event bus. They never slow a
sandbox: each has a bounded queue, sends in batches, retries with backoff, and keeps
what a backend refused in a bounded on-disk spool; what does not fit is dropped and
counted (see 'export list').

Types:
  otlp        OpenTelemetry traces (each sandbox process a span, parented to its parent
              process; exec calls, sync runs, MCP tool calls, policy decisions) and
              metrics, over OTLP gRPC (default) or HTTP/protobuf.
  jsonl       every event as one JSON line, to a file or the daemon's stdout (-).
  prometheus  the daemon serves /metrics on --listen (off unless added).
  splunk      every event to a Splunk HTTP Event Collector (--header "Authorization=Splunk TOKEN").
  elasticsearch  every event to an Elasticsearch or OpenSearch _bulk API (--index).

--ocsf maps events to OCSF classes (as OpenShell emits them) for jsonl, splunk,
elasticsearch and OTLP logs (--signal logs).

See docs/export.md.`,
	}
	var (
		name, endpoint, proto, file, listen, index string
		ocsf                                       bool
		headers, signals, sandboxes                []string
		spoolMB                                    int64
	)
	add := &cobra.Command{
		Use:   "add otlp|jsonl|prometheus|splunk|elasticsearch [flags]",
		Short: "Add an exporter (started at once)",
		Example: `  darkshell export add otlp --endpoint http://127.0.0.1:4317
  darkshell export add otlp --name honeycomb --endpoint https://api.honeycomb.io --protocol http --header x-honeycomb-team=KEY
  darkshell export add jsonl --file /var/log/darkshell/events.jsonl
  darkshell export add prometheus --listen 127.0.0.1:9464
  darkshell export add otlp --name siem --endpoint http://127.0.0.1:4317 --signal logs --ocsf
  darkshell export add splunk --endpoint https://splunk:8088 --header "Authorization=Splunk TOKEN"
  darkshell export add elasticsearch --endpoint http://127.0.0.1:9200 --index darkshell-events --ocsf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp := &export.Spec{Name: name, Type: args[0], Endpoint: endpoint, Protocol: proto, Listen: listen,
				Signals: signals, Sandboxes: sandboxes, SpoolBytes: spoolMB << 20, Index: index, OCSF: ocsf}
			if file != "" && file != "-" {
				abs, err := filepath.Abs(file)
				if err != nil {
					return err
				}
				file = abs
			}
			sp.File = file
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return usagef("--header %q: use --header NAME=VALUE", h)
				}
				if sp.Headers == nil {
					sp.Headers = map[string]string{}
				}
				sp.Headers[k] = v
			}
			check := *sp
			if err := check.Normalize(); err != nil {
				return usagef("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.ExportAdd(cmd.Context(), sp)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(st)
			}
			fmt.Fprintf(a.stdout, "exporter %s: %s -> %s\n", st.Name, st.Type, st.Target())
			if st.Error != "" {
				fmt.Fprintf(a.stderr, "darkshell: warning: exporter %s does not run: %s\n", st.Name, st.Error)
			}
			return nil
		},
	}
	f := add.Flags()
	f.StringVar(&name, "name", "", "exporter name (default: the type)")
	f.StringVar(&endpoint, "endpoint", "", "otlp, splunk, elasticsearch: URL, http:// (plain) or https:// (TLS), e.g. http://127.0.0.1:4317")
	f.StringVar(&proto, "protocol", "", "otlp: grpc (default) or http")
	f.StringArrayVar(&headers, "header", nil, "header sent with every request, NAME=VALUE (repeatable; e.g. an API key)")
	f.StringSliceVar(&signals, "signal", nil, "otlp: traces, metrics, logs (default traces and metrics)")
	f.StringVar(&index, "index", "", "elasticsearch: index (default darkshell-events)")
	f.BoolVar(&ocsf, "ocsf", false, "map events to OCSF classes (jsonl, splunk, elasticsearch, OTLP logs)")
	f.StringVar(&file, "file", "", "jsonl: file to append to, or - for the daemon's stdout")
	f.StringVar(&listen, "listen", "", "prometheus: host:port to serve /metrics on, e.g. 127.0.0.1:9464")
	f.StringSliceVar(&sandboxes, "sandbox", nil, "only these sandboxes' events (default all)")
	f.Int64Var(&spoolMB, "spool-mb", 0, "bound of the on-disk spool for a backend outage, MiB (default 64)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List exporters with what they sent, dropped and hold in their spool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ExportList(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, st := range l {
				s := st.Stats
				last := st.Error
				if last == "" {
					last = s.LastError
				}
				rows = append(rows, []string{st.Name, st.Type, st.Target(), strconv.FormatUint(s.Sent, 10),
					strconv.FormatUint(s.Dropped+s.SpoolDropped, 10), fmt.Sprintf("%d (%d KiB)", s.SpoolBatches, s.SpoolBytes>>10), oneLine(last)})
			}
			a.table("NAME\tTYPE\tTARGET\tSENT\tDROPPED\tSPOOLED\tLAST ERROR", rows)
			return nil
		},
	}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Stop and remove an exporter (its spool is deleted)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.ExportRemove(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(map[string]string{"removed": args[0]})
			}
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}
