package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExportPrometheus: the daemon serves /metrics only once a prometheus
// exporter is added; a real Prometheus (Debian's) scrapes it, and its
// query API returns the exec latency histogram with one observation per
// exec call, and the processes and events counters.
func TestExportPrometheus(t *testing.T) {
	promBin := "/usr/bin/prometheus"
	if _, err := os.Stat(promBin); err != nil {
		requireFeature(t, "prometheus (`make deps` installs Debian's)")
	}
	e := newLocalEnv(t)
	e.createLocal("pm")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("/metrics answers before any prometheus exporter was added (it must be off by default)")
	}
	if out, errOut, code := e.ds("export", "add", "prometheus", "--listen", addr); code != 0 {
		t.Fatalf("export add: %s %s", out, errOut)
	}
	const n = 12
	for i := range n {
		args := []string{"exec", "pm", "--", "sh", "-c", "exit " + strconv.Itoa(i%2)}
		if _, errOut, code := e.ds(args...); code != i%2 {
			t.Fatalf("exec %d: %d %s", i, code, errOut)
		}
	}
	// The daemon's own endpoint first.
	var body string
	waitFor(t, 10*time.Second, "the exec histogram on /metrics", func() bool {
		r, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		body = string(b)
		return strings.Contains(body, `darkshell_exec_duration_seconds_count{result="failed",sandbox="pm"} 6`) &&
			strings.Contains(body, `darkshell_exec_duration_seconds_count{result="ok",sandbox="pm"} 6`)
	})

	// A real Prometheus scrapes it.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: darkshell\n    static_configs:\n      - targets: [%q]\n", addr)), 0o600)
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd := exec.Command(promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s\n/metrics:\n%s", b, body)
		}
	})
	query := func(q string) []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
	} {
		r, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer r.Body.Close()
		var res struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  []any             `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		json.NewDecoder(r.Body).Decode(&res)
		return res.Data.Result
	}
	waitFor(t, 60*time.Second, "prometheus to have scraped the exec histogram", func() bool {
		res := query(`sum(darkshell_exec_duration_seconds_count{sandbox="pm"})`)
		return len(res) == 1 && len(res[0].Value) == 2 && res[0].Value[1] == strconv.Itoa(n)
	})
	buckets := query(`darkshell_exec_duration_seconds_bucket{sandbox="pm",result="ok"}`)
	if len(buckets) < 10 {
		t.Fatalf("histogram buckets: %+v", buckets)
	}
	for _, b := range buckets {
		if b.Metric["le"] == "+Inf" && b.Value[1] != "6" {
			t.Fatalf("+Inf bucket %v, want 6", b.Value)
		}
	}
	p50 := query(`histogram_quantile(0.5, sum by (le) (darkshell_exec_duration_seconds_bucket{sandbox="pm"}))`)
	if len(p50) != 1 {
		t.Fatalf("p50: %+v", p50)
	}
	v, err := strconv.ParseFloat(p50[0].Value[1].(string), 64)
	if err != nil || v <= 0 || v > 10 {
		t.Fatalf("p50 exec latency %v (%v)", p50[0].Value, err)
	}
	t.Logf("exec p50 from Prometheus: %.4f s", v)
	if procs := query(`sum(darkshell_processes_total{sandbox="pm"})`); len(procs) != 1 || procs[0].Value[1] == "0" {
		t.Errorf("processes counter: %+v", procs)
	}
	if evs := query(`sum(darkshell_events_total{sandbox="pm",kind="exec_call"})`); len(evs) != 1 || evs[0].Value[1] != strconv.Itoa(2*n) {
		t.Errorf("events counter: %+v", evs)
	}
	// Removing the exporter closes the address.
	if _, errOut, code := e.ds("export", "remove", "prometheus"); code != 0 {
		t.Fatalf("export remove: %s", errOut)
	}
	waitFor(t, 10*time.Second, "/metrics closed", func() bool {
		_, err := http.Get("http://" + addr + "/metrics")
		return err != nil
	})
}
