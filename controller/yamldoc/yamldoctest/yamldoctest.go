// Package yamldoctest holds golden-file helpers for the tests of packages
// that validate YAML documents with yamldoc (policies, blueprints): compare
// or rewrite a golden file, and find the error messages of a validator that
// no golden file shows.
package yamldoctest

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Golden compares got with the file golden, or rewrites it when update is
// set (`go test ./PKG -update`).
func Golden(t testing.TB, golden string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v: run `go test -run %s -update` to create it", err, t.Name())
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (run with -update if the change is intended)\n--- want\n%s\n--- got\n%s", golden, want, got)
	}
}

// Formats returns the message formats a validator reports: the second
// argument of every call to a function named fn (e.g. `bad(at, "format",
// ...)`) in the non-test Go files given.
func Formats(files []string, fn string) ([]string, error) {
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			return nil, err
		}
		ast.Inspect(af, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok || len(c.Args) < 2 {
				return true
			}
			if id, ok := c.Fun.(*ast.Ident); !ok || id.Name != fn {
				return true
			}
			if lit, ok := c.Args[1].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, s)
				}
			}
			return true
		})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no calls to %s in %v", fn, files)
	}
	return out, nil
}

var verb = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)

// Uncovered returns the formats no line of text matches (each verb
// standing for any text).
func Uncovered(formats []string, text string) []string {
	var missing []string
	for _, f := range formats {
		var b strings.Builder
		last := 0
		for _, m := range verb.FindAllStringIndex(f, -1) {
			b.WriteString(regexp.QuoteMeta(f[last:m[0]]))
			if f[m[0]:m[1]] == "%%" {
				b.WriteString("%")
			} else {
				b.WriteString(".*?")
			}
			last = m[1]
		}
		b.WriteString(regexp.QuoteMeta(f[last:]))
		if !regexp.MustCompile(b.String()).MatchString(text) {
			missing = append(missing, f)
		}
	}
	return missing
}
