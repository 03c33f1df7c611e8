package daemon

import (
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	_ "github.com/bohica-labs/darkshell/controller/driver/sshdriver"
)

func TestCheckPoolSpec(t *testing.T) {
	for _, c := range []struct {
		name string
		spec api.PoolSpec
		want string // "" for valid
	}{
		{"ok", api.PoolSpec{Name: "dev", Driver: "local", Size: 2}, ""},
		{"empty pool", api.PoolSpec{Name: "dev", Driver: "local", Size: 0}, ""},
		{"bad name", api.PoolSpec{Name: "Dev Box", Driver: "local", Size: 1}, "invalid sandbox name"},
		{"unknown driver", api.PoolSpec{Name: "dev", Driver: "kvm", Size: 1}, "unknown driver"},
		{"driver without pools", api.PoolSpec{Name: "dev", Driver: "ssh", Size: 1}, "cannot hold warm pools"},
		{"negative size", api.PoolSpec{Name: "dev", Driver: "local", Size: -1}, "want 0 to 64"},
		{"too big", api.PoolSpec{Name: "dev", Driver: "local", Size: MaxPoolSize + 1}, "want 0 to 64"},
		{"providers", api.PoolSpec{Name: "dev", Driver: "local", Size: 1, Options: driver.CreateOptions{Providers: []string{"gh"}}}, "no credentials"},
		{"workspace", api.PoolSpec{Name: "dev", Driver: "local", Size: 1, Options: driver.CreateOptions{Workspace: "/tmp/x"}}, "--workspace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkPoolSpec(&c.spec)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
		})
	}
}

// A claim matches on the generic options only: providers are per sandbox,
// and an empty driver-opts map is no driver opts.
func TestOptionsMatch(t *testing.T) {
	pool := driver.CreateOptions{Image: "/img.tar", Policy: "p", PidsLimit: 64}
	for _, c := range []struct {
		name  string
		req   driver.CreateOptions
		match bool
	}{
		{"same", pool, true},
		{"with providers", driver.CreateOptions{Image: "/img.tar", Policy: "p", PidsLimit: 64, Providers: []string{"gh"}}, true},
		{"empty driver opts", driver.CreateOptions{Image: "/img.tar", Policy: "p", PidsLimit: 64, DriverOpts: map[string]string{}}, true},
		{"other policy", driver.CreateOptions{Image: "/img.tar", Policy: "q", PidsLimit: 64}, false},
		{"other limit", driver.CreateOptions{Image: "/img.tar", Policy: "p", PidsLimit: 65}, false},
		{"unconfined", driver.CreateOptions{Image: "/img.tar", Policy: "p", PidsLimit: 64, Unconfined: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := optionsMatch(c.req, pool); got != c.match {
				t.Fatalf("match %v, want %v", got, c.match)
			}
		})
	}
}
