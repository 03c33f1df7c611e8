package blueprint

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/yamldoc"
)

type refs map[string]bool

func (r refs) ProviderExists(n string) bool { return r[n] }

func TestGoodBlueprint(t *testing.T) {
	bp, err := Parse("testdata/dev.yaml", []byte(`version: 1
name: dev
policy:
  inline:
    version: 1
    network_policies:
      pypi:
        endpoints: [{host: pypi.org, port: 443}]
providers: [gh]
mcp_servers:
  - name: fs
    transport: in-sandbox
    command: [node, server.js]
    denied_tools: ["write_*"]
forwards: [{port: "7301"}, {port: "127.0.0.1:7302", reverse: true}]
uploads: [{from: src, to: /sandbox/src}]
resources: {cpu: "1.5", memory: 2G, pids: 256}
env: {MODE: fast}
workdir: /sandbox/src
labels: {team: agents}
exporters:
  - {type: otlp, endpoint: "http://127.0.0.1:4317"}
  - {type: jsonl, file: events.jsonl}
`), refs{"gh": true})
	if err != nil {
		t.Fatal(err)
	}
	if bp.Driver != "local" || !strings.Contains(string(bp.PolicyData), "pypi.org") || bp.Path("src") != "testdata/src" {
		t.Fatalf("%+v %s", bp, bp.PolicyData)
	}
	if got := bp.envList(); len(got) != 1 || got[0] != "MODE=fast" {
		t.Fatalf("env %v", got)
	}
	sp := bp.Exporters[1].Spec(bp, "dev-1", 1)
	if sp.Name != "dev-1-jsonl-1" || !strings.HasSuffix(sp.File, "/controller/blueprint/testdata/events.jsonl") || len(sp.Sandboxes) != 1 || sp.Sandboxes[0] != "dev-1" {
		t.Fatalf("exporter spec %+v", sp)
	}
}

func TestBadBlueprintEveryProblem(t *testing.T) {
	_, err := Load("testdata/bad.yaml", refs{})
	var ps yamldoc.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].Msg, "colour") || ps[0].Line != 5 {
		t.Fatalf("an unknown key must be reported first, with its line: %v", err)
	}
}

func TestBadBlueprintSemantics(t *testing.T) {
	data := []byte(`version: 2
name: Bad Name
driver: kvm
image: ./missing.tar
policy:
  file: ../../policy/testdata/bad-semantic.yaml
providers: [nope]
mcp_servers:
  - name: gh
    transport: bridge
    env: [GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789]
  - name: gh
    transport: carrier-pigeon
forwards:
  - port: "99999"
uploads:
  - from: ./no-such-dir
resources:
  cpu: lots
env:
  API_KEY: sk-abcdefghijklmnopqrstuvwxyz012345
  MODE: fast
workdir: relative
exporters:
  - {type: otlp, endpoint: "localhost:4317"}
  - {type: prometheus}
inference:
  routes: [{api: gemini, upstream: "http://127.0.0.1:1", provider: p}]
`)
	_, err := Parse("testdata/bad2.yaml", data, refs{})
	var ps yamldoc.Problems
	if !errors.As(err, &ps) {
		t.Fatal(err)
	}
	for _, w := range []struct {
		line int
		text string
	}{
		{1, "version must be 1"},
		{2, "name"},
		{3, `driver "kvm"`},
		{4, "missing.tar"},
		{6, "is not valid"},
		{7, `no provider "nope"`},
		{9, "needs command"},
		{11, "looks like a secret"},
		{12, "listed twice"},
		{13, "carrier-pigeon"},
		{15, "99999"},
		{17, "no-such-dir"},
		{19, "cpu"},
		{21, "API_KEY looks like a secret"},
		{23, "must be absolute"},
		{25, "--endpoint must be an http://"},
		{26, "one address per installation"},
		{28, "api \"gemini\": use openai or anthropic"},
	} {
		found := false
		for _, p := range ps {
			if p.Line == w.line && strings.Contains(p.Msg, w.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %q at line %d in:\n%v", w.text, w.line, err)
		}
	}
	for _, p := range ps {
		if strings.Contains(p.Msg, "MODE") {
			t.Errorf("a plain setting was flagged: %v", p)
		}
	}
}

func TestLooksSecret(t *testing.T) {
	for _, tc := range []struct {
		k, v string
		want bool
	}{
		{"GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", true},
		{"X", "AKIAABCDEFGHIJKLMNOP", true},
		{"OPENAI", "sk-abcdefghijklmnopqrstuvwx", true},
		{"DB_PASSWORD", "hunter2hunter2", true},
		{"LOG_LEVEL", "debug", false},
		{"TOKEN_URL", "https://example.com/token", false},
		{"PATH_PREFIX", "/usr/local/bin", false},
	} {
		if got := LooksSecret(tc.k, tc.v); got != tc.want {
			t.Errorf("LooksSecret(%s, %s) = %v", tc.k, tc.v, got)
		}
	}
}

// TestSchemaMatchesStruct: every key of the Blueprint struct is in the
// JSON Schema editors use, and the schema has no key the parser refuses.
func TestSchemaMatchesStruct(t *testing.T) {
	b, err := os.ReadFile("../../docs/blueprint.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(Blueprint{})
	keys := map[string]bool{}
	for i := range typ.NumField() {
		tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		keys[tag] = true
		if _, ok := s.Properties[tag]; !ok {
			t.Errorf("schema lacks %s", tag)
		}
	}
	for k := range s.Properties {
		if !keys[k] {
			t.Errorf("schema has %s, which the parser refuses", k)
		}
	}
}

// TestSchemaMatchesMCPServer: the schema's mcp_servers items have exactly
// the MCPServer struct's keys.
func TestSchemaMatchesMCPServer(t *testing.T) {
	b, err := os.ReadFile("../../docs/blueprint.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			MCP struct {
				Items struct {
					Properties map[string]json.RawMessage `json:"properties"`
				} `json:"items"`
			} `json:"mcp_servers"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	props := s.Properties.MCP.Items.Properties
	typ := reflect.TypeOf(MCPServer{})
	n := 0
	for i := range typ.NumField() {
		tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !typ.Field(i).IsExported() {
			continue
		}
		n++
		if _, ok := props[tag]; !ok {
			t.Errorf("schema's mcp_servers lacks %s", tag)
		}
	}
	if n != len(props) {
		t.Errorf("schema's mcp_servers has %d keys, the parser %d", len(props), n)
	}
}

func TestOverlappingUploads(t *testing.T) {
	for _, c := range []struct {
		to   []string
		want bool
	}{
		{[]string{"/sandbox/src", "/sandbox/docs"}, false},
		{[]string{"/sandbox/src", "/sandbox/src/sub"}, true},
		{[]string{"/sandbox/src/", "/sandbox/src"}, true},
		{[]string{"/sandbox/src", "/sandbox/srcx"}, false},
		{[]string{"", "/sandbox/x"}, true},
		{[]string{"/a"}, false},
	} {
		var us []Upload
		for _, to := range c.to {
			us = append(us, Upload{From: "x", To: to})
		}
		if got := overlapping(us); got != c.want {
			t.Errorf("overlapping(%v) = %v", c.to, got)
		}
	}
}
