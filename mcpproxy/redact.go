package mcpproxy

import (
	"bytes"
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Redacted replaces every redacted value.
const Redacted = "[REDACTED]"

// sensitiveKey matches argument names whose values are never logged.
var sensitiveKey = regexp.MustCompile(`(?i)(token|secret|passw|api[_-]?key|auth|credential|private[_-]?key|cookie|session[_-]?key)`)

// Redactor removes secrets from text that is about to be logged: known
// secret values (provider credentials) anywhere, and the values of
// arguments whose names look sensitive. It is safe for concurrent use;
// SetValues swaps the known values (credential rotation).
type Redactor struct {
	mu     sync.RWMutex
	values []string
}

// SetValues replaces the known secret values. Values shorter than 4 bytes
// are ignored: redacting them would destroy the log without protecting much.
func (r *Redactor) SetValues(vals []string) {
	var keep []string
	seen := map[string]bool{}
	for _, v := range vals {
		if len(v) >= 4 && !seen[v] {
			seen[v] = true
			keep = append(keep, v)
		}
	}
	// Longest first, so a value containing another is replaced whole.
	sort.Slice(keep, func(i, j int) bool { return len(keep[i]) > len(keep[j]) })
	r.mu.Lock()
	r.values = keep
	r.mu.Unlock()
}

// Values returns the known secret values.
func (r *Redactor) Values() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.values...)
}

// String redacts known values in s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// JSON redacts a JSON document: values under sensitive keys and known
// values anywhere. Input that is not JSON is redacted as a string.
func (r *Redactor) JSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	if r.clean(raw) {
		return raw
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		b, _ := json.Marshal(r.String(string(raw)))
		return b
	}
	v = r.walk(v)
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

// sensitiveWords are the literal forms of sensitiveKey, lower case.
var sensitiveWords = [][]byte{[]byte("token"), []byte("secret"), []byte("passw"), []byte("apikey"), []byte("api_key"),
	[]byte("api-key"), []byte("auth"), []byte("credential"), []byte("privatekey"), []byte("private_key"),
	[]byte("private-key"), []byte("cookie"), []byte("sessionkey"), []byte("session_key"), []byte("session-key")}

// looksSensitive reports whether sensitiveKey may match somewhere in b,
// without the regexp for short ASCII text (the common case): any non-ASCII
// byte counts as a match, since case folding reaches beyond ASCII (the
// Kelvin sign folds to k).
func looksSensitive(b []byte) bool {
	var buf [2048]byte
	if len(b) > len(buf) {
		return sensitiveKey.Match(b)
	}
	low := buf[:len(b)]
	for i, c := range b {
		if c >= 0x80 {
			return true
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	for _, w := range sensitiveWords {
		if bytes.Contains(low, w) {
			return true
		}
	}
	return false
}

// clean reports, without decoding, that raw is JSON the walk would leave
// as it is: no escapes (a key or value could hide behind one), nothing that
// looks like a sensitive key anywhere, no known value.
func (r *Redactor) clean(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') >= 0 || looksSensitive(raw) || !json.Valid(raw) {
		return false
	}
	if r == nil {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.values {
		if bytes.Contains(raw, []byte(v)) {
			return false
		}
	}
	return true
}

func (r *Redactor) walk(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if sensitiveKey.MatchString(k) {
				t[k] = Redacted
				continue
			}
			t[k] = r.walk(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = r.walk(x)
		}
		return t
	case string:
		return r.String(t)
	}
	return v
}
