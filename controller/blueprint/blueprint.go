// Package blueprint reads blueprints: one versioned YAML file that says
// everything a sandbox needs (driver, image or rootfs, policy, providers,
// MCP servers, forwards, uploads, resources, env), validates them with
// file:line:column errors, and applies them as one create with per-phase
// timings and rollback.
package blueprint

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/inference"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/controller/yamldoc"
	"github.com/bohica-labs/darkshell/protocol"
)

// Version is the schema version this build reads.
const Version = 1

// Blueprint is a blueprint file.
type Blueprint struct {
	Version    int               `yaml:"version" json:"version"`
	Name       string            `yaml:"name" json:"name"`
	Driver     string            `yaml:"driver,omitempty" json:"driver,omitempty"`
	Image      string            `yaml:"image,omitempty" json:"image,omitempty"`
	Rootfs     string            `yaml:"rootfs,omitempty" json:"rootfs,omitempty"`
	Policy     *PolicyRef        `yaml:"policy,omitempty" json:"policy,omitempty"`
	Providers  []string          `yaml:"providers,omitempty" json:"providers,omitempty"`
	MCPServers []MCPServer       `yaml:"mcp_servers,omitempty" json:"mcp_servers,omitempty"`
	Forwards   []Forward         `yaml:"forwards,omitempty" json:"forwards,omitempty"`
	Uploads    []Upload          `yaml:"uploads,omitempty" json:"uploads,omitempty"`
	Resources  *Resources        `yaml:"resources,omitempty" json:"resources,omitempty"`
	Env        map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	Workdir    string            `yaml:"workdir,omitempty" json:"workdir,omitempty"`
	Labels     map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Exporters send this sandbox's events, traces and metrics (added at
	// apply, scoped to the sandbox, removed with it; docs/export.md).
	Exporters []Exporter `yaml:"exporters,omitempty" json:"exporters,omitempty"`
	// Inference is the sandbox's inference endpoint (inference.local):
	// routes and redaction (set at apply; docs/export.md "Inference").
	Inference *inference.Config `yaml:"inference,omitempty" json:"inference,omitempty"`

	// Dir is the blueprint file's directory: relative paths start there.
	Dir string `yaml:"-" json:"-"`
	// PolicyData is the policy's content once resolved (file or inline).
	PolicyData   []byte `yaml:"-" json:"-"`
	PolicySource string `yaml:"-" json:"-"`
}

// PolicyRef is a policy file path, or an inline policy.
type PolicyRef struct {
	File   string         `yaml:"file,omitempty" json:"file,omitempty"`
	Inline *policy.Policy `yaml:"inline,omitempty" json:"inline,omitempty"`
}

// MCPServer is an MCP server the sandbox gets.
type MCPServer struct {
	Name      string   `yaml:"name" json:"name"`
	Transport string   `yaml:"transport" json:"transport"`
	Command   []string `yaml:"command,omitempty" json:"command,omitempty"`
	URL       string   `yaml:"url,omitempty" json:"url,omitempty"`
	Providers []string `yaml:"providers,omitempty" json:"providers,omitempty"`
	// Env: KEY=VALUE settings, or KEY to take a provider credential.
	Env        []string `yaml:"env,omitempty" json:"env,omitempty"`
	AllowTools []string `yaml:"allowed_tools,omitempty" json:"allowed_tools,omitempty"`
	DenyTools  []string `yaml:"denied_tools,omitempty" json:"denied_tools,omitempty"`
	// Rules and DenyRules are tool rules in the shape of OpenShell's
	// `protocol: mcp` rules: `rules: [{allow: {method, tool, params}}]`,
	// `deny_rules: [{method, tool, params}]`. They apply together with
	// allowed_tools and denied_tools.
	Rules     []policy.Rule  `yaml:"rules,omitempty" json:"rules,omitempty"`
	DenyRules []policy.Match `yaml:"deny_rules,omitempty" json:"deny_rules,omitempty"`

	// rules and denyRules are Rules and DenyRules once checked.
	rules, denyRules []protocol.MCPRule
}

// Exporter is an OTLP or JSON-lines exporter of the sandbox's events
// (`darkshell export add` scoped to the sandbox).
type Exporter struct {
	Type     string            `yaml:"type" json:"type"`
	Endpoint string            `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	Protocol string            `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Headers  map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Signals  []string          `yaml:"signals,omitempty" json:"signals,omitempty"`
	File     string            `yaml:"file,omitempty" json:"file,omitempty"`
}

// Spec is the exporter record for sandbox name (the i-th exporter).
func (e *Exporter) Spec(bp *Blueprint, name string, i int) *export.Spec {
	f := e.File
	if f != "" && f != "-" {
		f = bp.Path(f)
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
	}
	return &export.Spec{Name: fmt.Sprintf("%s-%s-%d", name, e.Type, i), Type: e.Type, Endpoint: e.Endpoint, Protocol: e.Protocol,
		Headers: e.Headers, Signals: e.Signals, File: f, Sandboxes: []string{name}}
}

