package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIContract checks the machine-readable side of the CLI: -o json on
// every data command, exit statuses, usage errors.
func TestCLIContract(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	t.Run("list json", func(t *testing.T) {
		out, _, code := e.ds("-o", "json", "sandbox", "list")
		var l []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l) != 1 || l[0]["name"] != "s" || l[0]["driver"] != "ssh" {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("get json", func(t *testing.T) {
		out, _, code := e.ds("-o", "json", "sandbox", "get", "s")
		var sb struct {
			Name      string `json:"name"`
			Connected bool   `json:"connected"`
			Remote    *struct {
				BuildVersion string   `json:"build_version"`
				Caps         []string `json:"caps"`
			} `json:"remote"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &sb) != nil || sb.Name != "s" {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("exec json", func(t *testing.T) {
		out, _, code := e.ds("-o", "json", "exec", "s", "--sh", "--", "printf 'a\\nb'; echo oops >&2; exit 4")
		var r struct {
			Stdout   string `json:"stdout"`
			Stderr   string `json:"stderr"`
			ExitCode int    `json:"exit_code"`
			Status   int    `json:"status"`
		}
		if code != 4 || json.Unmarshal([]byte(out), &r) != nil || r.Stdout != "a\nb" || r.Stderr != "oops\n" || r.ExitCode != 4 || r.Status != 4 {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("exec json binary", func(t *testing.T) {
		out, _, code := e.ds("-o", "json", "exec", "s", "--sh", "--", "printf '\\377\\376'")
		var r struct {
			StdoutBase64 []byte `json:"stdout_base64"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || string(r.StdoutBase64) != "\xff\xfe" {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("exec json unknown sandbox", func(t *testing.T) {
		out, _, code := e.ds("-o", "json", "exec", "nope", "--", "true")
		if code != 125 || !strings.Contains(out, `"status": 125`) {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"exec", "s"},
			{"sandbox", "get"},
			{"--no-such-flag"},
			{"-o", "yaml", "sandbox", "list"},
			{"sandbox", "create", "Bad_Name", "--driver", "ssh", "--ssh", "x@y"},
			{"exec", "s", "-e", "NOEQUALS", "--", "true"},
		} {
			_, errOut, code := e.ds(args...)
			if code != 2 || errOut == "" {
				t.Errorf("%v: exit %d stderr %q", args, code, errOut)
			}
		}
	})
	t.Run("delete then exec", func(t *testing.T) {
		if _, _, code := e.ds("sandbox", "delete", "s"); code != 0 {
			t.Fatal("delete failed")
		}
		_, errOut, code := e.ds("exec", "s", "--", "true")
		if code != 125 || !strings.Contains(errOut, "no such sandbox") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if _, _, code := e.ds("sandbox", "get", "s"); code != 1 {
			t.Fatalf("get after delete: exit %d, want 1", code)
		}
	})
}
