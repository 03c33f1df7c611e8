package protocol

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Sync stream kinds and in-stream frames (spec.md section 7.4). These are
// on-wire constants like those of const.go; const_test.go pins them.
const (
	// Requests.
	FrameSyncPush FrameType = 0x20 // SyncRequest: the controller sends a tree into Root
	FrameSyncPull FrameType = 0x21 // SyncRequest: sandboxd sends the tree at Root

	// In-stream frames of a sync stream (range 0x90-0x9f).
	FrameSyncEntries    FrameType = 0x90 // SyncEntries, sender to receiver
	FrameSyncEntriesEnd FrameType = 0x91 // empty: the entry list is complete
	FrameSyncNeed       FrameType = 0x92 // SyncNeed, receiver to sender; Sig: followed by a signature in data frames
	FrameSyncNeedEnd    FrameType = 0x93 // empty: no more needs
	FrameSyncFile       FrameType = 0x94 // SyncFile, sender to receiver; unless Skip, followed by an op stream in data frames
	FrameSyncData       FrameType = 0x95 // raw bytes of a signature or an op stream
	FrameSyncDone       FrameType = 0x96 // empty: the sender has answered every need
	FrameSyncSummary    FrameType = 0x97 // SyncSummary, receiver to sender, last frame
	FrameSyncPlan       FrameType = 0x98 // SyncPlan, receiver to sender, before the first need
	FrameSyncEntriesZ   FrameType = 0x99 // SyncEntries as zstd-compressed JSON, sender to receiver
	FrameSyncEntriesB   FrameType = 0x9a // SyncEntries in the binary encoding (syncbin.go), zstd-compressed, sender to receiver
	FrameSyncDirSums    FrameType = 0x9b // directory digests (syncdirsum.go), sender to receiver, instead of the list
	FrameSyncDirSumsEnd FrameType = 0x9c // empty: every directory digest is sent
	FrameSyncWant       FrameType = 0x9d // bitmap of the directories whose entries the receiver wants, receiver to sender
)

// Sync limits.
const (
	// MaxSyncPath bounds an entry path and a symlink target, in bytes.
	MaxSyncPath = 4096
	// MaxSyncEntries bounds the entries of one sync.
	MaxSyncEntries = 1_000_000
	// MaxSyncBatch bounds the entries of one FrameSyncEntries.
	MaxSyncBatch = 1024
	// MaxSyncExclude bounds the exclude patterns of a request.
	MaxSyncExclude = 256
	// MaxSyncEntriesZ bounds the decompressed JSON of one FrameSyncEntriesZ
	// and the decompressed binary list of one FrameSyncEntriesB.
	MaxSyncEntriesZ = 4 << 20
	// MaxSyncFileSize bounds one file (delta.MaxFileSize).
	MaxSyncFileSize = 1 << 50
)

// Entry types in SyncEntry.Type.
const (
	SyncFile    = "f"
	SyncDir     = "d"
	SyncSymlink = "l"
)

// SyncRequest opens a sync stream (FrameSyncPush, FrameSyncPull).
type SyncRequest struct {
	// Root is the directory in the sandbox; a relative path is taken from
	// sandboxd's default directory ($HOME).
	Root string `json:"root"`
	// Delete removes receiver entries the sender lacks (excluded ones stay).
	Delete bool `json:"delete,omitempty"`
	// DryRun computes the plan and writes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Checksum compares file content (SHA-256) instead of size and mtime.
	Checksum bool `json:"checksum,omitempty"`
	// Exclude: gitignore-style patterns of paths to leave out ("!"
	// re-includes, trailing "/" directories only, a "/" elsewhere anchors at
	// the root, "**" spans components).
	Exclude []string `json:"exclude,omitempty"`
	// Include: gitignore-style patterns; when set, only matching paths (and
	// everything under a matching directory) take part.
	Include []string `json:"include,omitempty"`
	// GitIgnore: the sender leaves out what the tree's .gitignore files
	// ignore; the receiver keeps what its own ignore from --delete.
	GitIgnore bool `json:"git_ignore,omitempty"`
	// DirSums: the controller speaks directory digests (sync-dir-sums,
	// cap sync-dir-sums); a pull's sender (sandboxd) may then send them
	// instead of its whole entry list.
	DirSums bool `json:"dir_sums,omitempty"`
}

