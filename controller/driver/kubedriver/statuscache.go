package kubedriver

import (
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
)

// A claim has just proved its Pod runs (the member's session is up and the
// relabel found the Pod); the daemon asks for the new sandbox's status
// twice while answering the create (phase and health), each a helper
// process and an API call. primeRunning lets those answers come from the
// claim for claimTTL instead.
const claimTTL = 2 * time.Second

var (
	primedMu sync.Mutex
	primed   = map[string]time.Time{} // namespace/pod → until
)

func primeRunning(x Extra) {
	primedMu.Lock()
	defer primedMu.Unlock()
	now := time.Now()
	for k, until := range primed {
		if now.After(until) {
			delete(primed, k)
		}
	}
	primed[x.Namespace+"/"+x.Pod] = now.Add(claimTTL)
}

func primedStatus(x Extra) (driver.Status, bool) {
	primedMu.Lock()
	defer primedMu.Unlock()
	if until, ok := primed[x.Namespace+"/"+x.Pod]; ok && time.Now().Before(until) {
		return driver.Status{Phase: driver.PhaseRunning}, true
	}
	return driver.Status{}, false
}
