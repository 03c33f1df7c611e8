package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

// pool keeps one warm session per sandbox. Concurrent callers share one
// connection attempt; failed attempts back off exponentially; a session that
// dies while in use is re-dialled in the background while it stays warm.
type pool struct {
	home *state.Home
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool
}

type entry struct {
	name string

	mu       sync.Mutex
	sess     *session.Session
	dialing  chan struct{} // closed when the current attempt ends
	lastErr  error
	failures int
	nextTry  time.Time
	lastUsed time.Time
	dropped  bool // by drop: the session is not to be re-dialled
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// warmFor is how long after its last use a session is re-dialled when it drops.
	warmFor = 10 * time.Minute
)

func newPool(h *state.Home, log *slog.Logger) *pool {
	return &pool{home: h, log: log, entries: map[string]*entry{}}
}

func (p *pool) entry(name string) *entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[name]
	if e == nil {
		e = &entry{name: name}
		p.entries[name] = e
	}
	return e
}

// get returns a live session for the sandbox, dialling if needed.
func (p *pool) get(ctx context.Context, sb *state.Sandbox) (*session.Session, error) {
	e := p.entry(sb.Name)
	for {
		e.mu.Lock()
		e.lastUsed = time.Now()
		if e.sess != nil && e.sess.Alive() {
			s := e.sess
			e.mu.Unlock()
			return s, nil
		}
		if ch := e.dialing; ch != nil {
			e.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if wait := time.Until(e.nextTry); wait > 0 && e.lastErr != nil {
			err := e.lastErr
			e.mu.Unlock()
			if wait > 500*time.Millisecond {
				return nil, fmt.Errorf("%w (next attempt in %s)", err, wait.Round(100*time.Millisecond))
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		e.dialing = ch
		e.mu.Unlock()

		s, err := p.dial(ctx, sb)

		e.mu.Lock()
		e.dialing = nil
		close(ch)
		if err != nil {
			e.failures++
			e.lastErr = err
			e.nextTry = time.Now().Add(backoff(e.failures))
			e.mu.Unlock()
			return nil, err
		}
		e.sess, e.lastErr, e.failures = s, nil, 0
		e.mu.Unlock()
		go p.watch(e, s, sb)
		return s, nil
	}
}

func (p *pool) dial(ctx context.Context, sb *state.Sandbox) (*session.Session, error) {
	d, err := driver.Get(sb.Driver)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := d.Connect(ctx, p.home, sb)
	if err != nil {
		p.log.Warn("connect failed", "sandbox", sb.Name, "err", err)
		return nil, fmt.Errorf("connect to sandbox %s: %w", sb.Name, err)
	}
	p.log.Info("connected", "sandbox", sb.Name, "sandboxd", s.Remote().BuildVersion, "took", time.Since(start))
	return s, nil
}

// watch re-dials a session that drops while still warm.
func (p *pool) watch(e *entry, s *session.Session, sb *state.Sandbox) {
	<-s.Done()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	e.mu.Lock()
	recent := time.Since(e.lastUsed) < warmFor && !e.dropped
	if e.sess == s {
		e.sess = nil
	}
	e.mu.Unlock()
	if closed || !recent {
		return
	}
	p.log.Info("session lost; reconnecting", "sandbox", sb.Name)
	for attempt := 1; ; attempt++ {
		if _, err := p.home.Get(sb.Name); err != nil {
			return // deleted
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.get(ctx, sb)
		cancel()
		if err == nil {
			return
		}
		p.mu.Lock()
		closed = p.closed
		p.mu.Unlock()
		if closed || attempt > 20 {
			return
		}
		time.Sleep(backoff(attempt))
	}
}

// status reports what the pool knows of a sandbox.
func (p *pool) status(name string) (connected bool, s *session.Session, lastErr error) {
	p.mu.Lock()
	e := p.entries[name]
	p.mu.Unlock()
	if e == nil {
		return false, nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess != nil && e.sess.Alive() {
		return true, e.sess, nil
	}
	return false, nil, e.lastErr
}

// touch marks a sandbox's session as used now (it stays warm).
func (p *pool) touch(name string) {
	p.mu.Lock()
	e := p.entries[name]
	p.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.lastUsed = time.Now()
		e.mu.Unlock()
	}
}

// drop closes and forgets a sandbox's session.
func (p *pool) drop(name string) {
	p.mu.Lock()
	e := p.entries[name]
	delete(p.entries, name)
	p.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.dropped = true
		if e.sess != nil {
			e.sess.Close()
		}
		e.mu.Unlock()
	}
}

func (p *pool) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for n, e := range p.entries {
		e.mu.Lock()
		if e.sess != nil && e.sess.Alive() {
			out = append(out, n)
		}
		e.mu.Unlock()
	}
	return out
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	es := p.entries
	p.entries = map[string]*entry{}
	p.mu.Unlock()
	for _, e := range es {
		e.mu.Lock()
		if e.sess != nil {
			e.sess.Close()
		}
		e.mu.Unlock()
	}
}

func backoff(n int) time.Duration {
	d := backoffMin << min(n-1, 10)
	return min(d, backoffMax)
}