func (m *SyncRequest) Validate() error {
	if m == nil {
		return errors.New("nil sync request")
	}
	if m.Root == "" || len(m.Root) > MaxSyncPath || strings.IndexByte(m.Root, 0) >= 0 {
		return errors.New("sync root must be a non-empty path without NUL bytes")
	}
	if len(m.Exclude)+len(m.Include) > MaxSyncExclude {
		return fmt.Errorf("%d include and exclude patterns, limit %d", len(m.Exclude)+len(m.Include), MaxSyncExclude)
	}
	for _, p := range m.Exclude {
		if err := ValidSyncPattern(p); err != nil {
			return fmt.Errorf("exclude pattern: %w", err)
		}
	}
	for _, p := range m.Include {
		if err := ValidSyncPattern(p); err != nil {
			return fmt.Errorf("include pattern: %w", err)
		}
		if strings.HasPrefix(p, "!") {
			return fmt.Errorf("include pattern %q: \"!\" is for --exclude (use --exclude PATTERN)", truncate(p, 40))
		}
	}
	return nil
}

// ValidSyncPattern checks a gitignore-style pattern: non-empty, at most
// MaxSyncPath bytes, no NUL, every "/"-separated component a valid
// path.Match pattern.
func ValidSyncPattern(p string) error {
	if p == "" || len(p) > MaxSyncPath || strings.IndexByte(p, 0) >= 0 {
		return errors.New("empty, too long or contains NUL")
	}
	for c := range strings.SplitSeq(p, "/") {
		if _, err := path.Match(c, ""); err != nil {
			return fmt.Errorf("%q: %v", truncate(p, 40), err)
		}
	}
	return nil
}

// SyncEntry describes one entry of the sender's tree, relative to its root.
type SyncEntry struct {
	Path string `json:"p"`
	Type string `json:"y"`           // SyncFile, SyncDir or SyncSymlink
	Mode uint32 `json:"m,omitempty"` // permission bits (0o777)
	Size int64  `json:"s,omitempty"` // files: size in bytes
	// MtimeNs is the modification time in Unix nanoseconds (files and dirs).
	MtimeNs int64  `json:"t,omitempty"`
	Link    string `json:"l,omitempty"` // symlinks: the target, never followed
	// Sum is the hex SHA-256 of a file's content, sent when the request has Checksum.
	Sum string `json:"h,omitempty"`
}

func (e *SyncEntry) Validate() error {
	if err := ValidSyncPath(e.Path); err != nil {
		return err
	}
	if e.Mode&^0o777 != 0 {
		return fmt.Errorf("%q: mode %o has bits other than 0777", e.Path, e.Mode)
	}
	switch e.Type {
	case SyncFile:
		if e.Size < 0 || e.Size > MaxSyncFileSize {
			return fmt.Errorf("%q: size %d out of range", e.Path, e.Size)
		}
		if e.Sum != "" && len(e.Sum) != 64 {
			return fmt.Errorf("%q: bad checksum", e.Path)
		}
	case SyncSymlink:
		if e.Link == "" || len(e.Link) > MaxSyncPath || strings.IndexByte(e.Link, 0) >= 0 {
			return fmt.Errorf("%q: bad symlink target", e.Path)
		}
	case SyncDir:
	default:
		return fmt.Errorf("%q: unknown entry type %q", e.Path, e.Type)
	}
	if e.Type != SyncSymlink && e.Link != "" {
		return fmt.Errorf("%q: link target on a non-symlink", e.Path)
	}
	if e.Type != SyncFile && (e.Size != 0 || e.Sum != "") {
		return fmt.Errorf("%q: size on a non-file", e.Path)
	}
	return nil
}

// ValidSyncPath checks an entry path: relative, slash-separated, clean
// (no ".", "..", empty components or trailing slash), UTF-8, no NUL, at
// most MaxSyncPath bytes.
func ValidSyncPath(p string) error {
	if p == "" || len(p) > MaxSyncPath {
		return fmt.Errorf("path of %d bytes: must be 1..%d", len(p), MaxSyncPath)
	}
	if !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q is not UTF-8 or contains NUL", truncate(p, 60))
	}
	if p[0] == '/' {
		return fmt.Errorf("path %q is absolute", truncate(p, 60))
	}
	for c := range strings.SplitSeq(p, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("path %q has a %q component", truncate(p, 60), c)
		}
	}
	return nil
}

// SyncEntries carries a batch of the sender's entries (FrameSyncEntries).
// A parent directory comes before its children.
type SyncEntries struct {
	Entries []SyncEntry `json:"entries"`
}

