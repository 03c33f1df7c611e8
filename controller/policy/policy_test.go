package policy

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/yamldoc"
)

func TestParseOpenShellExample(t *testing.T) {
	p, err := Load("testdata/openshell-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.NetworkPolicies) != 3 || p.NetworkPolicies["tools_mcp"].Endpoints[0].DenyRules[0].Tool != "delete_everything" {
		t.Fatalf("network policies: %+v", p.NetworkPolicies)
	}
	fs, ok := p.FSRules()
	if !ok || !fs.Hard {
		t.Fatalf("fs rules: %+v %v", fs, ok)
	}
	for _, want := range []string{"/sandbox", "/tmp", "/dev/null"} {
		if !slices.Contains(fs.ReadWrite, want) {
			t.Errorf("read_write lacks %s: %v", want, fs.ReadWrite)
		}
	}
	if slices.Contains(fs.ReadOnly, "/tmp") || !slices.Contains(fs.ReadOnly, "/etc") || slices.Contains(fs.ReadOnly, "/opt") {
		t.Errorf("read_only: %v", fs.ReadOnly)
	}
	if uid, gid := p.RunAs(); uid != -1 || gid != -1 {
		t.Errorf("run as sandbox: %d %d", uid, gid)
	}
}

func TestUnknownKeyHasPosition(t *testing.T) {
	_, err := Load("testdata/bad.yaml")
	var ps yamldoc.Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if ps[0].Line != 5 || !strings.Contains(ps[0].Msg, "writable") || !strings.HasPrefix(ps[0].String(), "testdata/bad.yaml:5:") {
		t.Fatalf("problem: %+v", ps[0])
	}
}

func TestSemanticErrors(t *testing.T) {
	_, err := Load("testdata/bad-semantic.yaml")
	var ps yamldoc.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	// Each case: the line it must be reported at and a phrase of the advice.
	want := []struct {
		line int
		text string
	}{
		{1, "version must be 1"},
		{3, "is not absolute"},
		{3, "contains .."},
		{4, "whole root writable"},
		{6, `"strict" is not one of best_effort, hard_requirement`},
		{8, "root (0)"},
		{12, "bare wildcard"},
		{13, "top-level"},
		{13, "port and ports are exclusive"},
		{13, "outside 1-65535"},
		{14, "access presets apply to rest"},
		{15, "loopback"},
		{17, "must be absolute"},
	}
	for _, w := range want {
		found := false
		for _, p := range ps {
			if strings.Contains(p.Msg, w.text) && (p.Line == w.line || p.Line == 0 && w.line == 0) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %q at line %d in:\n%v", w.text, w.line, err)
		}
	}
}

func TestHostPatterns(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"api.github.com", true},
		{"*.github.com", true},
		{"**.github.com", true},
		{"*-api.example.com", true},
		{"api.*.example.com", true},
		{"*", false},
		{"**", false},
		{"*.com", false},
		{"api.example.*", false},
		{"api.**.example.com", false},
		{"api.x*.example.com", false},
		{"a..b", false},
	} {
		if msg := CheckHostPattern(tc.host); (msg == "") != tc.ok {
			t.Errorf("%s: %q", tc.host, msg)
		}
	}
}

func TestNoFilesystemPolicyKeepsDriverDefault(t *testing.T) {
	p, err := Parse("inline", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.FSRules(); ok {
		t.Fatal("a policy without filesystem_policy must leave the driver default")
	}
	off := false
	p.FilesystemPolicy = &Filesystem{IncludeWorkdir: &off, ReadOnly: []string{"/data"}}
	fs, _ := p.FSRules()
	if slices.Contains(fs.ReadWrite, "/sandbox") || !slices.Contains(fs.ReadOnly, "/data") {
		t.Fatalf("include_workdir false: %+v", fs)
	}
}

func TestShippedPolicies(t *testing.T) {
	files, _ := filepath.Glob("../../policies/*.yaml")
	if len(files) < 4 {
		t.Fatalf("policies/ has %d files, want default, investigation, ticket-creation, development", len(files))
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
