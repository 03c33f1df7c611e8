package inference

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Host is the name sandbox processes send inference requests to
// (http://inference.local or https://inference.local through the egress
// proxy, as OpenShell's inference router does).
const Host = "inference.local"

// APIs a route may speak.
const (
	APIOpenAI    = "openai"
	APIAnthropic = "anthropic"
)

// Config is one sandbox's inference setup: where requests go and how they
// are logged. It is stored with the sandbox (and set by a blueprint's
// `inference:` or `darkshell inference set`).
type Config struct {
	// Routes: at most one per API. Requests to /v1/messages (and
	// /v1/complete) go to the anthropic route; every other /v1/ path to
	// the openai route.
	Routes []Route `json:"routes" yaml:"routes"`
	// Redact tunes what is logged.
	Redact Redaction `json:"redact,omitzero" yaml:"redact,omitempty"`
}

// Route is one upstream.
type Route struct {
	API string `json:"api" yaml:"api"`
	// Upstream is the base URL the request's path is appended to
	// (e.g. https://api.openai.com); an operator setting, so it may be a
	// loopback or private address.
	Upstream string `json:"upstream" yaml:"upstream"`
	// Provider names the stored provider whose credential is added.
	Provider string `json:"provider" yaml:"provider"`
	// Key is the provider's credential key (default: OPENAI_API_KEY or
	// ANTHROPIC_API_KEY by API, else the provider's only key).
	Key string `json:"key,omitempty" yaml:"key,omitempty"`
}

// Redaction rules applied to every logged text before it leaves the relay.
type Redaction struct {
	// DisableBuiltin names built-in detectors to turn off ("all" for
	// every one). The providers' own credential values are always redacted.
	DisableBuiltin []string `json:"disable_builtin,omitempty" yaml:"disable_builtin,omitempty"`
	// Rules are extra regular expressions (RE2 syntax).
	Rules []Rule `json:"rules,omitempty" yaml:"rules,omitempty"`
	// Drop: logged fields left out; Hash: logged fields replaced by
	// "sha256:" and the first 16 hex digits of their hash. Fields: prompt,
	// system, response, user, model, tools.
	Drop []string `json:"drop,omitempty" yaml:"drop,omitempty"`
	Hash []string `json:"hash,omitempty" yaml:"hash,omitempty"`
	// MaxText caps each logged text in bytes (default 16384, at most
	// 1 MiB); longer texts are cut after redaction, and the event says so.
	MaxText int `json:"max_text,omitempty" yaml:"max_text,omitempty"`
}

// Rule is one regex redaction rule.
type Rule struct {
	Name    string `json:"name" yaml:"name"`
	Pattern string `json:"pattern" yaml:"pattern"`
}

// Fields that Drop and Hash may name.
var Fields = []string{"prompt", "system", "response", "user", "model", "tools"}

// Limits.
const (
	DefaultMaxText = 16 << 10
	MaxMaxText     = 1 << 20
)

// Validate checks c, naming the first problem and what to do.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i, r := range c.Routes {
		at := fmt.Sprintf("inference route %d", i)
		switch r.API {
		case APIOpenAI, APIAnthropic:
		default:
			return fmt.Errorf("%s: api %q: use openai or anthropic", at, r.API)
		}
		if seen[r.API] {
			return fmt.Errorf("%s: a second %s route (one per API)", at, r.API)
		}
		seen[r.API] = true
		u, err := url.Parse(r.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%s: upstream %q: want a base URL such as https://api.openai.com (http or https, no query, no credentials in the URL)", at, r.Upstream)
		}
		if r.Provider == "" {
			return fmt.Errorf("%s: a provider is required (its credential is added on the host): darkshell provider create --name P --type %s --credential KEY=VALUE", at, r.API)
		}
	}
	return c.Redact.Validate()
}

// Validate checks the redaction rules.
func (r *Redaction) Validate() error {
	for _, d := range r.DisableBuiltin {
		if d != "all" && !slices.ContainsFunc(builtins, func(b detector) bool { return b.name == d }) {
			return fmt.Errorf("disable_builtin %q: no such detector (%s, or all)", d, strings.Join(BuiltinNames(), ", "))
		}
	}
	for i, x := range r.Rules {
		if x.Name == "" || strings.ContainsAny(x.Name, "[]") {
			return fmt.Errorf("redaction rule %d: a name without brackets is required (it appears as [REDACTED:name])", i)
		}
		re, err := regexp.Compile(x.Pattern)
		if err != nil {
			return fmt.Errorf("redaction rule %s: %v", x.Name, err)
		}
		if re.MatchString("") {
			return fmt.Errorf("redaction rule %s: pattern %q matches the empty string", x.Name, x.Pattern)
		}
	}
	for _, f := range append(slices.Clone(r.Drop), r.Hash...) {
		if !slices.Contains(Fields, f) {
			return fmt.Errorf("field %q: drop and hash take %s", f, strings.Join(Fields, ", "))
		}
	}
	if r.MaxText < 0 || r.MaxText > MaxMaxText {
		return fmt.Errorf("max_text %d: want 1..%d bytes (0: default %d)", r.MaxText, MaxMaxText, DefaultMaxText)
	}
	return nil
}

// Route returns the route of api, if any.
func (c *Config) Route(api string) (Route, bool) {
	for _, r := range c.Routes {
		if r.API == api {
			return r, true
		}
	}
	return Route{}, false
}

// APIOf is the API a request path belongs to, or an error for paths the
// relay does not take.
func APIOf(path string) (string, error) {
	if !strings.HasPrefix(path, "/v1/") || strings.Contains(path, "..") || strings.Contains(path, "//") || strings.ContainsAny(path, "\\\x00") {
		return "", errors.New("inference.local takes /v1/... API paths (OpenAI- or Anthropic-compatible)")
	}
	if path == "/v1/messages" || strings.HasPrefix(path, "/v1/messages/") || path == "/v1/complete" {
		return APIAnthropic, nil
	}
	return APIOpenAI, nil
}

// CredentialKey is the provider key a route uses, given the provider's keys.
func (r Route) CredentialKey(keys []string) (string, error) {
	if r.Key != "" {
		if !slices.Contains(keys, r.Key) {
			return "", fmt.Errorf("provider %s has no credential %s", r.Provider, r.Key)
		}
		return r.Key, nil
	}
	def := map[string]string{APIOpenAI: "OPENAI_API_KEY", APIAnthropic: "ANTHROPIC_API_KEY"}[r.API]
	if slices.Contains(keys, def) {
		return def, nil
	}
	if len(keys) == 1 {
		return keys[0], nil
	}
	return "", fmt.Errorf("provider %s has %d credentials and none is %s: name one with key", r.Provider, len(keys), def)
}
