// Package treesync is the directory-tree sync engine of `darkshell sync`,
// shared by the controller and sandboxd: Send runs on the side that has the
// source tree, Receive on the side that writes, over one sync stream (after
// its request frame; spec.md section 7.4). A push runs Send on the
// controller and Receive in sandboxd; a pull swaps them.
//
// The receiver treats everything the sender says as hostile: paths are
// validated (relative, clean, no "..", no NUL, capped), a parent must be
// listed as a directory before its children, all file-system access goes
// through an os.Root (nothing outside the target can be reached, not even
// through a symlink planted by the peer or a concurrent process), parents
// are checked to be real directories, files are written to a temporary file
// and renamed into place only after delta.ApplyLimit verified size and
// SHA-256 against the announced size.
package treesync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/semaphore"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/protocol/delta"
)

// TempPrefix starts the names of the receiver's temporary files. The sender
// never lists such names and the receiver removes stale ones it finds.
const TempPrefix = ".~ds-sync-"

// Options of one sync. Both sides get them from the protocol.SyncRequest.
type Options struct {
	Delete    bool
	DryRun    bool
	Checksum  bool
	Exclude   []string // gitignore-style patterns (see Filter)
	Include   []string // gitignore-style patterns; empty: everything
	GitIgnore bool     // the sender honours the tree's .gitignore files
	// Meter, when set, counts this side's progress (not part of the request).
	Meter *Meter
	// Renames lets the receiver diff a new file against an unlisted file
	// of the same size (a rename or copy). That sends the signature of a
	// file the sender did not name, so only sandboxd's receiver (a push)
	// sets it: a download never shows a sandbox hashes of other host files.
	Renames bool
	// Raw: the sender sends new files without zstd (the peer is on this
	// host, where the link outruns the compressor and compressing only
	// costs CPU on both sides). Deltas stay compressed. Not part of the
	// request.
	Raw bool
	// DirSums: the peer speaks directory digests (protocol.CapSyncDirSums);
	// the sender then sends them instead of its whole list where it can
	// (see useDirSums). A receiver takes either.
	DirSums bool
}

// Meter counts the progress of a sync, against the receiver's plan; safe
// for concurrent use. Both sides fill it: the sender learns the totals from
// the sync-plan frame.
type Meter struct {
	FilesTotal, BytesTotal atomic.Int64
	FilesDone, BytesDone   atomic.Int64
}

func (m *Meter) plan(files int, bytes int64) {
	if m != nil {
		m.FilesTotal.Store(int64(files))
		m.BytesTotal.Store(bytes)
	}
}

func (m *Meter) file() {
	if m != nil {
		m.FilesDone.Add(1)
	}
}

func (m *Meter) bytes(n int) {
	if m != nil {
		m.BytesDone.Add(int64(n))
	}
}

// meterReader counts the bytes read through it.
type meterReader struct {
	r io.Reader
	m *Meter
}

func (mr meterReader) Read(p []byte) (int, error) {
	n, err := mr.r.Read(p)
	mr.m.bytes(n)
	return n, err
}

// meterWriter counts the bytes written through it.
type meterWriter struct {
	w io.Writer
	m *Meter
}

func (mw meterWriter) Write(p []byte) (int, error) {
	n, err := mw.w.Write(p)
	mw.m.bytes(n)
	return n, err
}

// OptionsFrom returns the options of a request.
func OptionsFrom(req *protocol.SyncRequest) Options {
	return Options{Delete: req.Delete, DryRun: req.DryRun, Checksum: req.Checksum,
		Exclude: req.Exclude, Include: req.Include, GitIgnore: req.GitIgnore, DirSums: req.DirSums}
}

// Request returns the request for root with these options.
func (o Options) Request(root string) *protocol.SyncRequest {
	return &protocol.SyncRequest{Root: root, Delete: o.Delete, DryRun: o.DryRun, Checksum: o.Checksum,
		Exclude: o.Exclude, Include: o.Include, GitIgnore: o.GitIgnore, DirSums: o.DirSums}
}

type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// conn is the frame layer of a sync stream.
type conn struct {
	in  *countReader
	out *countWriter
	br  *bufio.Reader
	w   *protocol.Writer
	buf []byte // unread bytes of the current data frame
	// data holds the payload of the current data frame (reused: a fresh
	// 32 KiB payload per frame allocated, and zeroed, every byte a sync
	// received once more).
	data []byte

	// Reused per file (allocating them per file dominated small files).
	dw   *frameBatcher   // data frames out
	ow   *delta.OpWriter // op streams out, over dw
	or   *delta.OpReader // op streams in
	file *bufio.Reader   // a file being sent
	outf *bufio.Writer   // a file being received
}

func newConn(rw io.ReadWriter) *conn {
	c := &conn{in: &countReader{r: rw}, out: &countWriter{w: rw}}
	c.br = bufio.NewReaderSize(c.in, 64<<10)
	c.w = protocol.NewWriter(c.out)
	c.dw = c.dataWriter()
	c.ow = delta.NewOpWriter(c.dw)
	c.or = delta.NewOpReader(c)
	c.file = bufio.NewReaderSize(nil, 256<<10)
	c.outf = bufio.NewWriterSize(nil, 256<<10)
	return c
}

// next reads the next frame; a FrameError becomes a *protocol.RemoteError.
func (c *conn) next() (protocol.Frame, error) { return c.nextBuf(nil) }

// nextBuf is next reading the payload into buf when it fits.
func (c *conn) nextBuf(buf []byte) (protocol.Frame, error) {
	if len(c.buf) > 0 {
		return protocol.Frame{}, fmt.Errorf("%w: %d unread bytes of data", protocol.ErrBadFrame, len(c.buf))
	}
	f, err := protocol.ReadFrameBuf(c.br, protocol.MaxPayload, buf)
	if errors.Is(err, io.EOF) {
		return f, fmt.Errorf("%w: the peer closed the sync stream early", protocol.ErrTruncated)
	}
	if err != nil {
		return f, err
	}
	if f.Type == protocol.FrameError {
		return f, protocol.ErrorFromFrame(f)
	}
	return f, nil
}

// Read reads data frames (FrameSyncData); any other frame is an error.
func (c *conn) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.data == nil {
			c.data = make([]byte, protocol.DataChunk)
		}
		f, err := c.nextBuf(c.data)
		if err != nil {
			return 0, err
		}
		if f.Type != protocol.FrameSyncData {
			return 0, fmt.Errorf("%w: got %s inside a data stream", protocol.ErrUnexpectedFrame, f.Type)
		}
		c.buf = f.Payload
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *conn) dataWriter() *frameBatcher {
	return newFrameBatcher(c.w, protocol.FrameSyncData)
}

