package egress

import "testing"

func TestMatchHost(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"api.github.com", "api.github.com", true},
		{"api.github.com", "API.GitHub.com.", true},
		{"api.github.com", "evil-api.github.com", false},
		{"*.github.com", "api.github.com", true},
		{"*.github.com", "github.com", false},
		{"*.github.com", "a.b.github.com", false},
		{"**.github.com", "a.b.github.com", true},
		{"**.github.com", "github.com", false},
		{"*-api.example.com", "eu-api.example.com", true},
		{"*-api.example.com", "api.example.com", false},
		{"api.*.example.com", "api.eu.example.com", true},
		{"api.*.example.com", "api.example.com", false},
		{"github.com", "github.com.evil.io", false},
		{"*.github.com", "github.com.evil.io", false},
	} {
		if got := MatchHost(tc.pattern, tc.host); got != tc.want {
			t.Errorf("MatchHost(%q, %q) = %v", tc.pattern, tc.host, got)
		}
	}
}

func TestMatchPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, p string
		want       bool
	}{
		{"/usr/bin/curl", "/usr/bin/curl", true},
		{"/usr/bin/curl", "/usr/bin/curl2", false},
		{"/usr/bin/*", "/usr/bin/curl", true},
		{"/usr/bin/*", "/usr/bin/x/curl", false},
		{"/sandbox/.venv/bin/*", "/sandbox/.venv/bin/python", true},
		{"/usr/**", "/usr/lib/git-core/git-remote-http", true},
		{"/repos/**", "/repos/a/b/issues", true},
		{"/repos/*/*/issues", "/repos/a/b/issues", true},
		{"/repos/*/*/issues", "/repos/a/b/issues/1", false},
		{"/**/x", "/x", true},
		{"/**/x", "/a/b/x", true},
		{"/usr/bin/python3*", "/usr/bin/python3.11", true},
	} {
		if got := MatchPath(tc.pattern, tc.p); got != tc.want {
			t.Errorf("MatchPath(%q, %q) = %v", tc.pattern, tc.p, got)
		}
	}
}

func TestMatchWild(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"repo:*", "repo:a/b", true},
		{"repo:*", "org:a", false},
		{"search_*", "search_code", true},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a?c", "abc", true},
		{"abc", "abcd", false},
	} {
		if got := MatchWild(tc.pattern, tc.s); got != tc.want {
			t.Errorf("MatchWild(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}
