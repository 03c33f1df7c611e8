package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/api"
)

func TestValidSyncRequest(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		req  api.PolicySyncJobRequest
		want string // "" valid; else a part of the error
		iv   string // the interval as stored
	}{
		{"local dir", api.PolicySyncJobRequest{Repo: dir, Interval: "30s"}, "", "30s"},
		{"URL", api.PolicySyncJobRequest{Repo: "https://git.example.invalid/p.git", Interval: "5m", Path: "sandboxes"}, "", "5m0s"},
		{"scp-like", api.PolicySyncJobRequest{Repo: "git@git.example.invalid:p.git", Interval: "1s"}, "", "1s"},
		{"no repo", api.PolicySyncJobRequest{Interval: "30s"}, "--repo PATH|URL is required", ""},
		{"relative", api.PolicySyncJobRequest{Repo: "policies", Interval: "30s"}, "must be an absolute path", ""},
		{"missing dir", api.PolicySyncJobRequest{Repo: dir + "/nope", Interval: "30s"}, "is not a directory", ""},
		{"no interval", api.PolicySyncJobRequest{Repo: dir}, "--interval", ""},
		{"interval too short", api.PolicySyncJobRequest{Repo: dir, Interval: "500ms"}, "1s or more", ""},
		{"bad interval", api.PolicySyncJobRequest{Repo: dir, Interval: "often"}, "--interval \"often\"", ""},
		{"absolute path", api.PolicySyncJobRequest{Repo: dir, Interval: "30s", Path: "/etc"}, "inside the repository", ""},
		{"path escapes", api.PolicySyncJobRequest{Repo: dir, Interval: "30s", Path: "a/../../b"}, "inside the repository", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			err := validSyncRequest(&req)
			if tc.want == "" {
				if err != nil || req.Interval != tc.iv {
					t.Fatalf("err %v, interval %q; want valid, %q", err, req.Interval, tc.iv)
				}
				return
			}
			if err == nil || !errors.Is(err, errBadRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want a bad request naming %q", err, tc.want)
			}
		})
	}
}