// Scan lists the tree at root (not following symlinks; sockets, devices and
// fifos are left out), parents before children, as the filter of opt
// selects it. Lstat (and hashing with Checksum) runs in parallel.
func Scan(ctx context.Context, r *os.Root, opt Options) ([]protocol.SyncEntry, error) {
	flt := NewFilter(opt)
	var loadIgnore enterFn
	if flt.UsesGitIgnore() {
		loadIgnore = func(dir string, f *os.File) { flt.LoadIgnore(dir, f) }
	}
	items, err := walkTree(ctx, r, walkState{sel: flt.Selected(".", true, false)}, loadIgnore,
		func(p, name string, isDir bool, parent walkState) (bool, bool, walkState, error) {
			if strings.HasPrefix(name, TempPrefix) || flt.Excluded(p, isDir) {
				return false, false, parent, nil
			}
			sel := flt.Selected(p, isDir, parent.sel)
			if !sel && (!isDir || !flt.MayContain(p)) {
				return false, false, parent, nil
			}
			if err := protocol.ValidSyncPath(p); err != nil {
				return false, false, parent, fmt.Errorf("unable to sync %q: %v", p, err)
			}
			return sel, isDir, walkState{sel: sel}, nil
		}, false)
	if err != nil {
		return nil, fmt.Errorf("unable to scan %s: %w", r.Name(), err)
	}
	var paths []string
	var infos []finfo
	if len(opt.Include) == 0 {
		paths = make([]string, len(items))
		infos = make([]finfo, len(items))
		for i := range items {
			paths[i], infos[i] = items[i].path, items[i].fi
		}
	} else {
		// Keep the unselected directories that lead to a selected path.
		need := map[string]bool{}
		for _, it := range items {
			if it.keep {
				for d := path.Dir(it.path); d != "." && !need[d]; d = path.Dir(d) {
					need[d] = true
				}
			}
		}
		for _, it := range items {
			if it.keep || need[it.path] {
				paths = append(paths, it.path)
				infos = append(infos, it.fi)
			}
		}
	}
	entries := make([]protocol.SyncEntry, len(paths))
	keep := make([]bool, len(paths))
	errs := make([]error, len(paths))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(4*cpus.Max(), 64) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(paths) || ctx.Err() != nil {
					return
				}
				keep[i], errs[i] = stat(r, paths[i], infos[i], opt.Checksum, &entries[i])
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := entries[:0]
	for i := range entries {
		if keep[i] {
			out = append(out, entries[i])
		}
	}
	return out, nil
}

// stat fills e for the entry p whose lstat result is fi.
func stat(r *os.Root, p string, fi finfo, checksum bool, e *protocol.SyncEntry) (bool, error) {
	var err error
	*e = protocol.SyncEntry{Path: p, Mode: uint32(fi.Mode().Perm())}
	switch m := fi.Mode(); {
	case m.IsRegular():
		e.Type, e.Size, e.MtimeNs = protocol.SyncFile, fi.Size(), fi.mtime
		if checksum {
			sum, err := cachedSum(r, p, fi)
			if err != nil {
				return false, err
			}
			e.Sum = sum
		}
	case m.IsDir():
		e.Type, e.MtimeNs = protocol.SyncDir, fi.mtime
	case m&fs.ModeSymlink != 0:
		e.Type, e.Mode = protocol.SyncSymlink, 0
		if e.Link, err = r.Readlink(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil // vanished during the scan
			}
			return false, err
		}
		if e.Link == "" || len(e.Link) > protocol.MaxSyncPath || strings.IndexByte(e.Link, 0) >= 0 || !utf8.ValidString(e.Link) {
			return false, fmt.Errorf("unable to sync symlink %q: target not UTF-8 or too long", p)
		}
	default:
		return false, nil
	}
	return true, nil
}

func fileSum(r *os.Root, p string) (string, error) {
	f, err := r.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Send sends the tree at root to the receiver on rw and returns its summary.
func Send(ctx context.Context, rw io.ReadWriter, root string, opt Options) (*protocol.SyncSummary, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("unable to open sync source: %w", err)
	}
	defer r.Close()
	entries, err := Scan(ctx, r, opt)
	if err != nil {
		return nil, err
	}
	c := newConn(rw)
	if useDirSums(opt) {
		// Only the entries of the directories the receiver wants are
		// listed; needs index this shorter list.
		if entries, err = sendDirSums(c, entries); err != nil {
			return nil, err
		}
	}
	if err := sendList(c, entries); err != nil {
		return nil, err
	}
	out := startSendPipeline(c, r, opt.Meter, opt.Raw)
	defer out.abort()
	next := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := out.failed(); err != nil {
			return nil, err
		}
		if c.br.Buffered() == 0 {
			out.flush() // the next read may wait for the receiver
		}
		f, err := c.next()
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case protocol.FrameSyncNeed:
			var need protocol.SyncNeed
			if err := protocol.DecodeMsg(f, f.Type, &need); err != nil {
				return nil, err
			}
			if need.Index < next || need.Index >= len(entries) || entries[need.Index].Type != protocol.SyncFile {
				return nil, fmt.Errorf("%w: need for entry %d out of order or not a file", protocol.ErrInvalid, need.Index)
			}
			next = need.Index + 1
			var sig *delta.Signature
			if need.Sig {
				if sig, err = delta.ReadSignature(c); err != nil {
					return nil, fmt.Errorf("signature of %q: %w", entries[need.Index].Path, err)
				}
			}
			out.add(need.Index, &entries[need.Index], sig)
		case protocol.FrameSyncPlan:
			var plan protocol.SyncPlan
			if err := protocol.DecodeMsg(f, f.Type, &plan); err != nil {
				return nil, err
			}
			opt.Meter.plan(plan.Files, plan.Bytes)
		case protocol.FrameSyncNeedEnd:
			// The pipeline writes the remaining files, then sync-done.
			if err := out.finish(); err != nil {
				return nil, err
			}
			f, err := c.next()
			if err != nil {
				return nil, err
			}
			var sum protocol.SyncSummary
			if err := protocol.DecodeMsg(f, protocol.FrameSyncSummary, &sum); err != nil {
				return nil, err
			}
			return &sum, nil
		default:
			return nil, fmt.Errorf("%w: got %s", protocol.ErrUnexpectedFrame, f.Type)
		}
	}
}

// sendPipeline answers needs in order while encoding small whole files
// ahead, in parallel (reading and zstd dominate an initial upload): a
// writer goroutine emits each answer when it is ready, coalescing ready
// small files into few stream writes; big files and deltas are streamed by
// the writer itself. Small files travel in batches (up to sendBatchFiles
// files or sendBatchData bytes): an encoder takes a batch and the writer
// waits for it as one, so a GOROOT's 15,000 files cost a few hundred
// goroutine wake-ups, not several per file.
type sendPipeline struct {
	c     *conn
	r     *os.Root
	m     *Meter
	queue chan *sendBatch // in need order, to the writer
	work  chan *sendBatch // small whole files, to the encoders
	pend  *sendBatch      // small files not yet handed over (Send's goroutine only)
	wg    sync.WaitGroup
	done  chan struct{} // the writer has finished
	raw   bool          // whole files without zstd (Options.Raw)
	// budget bounds the bytes of files encoded ahead.
	budget *semaphore.Weighted
	mu     sync.Mutex
	err    error
	ended  bool
}