// Forward is a port forward: `[bind:]port` from the host into the
// sandbox, or the other way with reverse.
type Forward struct {
	Port    string `yaml:"port" json:"port"`
	Reverse bool   `yaml:"reverse,omitempty" json:"reverse,omitempty"`
}

// Upload copies a host tree into the sandbox at create.
type Upload struct {
	From    string   `yaml:"from" json:"from"`
	To      string   `yaml:"to,omitempty" json:"to,omitempty"`
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty"`
	Include []string `yaml:"include,omitempty" json:"include,omitempty"`
}

// Resources are the sandbox's limits.
type Resources struct {
	CPU    string `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty"`
	Pids   int64  `yaml:"pids,omitempty" json:"pids,omitempty"`
}

// Refs checks references against the installation (nil: not checked).
type Refs interface {
	ProviderExists(name string) bool
}

// Load reads, resolves and validates a blueprint file.
func Load(file string, refs Refs) (*Blueprint, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read blueprint: %w", err)
	}
	return Parse(file, data, refs)
}

// Parse decodes and validates a blueprint; problems carry positions.
func Parse(file string, data []byte, refs Refs) (*Blueprint, error) {
	var bp Blueprint
	doc, err := yamldoc.Decode(file, data, &bp)
	if err != nil {
		return nil, err
	}
	bp.Dir = filepath.Dir(file)
	if ps := bp.validate(doc, refs); len(ps) > 0 {
		ps.Sort()
		return nil, ps
	}
	return &bp, nil
}

// Path resolves p against the blueprint's directory.
func (bp *Blueprint) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return filepath.Join(bp.Dir, p)
}

// secretLooking matches values that look like credentials.
var secretLooking = sync.OnceValue(func() []*regexp.Regexp {
	return []*regexp.Regexp{
		regexp.MustCompile(`^(ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}$`),
		regexp.MustCompile(`^sk-[A-Za-z0-9_-]{20,}$`),
		regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{16}$`),
		regexp.MustCompile(`^xox[abprs]-[A-Za-z0-9-]{10,}$`),
		regexp.MustCompile(`^-----BEGIN [A-Z ]*PRIVATE KEY-----`),
		regexp.MustCompile(`^eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.`), // a JWT
	}
})

var secretKey = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)(secret|token|password|passwd|api_?key|private_?key|credential)`)
})

// LooksSecret reports whether an env entry looks like a credential.
func LooksSecret(key, value string) bool {
	for _, re := range secretLooking() {
		if re.MatchString(value) {
			return true
		}
	}
	return secretKey().MatchString(key) && len(value) >= 12 && !strings.ContainsAny(value, " /")
}

var drivers = []string{"local", "ssh", "podman", "docker", "kubernetes"}

