package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/protocol"
)

type traceFlags struct {
	files  bool
	follow bool
	since  time.Duration
	pid    int
	binary string
	path   string
}

func (a *app) traceCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace NAME",
		Short: "Show the process tree (and file activity) of a sandbox, live",
		Long: `Show what runs in sandbox NAME: every process with its argv, parent, exit code or
signal and duration, indented by parentage. On a terminal the tree is updated in
place as processes start and end (Ctrl-C to stop); otherwise it is printed once.
The sandbox keeps a bounded history, so a tree that already finished is shown too.

The header states where events come from and how complete they are: "complete"
(eBPF, every exec and file syscall seen in the kernel) or "polled" (/proc sampled,
short-lived processes missed; inotify file changes). Lost events are counted.

-o json prints the events as JSON lines instead (one schema, docs/trace.md).`,
		Example: `  darkshell trace dev
  darkshell trace dev --files --since 5m
  darkshell trace dev -o json --binary curl`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("follow") {
				f.follow = isTerminal(a.stdout)
			}
			return a.runTrace(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.files, "files", false, "include file events (open with intent, write, rename, unlink, mkdir, chmod; denied attempts)")
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep showing live events (default: on when stdout is a terminal)")
	fl.DurationVar(&f.since, "since", 0, "only events of the last D (e.g. 10m)")
	fl.IntVar(&f.pid, "pid", 0, "only process N and its descendants")
	fl.StringVar(&f.binary, "binary", "", "only processes whose binary (path or base name) is B")
	fl.StringVar(&f.path, "path", "", "only file events under path P (or matching glob P)")
	return cmd
}