type sendJob struct {
	idx    int
	e      *protocol.SyncEntry
	sig    *delta.Signature
	async  bool
	weight int64 // of the budget (async)
	skip   string
	ops    []byte // encoded op stream (async)
}

// sendBatch is a run of small files encoded ahead (async), or one file the
// writer streams itself.
type sendBatch struct {
	jobs  []*sendJob
	async bool
	data  int64         // summed sizes (async)
	ready chan struct{} // closed once every job is encoded
}

const (
	sendBatchFiles = 16
	sendBatchData  = 1 << 20
)

// pipelineDepth bounds the answers encoded ahead of the writer,
// asyncSend the size of a file encoded ahead and asyncBudget the summed
// sizes of the files encoded ahead (memory).
const (
	pipelineDepth = 64
	asyncSend     = 1 << 20
	asyncBudget   = 24 << 20
)

func startSendPipeline(c *conn, r *os.Root, m *Meter, raw bool) *sendPipeline {
	p := &sendPipeline{c: c, r: r, m: m, raw: raw, queue: make(chan *sendBatch, pipelineDepth),
		work: make(chan *sendBatch, pipelineDepth), done: make(chan struct{}),
		budget: semaphore.NewWeighted(asyncBudget)}
	for range max(2, cpus.Max()) {
		p.wg.Go(p.encoder)
	}
	go p.writer()
	return p
}

func (p *sendPipeline) add(idx int, e *protocol.SyncEntry, sig *delta.Signature) {
	j := &sendJob{idx: idx, e: e, sig: sig}
	if sig == nil && e.Size <= asyncSend {
		j.async, j.weight = true, max(e.Size, 4096)
		// Released by the writer. The pending batch (at most
		// sendBatchData plus one file) holds far less than the budget, so
		// what blocks here waits for batches already handed over.
		_ = p.budget.Acquire(context.Background(), j.weight)
		if p.pend == nil {
			p.pend = &sendBatch{async: true, jobs: make([]*sendJob, 0, sendBatchFiles), ready: make(chan struct{})}
		}
		p.pend.jobs = append(p.pend.jobs, j)
		p.pend.data += e.Size
		if len(p.pend.jobs) >= sendBatchFiles || p.pend.data >= sendBatchData {
			p.flush()
		}
		return
	}
	p.flush() // in need order
	b := &sendBatch{jobs: []*sendJob{j}, ready: make(chan struct{})}
	close(b.ready)
	p.queue <- b
}

// flush hands the pending small files to the encoders and the writer.
func (p *sendPipeline) flush() {
	if b := p.pend; b != nil {
		p.pend = nil
		p.work <- b
		p.queue <- b
	}
}

func (p *sendPipeline) setErr(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *sendPipeline) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// finish waits until every queued answer and sync-done are written.
func (p *sendPipeline) finish() error {
	p.flush()
	p.end()
	<-p.done
	return p.failed()
}

func (p *sendPipeline) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ended {
		p.ended = true
		close(p.work)
		close(p.queue)
	}
}

// abort stops the pipeline (on any return of Send). It does not wait for
// a writer blocked on the stream: closing the stream ends it.
func (p *sendPipeline) abort() {
	p.setErr(errors.New("sync stopped"))
	p.end()
}

// encoder encodes small whole files into memory.
func (p *sendPipeline) encoder() {
	var buf bytes.Buffer
	ow := delta.NewOpWriter(&buf)
	ow.SetCompress(!p.raw)
	src := newSmallFiles(p.r)
	defer src.close()
	for b := range p.work {
		for _, j := range b.jobs {
			p.encode(src, &buf, ow, j)
		}
		close(b.ready)
	}
}

// encode encodes the small whole file of j into j.ops (or sets j.skip).
func (p *sendPipeline) encode(src *smallFiles, buf *bytes.Buffer, ow *delta.OpWriter, j *sendJob) {
	{
		if p.failed() == nil && p.raw {
			// Built in place: no OpWriter buffers and copies.
			data, skip := src.read(j.e)
			if skip == "" {
				ops, err := delta.AppendWholeRaw(smallBufs.get(delta.WholeRawLen(len(data)))[:0], data)
				if err != nil {
					smallBufs.put(ops)
					skip = err.Error()
				} else {
					j.ops = ops
				}
			}
			j.skip = skip
		} else if p.failed() == nil {
			buf.Reset()
			if skip := encodeSmall(src, j.e, ow); skip != "" {
				j.skip = skip
			} else {
				j.ops = append(smallBufs.get(buf.Len())[:0], buf.Bytes()...)
			}
		}
	}
}

// encodeSmall writes the whole-file op stream of e to ow; it returns why
// the file cannot be sent, or "".
func encodeSmall(src *smallFiles, e *protocol.SyncEntry, ow *delta.OpWriter) string {
	data, skip := src.read(e)
	if skip != "" {
		return skip
	}
	if _, err := delta.WriteWhole(bytes.NewReader(data), ow); err != nil {
		return err.Error()
	}
	return ""
}

// writer emits the answers in need order, then sync-done.
func (p *sendPipeline) writer() {
	defer close(p.done)
	c := p.c
	var batch []byte
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := c.w.Raw(batch)
		batch = batch[:0]
		return err
	}
	for {
		var b *sendBatch
		select {
		case b = <-p.queue:
		default:
			// Nothing queued: send what is batched before waiting.
			if err := flush(); err != nil {
				p.setErr(err)
			}
			b = <-p.queue
		}
		if b == nil {
			break // queue closed
		}
		if p.failed() != nil {
			<-b.ready
			for _, j := range b.jobs {
				if j.async {
					p.budget.Release(j.weight)
				}
				smallBufs.put(j.ops)
			}
			continue // drain
		}
		if !b.async {
			j := b.jobs[0]
			if err := flush(); err == nil {
				err = sendFile(c, p.r, j.idx, j.e, j.sig, p.m, p.raw)
				if err != nil {
					p.setErr(err)
				}
			} else {
				p.setErr(err)
			}
			p.m.file()
			continue
		}
		select {
		case <-b.ready:
		default:
			if err := flush(); err != nil {
				p.setErr(err)
			}
			<-b.ready
		}
		for _, j := range b.jobs {
			h, err := json.Marshal(&protocol.SyncFileHeader{Index: j.idx, Skip: j.skip})
			if err != nil {
				p.budget.Release(j.weight)
				p.setErr(err)
				continue
			}
			batch = protocol.AppendFrame(batch, protocol.FrameSyncFile, h)
			for ops := j.ops; len(ops) > 0; {
				n := min(len(ops), protocol.DataChunk)
				batch = protocol.AppendFrame(batch, protocol.FrameSyncData, ops[:n])
				ops = ops[n:]
			}
			smallBufs.put(j.ops)
			j.ops = nil
			p.budget.Release(j.weight)
			p.m.bytes(int(j.e.Size))
			p.m.file()
			if len(batch) >= 256<<10 {
				if err := flush(); err != nil {
					p.setErr(err)
				}
			}
		}
	}
	if p.failed() == nil {
		batch = protocol.AppendFrame(batch, protocol.FrameSyncDone, nil)
		if err := flush(); err != nil {
			p.setErr(err)
		}
	}
}