func (m *SyncEntries) Validate() error {
	if m == nil {
		return errors.New("nil entries")
	}
	if len(m.Entries) > MaxSyncBatch {
		return fmt.Errorf("%d entries in one batch, limit %d", len(m.Entries), MaxSyncBatch)
	}
	for i := range m.Entries {
		if err := m.Entries[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// SyncNeed asks the sender for the file at Index of its entry list
// (FrameSyncNeed). Needs come in increasing index order.
type SyncNeed struct {
	Index int `json:"i"`
	// Sig: the receiver has an old version; its delta.Signature follows in
	// FrameSyncData frames.
	Sig bool `json:"sig,omitempty"`
}

func (m *SyncNeed) Validate() error {
	if m == nil || m.Index < 0 || m.Index >= MaxSyncEntries {
		return errors.New("need index out of range")
	}
	return nil
}

// SyncFileHeader answers one SyncNeed, in the same order (FrameSyncFile).
type SyncFileHeader struct {
	Index int `json:"i"`
	// Skip, when set, says why the sender cannot send the file (it vanished
	// or changed); no op stream follows.
	Skip string `json:"skip,omitempty"`
}

func (m *SyncFileHeader) Validate() error {
	if m == nil || m.Index < 0 || m.Index >= MaxSyncEntries {
		return errors.New("file index out of range")
	}
	return nil
}

// SyncSummary ends a sync stream (FrameSyncSummary), written by the receiver.
type SyncSummary struct {
	Entries   int `json:"entries"`   // entries the sender listed
	Added     int `json:"added"`     // entries created
	Modified  int `json:"modified"`  // entries whose content, type, target or mode changed
	Deleted   int `json:"deleted"`   // entries removed (with Delete)
	Unchanged int `json:"unchanged"` // entries already up to date
	// Skipped lists files the sender could not send (first 100).
	Skipped []string `json:"skipped,omitempty"`
	// BytesToSend is the size of the files to transfer (the plan).
	BytesToSend int64 `json:"bytes_to_send"`
	// SentBytes: bytes the sender wrote on the stream (list, ops, framing);
	// RecvBytes: bytes the receiver wrote back (needs, signatures).
	SentBytes    int64 `json:"sent_bytes"`
	RecvBytes    int64 `json:"recv_bytes"`
	LiteralBytes int64 `json:"literal_bytes"` // file bytes sent as literals (before zstd)
	CopyBytes    int64 `json:"copy_bytes"`    // file bytes reused from old versions
	DryRun       bool  `json:"dry_run,omitempty"`
	DurationMs   int64 `json:"duration_ms"`
}

func (m *SyncSummary) Validate() error {
	if m == nil {
		return errors.New("nil summary")
	}
	if m.Entries < 0 || m.Added < 0 || m.Modified < 0 || m.Deleted < 0 || m.Unchanged < 0 || len(m.Skipped) > 100 {
		return errors.New("summary counts out of range")
	}
	return nil
}

// SyncPlan tells the sender what the receiver will ask for
// (FrameSyncPlan), so both sides can show progress against totals.
type SyncPlan struct {
	Files int   `json:"files"` // needs that will follow
	Bytes int64 `json:"bytes"` // their sizes, summed
}

func (m *SyncPlan) Validate() error {
	if m == nil || m.Files < 0 || m.Files > MaxSyncEntries || m.Bytes < 0 {
		return errors.New("sync plan out of range")
	}
	return nil
}

func syncFrameName(t FrameType) string {
	switch t {
	case FrameSyncPlan:
		return "sync-plan"
	case FrameSyncEntriesZ:
		return "sync-entries-z"
	case FrameSyncEntriesB:
		return "sync-entries-b"
	case FrameSyncDirSums:
		return "sync-dir-sums"
	case FrameSyncDirSumsEnd:
		return "sync-dir-sums-end"
	case FrameSyncWant:
		return "sync-want"
	case FrameSyncPush:
		return "sync-push"
	case FrameSyncPull:
		return "sync-pull"
	case FrameSyncEntries:
		return "sync-entries"
	case FrameSyncEntriesEnd:
		return "sync-entries-end"
	case FrameSyncNeed:
		return "sync-need"
	case FrameSyncNeedEnd:
		return "sync-need-end"
	case FrameSyncFile:
		return "sync-file"
	case FrameSyncData:
		return "sync-data"
	case FrameSyncDone:
		return "sync-done"
	case FrameSyncSummary:
		return "sync-summary"
	}
	return ""
}
