package localdriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/probes"
)

// One probe set per controller process: loading it (the kernel's BTF
// decoded, the programs verified and attached) costs tens of
// milliseconds, which no create should pay, and one attached copy serves
// every sandbox at the cost of one.
var hostProbes struct {
	once sync.Once
	set  *probes.Set
	err  error
}

// WarmProbes loads the host's probe set in the background, so the first
// create does not wait for it. The daemon calls it when it starts.
func WarmProbes() { go probeSet() }

func probeSet() (*probes.Set, error) {
	hostProbes.once.Do(func() {
		if rootless() {
			hostProbes.err = fmt.Errorf("%w: loading eBPF needs root (uid %d)", probes.ErrNotSupported, os.Getuid())
			return
		}
		hostProbes.set, hostProbes.err = probes.Load()
		if hostProbes.err == nil {
			hook, note := hostProbes.set.FileHook()
			slog.Info("eBPF probes loaded", "file_hook", hook, "why", note)
		} else {
			level := slog.LevelError
			if errors.Is(hostProbes.err, probes.ErrNotSupported) {
				level = slog.LevelWarn
			}
			slog.Log(context.Background(), level, "eBPF probes unavailable: local sandboxes fall back to procfs+inotify tracing", "err", hostProbes.err)
		}
	})
	return hostProbes.set, hostProbes.err
}

// probeFDs is sandboxd's localinit.ProbeFDs on the wire: where init finds
// its share of the probes among its descriptors.
type probeFDs struct {
	Ring  int   `json:"ring"`
	Knobs int   `json:"knobs"`
	Links []int `json:"links"`
}

// probeShare is what one sandbox's init inherits of the host's probes:
// its ring buffer and knobs, and duplicates of the set's links.
type probeShare struct {
	set   *probes.Set
	sb    *probes.Sandbox
	links []*os.File
	dups  []*os.File // the ring's and knobs' descriptors passed to init
}

// newProbeShare makes a sandbox's share of the host's probes, or returns
// nil when there are none (then init uses its fallbacks).
func newProbeShare() *probeShare {
	set, err := probeSet()
	if err != nil {
		return nil
	}
	sb, err := set.NewSandbox()
	if err != nil {
		slog.Error("unable to make a sandbox's ring buffer: it falls back to procfs+inotify tracing", "err", err)
		return nil
	}
	links, err := set.LinkFiles()
	if err != nil {
		sb.Close()
		slog.Error("unable to share the probes' links: the sandbox falls back to procfs+inotify tracing", "err", err)
		return nil
	}
	return &probeShare{set: set, sb: sb, links: links}
}

// files appends the share's descriptors to extra (the child's descriptors
// from 3 on) and returns where init finds them.
func (s *probeShare) files(extra []*os.File) ([]*os.File, *probeFDs, error) {
	if s == nil {
		return extra, nil, nil
	}
	for _, fd := range []int{s.sb.Ring.FD(), s.sb.Knobs.FD()} {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("dup probe map: %w", err)
		}
		s.dups = append(s.dups, os.NewFile(uintptr(d), "bpf-map"))
	}
	fds := &probeFDs{Ring: 3 + len(extra), Knobs: 4 + len(extra)}
	extra = append(extra, s.dups...)
	for _, l := range s.links {
		fds.Links = append(fds.Links, 3+len(extra))
		extra = append(extra, l)
	}
	return extra, fds, nil
}

// attach routes the events of init's pid namespace to the share's ring
// buffer; the returned detach removes the route (when init has ended: its
// namespace's inode number may be reused).
func (s *probeShare) attach(pid int) (detach func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	ns, err := probes.PidNS(pid)
	if err != nil {
		return nil, err
	}
	if err := s.set.Add(ns, s.sb); err != nil {
		return nil, err
	}
	return func() {
		if err := s.set.Remove(ns); err != nil {
			slog.Error("unable to remove an ended sandbox's probe entry", "pidns", ns, "err", err)
		}
	}, nil
}

// close drops this process's descriptors of the share (init has its own).
func (s *probeShare) close() {
	if s == nil {
		return
	}
	s.sb.Close()
	for _, f := range append(s.links, s.dups...) {
		f.Close()
	}
}
