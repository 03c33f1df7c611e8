// Package policy reads sandbox policy files in OpenShell's format
// (`version: 1`, unknown keys rejected), so one file works in both systems,
// validates them with file:line:column errors, and turns the static parts
// (filesystem, landlock, process) into what a driver enforces.
package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/controller/yamldoc"
)

// Limits from OpenShell's validator.
const (
	MaxPathLen            = 4096
	MaxPaths              = 256
	MaxMiddlewares        = 10
	MaxMiddlewareGlobs    = 32
	DefaultSandboxUser    = "sandbox"
	CompatBestEffort      = "best_effort"
	CompatHardRequirement = "hard_requirement"
)

// Policy is a policy file. Every field OpenShell accepts is accepted here;
// anything else is an error.
type Policy struct {
	Version            int                    `yaml:"version" json:"version"`
	FilesystemPolicy   *Filesystem            `yaml:"filesystem_policy,omitempty" json:"filesystem_policy,omitempty"`
	Landlock           *Landlock              `yaml:"landlock,omitempty" json:"landlock,omitempty"`
	Process            *Process               `yaml:"process,omitempty" json:"process,omitempty"`
	NetworkPolicies    map[string]NetworkRule `yaml:"network_policies,omitempty" json:"network_policies,omitempty"`
	NetworkMiddlewares map[string]Middleware  `yaml:"network_middlewares,omitempty" json:"network_middlewares,omitempty"`
}

// Filesystem is the Landlock allow-list: paths not listed are inaccessible.
type Filesystem struct {
	IncludeWorkdir *bool    `yaml:"include_workdir,omitempty" json:"include_workdir,omitempty"`
	ReadOnly       []string `yaml:"read_only,omitempty" json:"read_only,omitempty"`
	ReadWrite      []string `yaml:"read_write,omitempty" json:"read_write,omitempty"`
}

// Landlock says what happens when the kernel cannot enforce everything.
type Landlock struct {
	Compatibility string `yaml:"compatibility,omitempty" json:"compatibility,omitempty"`
}

// Process is the identity sandbox processes run as.
type Process struct {
	RunAsUser  string `yaml:"run_as_user,omitempty" json:"run_as_user,omitempty"`
	RunAsGroup string `yaml:"run_as_group,omitempty" json:"run_as_group,omitempty"`
}

// NetworkRule is one entry of network_policies: which binaries may reach
// which endpoints.
type NetworkRule struct {
	Name      string     `yaml:"name,omitempty" json:"name,omitempty"`
	Endpoints []Endpoint `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	Binaries  []Binary   `yaml:"binaries,omitempty" json:"binaries,omitempty"`
}

// Binary identifies a calling program by its real executable path (glob).
type Binary struct {
	Path    string `yaml:"path" json:"path"`
	Harness any    `yaml:"harness,omitempty" json:"harness,omitempty"` // accepted, ignored (deprecated upstream)
}

// Endpoint is one destination of a network rule.
type Endpoint struct {
	Host                         string       `yaml:"host,omitempty" json:"host,omitempty"`
	Port                         int          `yaml:"port,omitempty" json:"port,omitempty"`
	Ports                        []int        `yaml:"ports,omitempty" json:"ports,omitempty"`
	Path                         string       `yaml:"path,omitempty" json:"path,omitempty"`
	Protocol                     string       `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	TLS                          string       `yaml:"tls,omitempty" json:"tls,omitempty"`
	Enforcement                  string       `yaml:"enforcement,omitempty" json:"enforcement,omitempty"`
	Access                       string       `yaml:"access,omitempty" json:"access,omitempty"`
	Rules                        []Rule       `yaml:"rules,omitempty" json:"rules,omitempty"`
	DenyRules                    []Match      `yaml:"deny_rules,omitempty" json:"deny_rules,omitempty"`
	AllowedIPs                   []string     `yaml:"allowed_ips,omitempty" json:"allowed_ips,omitempty"`
	AllowEncodedSlash            bool         `yaml:"allow_encoded_slash,omitempty" json:"allow_encoded_slash,omitempty"`
	WebsocketCredentialRewrite   bool         `yaml:"websocket_credential_rewrite,omitempty" json:"websocket_credential_rewrite,omitempty"`
	RequestBodyCredentialRewrite bool         `yaml:"request_body_credential_rewrite,omitempty" json:"request_body_credential_rewrite,omitempty"`
	AllowUninspectedCredentials  bool         `yaml:"allow_uninspected_credentials,omitempty" json:"allow_uninspected_credentials,omitempty"`
	CredentialSigning            string       `yaml:"credential_signing,omitempty" json:"credential_signing,omitempty"`
	SigningService               string       `yaml:"signing_service,omitempty" json:"signing_service,omitempty"`
	SigningRegion                string       `yaml:"signing_region,omitempty" json:"signing_region,omitempty"`
	CredentialBinding            *CredBinding `yaml:"credential_binding,omitempty" json:"credential_binding,omitempty"`
	PersistedQueries             any          `yaml:"persisted_queries,omitempty" json:"persisted_queries,omitempty"`
	GraphQLPersistedQueries      any          `yaml:"graphql_persisted_queries,omitempty" json:"graphql_persisted_queries,omitempty"`
	GraphQLMaxBodyBytes          int          `yaml:"graphql_max_body_bytes,omitempty" json:"graphql_max_body_bytes,omitempty"`
	JSONRPC                      *BodyLimit   `yaml:"json_rpc,omitempty" json:"json_rpc,omitempty"`
	MCP                          *MCPOptions  `yaml:"mcp,omitempty" json:"mcp,omitempty"`
}

