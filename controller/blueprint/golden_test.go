package blueprint

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

// renderBlueprint is what a golden file holds: every problem, one per
// line, or the parsed blueprint with what Apply sends for it.
func renderBlueprint(file string) []byte {
	bp, err := Load(file, refs{"gh": true})
	if err != nil {
		return []byte("error:\n" + err.Error() + "\n")
	}
	type server struct {
		Rules     []protocol.MCPRule `json:"rules,omitempty"`
		DenyRules []protocol.MCPRule `json:"deny_rules,omitempty"`
	}
	out := struct {
		Blueprint    *Blueprint        `json:"blueprint"`
		Env          []string          `json:"env,omitempty"`
		PolicySource string            `json:"policy_source,omitempty"`
		MCP          map[string]server `json:"mcp_rules,omitempty"`
	}{Blueprint: bp, Env: bp.envList(), PolicySource: bp.PolicySource}
	for _, m := range bp.MCPServers {
		if len(m.rules)+len(m.denyRules) > 0 {
			if out.MCP == nil {
				out.MCP = map[string]server{}
			}
			out.MCP[m.Name] = server{m.rules, m.denyRules}
		}
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

// TestGolden: each blueprint in testdata parses to its golden value, or
// fails with exactly its golden problems (`go test ./controller/blueprint
// -update` rewrites them).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("inputs: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			yamldoctest.Golden(t, filepath.Join("testdata", "golden", name+".golden"), renderBlueprint(f), *update)
		})
	}
}

// TestGoldenCoversEveryMessage: every message blueprint validation can
// report appears in some golden file.
func TestGoldenCoversEveryMessage(t *testing.T) {
	formats, err := yamldoctest.Formats([]string{"blueprint.go"}, "bad")
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
