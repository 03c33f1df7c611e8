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
	"strings"
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
//
// Only the feed goroutine writes the helper's pipe, and it holds no lock
// while it does: a helper that does not read (stopped, starved) blocks the
// feed alone, never `export add/remove/list` (which hand the feed a reload
// request and return).
type exportProc struct {
	home  *state.Home
	store *export.Store
	bus   *events.Bus
	usage func(context.Context) []export.Usage
	log   *slog.Logger

	mu   sync.Mutex // the helper's lifecycle (cmd .. done); never held across a pipe write
	cmd  *exec.Cmd
	sub  *events.LineSub
	stop chan struct{} // closed: the feed writes what it has, closes the pipe (it owns it) and returns
	done chan struct{} // closed when the helper has exited
	// reload asks the feed to send the helper a reload line (capacity 1:
	// requests made while one waits are one reload).
	reload  chan struct{}
	err     atomic.Pointer[string] // why the helper does not run
	running atomic.Bool
	report  atomic.Pointer[export.Report]
	// delay is the feed delay (feedDelayFor; 0: feedDelay).
	delay time.Duration
}

func newExportProc(h *state.Home, bus *events.Bus, usage func(context.Context) []export.Usage, log *slog.Logger) *exportProc {
	return &exportProc{home: h, store: export.OpenStore(h), bus: bus, usage: usage, log: log,
		delay: feedDelayFor(os.Getenv("DARKSHELL_EXPORT_FLUSH"))}
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
		p.requestReload()
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
	ir, iw, err := os.Pipe()
	if err != nil {
		return err
	}
	growPipe(iw, feedPipeSize)
	rr, rw, err := os.Pipe()
	if err != nil {
		ir.Close()
		iw.Close()
		return err
	}
	cmd.Stdin = ir
	cmd.ExtraFiles = []*os.File{rw}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		ir.Close()
		iw.Close()
		rr.Close()
		rw.Close()
		return fmt.Errorf("unable to start %s: %w", bin, err)
	}
	ir.Close()
	rw.Close()
	p.cmd = cmd
	p.err.Store(nil)
	p.stop, p.done, p.reload = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	p.sub = p.bus.SubscribeLines(64 << 10)
	p.running.Store(true)
	go p.readReports(rr)
	go p.feed(iw, p.sub, p.reload, p.stop)
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
// once for them, not once per event. The helper's exporters batch for a
// second too (its DARKSHELL_EXPORT_FLUSH, default 1 s; OTel's batch span
// processor waits 5 s), so a second here changes what a backend sees
// little, and each wake-up of the helper costs it a burst of its
// runtime's monitor thread (sysmon) polling every 20-40 µs before it backs
// off: at 150 ms that was about one helper wake-up per traced exec in
// bench-export's exec loops. When DARKSHELL_EXPORT_FLUSH asks for a
// shorter flush (tests do), the feed follows it (see feedDelayFor).
const feedDelay = time.Second

// feedDelayFor is the feed delay for a helper flush interval of flush
// ($DARKSHELL_EXPORT_FLUSH): feedDelay, or flush when it is shorter (never
// under 10 ms); an event need not wait in the daemon longer than the
// helper's batches wait.
func feedDelayFor(flush string) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(flush))
	if err != nil || d <= 0 || d >= feedDelay {
		return feedDelay
	}
	return max(d, 10*time.Millisecond)
}

// feedPipeSize is the capacity asked for the helper's stdin pipe (Linux
// F_SETPIPE_SZ; the default is 64 KiB, and 1 MiB the most an unprivileged
// process may ask for by default): room for a feedDelay's events of a busy
// sandbox (a traced exec is 3-5 lines of 300-600 bytes) in one write. It is
// a bound like the subscription's queue.
const feedPipeSize = 1 << 20

// requestReload asks the feed to send a reload line; it never waits.
func (p *exportProc) requestReload() {
	select {
	case p.reload <- struct{}{}:
	default: // one is pending: it will read the store as it is then
	}
}

