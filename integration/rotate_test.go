package integration

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
)

// TestLocalCredentialRotation: one provider feeds a running sandbox's
// egress proxy (a bound HTTPS endpoint) and a bridge MCP server. Before
// `provider update` both use the old value, after it both use the new one,
// without a restart of the sandbox; the sandbox never holds either value;
// the rotation is an audit event naming the keys, never the values; an
// --expires within 72h makes health warn (still healthy).
func TestLocalCredentialRotation(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	newEgressNet(t)
	oldV, newV := secret(t), secret(t)
	e.mustDS("provider", "create", "--name", "tok", "--type", "generic", "--credential", "TOKEN="+oldV)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte(credPolicy), 0o600)
	ws := mcpWorkspace(t, "")
	e.createLocal("rot", "--workspace", ws, "--policy", pol, "--provider", "tok")
	initBefore := e.initPID("rot")
	e.mustDS("mcp", "add", "rot", "every", "--transport", "bridge", "--provider", "tok", "--", "node", everythingJS(servers))
	url := e.mcpURL("rot", "every")

	egressSees := func() string {
		var out string
		waitFor(t, 10*time.Second, "an HTTPS request through the proxy", func() bool {
			out, _, _ = e.bash("rot", `curl -sS --max-time 5 -H "Authorization: Bearer $TOKEN" https://allowed.test:8443/ok/1`)
			return strings.Contains(out, "saw GET /ok/1")
		})
		return out
	}
	bridgeSees := func() string {
		r := e.client("rot", "-url", url, "call", "get-env", "{}")
		txt, _ := r["text"].(string)
		return txt
	}
	if out := egressSees(); !strings.Contains(out, `auth="Bearer `+oldV+`"`) {
		t.Fatalf("before: the bound endpoint did not get the old value: %q", out)
	}
	if txt := bridgeSees(); !strings.Contains(txt, oldV) {
		t.Fatal("before: the bridge server lacks the old value")
	}

	out := e.mustDS("-o", "json", "provider", "update", "tok", "--credential", "TOKEN="+newV, "--expires", "1h")
	if strings.Contains(out, oldV) || strings.Contains(out, newV) {
		t.Fatalf("provider update printed a value: %s", out)
	}
	var u api.ProviderUpdated
	if err := json.Unmarshal([]byte(out), &u); err != nil || u.Rotated != 1 || len(u.Sandboxes) != 1 || u.Sandboxes[0] != "rot" || u.Expires == nil {
		t.Fatalf("provider update: %v %s", err, out)
	}

	if out := egressSees(); !strings.Contains(out, `auth="Bearer `+newV+`"`) || strings.Contains(out, oldV) {
		t.Fatalf("after: the bound endpoint did not get the new value: %q", out)
	}
	if txt := bridgeSees(); !strings.Contains(txt, newV) || strings.Contains(txt, oldV) {
		t.Fatal("after: the bridge server does not have the new value (or still has the old one)")
	}
	if e.initPID("rot") != initBefore {
		t.Fatal("the sandbox was restarted by the rotation")
	}
	// The sandbox holds neither value: a placeholder only.
	if ph := e.mustBash("rot", "echo -n $TOKEN"); ph == "" || ph == oldV || ph == newV {
		t.Fatalf("the sandbox's TOKEN is %q", ph)
	}
	e.scanSandbox("rot", ws, oldV)
	e.scanSandbox("rot", ws, newV)

	// Audit: an event naming the key; no value in any host log.
	found := false
	filepath.WalkDir(filepath.Join(e.home, "logs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		s := string(b)
		if strings.Contains(s, oldV) || strings.Contains(s, newV) {
			t.Errorf("host log %s contains a credential value", p)
		}
		if strings.Contains(s, `"credential-rotated"`) && strings.Contains(s, "provider tok rotated: TOKEN") && strings.Contains(p, "rot") {
			found = true
		}
		return nil
	})
	if !found {
		t.Fatal("no credential-rotated audit event in the sandbox's event log")
	}

	// Expiring within 72h: health warns, the sandbox stays healthy.
	r := e.mustBeHealthy("rot")
	warned := false
	for _, c := range r.Checks {
		if c.Name == "credential:tok/TOKEN" && c.Status == "warn" {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no expiry warning: %+v", r.Checks)
	}
	if out := e.mustDS("provider", "list"); !strings.Contains(out, "(soon)") {
		t.Fatalf("provider list does not show the expiry:\n%s", out)
	}
	// An expiry in the past fails health, naming the credential.
	e.mustDS("provider", "update", "tok", "--credential", "TOKEN="+newV, "--expires", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	e.mustFail("rot", "credential:tok/TOKEN")
}
