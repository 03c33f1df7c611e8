package events

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/prometheus/procfs"

	"github.com/bohica-labs/darkshell/protocol"
)

// DefaultPoll is the procfs source's sampling interval.
const DefaultPoll = 100 * time.Millisecond

// Procfs polls /proc for the descendants of one process (sandboxd's
// server) and publishes exec and exit events with fidelity "polled":
// a process that lives shorter than the interval is never seen, an exit
// code is never known, and times are late by up to the interval.
type Procfs struct {
	fs       procfs.FS
	root     int
	interval time.Duration
	log      *slog.Logger
	seen     map[procKey]*polled
	execs    uint64
}

type procKey struct {
	pid   int
	start uint64 // start time in clock ticks: tells a reused pid apart
}

type procInfo struct {
	stat procfs.ProcStat
	proc procfs.Proc
}

type polled struct {
	execID string
	parent string
	comm   string
	binary string
	first  time.Time
}

// NewProcfs returns a procfs source for the descendants of root (0: the
// calling process), sampling every interval (0: DefaultPoll).
func NewProcfs(root int, interval time.Duration, log *slog.Logger) (*Procfs, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if root == 0 {
		root = os.Getpid()
	}
	if interval <= 0 {
		interval = DefaultPoll
	}
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		return nil, fmt.Errorf("unable to open /proc: %w", err)
	}
	return &Procfs{fs: fs, root: root, interval: interval, log: log, seen: map[procKey]*polled{}}, nil
}

// Run samples until ctx ends. The first sample only records what already
// runs (no events): it happened before anyone could trace it.
func (p *Procfs) Run(ctx context.Context, hub *Hub) error {
	p.sample(nil)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.sample(hub)
		}
	}
}

func (p *Procfs) sample(hub *Hub) {
	procs, err := p.fs.AllProcs()
	if err != nil {
		p.log.Warn("unable to list /proc", "err", err)
		return
	}
	now := time.Now()
	all := make(map[int]procInfo, len(procs))
	for _, pr := range procs {
		st, err := pr.Stat()
		if err != nil {
			continue // it exited meanwhile
		}
		all[pr.PID] = procInfo{st, pr}
	}
	// Descendants of root, parents before children (walk up the ppid chain).
	inTree := map[int]bool{p.root: true}
	var isDesc func(pid, depth int) bool
	isDesc = func(pid, depth int) bool {
		if v, ok := inTree[pid]; ok {
			return v
		}
		in, ok := all[pid]
		if !ok || depth > 64 || in.stat.PPID == 0 {
			inTree[pid] = false
			return false
		}
		v := isDesc(in.stat.PPID, depth+1)
		inTree[pid] = v
		return v
	}
	alive := map[procKey]bool{}
	// New processes, parents first: sort by start time.
	var fresh []procInfo
	for pid, in := range all {
		if pid == p.root || !isDesc(pid, 0) {
			continue
		}
		k := procKey{pid, in.stat.Starttime}
		alive[k] = true
		if _, ok := p.seen[k]; !ok {
			fresh = append(fresh, in)
		}
	}
	sortByStart(fresh)
	for _, in := range fresh {
		k := procKey{in.proc.PID, in.stat.Starttime}
		pp := p.lookup(in.stat.PPID, all)
		p.execs++
		np := &polled{execID: fmt.Sprintf("%d-p%d", in.proc.PID, p.execs), comm: in.stat.Comm, first: now}
		if pp != nil {
			np.parent = pp.execID
		}
		np.binary, _ = in.proc.Executable()
		p.seen[k] = np
		if hub == nil {
			continue
		}
		ev := protocol.Event{
			Time: now, Kind: protocol.KindExec, PID: in.proc.PID, PPID: in.stat.PPID,
			ExecID: np.execID, ParentExecID: np.parent, Comm: in.stat.Comm, Binary: np.binary,
			Source: protocol.SourceProcfs, Fidelity: protocol.FidelityPolled,
		}
		if argv, err := in.proc.CmdLine(); err == nil {
			ev.Argv = protocol.ClampArgv(argv)
		}
		if cwd, err := in.proc.Cwd(); err == nil {
			ev.Cwd = cwd
		}
		if st, err := in.proc.NewStatus(); err == nil {
			uid := int(st.UIDs[0])
			ev.UID = &uid
		}
		hub.Publish(ev)
	}
	for k, pr := range p.seen {
		if alive[k] {
			continue
		}
		delete(p.seen, k)
		if hub == nil {
			continue
		}
		hub.Publish(protocol.Event{
			Time: now, Kind: protocol.KindExit, PID: k.pid, ExecID: pr.execID, ParentExecID: pr.parent,
			Comm: pr.comm, Binary: pr.binary, DurationNs: int64(now.Sub(pr.first)),
			Source: protocol.SourceProcfs, Fidelity: protocol.FidelityPolled,
		})
	}
}

// lookup is what is known of the running process pid.
func (p *Procfs) lookup(pid int, all map[int]procInfo) *polled {
	in, ok := all[pid]
	if !ok {
		return nil
	}
	return p.seen[procKey{pid, in.stat.Starttime}]
}

func sortByStart(s []procInfo) {
	slices.SortFunc(s, func(a, b procInfo) int {
		if c := cmp.Compare(a.stat.Starttime, b.stat.Starttime); c != 0 {
			return c
		}
		return cmp.Compare(a.proc.PID, b.proc.PID)
	})
}