// CredBinding binds an endpoint to a provider's credentials.
type CredBinding struct {
	Provider string `yaml:"provider" json:"provider"`
}

// BodyLimit bounds inspected request bodies.
type BodyLimit struct {
	MaxBodyBytes int `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
}

// MCPOptions tune MCP inspection on an endpoint.
type MCPOptions struct {
	MaxBodyBytes            int   `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	StrictToolNames         *bool `yaml:"strict_tool_names,omitempty" json:"strict_tool_names,omitempty"`
	AllowAllKnownMCPMethods bool  `yaml:"allow_all_known_mcp_methods,omitempty" json:"allow_all_known_mcp_methods,omitempty"`
}

// Rule is an allow rule.
type Rule struct {
	Allow Match `yaml:"allow" json:"allow"`
}

// Match selects requests (fields by protocol: REST method/path/query,
// GraphQL operation_*/fields, MCP method/tool/params, JSON-RPC method).
type Match struct {
	Method        string `yaml:"method,omitempty" json:"method,omitempty"`
	Path          string `yaml:"path,omitempty" json:"path,omitempty"`
	Query         any    `yaml:"query,omitempty" json:"query,omitempty"`
	OperationType string `yaml:"operation_type,omitempty" json:"operation_type,omitempty"`
	OperationName string `yaml:"operation_name,omitempty" json:"operation_name,omitempty"`
	Fields        any    `yaml:"fields,omitempty" json:"fields,omitempty"`
	Tool          any    `yaml:"tool,omitempty" json:"tool,omitempty"`
	Params        any    `yaml:"params,omitempty" json:"params,omitempty"`
	Command       string `yaml:"command,omitempty" json:"command,omitempty"`
}

// Middleware is an entry of network_middlewares.
type Middleware struct {
	Name       string          `yaml:"name,omitempty" json:"name,omitempty"`
	Middleware string          `yaml:"middleware" json:"middleware"`
	Order      int             `yaml:"order" json:"order"`
	Config     any             `yaml:"config,omitempty" json:"config,omitempty"`
	OnError    string          `yaml:"on_error,omitempty" json:"on_error,omitempty"`
	Endpoints  *MiddlewareHost `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
}

// MiddlewareHost selects the hosts a middleware runs for.
type MiddlewareHost struct {
	Include []string `yaml:"include,omitempty" json:"include,omitempty"`
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty"`
}

// Load reads and validates a policy file.
func Load(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(file, data)
}

// Parse decodes and validates a policy; errors are yamldoc.Problems naming
// file:line:column.
func Parse(file string, data []byte) (*Policy, error) {
	var p Policy
	doc, err := yamldoc.Decode(file, data, &p)
	if err != nil {
		return nil, err
	}
	if ps := p.validate(doc, "$"); len(ps) > 0 {
		ps.Sort()
		return nil, ps
	}
	return &p, nil
}

// Validate checks a policy that did not come from a file (no positions).
func (p *Policy) Validate() error {
	if ps := p.validate(nil, "$"); len(ps) > 0 {
		ps.Sort()
		return ps
	}
	return nil
}

// ValidateIn checks a policy embedded in another document d at the YAML
// path root (e.g. a blueprint's `$.policy.inline`), so that problems point
// into that document.
func (p *Policy) ValidateIn(d *yamldoc.Doc, root string) yamldoc.Problems {
	return p.validate(d, root)
}

