package egress

import (
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/policy"
)

func engine(t *testing.T) *Engine {
	t.Helper()
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecide(t *testing.T) {
	e := engine(t)
	py := "/usr/bin/python3.11"
	for _, tc := range []struct {
		name    string
		r       Request
		allow   bool
		policy  string
		reason  string // a phrase of the reason
		inspect bool
	}{
		{"allowed host, port, binary", Request{Host: "pypi.org", Port: 443, Binary: py}, true, "pkg", "allowed at L4", true},
		{"ancestor binary", Request{Host: "files.pythonhosted.org", Port: 80, Binary: "/usr/bin/curl", Ancestors: []string{"/sandbox/.venv/bin/pip"}}, true, "pkg", "allowed by policy pkg", false},
		{"wrong binary", Request{Host: "pypi.org", Port: 443, Binary: "/usr/bin/curl"}, false, "pkg", "binary /usr/bin/curl is not allowed", false},
		{"argv is not identity", Request{Host: "pypi.org", Port: 443}, false, "pkg", "unidentified process", false},
		{"wrong port", Request{Host: "pypi.org", Port: 80, Binary: py}, false, "pkg", "port 80 is not allowed for pypi.org", false},
		{"unknown host", Request{Host: "evil.example", Port: 443, Binary: py}, false, "", "no network policy allows evil.example:443", false},
		{"wildcard needs a label", Request{Host: "pythonhosted.org", Port: 443, Binary: py}, false, "", "no network policy", false},
		{"read-only preset GET", Request{Host: "pypi.org", Port: 443, Binary: py, Method: "GET", Path: "/simple/x/"}, true, "pkg", "access read-only", true},
		{"read-only preset POST", Request{Host: "pypi.org", Port: 443, Binary: py, Method: "POST", Path: "/legacy/"}, false, "pkg", "POST is not allowed by access read-only", true},
		{"rule allows", Request{Host: "api.github.com", Port: 443, Method: "GET", Path: "/repos/a/b/issues"}, true, "gh", "rules[0]", true},
		{"rule allows POST issues", Request{Host: "api.github.com", Port: 443, Method: "post", Path: "/repos/a/b/issues"}, true, "gh", "rules[1]", true},
		{"no rule matches", Request{Host: "api.github.com", Port: 443, Method: "DELETE", Path: "/repos/a/b"}, false, "gh", "matches no allow rule of policy gh (GitHub API)", true},
		{"deny rule wins", Request{Host: "api.github.com", Port: 443, Method: "GET", Path: "/repos/a/secret/x"}, false, "gh", "deny_rules[0]", true},
		{"query glob", Request{Host: "api.github.com", Port: 443, Method: "GET", Path: "/search/issues", Query: "q=repo:a/b"}, true, "gh", "rules[2]", true},
		{"query mismatch", Request{Host: "api.github.com", Port: 443, Method: "GET", Path: "/search/issues", Query: "q=org:x"}, false, "gh", "no allow rule", true},
		{"audit allows and says so", Request{Host: "audit.example.com", Port: 443, Method: "DELETE", Path: "/x"}, true, "watch", "audit only, would deny", true},
		{"no binaries listed: anyone", Request{Host: "open.example.com", Port: 80, Binary: "/usr/bin/nc"}, true, "anyone", "allowed", false},
		{"case and trailing dot", Request{Host: "OPEN.example.com.", Port: 80}, true, "anyone", "allowed", false},
	} {
		d := e.Decide(tc.r)
		if d.Allow != tc.allow || d.Policy != tc.policy || !strings.Contains(d.Reason, tc.reason) || d.Inspect != tc.inspect {
			t.Errorf("%s: %+v", tc.name, d)
		}
	}
	if d := e.Decide(Request{Host: "api.github.com", Port: 443}); d.Provider != "github" {
		t.Errorf("credential binding: %+v", d)
	}
	if d := e.Decide(Request{Host: "db.corp.example", Port: 5432}); len(d.AllowedIPs) != 1 || d.AllowedIPs[0].String() != "10.1.0.0/16" {
		t.Errorf("allowed_ips: %+v", d)
	}
}

func TestNoNetworkPolicyDeniesAll(t *testing.T) {
	for _, p := range []*policy.Policy{nil, {Version: 1}} {
		e, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := e.Decide(Request{Host: "example.com", Port: 443}); d.Allow || !strings.Contains(d.Reason, "no network_policies") {
			t.Errorf("%+v", d)
		}
	}
}