// feed writes the bus to the helper on w, and the resource use now and
// then; it is the pipe's only writer and holds no lock. Events come
// encoded (the bytes the host log got): each is wrapped as an export.Line
// ({"event":EVENT}) without encoding it again. Idle, feed waits for an
// event; then, while events come, it sleeps feedDelay and writes all that
// came meanwhile in one write, so that a publisher's send wakes no one
// (the queue is only read every feedDelay). A write blocks while the pipe
// is full (the helper is behind): then the bus's queue fills, bounded, and
// drops (counted, reported to the helper as bus_lost) instead of blocking
// a publisher. When stop closes, feed writes what the queue holds, closes
// w and returns.
func (p *exportProc) feed(w io.WriteCloser, sub *events.LineSub, reload <-chan struct{}, stop <-chan struct{}) {
	defer w.Close()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()
	var (
		buf    []byte
		lost   uint64
		broken bool
	)
	delay := p.delay
	if delay <= 0 {
		delay = feedDelay
	}
	write := func() {
		if len(buf) == 0 {
			return
		}
		if !broken {
			if _, err := w.Write(buf); err != nil {
				broken = true // the helper is gone: drain until stopped
				if !errors.Is(err, os.ErrClosed) {
					p.log.Debug("exporter helper pipe", "err", err)
				}
			}
		}
		if cap(buf) > 4<<20 {
			buf = nil // do not keep a burst's buffer
		} else {
			buf = buf[:0]
		}
	}
	// drain takes what the queue holds (at most its capacity).
	drain := func() int {
		for n := 0; n < cap(sub.C); n++ {
			select {
			case l := <-sub.C:
				buf = appendEventLine(buf, l)
				continue
			default:
			}
			return n
		}
		return cap(sub.C)
	}
	report := func() {
		u := p.usage(context.Background())
		if u == nil {
			u = []export.Usage{}
		}
		buf = appendLine(buf, export.Line{Usage: u})
		if n := sub.Skipped(); n != lost {
			lost = n
			buf = appendLine(buf, export.Line{BusLost: &n})
		}
	}
	finish := func() {
		drain()
		select {
		case <-reload: // requested before the stop: sent all the same
			buf = appendLine(buf, export.Line{Reload: true})
		default:
		}
		write()
	}
	for {
		select {
		case <-stop:
			finish()
			return
		case <-reload:
			buf = appendLine(buf, export.Line{Reload: true})
			write()
		case <-t.C:
			report()
			write()
		case l := <-sub.C:
			buf = appendEventLine(buf, l)
			// Busy: drain every delay until a nap brings nothing.
			for {
				nap.Reset(delay)
				for napping := true; napping; {
					select {
					case <-stop:
						finish()
						return
					case <-reload:
						// After the events before it: the helper reloads
						// between them and what comes next.
						drain()
						buf = appendLine(buf, export.Line{Reload: true})
						write()
					case <-t.C:
						report()
					case <-nap.C:
						napping = false
					}
				}
				n := drain()
				write()
				if n == 0 {
					break
				}
			}
		}
	}
}

// appendEventLine appends one encoded event (a JSON line) as an
// export.Line: {"event":EVENT}.
func appendEventLine(buf, line []byte) []byte {
	if len(line) < 2 {
		return buf
	}
	buf = append(buf, export.EventLinePrefix...)
	buf = append(buf, line[:len(line)-1]...) // without its newline
	return append(buf, '}', '\n')
}

// appendLine appends l as a JSON line.
func appendLine(buf []byte, l export.Line) []byte {
	b, err := json.Marshal(&l)
	if err != nil {
		return buf
	}
	buf = append(buf, b...)
	return append(buf, '\n')
}

func (p *exportProc) cleanupLocked() {
	if p.sub != nil {
		p.sub.Close()
	}
	if p.stop != nil {
		close(p.stop)
	}
	p.cmd, p.sub, p.stop, p.reload = nil, nil, nil, nil
	p.running.Store(false)
}

// stopLocked ends the helper: the feed writes what the bus's queue holds
// and closes the pipe; the helper flushes what it has (what it cannot send
// stays in the spools) and exits when its stdin closes.
func (p *exportProc) stopLocked() {
	if p.cmd == nil {
		return
	}
	cmd, done := p.cmd, p.done
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
