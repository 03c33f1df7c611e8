package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/state"
)

// exportProc runs the exporter helper (darkshell-export) while exporters
// are configured and feeds it the bus as JSON lines. The helper holds the
// OpenTelemetry, gRPC and Prometheus code, so none of it is in this
// binary's start-up. A slow helper never blocks the bus: its subscription
// is bounded and drops (counted) when full.
type exportProc struct {
	home  *state.Home
	store *export.Store
	bus   *events.Bus
	usage func(context.Context) []export.Usage
	log   *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	in      *bufio.Writer
	inPipe  io.WriteCloser
	sub     *events.LineSub
	stop    chan struct{}
	done    chan struct{}
	err     atomic.Pointer[string] // why the helper does not run
	running atomic.Bool
	report  atomic.Pointer[export.Report]
}

func newExportProc(h *state.Home, bus *events.Bus, usage func(context.Context) []export.Usage, log *slog.Logger) *exportProc {
	return &exportProc{home: h, store: export.OpenStore(h), bus: bus, usage: usage, log: log}
}

// active reports whether the helper runs (host-side events are published
// only then).
func (p *exportProc) active() bool { return p != nil && p.running.Load() }

// helperPath finds darkshell-export: $DARKSHELL_EXPORT_BIN, next to this
// executable, or on $PATH.
func helperPath() (string, error) {
	if b := os.Getenv("DARKSHELL_EXPORT_BIN"); b != "" {
		return b, nil
	}
	if self, err := os.Executable(); err == nil {
		c := filepath.Join(filepath.Dir(self), export.HelperName)
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	if c, err := exec.LookPath(export.HelperName); err == nil {
		return c, nil
	}
	return "", fmt.Errorf("%s not found next to darkshell or on $PATH: build it with `make build` (bin/%s) or set DARKSHELL_EXPORT_BIN", export.HelperName, export.HelperName)
}

// sync starts the helper when exporters exist, tells a running one to
// reload, and stops it when none is left.
func (p *exportProc) sync() {
	specs, err := p.store.List()
	if err != nil {
		p.log.Warn("unable to read exporters", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(specs) == 0 {
		p.stopLocked()
		return
	}
	if p.cmd != nil {
		p.sendLocked(export.Line{Reload: true})
		return
	}
	if err := p.startLocked(); err != nil {
		msg := err.Error()
		p.err.Store(&msg)
		p.log.Warn("exporters not started", "err", err)
	}
}

func (p *exportProc) startLocked() error {
	bin, err := helperPath()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, p.home.Dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.ExtraFiles = []*os.File{rw}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		rr.Close()
		rw.Close()
		return fmt.Errorf("unable to start %s: %w", bin, err)
	}
	rw.Close()
	p.cmd, p.inPipe, p.in = cmd, in, bufio.NewWriterSize(in, 64<<10)
	p.err.Store(nil)
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	p.sub = p.bus.SubscribeLines(64 << 10)
	p.running.Store(true)
	go p.readReports(rr)
	go p.feed(p.sub, p.stop)
	go func(cmd *exec.Cmd, done chan struct{}) {
		err := cmd.Wait()
		close(done)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cmd != cmd {
			return // stopped on purpose
		}
		p.log.Warn("exporter helper exited; restarting", "err", err)
		p.cleanupLocked()
		time.AfterFunc(time.Second, p.sync)
	}(cmd, p.done)
	p.log.Info("exporter helper started", "pid", cmd.Process.Pid, "bin", bin)
	return nil
}

func (p *exportProc) readReports(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var rep export.Report
		if json.Unmarshal(sc.Bytes(), &rep) == nil {
			p.report.Store(&rep)
		}
	}
}

// feedDelay is how long an event may wait in the daemon for the pipe
// write: the events of that time go in one write, and the helper wakes
// once for them, not once per event (its exporters batch for a second).
const feedDelay = 25 * time.Millisecond

// feed writes the bus to the helper, and the resource use now and then.
// Events come encoded (the bytes the host log got): each is wrapped as an
// export.Line ({"event":EVENT}) without encoding it again. Idle, feed
// waits for an event; then, while events come, it sleeps feedDelay and
// writes all that came meanwhile in one write, so that a publisher's send
// wakes no one (the queue is only read every feedDelay). The bus's queue
// is bounded and drops (counted) when full: a slow pipe never blocks a
// publisher.
func (p *exportProc) feed(sub *events.LineSub, stop chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()
	var lost uint64
	report := func() {
		u := p.usage(context.Background())
		if u == nil {
			u = []export.Usage{}
		}
		p.mu.Lock()
		p.sendLocked(export.Line{Usage: u})
		if n := sub.Skipped(); n != lost {
			lost = n
			p.sendLocked(export.Line{BusLost: &n})
		}
		p.flushLocked()
		p.mu.Unlock()
	}
	for {
		select {
		case <-stop:
			return
		case l := <-sub.C:
			p.mu.Lock()
			p.sendEventLocked(l)
			p.mu.Unlock()
			// Busy: drain every feedDelay until a nap brings nothing.
			for {
				nap.Reset(feedDelay)
				for napping := true; napping; {
					select {
					case <-stop:
						return
					case <-t.C:
						report()
					case <-nap.C:
						napping = false
					}
				}
				p.mu.Lock()
				n := 0
				for ; n < cap(sub.C); n++ {
					select {
					case l = <-sub.C:
						p.sendEventLocked(l)
						continue
					default:
					}
					break
				}
				p.flushLocked()
				p.mu.Unlock()
				if n == 0 {
					break
				}
			}
		case <-t.C:
			report()
		}
	}
}

// sendEventLocked writes one encoded event (a JSON line) as an
// export.Line: {"event":EVENT}.
func (p *exportProc) sendEventLocked(line []byte) {
	if p.in == nil || len(line) < 2 {
		return
	}
	p.in.WriteString(export.EventLinePrefix)
	p.in.Write(line[:len(line)-1]) // without its newline
	p.in.WriteString("}\n")
}

func (p *exportProc) sendLocked(l export.Line) {
	if p.in == nil {
		return
	}
	b, err := json.Marshal(&l)
	if err != nil {
		return
	}
	p.in.Write(append(b, '\n'))
	if l.Reload {
		p.flushLocked()
	}
}

func (p *exportProc) flushLocked() {
	if p.in != nil {
		if err := p.in.Flush(); err != nil && !errors.Is(err, os.ErrClosed) {
			p.log.Debug("exporter helper pipe", "err", err)
		}
	}
}

func (p *exportProc) cleanupLocked() {
	if p.sub != nil {
		p.sub.Close()
	}
	if p.stop != nil {
		close(p.stop)
	}
	p.cmd, p.in, p.inPipe, p.sub, p.stop = nil, nil, nil, nil, nil
	p.running.Store(false)
}

// stopLocked ends the helper: it flushes what it has (what it cannot send
// stays in the spools) and exits when its stdin closes.
func (p *exportProc) stopLocked() {
	if p.cmd == nil {
		return
	}
	cmd, done := p.cmd, p.done
	p.flushLocked()
	p.inPipe.Close()
	p.cleanupLocked()
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	p.mu.Lock()
}

// close stops the helper (daemon shutdown).
func (p *exportProc) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopLocked()
	p.mu.Unlock()
}

// list is every exporter with the helper's latest counters.
func (p *exportProc) list() ([]export.Status, error) {
	specs, err := p.store.List()
	if err != nil {
		return nil, err
	}
	byName := map[string]export.Status{}
	if rep := p.report.Load(); rep != nil && p.active() {
		for _, st := range rep.Exporters {
			byName[st.Name] = st
		}
	}
	helperErr := ""
	if e := p.err.Load(); e != nil {
		helperErr = *e
	}
	out := make([]export.Status, 0, len(specs))
	for _, sp := range specs {
		st := export.Status{Spec: sp.Redacted()}
		if r, ok := byName[sp.Name]; ok {
			st.Stats, st.Error = r.Stats, r.Error
		} else if helperErr != "" {
			st.Error = helperErr
		}
		out = append(out, st)
	}
	return out, nil
}
