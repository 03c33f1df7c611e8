package mcpproxy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	r := &Redactor{}
	r.SetValues([]string{"s3cr3t-value", "ab"})
	got := string(r.JSON(json.RawMessage(`{"q":"use s3cr3t-value here","api_key":"zzz","nested":[{"password":"p"},"ab"]}`)))
	for _, leak := range []string{"s3cr3t-value", "zzz", `"p"`} {
		if strings.Contains(got, leak) {
			t.Errorf("redacted JSON %s still has %s", got, leak)
		}
	}
	if !strings.Contains(got, `"ab"`) {
		t.Errorf("short values must not be redacted: %s", got)
	}
	if s := r.String("x s3cr3t-value y"); s != "x [REDACTED] y" {
		t.Errorf("String = %q", s)
	}
	if got := string(r.JSON(json.RawMessage(`not json s3cr3t-value`))); strings.Contains(got, "s3cr3t") {
		t.Errorf("non-JSON input leaks: %s", got)
	}
}

// FuzzRedactJSON: redaction never panics, always yields JSON, and never
// lets a known value through.
func FuzzRedactJSON(f *testing.F) {
	f.Add([]byte(`{"token":"a","x":["s3cr3t-value"]}`))
	f.Add([]byte(`"s3cr3t-value"`))
	f.Add([]byte(`{`))
	r := &Redactor{}
	r.SetValues([]string{"s3cr3t-value"})
	f.Fuzz(func(t *testing.T, in []byte) {
		out := r.JSON(in)
		if len(in) == 0 {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		var v any
		json.Unmarshal(out, &v)
		b, _ := json.Marshal(v)
		if strings.Contains(string(b), "s3cr3t-value") {
			t.Fatalf("leak: %s", b)
		}
	})
}