var (
	protocols    = []string{"", "tcp", "rest", "websocket", "graphql", "mcp", "json-rpc", "sql"}
	tlsModes     = []string{"", "auto", "skip", "terminate", "passthrough"}
	enforcements = []string{"", "enforce", "audit"}
	accesses     = []string{"", "read-only", "read-write", "full"}
	signings     = []string{"", "sigv4", "sigv4:body", "sigv4:no_body"}
	onErrors     = []string{"", "fail_closed", "fail_open"}
)

func (p *Policy) validate(d *yamldoc.Doc, root string) yamldoc.Problems {
	var ps yamldoc.Problems
	bad := func(at, format string, args ...any) {
		ps = append(ps, d.Problem(root+strings.TrimPrefix(at, "$"), format, args...))
	}
	oneOf := func(at, v string, allowed []string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(at, "%q is not one of %s", v, strings.Join(allowed[1:], ", "))
	}
	if p.Version == 0 {
		bad("$", "version is missing: write `version: 1` at the top")
	} else if p.Version != 1 {
		bad("$.version", "version must be 1 (got %d): write `version: 1` at the top", p.Version)
	}
	if fs := p.FilesystemPolicy; fs != nil {
		if n := len(fs.ReadOnly) + len(fs.ReadWrite); n > MaxPaths {
			bad("$.filesystem_policy", "%d paths, at most %d", n, MaxPaths)
		}
		for _, l := range []struct {
			key   string
			paths []string
		}{{"read_only", fs.ReadOnly}, {"read_write", fs.ReadWrite}} {
			for i, fp := range l.paths {
				at := fmt.Sprintf("$.filesystem_policy.%s[%d]", l.key, i)
				if msg := checkPath(fp); msg != "" {
					bad(at, "%s", msg)
				} else if l.key == "read_write" && path.Clean(fp) == "/" {
					bad(at, "read_write / would make the whole root writable: list the directories that must be writable")
				}
			}
		}
	}
	if l := p.Landlock; l != nil {
		oneOf("$.landlock.compatibility", l.Compatibility, []string{"", CompatBestEffort, CompatHardRequirement})
	}
	if pr := p.Process; pr != nil {
		for key, v := range map[string]string{"run_as_user": pr.RunAsUser, "run_as_group": pr.RunAsGroup} {
			if _, err := ParseID(v); err != nil {
				bad("$.process."+key, "%v", err)
			}
		}
	}
	for name, r := range p.NetworkPolicies {
		at := "$.network_policies" + yamldoc.Key(name)
		if len(r.Endpoints) == 0 {
			bad(at, "no endpoints: a rule must list at least one endpoint")
		}
		for i, e := range r.Endpoints {
			e.validate(fmt.Sprintf("%s.endpoints[%d]", at, i), bad, oneOf)
		}
		for i, b := range r.Binaries {
			bat := fmt.Sprintf("%s.binaries[%d].path", at, i)
			if !strings.HasPrefix(b.Path, "/") {
				bad(bat, "binary path %q must be absolute (a glob like /usr/bin/* is fine)", b.Path)
			} else if _, err := path.Match(b.Path, "/"); err != nil {
				bad(bat, "bad glob %q: %v", b.Path, err)
			}
		}
	}
	if len(p.NetworkMiddlewares) > MaxMiddlewares {
		bad("$.network_middlewares", "%d middlewares, at most %d", len(p.NetworkMiddlewares), MaxMiddlewares)
	}
	orders := map[int]string{}
	// In name order: which of two middlewares is named as the duplicate
	// must not depend on map order.
	for _, id := range slices.Sorted(maps.Keys(p.NetworkMiddlewares)) {
		m := p.NetworkMiddlewares[id]
		at := "$.network_middlewares" + yamldoc.Key(id)
		if m.Middleware == "" {
			bad(at, "middleware is required (a registered middleware such as openshell/regex)")
		}
		if prev, dup := orders[m.Order]; dup {
			bad(at+".order", "order %d is also used by %s: orders must be unique", m.Order, prev)
		}
		orders[m.Order] = id
		oneOf(at+".on_error", m.OnError, onErrors)
		if m.Endpoints != nil && len(m.Endpoints.Include)+len(m.Endpoints.Exclude) > MaxMiddlewareGlobs {
			bad(at+".endpoints", "more than %d patterns", MaxMiddlewareGlobs)
		}
	}
	return ps
}

