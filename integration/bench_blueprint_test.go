package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkBlueprint: blueprint to ready sandbox on the local driver, as
// one `sandbox create --from` (a fresh CLI process, wall clock), side by
// side with the same set-up as the separate commands it replaces, for
// three blueprints: no uploads (policy file, env, limits, workdir); with
// two uploads; and with two uploads, a bridged npm MCP server and a
// forward (when node and the npm servers are installed). Target (issue 6,
// DESIGN.md): < 1 s without uploads.
func BenchmarkBlueprint(b *testing.B) {
	e := newLocalEnv(b)
	if _, err := e.c.Version(b.Context()); err != nil { // start the daemon outside the timing
		b.Fatal(err)
	}
	dir := b.TempDir()
	policyFile, _ := filepath.Abs("../policies/default.yaml")
	// Two upload trees: 300 files of 4 KiB in 10 dirs, 50 of 1 KiB.
	for i := range 300 {
		d := filepath.Join(dir, "src", fmt.Sprintf("pkg%d", i%10))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.go", i)), []byte(strings.Repeat("x", 4096)), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "docs"), 0o755)
	for i := range 50 {
		os.WriteFile(filepath.Join(dir, "docs", fmt.Sprintf("d%d.md", i)), []byte(strings.Repeat("y", 1024)), 0o644)
	}
	everything := ""
	if _, err := exec.LookPath("node"); err == nil {
		servers := os.Getenv("DARKSHELL_MCP_SERVERS")
		if servers == "" {
			root, _ := exec.Command("go", "env", "GOMOD").Output()
			servers = filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), ".cache", "mcp-servers")
		}
		if _, err := os.Stat(everythingJS(servers)); err == nil {
			everything = everythingJS(servers)
		}
	}
	port := freeSandboxPort(b, 7360)

	type scenario struct {
		name   string
		yaml   string
		manual func(name string) [][]string // the separate commands
	}
	base := fmt.Sprintf("version: 1\nname: bench\ndriver: local\npolicy:\n  file: %s\nenv: {MODE: bench}\nresources: {pids: 256, memory: 512M}\nworkdir: /sandbox/work\n", policyFile)
	manualBase := func(name string) [][]string {
		return [][]string{{"sandbox", "create", name, "--policy", policyFile, "--env", "MODE=bench", "--pids-limit", "256", "--memory-limit", "512M"}}
	}
	tail := func(name string) [][]string {
		return [][]string{{"exec", name, "--", "mkdir", "-p", "--", "/sandbox/work"}, {"exec", name, "--", "true"}}
	}
	uploads := "uploads:\n  - {from: src, to: /sandbox/src}\n  - {from: docs, to: /sandbox/docs}\n"
	manualUploads := func(name string) [][]string {
		return [][]string{{"sandbox", "upload", name, filepath.Join(dir, "src"), "/sandbox/src"}, {"sandbox", "upload", name, filepath.Join(dir, "docs"), "/sandbox/docs"}}
	}
	scenarios := []scenario{
		{"no uploads (policy, env, limits, workdir)", base, func(n string) [][]string { return append(manualBase(n), tail(n)...) }},
		{"two uploads (350 files, 1.2 MiB)", base + uploads, func(n string) [][]string {
			return slices.Concat(manualBase(n), manualUploads(n), tail(n))
		}},
	}
	if everything != "" {
		scenarios = append(scenarios, scenario{"uploads + bridged MCP server + forward",
			base + uploads + fmt.Sprintf("mcp_servers:\n  - {name: every, transport: bridge, command: [node, %s]}\nforwards:\n  - {port: \"%d\"}\n", everything, port),
			func(n string) [][]string {
				return slices.Concat(manualBase(n), manualUploads(n),
					[][]string{{"mcp", "add", n, "every", "--transport", "bridge", "--", "node", everything}, {"forward", "start", fmt.Sprint(port), n}}, tail(n))
			}})
	} else {
		fmt.Println("SKIPPING the MCP scenario: node or the npm MCP servers (make deps) are missing")
	}

	n := benchRuns()
	type result struct {
		one, manual []time.Duration
		phases      map[string][]time.Duration
		commands    int
	}
	results := make([]result, len(scenarios))
	mustDS := func(args ...string) {
		if out, errOut, code := e.ds(args...); code != 0 {
			b.Fatalf("darkshell %v: %d %s %s", args, code, out, errOut)
		}
	}
	b.ResetTimer()
	for si, s := range scenarios {
		r := &results[si]
		r.phases = map[string][]time.Duration{}
		file := filepath.Join(dir, fmt.Sprintf("bp%d.yaml", si))
		os.WriteFile(file, []byte(s.yaml), 0o600)
		for i := range n {
			name := fmt.Sprintf("bpbench-%d-%d", si, i)
			t0 := time.Now()
			out, errOut, code := e.ds("-o", "json", "sandbox", "create", "--from", file, "--name", name)
			r.one = append(r.one, time.Since(t0))
			if code != 0 {
				b.Fatalf("%s: %d %s %s", s.name, code, out, errOut)
			}
			var rep struct {
				Phases []struct {
					Phase string
					Ms    int64
				}
			}
			json.Unmarshal([]byte(out), &rep)
			for _, p := range rep.Phases {
				r.phases[p.Phase] = append(r.phases[p.Phase], time.Duration(p.Ms)*time.Millisecond)
			}
			mustDS("sandbox", "delete", name)

			name = fmt.Sprintf("manual-%d-%d", si, i)
			cmds := s.manual(name)
			r.commands = len(cmds)
			t0 = time.Now()
			for _, c := range cmds {
				mustDS(c...)
			}
			r.manual = append(r.manual, time.Since(t0))
			mustDS("sandbox", "delete", name)
		}
	}
	b.StopTimer()
	fmt.Printf("\nblueprint to ready, local driver, %d runs each, one fresh CLI per command (same machine, same run)\n", n)
	fmt.Printf("%-42s %9s %9s | %-22s %9s %9s | %7s\n", "blueprint", "p50", "p99", "same as separate cmds", "p50", "p99", "ratio")
	for si, s := range scenarios {
		r := results[si]
		slices.Sort(r.one)
		slices.Sort(r.manual)
		fmt.Printf("%-42s %9s %9s | %-22s %9s %9s | %6.2fx\n", s.name, pct(r.one, 50).Round(time.Millisecond), pct(r.one, 99).Round(time.Millisecond),
			fmt.Sprintf("%d commands", r.commands), pct(r.manual, 50).Round(time.Millisecond), pct(r.manual, 99).Round(time.Millisecond), ratio(pct(r.one, 50), pct(r.manual, 50)))
		var ph []string
		for _, p := range []string{"create", "uploads", "mcp", "forwards", "workdir", "ready"} {
			if ds := r.phases[p]; len(ds) > 0 {
				slices.Sort(ds)
				ph = append(ph, fmt.Sprintf("%s %s", p, pct(ds, 50)))
			}
		}
		fmt.Printf("%-42s phases p50: %s\n", "", strings.Join(ph, ", "))
	}
	r0 := results[0].one
	b.ReportMetric(float64(pct(r0, 50).Milliseconds()), "no-uploads-p50-ms")
	fmt.Printf("target: blueprint to ready without uploads p50 < 1s: %v (%s)\n", pct(r0, 50) < time.Second, pct(r0, 50).Round(time.Millisecond))
}
