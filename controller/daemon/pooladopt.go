package daemon

import (
	"time"

	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

// adopt makes s, a live session dialled to a warm-pool member that has
// just become sb, sb's warm session (warmpool.go): the first exec after a
// claim opens a stream on it instead of dialling.
func (p *pool) adopt(sb *state.Sandbox, s *session.Session) {
	e := p.entry(sb.Name)
	e.mu.Lock()
	if e.sess != nil && e.sess != s {
		e.sess.Close()
	}
	e.sess, e.lastErr, e.failures, e.dropped = s, nil, 0, false
	e.lastUsed = time.Now()
	e.mu.Unlock()
	go p.watch(e, s, sb)
}
