// Package yamldoc decodes user-written YAML files (policies, blueprints)
// strictly and reports every problem as file:line:column with what to write
// instead.
package yamldoc

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Problem is one error in a document. Path is the YAML path of the value
// ($.a.b[0]); Line and Column are 1-based, 0 when unknown.
type Problem struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Path   string `json:"path,omitempty"`
	Msg    string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
	} else {
		b.WriteString("<input>")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Path != "" && p.Path != "$" {
		b.WriteString(strings.TrimPrefix(p.Path, "$."))
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a document; it is an error.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Sort orders problems by position in the file, then path and message, so
// that a report is the same at every run (validators walk maps).
func (ps Problems) Sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column),
			strings.Compare(a.Path, b.Path), strings.Compare(a.Msg, b.Msg))
	})
}

// Doc is a parsed document that can locate YAML paths in its source.
type Doc struct {
	File string
	ast  *ast.File
}

// Decode parses data into v: unknown keys, duplicate keys and type
// mismatches are errors (a Problems with positions).
func Decode(file string, data []byte, v any) (*Doc, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Problems{fromYAMLError(file, err)}
	}
	d := &Doc{File: file, ast: f}
	if err := yaml.UnmarshalWithOptions(data, v, yaml.DisallowUnknownField()); err != nil {
		return d, Problems{fromYAMLError(file, err)}
	}
	return d, nil
}

// Problem returns a Problem at the YAML path p ("$.a.b[0]"), located in the
// source when the path exists there.
func (d *Doc) Problem(p string, format string, args ...any) Problem {
	pr := Problem{Path: p, Msg: fmt.Sprintf(format, args...)}
	if d == nil {
		return pr
	}
	pr.File = d.File
	if d.ast == nil {
		return pr
	}
	// A value that is missing (a required key left out) is reported where
	// its nearest parent is.
	for at := p; at != ""; at = parentPath(at) {
		if at == "$" {
			pr.Line, pr.Column = 1, 1 // the document itself
			return pr
		}
		yp, err := yaml.PathString(at)
		if err != nil {
			continue
		}
		n, err := yp.FilterFile(d.ast)
		if err != nil || n == nil || n.GetToken() == nil {
			continue
		}
		pos := n.GetToken().Position
		pr.Line, pr.Column = pos.Line, pos.Column
		return pr
	}
	return pr
}

// parentPath strips the last element of a YAML path ("$.a.b[0]" ->
// "$.a.b", "$.a.'x.y'" -> "$.a", "$" -> "").
func parentPath(p string) string {
	if p == "$" || p == "" {
		return ""
	}
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i]
		}
	}
	if strings.HasSuffix(p, "'") {
		if i := strings.LastIndex(p[:len(p)-1], ".'"); i > 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i > 0 {
		return p[:i]
	}
	return "$"
}

// Key returns a path element for a map key, quoted when it is not a plain
// identifier.
func Key(k string) string {
	if plainKey().MatchString(k) {
		return "." + k
	}
	return ".'" + strings.ReplaceAll(k, "'", "\\'") + "'"
}

var plainKey = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_-]+$`) })

func fromYAMLError(file string, err error) Problem {
	p := Problem{File: file, Msg: err.Error()}
	var ye yaml.Error
	if errors.As(err, &ye) {
		p.Msg = hint(ye.GetMessage())
		if tk := ye.GetToken(); tk != nil {
			p.Line, p.Column = tk.Position.Line, tk.Position.Column
		}
	}
	return p
}

// hint turns the parser's wording into advice.
func hint(msg string) string {
	if strings.HasPrefix(msg, "unknown field") {
		return msg + " (not part of the schema: remove it or check its spelling)"
	}
	return msg
}