func sendList(c *conn, entries []protocol.SyncEntry) error {
	enc, _, err := listCodecs()
	if err != nil {
		return err
	}
	var raw, z []byte
	for start := 0; start < len(entries); {
		// A batch ends at listBatch entries or once it passed
		// listBatchBytes; one entry is at most ~8.3 KiB, so it stays far
		// below the 4 MiB decode limit and its zstd frame below MaxPayload.
		end, size := start, 0
		for end < len(entries) && end-start < listBatch && size < listBatchBytes {
			size += len(entries[end].Path) + len(entries[end].Link) + 64
			end++
		}
		if raw, err = protocol.AppendSyncEntriesBin(raw[:0], entries[start:end]); err != nil {
			return err
		}
		z = enc.EncodeAll(raw, z[:0])
		if err := c.w.Frame(protocol.FrameSyncEntriesB, z); err != nil {
			return err
		}
		start = end
	}
	return c.w.Frame(protocol.FrameSyncEntriesEnd, nil)
}

func sendFile(c *conn, r *os.Root, idx int, e *protocol.SyncEntry, sig *delta.Signature, m *Meter, raw bool) error {
	f, err := r.OpenFile(e.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	var fi fs.FileInfo
	if err == nil {
		defer f.Close()
		fi, err = f.Stat()
	}
	if err == nil && (!fi.Mode().IsRegular() || fi.Size() != e.Size) {
		err = errors.New("changed during the sync")
	}
	if err != nil {
		m.bytes(int(e.Size))
		return c.w.Msg(protocol.FrameSyncFile, &protocol.SyncFileHeader{Index: idx, Skip: err.Error()})
	}
	if err := c.w.Msg(protocol.FrameSyncFile, &protocol.SyncFileHeader{Index: idx}); err != nil {
		return err
	}
	dw, ow := c.dw, c.ow
	ow.SetCompress(sig != nil || !raw)
	c.file.Reset(f)
	defer c.file.Reset(nil)
	var src io.Reader = io.LimitReader(c.file, e.Size)
	if m != nil {
		src = meterReader{src, m}
	}
	if sig != nil {
		_, err = delta.Diff(sig, src, ow)
	} else if e.Size > 2*delta.LiteralChunk {
		// Compress a big file's chunks on every core.
		_, err = delta.WriteWholeParallel(src, ow, min(cpus.Max(), 4))
	} else {
		_, err = delta.WriteWhole(src, ow)
	}
	if err != nil {
		return fmt.Errorf("unable to send %q: %w", e.Path, err)
	}
	return dw.Flush()
}

// need is one file the receiver asks for.
type need struct {
	index int
	sig   bool
	basis string // with sig: the receiver file to diff against ("" = the entry's own path)
}

// signed is what the receiver sent for a need: the old file's shape.
type signed struct {
	blockSize int
	oldSize   int64
	ok        bool
	basis     string
}

// minBasis is the smallest new file for which the receiver looks for a
// renamed or copied old file to diff against.
const minBasis = 4 << 10

// dirCache keeps os.Roots of the target's directories open, so that a
// file's operations resolve one path component instead of its whole path.
type dirCache struct {
	top *os.Root
	m   map[string]*os.Root
}

// maxCachedDirs bounds the directory handles a receiver keeps open.
const maxCachedDirs = 64

func (d *dirCache) get(dir string) (*os.Root, error) {
	if dir == "." {
		return d.top, nil
	}
	if r, ok := d.m[dir]; ok {
		return r, nil
	}
	if len(d.m) >= maxCachedDirs {
		d.close()
	}
	r, err := d.top.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	if d.m == nil {
		d.m = map[string]*os.Root{}
	}
	d.m[dir] = r
	return r, nil
}

func (d *dirCache) close() {
	for k, r := range d.m {
		r.Close()
		delete(d.m, k)
	}
}

type receiver struct {
	dirs     dirCache
	c        *conn
	r        *os.Root
	opt      Options
	list     []protocol.SyncEntry
	have     map[string]finfo
	flt      *Filter
	protect  map[string]bool     // have entries --delete must keep (ignored, not selected)
	bySize   map[int64][]string  // unlisted receiver files by size: bases for renames
	groups   map[string][]walked // the receiver's walk, by directory
	implicit []walked            // directories of the target whose entries are listed but not they (dirsum.go)
	matched  int                 // entries of directories whose digests matched
	walked   int                 // entries in groups
	// anyProtect: the walk protected an entry (else buildHave skips looking).
	anyProtect atomic.Bool
	verified   map[string]bool // real directories, checked or made in this run
	touched    map[string]bool // directories whose entries changed
	sum        protocol.SyncSummary
	// A directory new in this run is built under a temporary name in its
	// (existing) parent and renamed into place once its whole subtree is
	// written (unstage): its files appear all at once, complete, so they
	// are created in place without a nameless file or a rename each
	// (O_TMPFILE's writes cost ext4 about twice a plain file's). phys maps
	// each directory of a staged subtree to where it is until then.
	phys   map[string]string
	staged []stagedDir
	pf     *prefetcher // the stream's read-ahead
}

// stagedDir is a new directory built as tmp in parent, to be renamed to
// base.
type stagedDir struct{ parent, tmp, base string }

// physDir returns where directory dir is during this run and whether it
// lies in a staged subtree (then nothing else can have a name in it).
func (rc *receiver) physDirOf(p string) string {
	d, _ := rc.physDir(path.Dir(p))
	return d
}

func (rc *receiver) physDir(dir string) (string, bool) {
	if p, ok := rc.phys[dir]; ok {
		return p, true
	}
	return dir, false
}

// unstage renames the staged directories into place, each complete.
func (rc *receiver) unstage() error {
	for len(rc.staged) > 0 {
		sd := rc.staged[0]
		dr, err := rc.dirs.get(sd.parent)
		if err == nil {
			err = dr.Rename(sd.tmp, sd.base)
		}
		if err != nil {
			return fmt.Errorf("unable to put directory %q in place: %w", path.Join(sd.parent, sd.base), err)
		}
		rc.staged = rc.staged[1:]
	}
	rc.phys = nil
	return nil
}

// dropStaged removes what is still staged after a failed run (a rerun
// would remove it too: its name is temporary).
func (rc *receiver) dropStaged() {
	for _, sd := range rc.staged {
		_ = rc.r.RemoveAll(path.Join(sd.parent, sd.tmp))
	}
	rc.staged = nil
}

// Receive receives a tree into root from the sender on rw; root is created
// if missing (unless DryRun). It returns the summary it also sent.
func Receive(ctx context.Context, rw io.ReadWriter, root string, opt Options) (*protocol.SyncSummary, error) {
	start := time.Now()
	pf := newPrefetcher(rw)
	defer pf.close()
	rc := &receiver{c: newConn(splitRW{pf, rw}), pf: pf, opt: opt, verified: map[string]bool{".": true}, touched: map[string]bool{},
		flt: NewFilter(opt), protect: map[string]bool{}, phys: map[string]string{}}
	// An existing target is scanned while the list arrives.
	var err error
	rc.r, err = os.OpenRoot(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to open sync target: %w", err)
	}
	if rc.r != nil {
		defer rc.r.Close()
	}
	scanned := make(chan error, 1)
	go func() { scanned <- rc.scanHave() }()
	var scanErr error
	waited := false
	waitScan := func() error {
		if !waited {
			waited, scanErr = true, <-scanned
			if scanErr != nil {
				scanErr = fmt.Errorf("unable to scan the sync target: %w", scanErr)
			}
		}
		return scanErr
	}
	lerr := rc.readAll(waitScan)
	if err := waitScan(); err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, lerr
	}
	if rc.have == nil {
		rc.buildHave(nil)
	}
	for _, w := range rc.implicit {
		rc.verified[w.path] = true
	}
	if rc.r == nil && !opt.DryRun {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("unable to create sync target: %w", err)
		}
		if rc.r, err = os.OpenRoot(root); err != nil {
			return nil, fmt.Errorf("unable to open sync target: %w", err)
		}
		defer rc.r.Close()
	}
	rc.dirs.top = rc.r
	defer rc.dirs.close()
	defer rc.dropStaged()
	needs, err := rc.plan()
	if err != nil {
		return nil, err
	}
	// Files to delete may be the basis of a renamed file: delete after.
	if err := rc.transfer(ctx, needs); err != nil {
		return nil, err
	}
	if err := rc.unstage(); err != nil {
		return nil, err
	}
	if opt.Delete {
		if err := rc.deleteExtra(); err != nil {
			return nil, err
		}
	}
	if err := rc.finishDirs(); err != nil {
		return nil, err
	}
	rc.sum.DryRun = opt.DryRun
	rc.sum.SentBytes = rc.c.in.n.Load()
	rc.sum.RecvBytes = rc.c.out.n.Load()
	rc.sum.DurationMs = time.Since(start).Milliseconds()
	s := rc.sum
	if err := rc.c.w.Msg(protocol.FrameSyncSummary, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// readAll reads the sender's list, or its directory digests and then the
// list of the directories that differ.
func (rc *receiver) readAll(scanned func() error) error {
	f, err := rc.c.next()
	if err != nil {
		return err
	}
	if f.Type == protocol.FrameSyncDirSums || f.Type == protocol.FrameSyncDirSumsEnd {
		if err := rc.readDirSums(f, scanned); err != nil {
			return err
		}
		if f, err = rc.c.next(); err != nil {
			return err
		}
	}
	return rc.readList(f)
}

// readList reads the entry list whose first frame is f.
func (rc *receiver) readList(f protocol.Frame) error {
	kind := map[string]string{".": protocol.SyncDir}
	selDir := map[string]bool{".": rc.flt.Selected(".", true, false)}
	for _, w := range rc.implicit {
		kind[w.path], selDir[w.path] = protocol.SyncDir, true
	}
	lastDir, lastKind, lastSel := "", "", false
	var zbuf []byte
	for first := true; ; first = false {
		if !first {
			var err error
			if f, err = rc.c.next(); err != nil {
				return err
			}
		}
		var err error
		if f.Type == protocol.FrameSyncEntriesEnd {
			rc.sum.Entries = len(rc.list) + rc.matched
			rc.sum.Unchanged += rc.matched
			return nil
		}
		var m protocol.SyncEntries
		switch f.Type {
		case protocol.FrameSyncEntriesB:
			m.Entries, err = decodeEntriesB(f, &zbuf)
		case protocol.FrameSyncEntriesZ:
			err = decodeEntriesZ(f, &m, &zbuf)
		default:
			err = protocol.DecodeMsg(f, protocol.FrameSyncEntries, &m)
		}
		if err != nil {
			return err
		}
		for _, e := range m.Entries {
			if len(kind) > protocol.MaxSyncEntries {
				return fmt.Errorf("%w: more than %d entries", protocol.ErrInvalid, protocol.MaxSyncEntries)
			}
			if _, dup := kind[e.Path]; dup {
				return fmt.Errorf("%w: entry %q listed twice", protocol.ErrInvalid, e.Path)
			}
			dir, base := path.Split(e.Path)
			if dir == "" {
				dir = "."
			} else {
				dir = dir[:len(dir)-1]
			}
			if strings.HasPrefix(base, TempPrefix) {
				return fmt.Errorf("%w: entry %q uses the temporary-file prefix", protocol.ErrInvalid, e.Path)
			}
			// A directory's entries come together: look its kind up once.
			if dir != lastDir {
				lastDir, lastKind, lastSel = dir, kind[dir], selDir[dir]
			}
			switch lastKind {
			case protocol.SyncDir:
			case "x": // under an excluded directory
				kind[e.Path] = "x"
				continue
			default:
				return fmt.Errorf("%w: entry %q: its parent is not a directory listed before it", protocol.ErrInvalid, e.Path)
			}
			isDir := e.Type == protocol.SyncDir
			if rc.flt.ExcludedByPattern(e.Path, isDir) {
				kind[e.Path] = "x"
				continue
			}
			if rc.flt.Selected(e.Path, isDir, lastSel) {
				if isDir {
					selDir[e.Path] = true
				}
			} else if !isDir {
				kind[e.Path] = "x"
				continue
			}
			kind[e.Path] = e.Type
			rc.list = append(rc.list, e)
		}
	}
}

// scanHave lists the receiver's tree and removes stale temporary files.
// Paths --exclude matches are left out; paths the receiver's own
// .gitignore files ignore (with GitIgnore) or the include patterns do not
// select are listed but protected from --delete.
func (rc *receiver) scanHave() error {
	if rc.r == nil {
		return nil
	}
	flt := rc.flt
	var loadIgnore enterFn
	if rc.opt.Delete && flt.UsesGitIgnore() {
		loadIgnore = func(dir string, f *os.File) { flt.LoadIgnore(dir, f) }
	}
	groups, n, err := walkGroups(context.Background(), rc.r, walkState{sel: flt.Selected(".", true, false)}, loadIgnore,
		func(p, name string, isDir bool, parent walkState) (bool, bool, walkState, error) {
			if strings.HasPrefix(name, TempPrefix) {
				if !rc.opt.DryRun {
					_ = rc.r.RemoveAll(p)
				}
				return false, false, parent, nil
			}
			if flt.ExcludedByPattern(p, isDir) {
				return false, false, parent, nil
			}
			st := walkState{sel: flt.Selected(p, isDir, parent.sel)}
			st.protect = parent.protect || !st.sel || flt.Ignored(p, isDir)
			if st.protect {
				rc.anyProtect.Store(true)
			}
			return true, isDir && (st.sel || flt.MayContain(p)), st, nil
		}, true)
	if err != nil {
		return err
	}
	rc.groups, rc.walked = groups, n
	return nil
}

// buildHave indexes the receiver's walk, leaving out the entries of the
// directories in skip (their digests matched the sender's).
func (rc *receiver) buildHave(skip map[string]bool) {
	n := rc.walked
	if len(skip) > 0 {
		n -= rc.matched
	}
	rc.have = make(map[string]finfo, max(n, 0))
	for dir, g := range rc.groups {
		if skip[dir] {
			continue
		}
		for i := range g {
			rc.have[g[i].path] = g[i].fi
		}
	}
	// --delete keeps every protected path, also in skipped directories
	// (deleteExtra keeps their parents).
	if !rc.anyProtect.Load() {
		return
	}
	for _, g := range rc.groups {
		for i := range g {
			if g[i].st.protect {
				rc.protect[g[i].path] = true
			}
		}
	}
}

func typeOf(fi finfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return protocol.SyncFile
	case m.IsDir():
		return protocol.SyncDir
	case m&fs.ModeSymlink != 0:
		return protocol.SyncSymlink
	}
	return "other"
}

