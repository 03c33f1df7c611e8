package daemon

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/protocol"
)

// rotated finishes a provider update: it records the new values' expiry,
// re-keys the running bridges that use the provider (between calls), and
// publishes an audit event to every sandbox that uses it, naming the keys,
// never the values. The egress proxies read the provider at each request,
// so their next request carries the new value.
func (d *Daemon) rotated(name string, creds map[string]string, expires *time.Time) (*api.ProviderUpdated, error) {
	t := d.tools()
	var keys []string
	for k, v := range creds {
		if v != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var exp time.Time
	if expires != nil {
		exp = *expires
	}
	// A rotated key's old expiry belonged to the old value.
	p, err := t.providers.SetExpiry(name, keys, exp)
	if err != nil {
		return nil, err
	}
	res := &api.ProviderUpdated{Name: p.Name, Keys: keys, Expires: p.NextExpiry()}
	res.Rotated = t.mcp.Rotate(p.Name)
	users := map[string]bool{}
	sbs, _ := d.opts.Home.List()
	for _, sb := range sbs {
		var x struct {
			Providers []string `json:"providers"`
		}
		json.Unmarshal(sb.Extra, &x)
		if slices.Contains(x.Providers, name) {
			res.Sandboxes = append(res.Sandboxes, sb.Name)
			users[sb.Name] = true
		}
	}
	for _, u := range t.mcp.Users(name) {
		sb, _, _ := strings.Cut(u, "/")
		users[sb] = true
	}
	msg := fmt.Sprintf("provider %s rotated: %s (values not recorded); %d bridge(s) re-keyed", name, strings.Join(keys, ", "), res.Rotated)
	if res.Expires != nil {
		msg += "; expires " + res.Expires.UTC().Format(time.RFC3339)
	}
	now := time.Now().UTC()
	for sb := range users {
		d.bus.Publish(protocol.Event{Time: now, Sandbox: sb, Kind: protocol.KindSandboxState, State: "credential-rotated",
			Message: msg, Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	}
	d.log.Info("provider rotated", "provider", name, "keys", keys, "bridges", res.Rotated, "sandboxes", len(users))
	return res, nil
}
