package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/export/exporter"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// BenchmarkExport measures what export costs a sandbox: exec p50 (daemon
// API and fresh CLI) and an exec-heavy workload with every exporter on
// (OTLP traces+metrics+logs to a real Jaeger, Prometheus /metrics, JSON
// lines, Splunk HEC and Elasticsearch _bulk stand-ins) vs off, in A/B/A
// order; then the events/s one OTLP trace exporter sustains to Jaeger.
func BenchmarkExport(b *testing.B) {
	j := startJaeger(b)
	e := newLocalEnv(b)
	e.createLocal("bx")
	ctx := context.Background()
	n := benchRuns()
	// Stand-ins for Splunk HEC and the _bulk API: accept everything.
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/_bulk" {
			io.WriteString(w, `{"took":1,"errors":false,"items":[]}`)
			return
		}
		io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	defer sink.Close()
	exporters := [][]string{
		{"otlp", "--endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.otlpGRPC), "--signal", "traces,metrics,logs"},
		{"prometheus", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(b))},
		{"jsonl", "--file", filepath.Join(b.TempDir(), "events.jsonl")},
		{"splunk", "--endpoint", sink.URL, "--header", "Authorization=Splunk x"},
		{"elasticsearch", "--endpoint", sink.URL, "--ocsf"},
	}
	set := func(on bool) {
		for _, x := range exporters {
			if on {
				if _, errOut, code := e.ds(append([]string{"export", "add"}, x...)...); code != 0 {
					b.Fatalf("export add %v: %s", x, errOut)
				}
			} else if _, errOut, code := e.ds("export", "remove", x[0]); code != 0 {
				b.Fatalf("export remove %s: %s", x[0], errOut)
			}
		}
		time.Sleep(time.Second)
	}
	apiExec := func(argv ...string) {
		p, err := e.c.Exec(ctx, "bx", &protocol.ExecStart{Argv: argv})
		if err != nil {
			b.Fatal(err)
		}
		x, err := p.Wait(nil, nil)
		p.Close()
		if err != nil || x.Status() != 0 {
			b.Fatalf("exec %v: %v %v", argv, x, err)
		}
	}
	type res struct{ api, cli, loop time.Duration }
	measure := func() res {
		for range 5 {
			apiExec("true")
		}
		var api, cli, loop []time.Duration
		for range n {
			t0 := time.Now()
			apiExec("true")
			api = append(api, time.Since(t0))
		}
		for range n / 2 {
			cmd := exec.Command(filepath.Join(binDir, "darkshell"), "exec", "bx", "--", "true")
			cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
			cli = append(cli, time.Since(t0))
		}
		for range 5 {
			t0 := time.Now()
			apiExec("sh", "-c", "i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done")
			loop = append(loop, time.Since(t0))
		}
		slices.Sort(api)
		slices.Sort(cli)
		slices.Sort(loop)
		return res{pct(api, 50), pct(cli, 50), pct(loop, 50)}
	}
	b.ResetTimer()
	off1 := measure()
	set(true)
	on := measure()
	set(false)
	off2 := measure()
	b.StopTimer()
	avg := func(a, c time.Duration) time.Duration { return (a + c) / 2 }
	off := res{avg(off1.api, off2.api), avg(off1.cli, off2.cli), avg(off1.loop, off2.loop)}
	added := func(on, off time.Duration) float64 { return 100 * (float64(on)/float64(off) - 1) }
	fmt.Printf("\nexport off (A/B/A mean) vs every exporter on, %d runs (CLI %d, 400-exec loop 5)\n", n, n/2)
	fmt.Printf("%-22s %12s %12s %9s\n", "", "off", "on", "added")
	fmt.Printf("%-22s %12s %12s %8.1f%%\n", "exec true, API p50", off.api.Round(time.Microsecond), on.api.Round(time.Microsecond), added(on.api, off.api))
	fmt.Printf("%-22s %12s %12s %8.1f%%\n", "exec true, CLI p50", off.cli.Round(time.Microsecond), on.cli.Round(time.Microsecond), added(on.cli, off.cli))
	fmt.Printf("%-22s %12s %12s %8.1f%%\n", "400 execs traced, p50", off.loop.Round(time.Millisecond), on.loop.Round(time.Millisecond), added(on.loop, off.loop))
	fmt.Printf("(off runs: API %s / %s, CLI %s / %s: the spread is the noise floor)\n", off1.api.Round(time.Microsecond), off2.api.Round(time.Microsecond),
		off1.cli.Round(time.Microsecond), off2.cli.Round(time.Microsecond))
	fmt.Printf("target: < 2%% added: API %v, CLI %v, loop %v\n", added(on.api, off.api) < 2, added(on.cli, off.cli) < 2, added(on.loop, off.loop) < 2)

	// Sustained events/s to an OTLP backend: exec+exit pairs (one span
	// each) through one trace exporter to Jaeger, paced so nothing drops.
	h, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	store := export.OpenStore(h)
	if err := store.Add(&export.Spec{Name: "j", Type: export.TypeOTLP, Endpoint: fmt.Sprintf("http://127.0.0.1:%d", j.otlpGRPC), Signals: []string{"traces"}}); err != nil {
		b.Fatal(err)
	}
	src := &chanSource{c: make(chan protocol.Event, 1<<16)}
	m := exporter.NewManager(exporter.Options{Store: store, Source: src, FlushInterval: 50 * time.Millisecond})
	if err := m.Start(); err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	pairs := 100000
	if v, err := strconv.Atoi(os.Getenv("DARKSHELL_BENCH_SPANS")); err == nil && v > 0 {
		pairs = v
	}
	stats := func() export.Stats {
		l, _ := m.List()
		return l[0].Stats
	}
	t0 := time.Now()
	code := 0
	for i := range pairs {
		id := strconv.Itoa(i+2) + "-" + strconv.Itoa(i)
		now := time.Now()
		src.c <- protocol.Event{Time: now, Sandbox: "bench", Kind: protocol.KindExec, PID: i + 2, PPID: 1, ExecID: id, ParentExecID: "1-0",
			Binary: "/bin/true", Argv: []string{"true", strconv.Itoa(i)}, Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
		src.c <- protocol.Event{Time: now.Add(time.Millisecond), Sandbox: "bench", Kind: protocol.KindExit, PID: i + 2, ExecID: id, ExitCode: &code,
			DurationNs: int64(time.Millisecond), Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
		if i%2000 == 1999 {
			for {
				st := stats()
				if st.Received-2*st.Sent-st.Dropped < 6000 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	for stats().Sent < uint64(pairs) && time.Since(t0) < 5*time.Minute {
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(t0)
	st := stats()
	fmt.Printf("\nOTLP/gRPC to Jaeger: %d spans (%d events) in %s: %.0f events/s, %.0f spans/s; dropped %d, spool-dropped %d, failures %d\n",
		st.Sent, st.Received, el.Round(time.Millisecond), float64(st.Received)/el.Seconds(), float64(st.Sent)/el.Seconds(), st.Dropped, st.SpoolDropped, st.Failures)
}

type chanSource struct{ c chan protocol.Event }

func (s *chanSource) Subscribe(int) (<-chan protocol.Event, func() uint64, func()) {
	return s.c, func() uint64 { return 0 }, func() {}
}