// parentOK checks that p's parent is a real directory of this run.
func (rc *receiver) parentOK(p string) error {
	if !rc.verified[path.Dir(p)] {
		return fmt.Errorf("refusing %q: its parent is not a directory in the target", p)
	}
	return nil
}

func (rc *receiver) remove(p string) error {
	rc.touched[path.Dir(p)] = true
	if rc.opt.DryRun {
		return nil
	}
	if err := rc.r.RemoveAll(p); err != nil {
		return fmt.Errorf("unable to remove %q: %w", p, err)
	}
	return nil
}

// plan compares the list with the tree; it makes directories and symlinks,
// removes entries whose type changes and returns the files to transfer.
func (rc *receiver) plan() ([]need, error) {
	var needs []need
	dry := rc.opt.DryRun
	for i := range rc.list {
		e := &rc.list[i]
		if err := rc.parentOK(e.Path); err != nil {
			return nil, err
		}
		x, ok := rc.have[e.Path]
		changed := false
		if ok && typeOf(x) != e.Type {
			if err := rc.remove(e.Path); err != nil {
				return nil, err
			}
			ok, changed = false, true
		}
		count := func(mod bool) {
			switch {
			case !ok && !changed:
				rc.sum.Added++
				rc.touched[path.Dir(e.Path)] = true
			case changed || mod:
				rc.sum.Modified++
			default:
				rc.sum.Unchanged++
			}
		}
		switch e.Type {
		case protocol.SyncDir:
			if !ok && !dry {
				// Through the cached parent: one mkdirat, not a walk of
				// the whole path. A new directory under an existing one
				// is staged (see receiver.phys).
				pdir, inStaged := rc.physDir(path.Dir(e.Path))
				name := path.Base(e.Path)
				if !inStaged {
					name = tempName()
				}
				dr, err := rc.dirs.get(pdir)
				if err == nil {
					err = dr.Mkdir(name, 0o700)
				}
				if err != nil {
					return nil, fmt.Errorf("unable to create directory %q: %w", e.Path, err)
				}
				if !inStaged {
					rc.staged = append(rc.staged, stagedDir{parent: pdir, tmp: name, base: path.Base(e.Path)})
				}
				rc.phys[e.Path] = path.Join(pdir, name)
			}
			rc.verified[e.Path] = true
			count(ok && uint32(x.Mode().Perm()) != e.Mode)
		case protocol.SyncSymlink:
			if ok {
				t, err := rc.r.Readlink(e.Path)
				if err != nil {
					return nil, err
				}
				if t != e.Link {
					if err := rc.remove(e.Path); err != nil {
						return nil, err
					}
					changed = true
				}
			}
			if (!ok || changed) && !dry {
				dr, err := rc.dirs.get(rc.physDirOf(e.Path))
				if err == nil {
					err = dr.Symlink(e.Link, path.Base(e.Path))
				}
				if err != nil {
					return nil, fmt.Errorf("unable to create symlink %q: %w", e.Path, err)
				}
			}
			count(false)
		case protocol.SyncFile:
			if ok && x.Size() == e.Size {
				same := x.mtime == e.MtimeNs
				if rc.opt.Checksum {
					sum, err := cachedSum(rc.r, e.Path, x)
					if err != nil {
						return nil, err
					}
					same = sum == e.Sum
				}
				if same {
					modeChanged := uint32(x.Mode().Perm()) != e.Mode
					if !dry {
						if modeChanged {
							if err := rc.r.Chmod(e.Path, fs.FileMode(e.Mode)); err != nil {
								return nil, err
							}
						}
						if x.mtime != e.MtimeNs {
							t := time.Unix(0, e.MtimeNs)
							if err := rc.r.Chtimes(e.Path, t, t); err != nil {
								return nil, err
							}
						}
					}
					count(modeChanged)
					continue
				}
			}
			n := need{index: i, sig: ok && x.Size() > 0}
			if !ok && e.Size >= minBasis && rc.opt.Renames {
				// A new file: diff against an unlisted receiver file of the
				// same size (a rename or a copy), if there is one.
				if b := rc.basisFor(e); b != "" {
					n.sig, n.basis = true, b
				}
			}
			needs = append(needs, n)
			rc.sum.BytesToSend += e.Size
			count(true)
		}
	}
	return needs, nil
}

