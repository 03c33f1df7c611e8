package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// backendBin finds a backend program `make deps` builds into .cache/backends
// (or the path in env), else skips (fails under DARKSHELL_REQUIRE_ALL=1).
func backendBin(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		p := filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), ".cache", "backends", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	requireFeature(t, name+" (`make deps` builds it into .cache/backends; or set "+env+")")
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// jaeger is a real Jaeger (v2, all in one, in-memory store) on loopback.
type jaeger struct {
	t                     testing.TB
	bin, cfg              string
	otlpGRPC, otlpHTTP, q int
	cmd                   *exec.Cmd
	log                   *os.File
}

func startJaeger(t testing.TB) *jaeger {
	t.Helper()
	return startJaegerVerbose(t, "detailed")
}

// startJaegerVerbose starts Jaeger with its debug exporter (OTLP logs and
// metrics) at verbosity: "detailed" prints every record (the tests read
// it), "basic" one line per request.
func startJaegerVerbose(t testing.TB, verbosity string) *jaeger {
	t.Helper()
	j := &jaeger{t: t, bin: backendBin(t, "jaeger", "DARKSHELL_JAEGER"),
		otlpGRPC: freePort(t), otlpHTTP: freePort(t), q: freePort(t)}
	dir := t.TempDir()
	j.cfg = filepath.Join(dir, "jaeger.yaml")
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
    logs:
      receivers: [otlp]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
  debug:
    verbosity: %s
    use_internal_logger: false
`, j.q, freePort(t), j.otlpGRPC, j.otlpHTTP, verbosity)
	if err := os.WriteFile(j.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	j.log = lf
	j.start()
	t.Cleanup(func() {
		j.stop()
		if t.Failed() {
			b, _ := os.ReadFile(lf.Name())
			t.Logf("jaeger log:\n%s", b)
		}
	})
	return j
}

func (j *jaeger) start() {
	j.t.Helper()
	j.cmd = exec.Command(j.bin, "--config", "file:"+j.cfg)
	j.cmd.Stdout, j.cmd.Stderr = j.log, j.log
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := j.cmd.Start(); err != nil {
		j.t.Fatal(err)
	}
	waitFor(j.t, 60*time.Second, "jaeger's query API", func() bool {
		r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/services", j.q))
		if err != nil {
			return false
		}
		r.Body.Close()
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", j.otlpGRPC))
		if err != nil {
			return false
		}
		c.Close()
		return r.StatusCode == 200
	})
}

func (j *jaeger) stop() {
	if j.cmd == nil {
		return
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { j.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		j.cmd.Process.Kill()
		<-done
	}
	j.cmd = nil
}

// Jaeger's query API (api/traces) shapes.
type jTrace struct {
	TraceID   string              `json:"traceID"`
	Spans     []jSpan             `json:"spans"`
	Processes map[string]jProcess `json:"processes"`
}
type jSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags      []jTag `json:"tags"`
	ProcessID string `json:"processID"`
}
type jTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}
type jProcess struct {
	ServiceName string `json:"serviceName"`
	Tags        []jTag `json:"tags"`
}

func (s *jSpan) tag(k string) any {
	for _, t := range s.Tags {
		if t.Key == k {
			return t.Value
		}
	}
	return nil
}

func (s *jSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (j *jaeger) traces(t *testing.T, op string) []jTrace {
	t.Helper()
	q := url.Values{"service": {"darkshell"}, "limit": {"1000"}, "lookback": {"1h"}}
	if op != "" {
		q.Set("operation", op)
	}
	r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/traces?%s", j.q, q.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var out struct {
		Data []jTrace `json:"data"`
	}
	if r.StatusCode != 200 {
		return nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("jaeger answer %q: %v", b, err)
	}
	return out.Data
}

// findTrace waits for the trace whose exec call ran argv marker.
func (j *jaeger) findTrace(t *testing.T, marker string, want int) *jTrace {
	t.Helper()
	var found *jTrace
	waitFor(t, 30*time.Second, "the trace of "+marker+" in jaeger", func() bool {
		for _, tr := range j.traces(t, "") {
			for _, sp := range tr.Spans {
				if strings.HasPrefix(sp.OperationName, "exec ") && strings.Contains(fmt.Sprint(sp.tag("process.command_args")), marker) && len(tr.Spans) >= want {
					found = &tr
					return true
				}
			}
		}
		return false
	})
	return found
}

// TestExportJaeger: with an OTLP exporter (gRPC, then HTTP) the process
// tree an exec call runs in a local sandbox comes back from a real Jaeger
// as a span tree with the right parentage, argv and exit codes, under the
// exec call's server span, with the sandbox as resource. Then Jaeger is
// stopped: what happens meanwhile is spooled and arrives once it is back.
func TestExportJaeger(t *testing.T) {
	j := startJaeger(t)
	t.Setenv("DARKSHELL_EXPORT_FLUSH", "100ms")
	t.Setenv("DARKSHELL_EXPORT_METRIC_INTERVAL", "500ms")
	e := newLocalEnv(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _, _ := e.ds("export", "list", "-o", "json")
			t.Logf("export list:\n%s", out)
		}
	})
	out, errOut, code := e.ds("export", "add", "otlp", "--endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.otlpGRPC), "-o", "json")
	if code != 0 {
		t.Fatalf("export add: %d %s %s", code, out, errOut)
	}
	e.createLocal("ex")

	script := `sh -c "/bin/true inner-grpc; exit 4"; ls / >/dev/null; exit 0`
	if _, errOut, code := e.ds("exec", "ex", "--", "sh", "-c", script); code != 0 {
		t.Fatalf("exec: %d %s", code, errOut)
	}
	tr := j.findTrace(t, "inner-grpc", 5)
	checkTree(t, tr, "inner-grpc")
	// OTLP metrics reach the same collector (its debug exporter prints them).
	waitFor(t, 30*time.Second, "the exec histogram over OTLP", func() bool {
		b, _ := os.ReadFile(j.log.Name())
		return strings.Contains(string(b), "-> Name: darkshell.exec.duration") && strings.Contains(string(b), "-> Name: darkshell.processes")
	})

	// The HTTP protocol reaches the same Jaeger.
	if _, errOut, code := e.ds("export", "remove", "otlp"); code != 0 {
		t.Fatalf("export remove: %s", errOut)
	}
	if _, errOut, code := e.ds("export", "add", "otlp", "--name", "jh", "--protocol", "http", "--endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.otlpHTTP)); code != 0 {
		t.Fatalf("export add http: %s", errOut)
	}
	script = strings.ReplaceAll(script, "inner-grpc", "inner-http")
	if _, errOut, code := e.ds("exec", "ex", "--", "sh", "-c", script); code != 0 {
		t.Fatalf("exec: %d %s", code, errOut)
	}
	checkTree(t, j.findTrace(t, "inner-http", 5), "inner-http")

	// Outage: Jaeger stops; execs go on; their spans wait in the spool.
	j.stop()
	script = strings.ReplaceAll(script, "inner-http", "inner-outage")
	for i := range 3 {
		if _, errOut, code := e.ds("exec", "ex", "--", "sh", "-c", strings.ReplaceAll(script, "inner-outage", fmt.Sprintf("inner-outage-%d", i))); code != 0 {
			t.Fatalf("exec during outage: %d %s", code, errOut)
		}
	}
	waitFor(t, 30*time.Second, "spooled batches while jaeger is down", func() bool {
		st := exportStatus(t, e, "jh")
		return st.Stats.SpoolBatches > 0 && st.Stats.Failures > 0
	})
	j.start() // a new, empty Jaeger on the same ports
	for i := range 3 {
		checkTree(t, j.findTrace(t, fmt.Sprintf("inner-outage-%d", i), 5), fmt.Sprintf("inner-outage-%d", i))
	}
	waitFor(t, 30*time.Second, "the spool drained", func() bool { return exportStatus(t, e, "jh").Stats.SpoolBatches == 0 })
	if st := exportStatus(t, e, "jh"); st.Stats.Dropped != 0 || st.Stats.SpoolDropped != 0 {
		t.Fatalf("records dropped: %+v", st.Stats)
	}
}

type exportStat struct {
	Name  string `json:"name"`
	Error string `json:"error"`
	Stats struct {
		Received     uint64 `json:"received"`
		Dropped      uint64 `json:"dropped"`
		Sent         uint64 `json:"sent"`
		SpoolDropped uint64 `json:"spool_dropped"`
		Failures     uint64 `json:"failures"`
		SpoolBatches int    `json:"spool_batches"`
	} `json:"stats"`
}

func exportStatus(t *testing.T, e *env, name string) exportStat {
	t.Helper()
	out, errOut, code := e.ds("export", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("export list: %s", errOut)
	}
	var l []exportStat
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("export list %q: %v", out, err)
	}
	for _, s := range l {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no exporter %s in %s", name, out)
	return exportStat{}
}

// checkTree asserts the span tree of `sh -c 'sh -c "true MARKER; exit 4"; ls /'`:
// exec call -> sh -> {sh -> true, ls}.
func checkTree(t *testing.T, tr *jTrace, marker string) {
	t.Helper()
	byID := map[string]*jSpan{}
	for i := range tr.Spans {
		byID[tr.Spans[i].SpanID] = &tr.Spans[i]
	}
	find := func(pred func(*jSpan) bool) *jSpan {
		for i := range tr.Spans {
			if pred(&tr.Spans[i]) {
				return &tr.Spans[i]
			}
		}
		return nil
	}
	args := func(s *jSpan) string { return fmt.Sprint(s.tag("process.command_args")) }
	call := find(func(s *jSpan) bool { return strings.HasPrefix(s.OperationName, "exec ") })
	top := find(func(s *jSpan) bool {
		return s.OperationName == "sh" && strings.Contains(args(s), "ls /") && s.tag("process.pid") != nil
	})
	inner := find(func(s *jSpan) bool {
		return s.OperationName == "sh" && strings.Contains(args(s), "exit 4") && !strings.Contains(args(s), "ls /")
	})
	tru := find(func(s *jSpan) bool { return s.OperationName == "true" && strings.Contains(args(s), marker) })
	ls := find(func(s *jSpan) bool { return s.OperationName == "ls" })
	dump := func() string {
		var b strings.Builder
		for _, s := range tr.Spans {
			fmt.Fprintf(&b, "  %s %q parent=%s args=%v\n", s.SpanID, s.OperationName, s.parent(), s.tag("process.command_args"))
		}
		return b.String()
	}
	if call == nil || top == nil || inner == nil || tru == nil || ls == nil {
		t.Fatalf("spans missing in trace %s:\n%s", tr.TraceID, dump())
	}
	for _, c := range []struct {
		child, parent *jSpan
		what          string
	}{{top, call, "the sandbox's top process under the exec call"}, {inner, top, "the inner shell under the outer"},
		{tru, inner, "true under the inner shell"}, {ls, top, "ls under the outer shell"}} {
		if c.child.parent() != c.parent.SpanID {
			t.Errorf("%s: parent %s, want %s\n%s", c.what, c.child.parent(), c.parent.SpanID, dump())
		}
	}
	if call.parent() != "" {
		t.Errorf("the exec call is not the root:\n%s", dump())
	}
	if code := fmt.Sprint(inner.tag("process.exit.code")); code != "4" {
		t.Errorf("inner shell exit code %s, want 4", code)
	}
	if code := fmt.Sprint(top.tag("process.exit.code")); code != "0" {
		t.Errorf("top exit code %s, want 0", code)
	}
	if fmt.Sprint(call.tag("rpc.method")) != "Exec" || fmt.Sprint(call.tag("span.kind")) != "server" {
		t.Errorf("exec call tags: %+v", call.Tags)
	}
	p := tr.Processes[top.ProcessID]
	var sb, drv string
	for _, tg := range p.Tags {
		switch tg.Key {
		case "darkshell.sandbox.name":
			sb = fmt.Sprint(tg.Value)
		case "darkshell.sandbox.driver":
			drv = fmt.Sprint(tg.Value)
		}
	}
	if p.ServiceName != "darkshell" || sb != "ex" || drv != "local" {
		t.Errorf("resource: %+v", p)
	}
	if slices.ContainsFunc(tr.Spans, func(s jSpan) bool { return s.TraceID != tr.TraceID }) {
		t.Errorf("spans of other traces in trace %s", tr.TraceID)
	}
}

// TestExportOTLPLogs: with --signal logs --ocsf every event reaches a real
// OTLP receiver (the OpenTelemetry Collector's, in the Jaeger binary, whose
// debug exporter prints what it received), over gRPC and over HTTP, as a
// log record whose body is the OCSF mapping, with the sandbox as resource.
func TestExportOTLPLogs(t *testing.T) {
	for _, proto := range []string{"grpc", "http"} {
		t.Run(proto, func(t *testing.T) {
			j := startJaeger(t)
			t.Setenv("DARKSHELL_EXPORT_FLUSH", "100ms")
			e := newLocalEnv(t)
			port := j.otlpGRPC
			if proto == "http" {
				port = j.otlpHTTP
			}
			if _, errOut, code := e.ds("export", "add", "otlp", "--name", "logs", "--signal", "logs", "--ocsf", "--protocol", proto,
				"--endpoint", fmt.Sprintf("http://127.0.0.1:%d", port)); code != 0 {
				t.Fatalf("export add: %s", errOut)
			}
			e.createLocal("lg")
			if _, errOut, code := e.ds("exec", "lg", "--", "sh", "-c", "/bin/true logmarker-7; exit 0"); code != 0 {
				t.Fatalf("exec: %s", errOut)
			}
			wants := []string{"logmarker-7", "darkshell.sandbox.name: Str(lg)", "service.name: Str(darkshell)", "darkshell.event.kind: Str(exec)",
				`"class_uid":1007`, "EventName: darkshell.exec", "SeverityText: INFO", "process.pid: Int("}
			var log string
			// Events reach the collector in several batches (the daemon's own,
			// such as sandbox_state and exec_call, before the sandbox's): wait for
			// every record this test looks for, then say which never came.
			deadline := time.Now().Add(30 * time.Second)
			for {
				b, _ := os.ReadFile(j.log.Name())
				log = string(b)
				if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(log, w) }) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, want := range wants {
				if !strings.Contains(log, want) {
					t.Errorf("collector output lacks %q", want)
				}
			}
			waitFor(t, 10*time.Second, "the helper's report of sent records", func() bool { return exportStatus(t, e, "logs").Stats.Sent > 0 })
			if st := exportStatus(t, e, "logs"); st.Stats.Failures != 0 {
				t.Errorf("exporter stats: %+v", st.Stats)
			}
			if t.Failed() {
				t.Logf("collector output:\n%s", log)
			}
		})
	}
}