func (a *app) watchCmd() *cobra.Command {
	var webhook string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Stream every event of a sandbox as JSON lines (process, file, state)",
		Long: `Stream the unified event stream of sandbox NAME as JSON lines: processes, file
changes, sandbox state, and losses (kind "alert"). --webhook POSTs the events in
batches (a JSON array) with retry and backoff; a slow or failing webhook drops
events and says so, it never slows the sandbox.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runWatch(cmd.Context(), args[0], webhook, since)
		},
	}
	cmd.Flags().StringVar(&webhook, "webhook", "", "also POST batches of events to URL")
	cmd.Flags().DurationVar(&since, "since", 0, "start with the retained events of the last D")
	return cmd
}

func (a *app) logsCmd() *cobra.Command {
	var export string
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a sandbox's host event log, or export it with the controller and sandboxd logs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runLogs(cmd.Context(), args[0], export)
		},
	}
	cmd.Flags().StringVar(&export, "export", "", "copy the event logs (rotated files too), the daemon log and sandboxd's log into DIR")
	return cmd
}

func (a *app) runTrace(ctx context.Context, name string, f traceFlags) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	o := client.EventsOptions{History: true, Follow: f.follow, Files: f.files}
	if f.since > 0 {
		o.SinceMs = time.Now().Add(-f.since).UnixMilli()
	}
	st, err := c.Events(ctx, name, o)
	if err != nil {
		return fmt.Errorf("unable to trace %s: %w", name, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	tr := newTree(f)
	live := f.follow && isTerminal(a.stdout) && !a.json()
	if !live {
		for {
			e, err := st.Next()
			if err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					break
				}
				return err
			}
			if !tr.add(e) {
				continue
			}
			if a.json() {
				if err := json.NewEncoder(a.stdout).Encode(e); err != nil {
					return err
				}
			}
		}
		if !a.json() {
			tr.render(a.stdout, st)
		}
		return nil
	}
	// Live: read in the background, redraw in place at most 10 times a
	// second while something changed.
	evs := make(chan *protocol.Event, 1024)
	errc := make(chan error, 1)
	go func() {
		defer close(evs)
		for {
			e, err := st.Next()
			if err != nil {
				errc <- err
				return
			}
			evs <- e
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	dirty := true
	redraw := func() {
		fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
		tr.render(a.stdout, st)
		dirty = false
	}
	for {
		select {
		case e, ok := <-evs:
			if !ok {
				redraw()
				if err := <-errc; !errors.Is(err, io.EOF) && ctx.Err() == nil {
					return err
				}
				return nil
			}
			if tr.add(e) {
				dirty = true
			}
		case <-tick.C:
			if dirty {
				redraw()
			}
		}
	}
}

// tree is the process tree built from exec/fork/exit events.
type tree struct {
	f      traceFlags
	nodes  []*node
	byPID  map[int]*node
	inSub  map[int]bool // --pid: pids in the selected subtree
	alerts []string
}

type node struct {
	pid, ppid int
	parent    *node
	kids      []*node
	binary    string
	argv      []string
	comm      string
	execID    string
	exited    bool
	code      *int
	signal    int
	dur       time.Duration
	start     time.Time
	files     []*protocol.Event
}

func newTree(f traceFlags) *tree {
	t := &tree{f: f, byPID: map[int]*node{}, inSub: map[int]bool{}}
	if f.pid > 0 {
		t.inSub[f.pid] = true
	}
	return t
}

// add records e and reports whether it passes the filters.
func (t *tree) add(e *protocol.Event) bool {
	if e.Kind == protocol.KindAlert {
		t.alerts = append(t.alerts, e.Message)
		return true
	}
	if t.f.pid > 0 {
		if e.Kind == protocol.KindFork && t.inSub[e.PPID] {
			t.inSub[e.PID] = true
		}
		if !t.inSub[e.PID] {
			return false
		}
	}
	n := t.byPID[e.PID]
	switch e.Kind {
	case protocol.KindFork:
		n = &node{pid: e.PID, ppid: e.PPID, binary: e.Binary, execID: e.ExecID, start: e.Time}
		if p := t.byPID[e.PPID]; p != nil && !p.exited {
			n.parent = p
			n.argv, n.comm = p.argv, p.comm
		}
		t.link(n)
	case protocol.KindExec:
		if n == nil || n.exited {
			n = &node{pid: e.PID, ppid: e.PPID, start: e.Time}
			if p := t.byPID[e.PPID]; p != nil && !p.exited {
				n.parent = p
			}
			t.link(n)
		}
		n.binary, n.argv, n.comm, n.execID = e.Binary, e.Argv, e.Comm, e.ExecID
	case protocol.KindExit:
		if n == nil || n.exited {
			n = &node{pid: e.PID, ppid: e.PPID, binary: e.Binary, comm: e.Comm, start: e.Time}
			t.link(n)
		}
		n.exited, n.code, n.signal, n.dur = true, e.ExitCode, e.Signal, time.Duration(e.DurationNs)
	default:
		if !e.IsFile() {
			return true
		}
		if t.f.path != "" && !pathMatch(t.f.path, e.Path) && !pathMatch(t.f.path, e.NewPath) {
			return false
		}
		if n == nil {
			n = &node{pid: e.PID, comm: e.Comm, binary: e.Binary, start: e.Time}
			t.link(n)
		}
		n.files = append(n.files, e)
	}
	if t.f.binary != "" && !binaryMatch(t.f.binary, n.binary) {
		return false
	}
	return true
}

func (t *tree) link(n *node) {
	t.nodes = append(t.nodes, n)
	t.byPID[n.pid] = n
	if n.parent != nil {
		n.parent.kids = append(n.parent.kids, n)
	}
}

func binaryMatch(want, bin string) bool {
	return bin == want || path.Base(bin) == want
}

func pathMatch(pattern, p string) bool {
	if p == "" {
		return false
	}
	if ok, _ := path.Match(pattern, p); ok {
		return true
	}
	pattern = strings.TrimSuffix(pattern, "/")
	return p == pattern || strings.HasPrefix(p, pattern+"/")
}

// render prints the tree: roots in start order, children indented.
func (t *tree) render(w io.Writer, st *client.EventStream) {
	fid := st.Fidelity
	if st.FileFidelity != "" && t.f.files {
		fid += ", files " + st.FileFidelity
	}
	fmt.Fprintf(w, "sources: %s (fidelity: %s), lost events: %d\n", strings.Join(st.Sources, "+"), fid, st.Lost)
	if st.FileProbe != "" && t.f.files {
		fmt.Fprintf(w, "file audit: eBPF on %s\n", st.FileProbe)
	}
	if st.Note != "" {
		fmt.Fprintf(w, "note: %s\n", st.Note)
	}
	var roots []*node
	for _, n := range t.nodes {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].start.Before(roots[j].start) })
	for _, n := range roots {
		t.renderNode(w, n, "")
	}
	for _, a := range t.alerts {
		fmt.Fprintf(w, "! %s\n", sanitize(a))
	}
}

func (t *tree) renderNode(w io.Writer, n *node, indent string) {
	if t.f.binary == "" || binaryMatch(t.f.binary, n.binary) || t.hasMatch(n) {
		fmt.Fprintf(w, "%s%s\n", indent, n.line())
		for _, fe := range n.files {
			fmt.Fprintf(w, "%s    %s\n", indent, fileLine(fe))
		}
	}
	for _, k := range n.kids {
		t.renderNode(w, k, indent+"  ")
	}
}

func (t *tree) hasMatch(n *node) bool {
	for _, k := range n.kids {
		if binaryMatch(t.f.binary, k.binary) || t.hasMatch(k) {
			return true
		}
	}
	return false
}

func (n *node) line() string {
	if n.pid == 0 {
		return "[-] file changes without a process (inotify cannot attribute them)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%d] ", n.pid)
	cmd := strings.Join(n.argv, " ")
	if cmd == "" {
		cmd = n.binary
	}
	if cmd == "" {
		cmd = n.comm
	}
	if len(cmd) > 200 {
		cmd = cmd[:200] + "…"
	}
	b.WriteString(sanitize(cmd))
	switch {
	case !n.exited:
		b.WriteString("  (running)")
	case n.signal != 0:
		fmt.Fprintf(&b, "  (killed by signal %d, %s)", n.signal, n.dur.Round(time.Microsecond))
	case n.code != nil:
		fmt.Fprintf(&b, "  (exit %d, %s)", *n.code, n.dur.Round(time.Microsecond))
	default:
		fmt.Fprintf(&b, "  (exited, %s)", n.dur.Round(time.Millisecond))
	}
	return b.String()
}

func fileLine(e *protocol.Event) string {
	op := strings.TrimPrefix(e.Kind, "file_")
	s := op + " " + e.Path
	if e.NewPath != "" {
		s += " -> " + e.NewPath
	}
	if e.Intent != "" {
		s += " [" + e.Intent + "]"
	}
	if e.Result != "" && e.Result != protocol.ResultOK {
		s += " " + strings.ToUpper(e.Result)
		if e.Errno != "" {
			s += " (" + e.Errno + ")"
		}
	}
	return "· " + sanitize(s)
}

// sanitize strips control characters from text that came from the
// sandbox before it reaches a terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func (a *app) runWatch(ctx context.Context, name, webhook string, since time.Duration) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	o := client.EventsOptions{Follow: true, Files: true}
	if since > 0 {
		o.History, o.SinceMs = true, time.Now().Add(-since).UnixMilli()
	}
	st, err := c.Events(ctx, name, o)
	if err != nil {
		return fmt.Errorf("unable to watch %s: %w", name, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	var hook *webhookSink
	if webhook != "" {
		hook = newWebhookSink(webhook, a.stderr)
		defer hook.close()
	}
	enc := json.NewEncoder(a.stdout)
	for {
		e, err := st.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		if hook != nil {
			hook.add(*e)
		}
	}
}

// webhookSink POSTs batches of events; bounded: when the endpoint is slow
// or down, events are dropped and counted, never queued without limit.
type webhookSink struct {
	url     string
	q       chan protocol.Event
	done    chan struct{}
	errw    io.Writer
	dropped int
}

const (
	webhookQueue = 10000
	webhookBatch = 500
	webhookTries = 5
)

func newWebhookSink(url string, errw io.Writer) *webhookSink {
	s := &webhookSink{url: url, q: make(chan protocol.Event, webhookQueue), done: make(chan struct{}), errw: errw}
	go s.run()
	return s
}

func (s *webhookSink) add(e protocol.Event) {
	select {
	case s.q <- e:
	default:
		s.dropped++
		if s.dropped == 1 || s.dropped%1000 == 0 {
			fmt.Fprintf(s.errw, "darkshell: webhook too slow: %d events dropped\n", s.dropped)
		}
	}
}

func (s *webhookSink) close() {
	close(s.q)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

func (s *webhookSink) run() {
	defer close(s.done)
	hc := &http.Client{Timeout: 10 * time.Second}
	var batch []protocol.Event
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		body, _ := json.Marshal(batch)
		backoff := 200 * time.Millisecond
		for try := 1; ; try++ {
			resp, err := hc.Post(s.url, "application/json", bytes.NewReader(body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 300 {
					break
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			if try == webhookTries {
				fmt.Fprintf(s.errw, "darkshell: webhook: %d events not delivered after %d tries: %v\n", len(batch), try, err)
				break
			}
			time.Sleep(backoff)
			backoff *= 2
		}
		batch = batch[:0]
	}
	for {
		select {
		case e, ok := <-s.q:
			if !ok {
				flush()
				return
			}
			batch = append(batch, e)
			if len(batch) >= webhookBatch {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

func (a *app) runLogs(ctx context.Context, name, export string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	dir, files, err := c.EventLogs(ctx, name)
	if err != nil {
		return fmt.Errorf("unable to find the logs of %s: %w", name, err)
	}
	if export == "" {
		// Oldest first, so the output is in time order.
		for i := len(files) - 1; i >= 0; i-- {
			if err := copyTo(a.stdout, files[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.MkdirAll(export, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", export, err)
	}
	home := c.Home()
	srcs := append([]string{}, files...)
	for _, p := range []string{filepath.Join(home.LogDir(), "daemon.log"), filepath.Join(home.SandboxDir(name), "sandboxd.log")} {
		if _, err := os.Stat(p); err == nil {
			srcs = append(srcs, p)
		}
	}
	var out []string
	for _, p := range srcs {
		dst := filepath.Join(export, filepath.Base(p))
		if err := copyFile(dst, p); err != nil {
			return err
		}
		out = append(out, dst)
	}
	if a.json() {
		return a.printJSON(map[string]any{"sandbox": name, "event_log_dir": dir, "exported": out})
	}
	for _, p := range out {
		fmt.Fprintln(a.stdout, p)
	}
	return nil
}

func copyTo(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("unable to read %s: %w", p, err)
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func copyFile(dst, src string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("unable to export to %s: %w", dst, err)
	}
	if err := copyTo(f, src); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