// basisFor returns an unlisted regular receiver file with e's size,
// preferring one with e's base name, or "".
func (rc *receiver) basisFor(e *protocol.SyncEntry) string {
	if rc.bySize == nil {
		rc.bySize = map[int64][]string{}
		listed := make(map[string]bool, len(rc.list))
		for i := range rc.list {
			listed[rc.list[i].Path] = true
		}
		for p, fi := range rc.have {
			if !listed[p] && fi.Mode().IsRegular() && fi.Size() >= minBasis {
				rc.bySize[fi.Size()] = append(rc.bySize[fi.Size()], p)
			}
		}
		for _, ps := range rc.bySize {
			slices.Sort(ps)
		}
	}
	cands := rc.bySize[e.Size]
	if len(cands) == 0 {
		return ""
	}
	base := path.Base(e.Path)
	for _, c := range cands {
		if path.Base(c) == base {
			return c
		}
	}
	return cands[0]
}

// deleteExtra removes what the sender did not list (excluded paths stay).
func (rc *receiver) deleteExtra() error {
	want := make(map[string]bool, len(rc.list))
	for i := range rc.list {
		want[rc.list[i].Path] = true
	}
	paths := make([]string, 0, len(rc.have))
	for p := range rc.have {
		if !want[p] {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	// A directory holding a protected path is emptied, not removed.
	holds := map[string]bool{}
	for p := range rc.protect {
		for d := path.Dir(p); d != "." && !holds[d]; d = path.Dir(d) {
			holds[d] = true
		}
	}
	top := ""
	for _, p := range paths {
		if rc.protect[p] || holds[p] {
			continue
		}
		if top != "" && strings.HasPrefix(p, top+"/") {
			rc.sum.Deleted++
			continue
		}
		top = p
		rc.sum.Deleted++
		if !rc.verified[path.Dir(p)] {
			// Its parent became a file or symlink in this run: already gone.
			continue
		}
		if err := rc.remove(p); err != nil {
			return err
		}
	}
	return nil
}

func (rc *receiver) transfer(ctx context.Context, needs []need) error {
	c := rc.c
	if rc.opt.DryRun {
		needs = nil
	}
	var planBytes int64
	for _, n := range needs {
		planBytes += rc.list[n.index].Size
	}
	rc.opt.Meter.plan(len(needs), planBytes)
	if err := c.w.Msg(protocol.FrameSyncPlan, &protocol.SyncPlan{Files: len(needs), Bytes: planBytes}); err != nil {
		return err
	}
	sent := make(chan signed, len(needs))
	errc := make(chan error, 1)
	go func() { errc <- rc.sendNeeds(ctx, needs, sent) }()
	pl := rc.startPlacers()
	defer pl.stop()
	for k := 0; ; k++ {
		if err := pl.failed(); err != nil {
			return err
		}
		if rc.pf != nil && rc.pf.empty() && c.br.Buffered() == 0 {
			// The next read may wait for the sender: hand what is
			// batched to the placers first.
			pl.flush()
		}
		f, err := c.next()
		if err != nil {
			return err
		}
		if f.Type == protocol.FrameSyncDone {
			if k != len(needs) {
				return fmt.Errorf("%w: sender done after %d of %d files", protocol.ErrInvalid, k, len(needs))
			}
			if err := pl.stop(); err != nil {
				return err
			}
			return <-errc
		}
		if k >= len(needs) {
			return fmt.Errorf("%w: got %s after the last file", protocol.ErrUnexpectedFrame, f.Type)
		}
		var h protocol.SyncFileHeader
		if err := protocol.DecodeMsg(f, protocol.FrameSyncFile, &h); err != nil {
			return err
		}
		if h.Index != needs[k].index {
			return fmt.Errorf("%w: got file %d, want %d", protocol.ErrInvalid, h.Index, needs[k].index)
		}
		var s signed
		select {
		case s = <-sent:
		case err := <-errc:
			if err != nil {
				return err
			}
			// The need writer finished: every need, this one too, is queued.
			errc <- nil
			select {
			case s = <-sent:
			default:
				return errors.New("need writer ended early")
			}
		}
		e := &rc.list[h.Index]
		if h.Skip != "" {
			if len(rc.sum.Skipped) < 100 {
				rc.sum.Skipped = append(rc.sum.Skipped, e.Path+": "+h.Skip)
			}
			rc.opt.Meter.bytes(int(e.Size))
			rc.opt.Meter.file()
			continue
		}
		if !s.ok && e.Size <= smallFile {
			// New or whole: rebuild in memory here, write it in a placer.
			if err := rc.parentOK(e.Path); err != nil {
				return err
			}
			data, err := rc.receiveSmall(e)
			if err != nil {
				return err
			}
			rc.touched[path.Dir(e.Path)] = true
			dir, fresh := rc.physDir(path.Dir(e.Path))
			pl.add(placeJob{e: e, data: data, dir: dir, fresh: fresh})
			continue
		}
		pl.flush() // the placers work while this file streams in
		if err := rc.receiveFile(e, s); err != nil {
			return err
		}
		rc.opt.Meter.file()
	}
}

// smallFile: whole files up to this size are rebuilt in memory and written
// by placers, several at a time (file creation dominates small files).
const smallFile = 1 << 20

// placers is the number of goroutines writing small files. Their
// creations take turns (see placerPool), so two suffice to overlap one
// file's creation with another's data, mode and mtime; more only parked
// and woke each other on the creation lock (a futex wake-up each time).
var placers = 2

// A batch of small files goes to a placer at once once it holds
// batchFiles files or batchData bytes, or when the receiver may have to
// wait for the sender (a wake-up per file cost more CPU than placing the
// file's data).
const (
	batchFiles = 32
	batchData  = 1 << 20
)

type placeJob struct {
	e    *protocol.SyncEntry
	data []byte
	dir  string // where e's directory is (receiver.physDir)
	// fresh: dir is staged, so e is created under its name directly.
	fresh bool
}

// placerPool writes small files into place concurrently. Their creations
// take turns (createMu, see placer.creating): the rest of a file's
// placing (its data, mode, mtime) overlaps with the next creation.
type placerPool struct {
	jobs     chan []placeJob
	batch    []placeJob // not yet handed over (add, flush)
	batchLen int        // data bytes in batch
	wg       sync.WaitGroup
	createMu sync.Mutex
	mu       sync.Mutex
	err      error
	stopped  bool
}

func (rc *receiver) startPlacers() *placerPool {
	pl := &placerPool{jobs: make(chan []placeJob, 2*placers)}
	for range placers {
		pl.wg.Go(func() {
			p := newPlacer(rc.r)
			p.createMu = &pl.createMu
			defer p.close()
			for b := range pl.jobs {
				for _, j := range b {
					if pl.failed() != nil {
						smallBufs.put(j.data)
						continue // drain
					}
					err := p.placeAt(j.dir, j.fresh, j.e, j.data)
					smallBufs.put(j.data)
					if err != nil {
						pl.mu.Lock()
						if pl.err == nil {
							pl.err = err
						}
						pl.mu.Unlock()
						continue
					}
					rc.opt.Meter.file()
				}
			}
		})
	}
	return pl
}

// add queues j, handing the batch to a placer once it is full.
func (pl *placerPool) add(j placeJob) {
	pl.batch = append(pl.batch, j)
	pl.batchLen += len(j.data)
	if len(pl.batch) >= batchFiles || pl.batchLen >= batchData {
		pl.flush()
	}
}

// flush hands the batched files to a placer.
func (pl *placerPool) flush() {
	if len(pl.batch) == 0 || pl.stopped {
		return
	}
	pl.jobs <- pl.batch
	pl.batch, pl.batchLen = make([]placeJob, 0, batchFiles), 0
}

func (pl *placerPool) failed() error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.err
}

// stop waits for the queued files and returns the first error.
func (pl *placerPool) stop() error {
	if !pl.stopped {
		pl.flush()
		pl.stopped = true
		close(pl.jobs)
		pl.wg.Wait()
	}
	return pl.failed()
}

// receiveSmall rebuilds a whole file from its op stream in memory, checked
// against its size and SHA-256.
func (rc *receiver) receiveSmall(e *protocol.SyncEntry) ([]byte, error) {
	buf := bytes.NewBuffer(smallBufs.get(int(e.Size))[:0])
	var dst io.Writer = buf
	if rc.opt.Meter != nil {
		dst = meterWriter{buf, rc.opt.Meter}
	}
	rc.c.or.Reset(rc.c)
	st, err := delta.ApplyLimit(emptyReaderAt{}, 0, 0, rc.c.or, dst, e.Size)
	if err != nil {
		return nil, fmt.Errorf("unable to receive %q: %w", e.Path, err)
	}
	if st.Size != e.Size {
		return nil, fmt.Errorf("%w: %q was announced with %d bytes, got %d", delta.ErrMismatch, e.Path, e.Size, st.Size)
	}
	if len(rc.c.buf) > 0 {
		return nil, fmt.Errorf("%w: data after the end of %q", protocol.ErrInvalid, e.Path)
	}
	rc.sum.LiteralBytes += st.LiteralBytes
	return buf.Bytes(), nil
}

// sendNeeds writes the needs, each with the old file's signature if any.
func (rc *receiver) sendNeeds(ctx context.Context, needs []need, sent chan<- signed) error {
	c := rc.c
	// Needs without a signature are batched into few writes (one per
	// frame would cost a stream write per file).
	var batch []byte
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := c.w.Raw(batch)
		batch = batch[:0]
		return err
	}
	for _, n := range needs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var sig *delta.Signature
		basis := n.basis
		if basis == "" {
			basis = rc.list[n.index].Path
		}
		if n.sig {
			if err := flush(); err != nil {
				return err
			}
			sig = rc.sign(basis)
		}
		s := signed{}
		if sig != nil {
			s = signed{blockSize: sig.BlockSize, oldSize: sig.Size, ok: true, basis: basis}
		}
		sent <- s
		msg, err := json.Marshal(&protocol.SyncNeed{Index: n.index, Sig: sig != nil})
		if err != nil {
			return err
		}
		batch = protocol.AppendFrame(batch, protocol.FrameSyncNeed, msg)
		if sig != nil {
			if err := flush(); err != nil {
				return err
			}
			dw := c.dw // this goroutine is the receiver's only data writer
			if _, err := sig.WriteTo(dw); err != nil {
				return err
			}
			if err := dw.Flush(); err != nil {
				return err
			}
		} else if len(batch) >= 32<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	batch = protocol.AppendFrame(batch, protocol.FrameSyncNeedEnd, nil)
	return flush()
}

