package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

type detector struct {
	name    string
	pattern string
}

// builtins are the built-in detectors: API keys and tokens by their
// published shapes.
var builtins = []detector{
	{"private_key", `-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)`},
	{"jwt", `\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}`},
	{"bearer", `(?i)\bbearer[ \t]+[A-Za-z0-9._~+/=-]{12,}`},
	{"openai_key", `\bsk-[A-Za-z0-9_-]{16,}`},
	{"aws_access_key", `\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b`},
	{"aws_secret_key", `(?i)\baws_secret_access_key["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}`},
	{"github_token", `\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})`},
	{"gitlab_token", `\bglpat-[A-Za-z0-9_-]{20,}`},
	{"slack_token", `\bxox[abposr]-[A-Za-z0-9-]{10,}`},
	{"google_api_key", `\bAIza[0-9A-Za-z_-]{35}`},
	{"stripe_key", `\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}`},
}

// BuiltinNames lists the built-in detectors.
func BuiltinNames() []string {
	out := make([]string, len(builtins))
	for i, b := range builtins {
		out[i] = b.name
	}
	return out
}

var compiledBuiltins = sync.OnceValue(func() []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(builtins))
	for i, b := range builtins {
		out[i] = regexp.MustCompile(b.pattern)
	}
	return out
})

// Redactor applies one configuration's rules. It is immutable and safe
// for concurrent use.
type Redactor struct {
	names   []string
	res     []*regexp.Regexp
	secrets []string // exact values, longest first
	drop    map[string]bool
	hash    map[string]bool
	max     int
}

// NewRedactor compiles r (which must be valid) with secrets, exact values
// that are always redacted (the providers' credentials).
func NewRedactor(r Redaction, secrets []string) *Redactor {
	x := &Redactor{drop: map[string]bool{}, hash: map[string]bool{}, max: r.MaxText}
	if x.max <= 0 {
		x.max = DefaultMaxText
	}
	if !slices.Contains(r.DisableBuiltin, "all") {
		for i, re := range compiledBuiltins() {
			if !slices.Contains(r.DisableBuiltin, builtins[i].name) {
				x.names, x.res = append(x.names, builtins[i].name), append(x.res, re)
			}
		}
	}
	for _, rule := range r.Rules {
		if re, err := regexp.Compile(rule.Pattern); err == nil {
			x.names, x.res = append(x.names, rule.Name), append(x.res, re)
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 && !slices.Contains(x.secrets, s) {
			x.secrets = append(x.secrets, s)
		}
	}
	sort.Slice(x.secrets, func(i, j int) bool { return len(x.secrets[i]) > len(x.secrets[j]) })
	for _, f := range r.Drop {
		x.drop[f] = true
	}
	for _, f := range r.Hash {
		x.hash[f] = true
	}
	return x
}

// Text redacts s: credential values first, then every detector and rule.
// It returns the text and how many redactions were made.
func (x *Redactor) Text(s string) (string, int) {
	n := 0
	for _, sec := range x.secrets {
		if c := strings.Count(s, sec); c > 0 {
			n += c
			s = strings.ReplaceAll(s, sec, "[REDACTED:credential]")
		}
	}
	for i, re := range x.res {
		repl := "[REDACTED:" + x.names[i] + "]"
		s = re.ReplaceAllStringFunc(s, func(string) string { n++; return repl })
	}
	return s, n
}

// Field redacts, hashes or drops one logged field, then caps its size.
// keep is false when the field is dropped.
func (x *Redactor) Field(name, s string) (out string, redactions int, truncated, keep bool) {
	if x.drop[name] {
		return "", 0, false, false
	}
	if s == "" {
		return "", 0, false, true
	}
	if x.hash[name] {
		h := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(h[:8]), 0, false, true
	}
	s, redactions = x.Text(s)
	if len(s) > x.max {
		cut := x.max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, truncated = s[:cut], true
	}
	return s, redactions, truncated, true
}
