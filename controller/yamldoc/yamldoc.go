// Package yamldoc decodes user-written YAML files (policies, blueprints)
// strictly and reports every problem as file:line:column with what to write
// instead.
package yamldoc

import (
	"errors"
	"fmt"
	"regexp"
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
	yp, err := yaml.PathString(p)
	if err != nil {
		return pr
	}
	n, err := yp.FilterFile(d.ast)
	if err != nil || n == nil || n.GetToken() == nil {
		return pr
	}
	pos := n.GetToken().Position
	pr.Line, pr.Column = pos.Line, pos.Column
	return pr
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
