package policy

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/yamldoc/yamldoctest"
	"github.com/bohica-labs/darkshell/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenInputs are the policy files the golden tests read: the test cases
// in testdata and the shipped policies.
func goldenInputs(t *testing.T) map[string]string {
	t.Helper()
	in := map[string]string{}
	for _, g := range []struct{ glob, prefix string }{{"testdata/*.yaml", ""}, {"../../policies/*.yaml", "policies-"}} {
		files, err := filepath.Glob(g.glob)
		if err != nil || len(files) == 0 {
			t.Fatalf("no inputs %s: %v", g.glob, err)
		}
		for _, f := range files {
			in[g.prefix+strings.TrimSuffix(filepath.Base(f), ".yaml")] = f
		}
	}
	return in
}

// render is what a golden file holds: every problem, one per line, or the
// parsed policy with what the drivers and the MCP proxy get from it.
func render(file string) []byte {
	p, err := Load(file)
	if err != nil {
		return []byte("error:\n" + err.Error() + "\n")
	}
	out := struct {
		Policy   *Policy                       `json:"policy"`
		FSRules  *FSRules                      `json:"fs_rules,omitempty"`
		RunAs    [2]int64                      `json:"run_as"`
		MCPRules map[string][]protocol.MCPRule `json:"mcp_rules,omitempty"`
	}{Policy: p}
	if fs, ok := p.FSRules(); ok {
		out.FSRules = &fs
	}
	out.RunAs[0], out.RunAs[1] = p.RunAs()
	for name, r := range p.NetworkPolicies {
		for _, e := range r.Endpoints {
			if e.Protocol != "mcp" {
				continue
			}
			if out.MCPRules == nil {
				out.MCPRules = map[string][]protocol.MCPRule{}
			}
			allow, deny := MCPRules("", e.Rules, e.DenyRules, func(string, string, ...any) {})
			out.MCPRules[name+" "+e.Host+" allow"] = allow
			out.MCPRules[name+" "+e.Host+" deny"] = deny
		}
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

// TestGolden: each policy file's parse result or every error message, as
// testdata/golden/NAME.golden (`go test ./controller/policy -update`).
func TestGolden(t *testing.T) {
	for name, file := range goldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			yamldoctest.Golden(t, filepath.Join("testdata", "golden", name+".golden"), render(file), *update)
		})
	}
}

// TestGoldenCoversEveryMessage: every message the validator can report
// appears in some golden file, so no error text changes unseen.
func TestGoldenCoversEveryMessage(t *testing.T) {
	formats, err := yamldoctest.Formats([]string{"policy.go", "mcp.go"}, "bad")
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	goldens, _ := filepath.Glob("testdata/golden/*.golden")
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, f := range yamldoctest.Uncovered(formats, all.String()) {
		t.Errorf("no golden file shows the message %q: add a case to testdata", f)
	}
}