// sign returns the signature of the old file at p, or nil (send it whole).
func (rc *receiver) sign(p string) *delta.Signature {
	f, err := rc.r.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size() > protocol.MaxSyncFileSize {
		return nil
	}
	sig, err := delta.Sign(bufio.NewReaderSize(f, 256<<10), fi.Size())
	if err != nil {
		return nil
	}
	return sig
}

type emptyReaderAt struct{}

func (emptyReaderAt) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }

func (rc *receiver) receiveFile(e *protocol.SyncEntry, s signed) (err error) {
	if err := rc.parentOK(e.Path); err != nil {
		return err
	}
	dir, name := path.Dir(e.Path), path.Base(e.Path)
	dr, err := rc.dirs.get(rc.physDirOf(e.Path))
	if err != nil {
		return fmt.Errorf("unable to open directory %q: %w", dir, err)
	}
	tmp := tempName()
	out, err := dr.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("unable to create a temporary file for %q: %w", e.Path, err)
	}
	done := false
	defer func() {
		if !done {
			out.Close()
			_ = dr.Remove(tmp)
		}
	}()
	var old io.ReaderAt = emptyReaderAt{}
	if s.ok {
		var of *os.File
		if s.basis == e.Path {
			of, err = dr.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		} else {
			of, err = rc.r.OpenFile(s.basis, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		}
		if err != nil {
			return fmt.Errorf("unable to reopen %q: %w", s.basis, err)
		}
		defer of.Close()
		old = of
	}
	sw := &sparseWriter{f: out}
	bw := rc.c.outf
	bw.Reset(sw)
	defer bw.Reset(nil)
	var dst io.Writer = bw
	if rc.opt.Meter != nil {
		dst = meterWriter{bw, rc.opt.Meter}
	}
	rc.c.or.Reset(rc.c)
	st, err := delta.ApplyLimit(old, s.oldSize, s.blockSize, rc.c.or, dst, e.Size)
	if err != nil {
		return fmt.Errorf("unable to receive %q: %w", e.Path, err)
	}
	if st.Size != e.Size {
		return fmt.Errorf("%w: %q was announced with %d bytes, got %d", delta.ErrMismatch, e.Path, e.Size, st.Size)
	}
	if len(rc.c.buf) > 0 {
		return fmt.Errorf("%w: data after the end of %q", protocol.ErrInvalid, e.Path)
	}
	rc.sum.LiteralBytes += st.LiteralBytes
	rc.sum.CopyBytes += st.CopyBytes
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := sw.finish(); err != nil {
		return err
	}
	if err := out.Chmod(fs.FileMode(e.Mode)); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	done = true
	t := time.Unix(0, e.MtimeNs)
	if err := dr.Chtimes(tmp, t, t); err == nil {
		err = dr.Rename(tmp, name)
		if err == nil {
			rc.touched[dir] = true
			return nil
		}
	}
	_ = dr.Remove(tmp)
	return fmt.Errorf("unable to put %q in place: %w", e.Path, err)
}