func (bp *Blueprint) validate(d *yamldoc.Doc, refs Refs) yamldoc.Problems {
	var ps yamldoc.Problems
	bad := func(at, format string, args ...any) { ps = append(ps, d.Problem(at, format, args...)) }
	if bp.Version == 0 {
		bad("$", "version is missing: write `version: %d` at the top", Version)
	} else if bp.Version != Version {
		bad("$.version", "version must be %d (got %d): write `version: %d`", Version, bp.Version, Version)
	}
	if err := state.ValidName(bp.Name); err != nil {
		bad("$.name", "%v", err)
	}
	if bp.Driver == "" {
		bp.Driver = "local"
	}
	okDriver := false
	for _, dr := range drivers {
		okDriver = okDriver || dr == bp.Driver
	}
	if !okDriver {
		bad("$.driver", "driver %q is not one of %s", bp.Driver, strings.Join(drivers, ", "))
	}
	if bp.Image != "" && bp.Rootfs != "" {
		bad("$.rootfs", "image and rootfs are exclusive: keep one")
	}
	if bp.Rootfs != "" {
		if fi, err := os.Stat(bp.Path(bp.Rootfs)); err != nil || !fi.IsDir() {
			bad("$.rootfs", "rootfs %s is not a directory", bp.Path(bp.Rootfs))
		}
	}
	if bp.Image != "" && (strings.HasPrefix(bp.Image, ".") || strings.HasPrefix(bp.Image, "/")) {
		if _, err := os.Stat(bp.Path(bp.Image)); err != nil {
			bad("$.image", "image %s: %v", bp.Path(bp.Image), err)
		}
	}
	for i := range bp.Exporters {
		e := &bp.Exporters[i]
		at := fmt.Sprintf("$.exporters[%d]", i)
		if e.Type == export.TypePrometheus {
			bad(at+".type", "prometheus is one address per installation: use `darkshell export add prometheus`, not a blueprint")
			continue
		}
		if err := e.Spec(bp, "sandbox", i).Normalize(); err != nil { // the sandbox name is checked above
			bad(at, "%v", err)
		}
	}
	if bp.Inference != nil {
		if err := bp.Inference.Validate(); err != nil {
			bad("$.inference", "%v", err)
		}
	}
	if pr := bp.Policy; pr != nil {
		switch {
		case pr.File != "" && pr.Inline != nil:
			bad("$.policy", "policy: give file or inline, not both")
		case pr.File != "":
			f := bp.Path(pr.File)
			data, err := os.ReadFile(f)
			if err != nil {
				bad("$.policy.file", "policy file %s: %v", f, err)
				break
			}
			if _, err := policy.Parse(f, data); err != nil {
				bad("$.policy.file", "policy file %s is not valid:\n%v", f, err)
				break
			}
			bp.PolicyData, bp.PolicySource = data, f
		case pr.Inline != nil:
			if ips := pr.Inline.ValidateIn(d, "$.policy.inline"); len(ips) > 0 {
				ps = append(ps, ips...)
				break
			}
			bp.PolicyData, bp.PolicySource = inlineYAML(pr.Inline), d.File+" (inline policy)"
		default:
			bad("$.policy", "policy needs file: PATH or inline: {version: 1, ...}")
		}
	}
	for i, p := range bp.Providers {
		if refs != nil && !refs.ProviderExists(p) {
			bad(fmt.Sprintf("$.providers[%d]", i), "no provider %q: create it first with `darkshell provider create --name %s ...`", p, p)
		}
	}
	names := map[string]bool{}
	for i := range bp.MCPServers {
		m := &bp.MCPServers[i]
		at := fmt.Sprintf("$.mcp_servers[%d]", i)
		if m.Name == "" {
			bad(at, "name is required")
		} else if names[m.Name] {
			bad(at+".name", "MCP server %q is listed twice", m.Name)
		}
		names[m.Name] = true
		switch m.Transport {
		case "bridge", "in-sandbox":
			if len(m.Command) == 0 {
				bad(at, "transport %s needs command: [PROGRAM, ARGS...]", m.Transport)
			}
		case "http":
			if m.URL == "" {
				bad(at, "transport http needs url")
			}
		default:
			bad(at+".transport", "transport %q is not one of bridge, in-sandbox, http", m.Transport)
		}
		for j, p := range m.Providers {
			if refs != nil && !refs.ProviderExists(p) {
				bad(fmt.Sprintf("%s.providers[%d]", at, j), "no provider %q: create it first with `darkshell provider create`", p)
			}
		}
		for j, e := range m.Env {
			if k, v, ok := strings.Cut(e, "="); ok && LooksSecret(k, v) {
				bad(fmt.Sprintf("%s.env[%d]", at, j), "%s looks like a secret: put it in a provider (darkshell provider create) and list the key alone", k)
			}
		}
		for _, l := range []struct {
			key   string
			globs []string
		}{{"allowed_tools", m.AllowTools}, {"denied_tools", m.DenyTools}} {
			for j, g := range l.globs {
				if _, err := path.Match(g, ""); err != nil || g == "" {
					bad(fmt.Sprintf("%s.%s[%d]", at, l.key, j), "%q is not a tool glob (path.Match syntax, e.g. \"read_*\")", g)
				}
			}
		}
		m.rules, m.denyRules = policy.MCPRules(at, m.Rules, m.DenyRules, bad)
		if len(m.rules)+len(m.denyRules) > protocol.MaxMCPRules {
			bad(at, "%d rules, at most %d", len(m.rules)+len(m.denyRules), protocol.MaxMCPRules)
		}
	}
	for i, f := range bp.Forwards {
		if _, _, err := forward.ParseSpec(f.Port); err != nil {
			bad(fmt.Sprintf("$.forwards[%d].port", i), "%v", err)
		}
	}
	for i, u := range bp.Uploads {
		at := fmt.Sprintf("$.uploads[%d]", i)
		if u.From == "" {
			bad(at, "from (a host directory) is required")
			continue
		}
		if fi, err := os.Stat(bp.Path(u.From)); err != nil || !fi.IsDir() {
			bad(at+".from", "upload source %s is not a directory", bp.Path(u.From))
		}
	}
	if r := bp.Resources; r != nil {
		if r.CPU != "" {
			if v, err := strconv.ParseFloat(r.CPU, 64); err != nil || v <= 0 {
				bad("$.resources.cpu", "cpu %q is not a positive number of CPUs (e.g. \"1.5\")", r.CPU)
			}
		}
		if r.Pids < 0 {
			bad("$.resources.pids", "pids must be positive")
		}
	}
	for k, v := range bp.Env {
		if LooksSecret(k, v) {
			bad("$.env"+yamldoc.Key(k), "%s looks like a secret: env is for settings; put credentials in a provider and list it under providers", k)
		}
	}
	if bp.Workdir != "" && !strings.HasPrefix(bp.Workdir, "/") {
		bad("$.workdir", "workdir %q must be absolute", bp.Workdir)
	}
	return ps
}