func (e Endpoint) validate(at string, bad func(string, string, ...any), oneOf func(string, string, []string)) {
	if e.Host == "" {
		bad(at, "host is required")
	} else if msg := CheckHostPattern(e.Host); msg != "" {
		bad(at+".host", "%s", msg)
	}
	if e.Port != 0 && len(e.Ports) > 0 {
		bad(at, "port and ports are exclusive: use one")
	}
	if e.Port == 0 && len(e.Ports) == 0 {
		bad(at, "a port is required (port: 443 or ports: [80, 443])")
	}
	for i, port := range append([]int{e.Port}, e.Ports...) {
		if (i > 0 || port != 0) && (port < 1 || port > 65535) {
			bad(at, "port %d is outside 1-65535", port)
		}
	}
	oneOf(at+".protocol", e.Protocol, protocols)
	oneOf(at+".tls", e.TLS, tlsModes)
	oneOf(at+".enforcement", e.Enforcement, enforcements)
	oneOf(at+".access", e.Access, accesses)
	oneOf(at+".credential_signing", e.CredentialSigning, signings)
	if e.Access != "" && len(e.Rules) > 0 {
		bad(at+".access", "access and rules are exclusive: a preset or explicit rules, not both")
	}
	if e.Access != "" && (e.Protocol == "mcp" || e.Protocol == "json-rpc") {
		bad(at+".access", "access presets apply to rest/websocket/graphql, not %s: write rules", e.Protocol)
	}
	if e.Protocol == "tcp" && strings.Contains(e.Host, "*") {
		bad(at+".host", "protocol tcp needs an exact DNS name, not a wildcard")
	}
	for i, c := range e.AllowedIPs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			if a, aerr := netip.ParseAddr(c); aerr == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad(fmt.Sprintf("%s.allowed_ips[%d]", at, i), "%q is not a CIDR (e.g. 10.0.0.0/8) or address", c)
				continue
			}
		}
		a := pfx.Addr()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || pfx.Contains(netip.MustParseAddr("127.0.0.1")) ||
			pfx.Contains(netip.MustParseAddr("169.254.169.254")) {
			bad(fmt.Sprintf("%s.allowed_ips[%d]", at, i), "%s covers loopback, link-local or unspecified addresses, which are never allowed", c)
		}
	}
	if e.Protocol == "mcp" {
		MCPRules(at, e.Rules, e.DenyRules, bad)
	}
	if e.CredentialBinding != nil && e.CredentialBinding.Provider == "" {
		bad(at+".credential_binding.provider", "provider is required")
	}
}

// checkPath returns what is wrong with a filesystem path, or "".
func checkPath(p string) string {
	switch {
	case p == "":
		return "empty path"
	case len(p) > MaxPathLen:
		return fmt.Sprintf("path longer than %d bytes", MaxPathLen)
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is not absolute: write the full path from /", p)
	case strings.IndexByte(p, 0) >= 0:
		return "path contains a NUL byte"
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Sprintf("%q contains ..: write the resolved path", p)
		}
	}
	return ""
}

// CheckHostPattern returns what is wrong with an endpoint host, or "".
// Wildcards: `*` or `**` as the whole first label, `*` inside the first
// label (`*-api.example.com`), `*` as a middle label; never a bare `*` or a
// wildcard TLD.
func CheckHostPattern(h string) string {
	if h == "*" || h == "**" {
		return "a bare wildcard would allow every host: name the hosts"
	}
	labels := strings.Split(strings.ToLower(h), ".")
	if len(labels) == 1 && strings.Contains(h, "*") {
		return "a wildcard needs a domain after it (e.g. *.example.com)"
	}
	for i, l := range labels {
		if l == "" {
			return fmt.Sprintf("%q has an empty label", h)
		}
		if !strings.Contains(l, "*") {
			continue
		}
		switch {
		case i == len(labels)-1:
			return "a wildcard top-level domain is not allowed"
		case l == "**" && i != 0:
			return "** is only allowed as the first label"
		case i > 0 && l != "*":
			return "only the first label may contain a partial wildcard"
		}
	}
	if len(labels) == 2 && labels[0] == "*" || len(labels) == 2 && labels[0] == "**" {
		return "a wildcard directly under a top-level domain is too broad"
	}
	return ""
}

// ParseID checks a run_as_user/run_as_group value: empty, "sandbox", or a
// number 1..4294967294; it returns the numeric id (-1 for "sandbox" or
// empty, meaning the driver's default).
func ParseID(v string) (int64, error) {
	if v == "" || v == DefaultSandboxUser {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is neither %q nor a numeric id", v, DefaultSandboxUser)
	}
	if n < 1 || n > 4294967294 {
		return 0, fmt.Errorf("id %d is not allowed: root (0) and 4294967295 are refused; use 1..4294967294", n)
	}
	return n, nil
}
