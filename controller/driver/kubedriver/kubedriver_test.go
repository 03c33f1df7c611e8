package kubedriver

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/driver"
)

func TestCheckOptions(t *testing.T) {
	ok := driver.CreateOptions{Image: "img", CPULimit: "1", MemoryLimit: "1G",
		DriverOpts: map[string]string{OptNamespace: "n", OptKubeconfig: "k", OptContext: "c", OptPullPolicy: "Never", OptWritableRoot: "true"}}
	if err := CheckOptions(ok); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		o    driver.CreateOptions
		want string
	}{
		{driver.CreateOptions{}, "needs --image"},
		{driver.CreateOptions{Image: "i", Rootfs: "/r"}, "--rootfs"},
		{driver.CreateOptions{Image: "i", Workspace: "/w"}, "--workspace"},
		{driver.CreateOptions{Image: "i", Policy: "p"}, "--policy"},
		{driver.CreateOptions{Image: "i", PidsLimit: 3}, "pids"},
		{driver.CreateOptions{Image: "i", Unconfined: true}, "--unconfined"},
		{driver.CreateOptions{Image: "i", Providers: []string{"p"}}, "--provider"},
		{driver.CreateOptions{Image: "i", DriverOpts: map[string]string{"gateway": "g"}}, "not known"},
		{driver.CreateOptions{Image: "i", DriverOpts: map[string]string{OptPullPolicy: "x"}}, "pull-policy"},
		{driver.CreateOptions{Image: "i", DriverOpts: map[string]string{OptWritableRoot: "yes"}}, "writable-root"},
	} {
		if err := CheckOptions(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestPodName(t *testing.T) {
	a, b := PodName("/home/a", "box"), PodName("/home/b", "box")
	if a == b || !strings.HasPrefix(a, "ds-box-") || len(a) != len("ds-box-")+8 {
		t.Fatalf("%q %q", a, b)
	}
}

// TestNoClientGoInDarkshell: client-go's package initialisation stays out
// of the darkshell and darkshell-core binaries (it is the helper's).
func TestNoClientGoInDarkshell(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/bohica-labs/darkshell/cmd/darkshell",
		"github.com/bohica-labs/darkshell/cmd/darkshell-core").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
			t.Fatalf("darkshell links %s: keep client-go in cmd/darkshell-kube", p)
		}
	}
}