// finishDirs sets directory modes and mtimes, children first.
func (rc *receiver) finishDirs() error {
	if rc.opt.DryRun {
		return nil
	}
	for i := len(rc.list) - 1; i >= 0; i-- {
		e := &rc.list[i]
		if e.Type != protocol.SyncDir {
			continue
		}
		x, ok := rc.have[e.Path]
		chmod := !ok || typeOf(x) != protocol.SyncDir || uint32(x.Mode().Perm()) != e.Mode
		chtimes := !ok || rc.touched[e.Path] || x.mtime != e.MtimeNs
		if !chmod && !chtimes {
			continue
		}
		// Through the cached parent: no walk of the whole path.
		dr, err := rc.dirs.get(path.Dir(e.Path))
		if err != nil {
			return err
		}
		base := path.Base(e.Path)
		if chmod {
			if err := dr.Chmod(base, fs.FileMode(e.Mode)); err != nil {
				return err
			}
		}
		if chtimes {
			t := time.Unix(0, e.MtimeNs)
			if err := dr.Chtimes(base, t, t); err != nil {
				return err
			}
		}
	}
	// Directories not listed whose entries changed get their mtime back
	// (the sender's: their digests in their parents matched).
	for _, w := range rc.implicit {
		if rc.touched[w.path] {
			t := time.Unix(0, w.fi.mtime)
			if err := rc.r.Chtimes(w.path, t, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// sparseWriter writes a file sequentially, leaving runs of zeros of
// sparseBlock bytes as holes, so a sparse file stays sparse.
type sparseWriter struct {
	f   *os.File
	off int64
}

const sparseBlock = 64 << 10

var zeros [sparseBlock]byte

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), sparseBlock)
		if !bytes.Equal(p[:k], zeros[:k]) {
			if _, err := w.f.WriteAt(p[:k], w.off); err != nil {
				return n - len(p), err
			}
		}
		w.off += int64(k)
		p = p[k:]
	}
	return n, nil
}

// finish sets the file's size (a trailing hole is not written).
func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }

// tempName is a fresh name for a temporary file next to the file it will
// replace (TempPrefix marks it as ours).
func tempName() string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return TempPrefix + hex.EncodeToString(rnd[:])
}
