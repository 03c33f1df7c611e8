package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExportSandboxResources: a local sandbox with CPU, memory and pids
// limits runs a CPU burner and a few sleepers; its cgroup
// figures against its limits come out of the daemon's /metrics and, over
// OTLP, out of a real collector (the Jaeger v2 binary's metrics pipeline,
// debug exporter).
func TestExportSandboxResources(t *testing.T) {
	j := startJaeger(t)
	t.Setenv("DARKSHELL_EXPORT_METRIC_INTERVAL", "1s")
	e := newLocalEnv(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if _, errOut, code := e.ds("export", "add", "prometheus", "--listen", addr); code != 0 {
		t.Fatalf("export add prometheus: %s", errOut)
	}
	if _, errOut, code := e.ds("export", "add", "otlp", "--name", "m", "--signal", "metrics", "--endpoint", fmt.Sprintf("http://127.0.0.1:%d", j.otlpGRPC)); code != 0 {
		t.Fatalf("export add otlp: %s", errOut)
	}
	e.createLocal("rs", "--cpu-limit", "0.5", "--memory-limit", "256M", "--pids-limit", "64")
	// A fixed amount of CPU work (wall time would give little CPU on a
	// busy machine); `times` reports what the burner used, which the
	// cgroup's figure must include.
	out, errOut, code := e.ds("exec", "rs", "--", "sh", "-c", "sh -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done'; times")
	if code != 0 {
		t.Fatalf("burner: %s", errOut)
	}
	burned := 0.0
	if l := strings.Split(strings.TrimSpace(out), "\n"); len(l) == 2 {
		for _, f := range strings.Fields(l[1]) { // children: 0m0.52s 0m0.01s
			var m int
			var sec float64
			if _, err := fmt.Sscanf(f, "%dm%fs", &m, &sec); err == nil {
				burned += float64(m)*60 + sec
			}
		}
	}
	if burned < 0.1 {
		t.Fatalf("the burner used %.2f s of CPU (times: %q): too little to check against", burned, out)
	}
	t.Logf("the burner used %.2f s of CPU", burned)
	// Six long-lived processes for the pids gauge (sandboxd's memory alone
	// is well over the 1 MiB the memory check asks for).
	if _, errOut, code := e.ds("exec", "rs", "--", "sh", "-c",
		"for i in 1 2 3 4 5; do setsid sleep 300 </dev/null >/dev/null 2>&1 & done; setsid sleep 301 </dev/null >/dev/null 2>&1 & exit 0"); code != 0 {
		t.Fatalf("sleepers: %s", errOut)
	}
	metric := func(body, name string) (float64, bool) {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{[^}]*sandbox="rs"[^}]*\} ([0-9.e+-]+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(m[1], 64)
		return v, err == nil
	}
	var body string
	checks := []struct {
		name string
		ok   func(float64) bool
		want string
	}{
		{"darkshell_sandbox_cpu_limit", func(v float64) bool { return v == 0.5 }, "0.5"},
		{"darkshell_sandbox_cpu_time_seconds_total", func(v float64) bool { return v >= 0.95*burned && v < burned+60 }, fmt.Sprintf(">= the burner's %.2f s", burned)},
		{"darkshell_sandbox_memory_limit_bytes", func(v float64) bool { return v == 256<<20 }, "268435456"},
		{"darkshell_sandbox_memory_usage_bytes", func(v float64) bool { return v > 1<<20 && v <= 256<<20 }, "within (1 MiB, limit]"},
		{"darkshell_sandbox_pids_limit", func(v float64) bool { return v == 64 }, "64"},
		{"darkshell_sandbox_pids", func(v float64) bool { return v >= 6 && v <= 64 }, ">= 6 (the sleepers)"},
	}
	// The daemon sends figures every 5 s; the burner may still be counted.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := http.Get("http://" + addr + "/metrics"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			body = string(b)
		}
		bad := ""
		for _, c := range checks {
			if v, ok := metric(body, c.name); !ok || !c.ok(v) {
				bad = fmt.Sprintf("%s = %v (found %v), want %s", c.name, v, ok, c.want)
				break
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "darkshell_sandbox_") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("/metrics: %s\n%s", bad, strings.Join(lines, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Over OTLP: the collector's debug output names each instrument and
	// the sandbox's data point with its value.
	otlp := []struct{ name, value string }{
		{"darkshell.sandbox.cpu.limit", "Value: 0.500000"},
		{"darkshell.sandbox.memory.limit", "Value: 268435456"},
		{"darkshell.sandbox.pids.limit", "Value: 64"},
		{"darkshell.sandbox.cpu.time", "Value: "},
		{"darkshell.sandbox.memory.usage", "Value: "},
		{"darkshell.sandbox.pids", "Value: "},
	}
	var log string
	found := func(name, value string) bool {
		for _, blk := range strings.Split(log, "Descriptor:")[1:] {
			if !strings.Contains(blk, "-> Name: "+name+"\n") {
				continue
			}
			for _, dp := range strings.Split(blk, "NumberDataPoints #")[1:] {
				if strings.Contains(dp, "sandbox: Str(rs)") && strings.Contains(dp, value) {
					return true
				}
			}
		}
		return false
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(j.log.Name())
		log = string(b)
		missing := ""
		for _, o := range otlp {
			if !found(o.name, o.value) {
				missing = o.name
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector never got %s for sandbox rs over OTLP", missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
