package daemon

import (
	"fmt"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// policyApplied publishes the audit event of a policy hot reload, naming
// where the policy came from (for `policy sync`: the repository, the
// commit and the file).
func (d *Daemon) policyApplied(sandbox, source string, rules int) {
	if source == "" {
		source = "(unnamed)"
	}
	d.bus.Publish(protocol.Event{Time: time.Now().UTC(), Sandbox: sandbox, Kind: protocol.KindSandboxState, State: "policy-applied",
		Policy: source, Message: fmt.Sprintf("network policy from %s applied: %d rule(s)", source, rules),
		Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	d.log.Info("policy applied", "sandbox", sandbox, "source", source, "rules", rules)
}
