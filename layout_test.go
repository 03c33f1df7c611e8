package darkshell_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/bohica-labs/darkshell"

// TestPackageDocs checks that every directory holding non-test, non-generated
// Go files has exactly one package doc comment, on one file. Outside package
// main the comment must start "Package <name>"; a main package may use any
// doc comment (e.g. "Sandboxd is ...", "Command darkshell ...").
func TestPackageDocs(t *testing.T) {
	type pkgDocs struct {
		name  string   // package name of the first file seen
		files int      // non-test, non-generated files
		docs  []string // files with a package doc comment
	}
	dirs := map[string]*pkgDocs{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == "." {
				return nil
			}
			name := d.Name()
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // a nested module is not ours to check
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if ast.IsGenerated(f) || ignored(f) {
			return nil
		}
		dir := filepath.Dir(p)
		pd := dirs[dir]
		if pd == nil {
			pd = &pkgDocs{name: f.Name.Name}
			dirs[dir] = pd
		}
		pd.files++
		if f.Doc == nil {
			return nil
		}
		pd.docs = append(pd.docs, filepath.Base(p))
		if text := f.Doc.Text(); f.Name.Name != "main" && !startsPackageDoc(text, f.Name.Name) {
			t.Errorf("%s: package doc should start %q, got %q", p, "Package "+f.Name.Name+" ", firstLine(text))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the repository: %v", err)
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		pd := dirs[dir]
		switch len(pd.docs) {
		case 1:
		case 0:
			t.Errorf("%s: package %s has no package doc comment: add one to one file (a doc.go, say)", dir, pd.name)
		default:
			t.Errorf("%s: package %s has package doc comments in %d files (%s): keep exactly one", dir, pd.name, len(pd.docs), strings.Join(pd.docs, ", "))
		}
	}
}

// ignored reports whether f is excluded from every build (//go:build ignore).
func ignored(f *ast.File) bool {
	for _, cg := range f.Comments {
		if cg.Pos() >= f.Package {
			break
		}
		for _, c := range cg.List {
			if !constraint.IsGoBuild(c.Text) {
				continue
			}
			expr, err := constraint.Parse(c.Text)
			if err == nil && !expr.Eval(func(tag string) bool { return tag != "ignore" }) {
				return true
			}
		}
	}
	return false
}

func startsPackageDoc(text, name string) bool {
	rest, ok := strings.CutPrefix(text, "Package "+name)
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == '\n')
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// depRule forbids packages under From (module-relative) to depend, directly
// or not, on packages under any of Deny. "*" denies the whole module except
// From itself.
type depRule struct {
	from []string
	deny []string
	why  string
}

var depRules = []depRule{
	{
		from: []string{"protocol"},
		deny: []string{"*"},
		why:  "protocol is shared by both sides and imports nothing from the repository",
	},
	{
		from: []string{"sandboxd", "cmd/sandboxd"},
		deny: []string{"controller"},
		why:  "sandboxd runs inside the sandbox and must not carry host-side code",
	},
	{
		from: []string{"internal"},
		deny: []string{"controller", "sandboxd", "cmd"},
		why:  "internal holds engines shared by both sides (e.g. internal/treesync); it may use protocol, never either side",
	},
	{
		from: []string{"controller"},
		deny: []string{"sandboxd", "cmd/sandboxd"},
		why:  "the controller talks to sandboxd only through protocol",
	},
}

// listedPkg is the part of `go list -json` output the dependency test reads.
type listedPkg struct {
	ImportPath string
	Deps       []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// TestDependencyRules checks the import boundaries between protocol,
// sandboxd and controller on the non-test build graph (test-only imports are
// not checked), for the host GOOS and for linux.
func TestDependencyRules(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: the go tool is not on PATH, so `go list` cannot compute the dependency graph")
	}
	targets := []string{runtime.GOOS}
	if runtime.GOOS != "linux" {
		targets = append(targets, "linux") // sandboxd only ever runs on linux
	}
	for _, goos := range targets {
		t.Run(goos, func(t *testing.T) {
			pkgs := goList(t, goTool, goos)
			checked := 0
			for _, p := range pkgs {
				rel, ok := moduleRel(p.ImportPath)
				if !ok {
					continue
				}
				reported := false
				for _, r := range depRules {
					if !underAny(rel, r.from) {
						continue
					}
					checked++
					if !reported {
						reported = true
						if p.Error != nil {
							t.Errorf("%s: cannot load, dependencies unchecked: %s", p.ImportPath, p.Error.Err)
						}
						for _, de := range p.DepsErrors {
							t.Errorf("%s: dependency error, dependencies may be incomplete: %s", p.ImportPath, de.Err)
						}
					}
					for _, d := range p.Deps {
						drel, ok := moduleRel(d)
						if !ok {
							continue
						}
						if denied(drel, r) {
							t.Errorf("%s imports %s (directly or not): %s", p.ImportPath, d, r.why)
						}
					}
				}
			}
			if checked == 0 {
				t.Errorf("no package matched any dependency rule: is the module path still %s?", module)
			}
		})
	}
}

func goList(t *testing.T, goTool, goos string) []listedPkg {
	t.Helper()
	cmd := exec.Command(goTool, "list", "-e", "-deps", "-json=ImportPath,Deps,Error,DepsErrors", "./...")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// moduleRel returns the module-relative path of an import path in this
// module ("." for the root package).
func moduleRel(importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func under(rel, dir string) bool {
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}

func underAny(rel string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return under(rel, d) })
}

func denied(dep string, r depRule) bool {
	for _, d := range r.deny {
		if d == "*" {
			if !underAny(dep, r.from) {
				return true
			}
			continue
		}
		if under(dep, d) {
			return true
		}
	}
	return false
}
