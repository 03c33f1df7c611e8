// Package snapshot keeps point-in-time copies of sandbox workspaces on the
// host: content-defined chunks (restic's Rabin chunker), compressed with
// zstd and named by their SHA-256 in one content-addressed Store per
// installation, so a snapshot after a one-file change adds about that file.
//
// A snapshot is a record (records/<id>.json, written atomically after every
// chunk it names is in the store) whose tree is itself chunked: the sorted
// entry list, one JSON line per entry, cut by the same chunker with smaller
// boundaries, so an unchanged part of a big tree shares its tree chunks too.
//
// Capture reads a directory (the daemon's mirror of a workspace, filled
// through the ordinary sandboxd sync stream); Materialize writes a snapshot
// into a fresh directory, verifying every chunk's hash on the way. Writers
// hold the store's lock shared, GC exclusive: a collection never deletes a
// chunk a snapshot being taken has counted on.
package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/state"
)

// Entry types in a tree.
const (
	TypeFile    = "f"
	TypeDir     = "d"
	TypeSymlink = "l"
	// TypeDeleted is a path of a container's image that its writable
	// layer deleted (layer trees only).
	TypeDeleted = "x"
)

// Entry is one file, directory or symlink of a snapshot's tree.
type Entry struct {
	Path    string   `json:"p"` // slash-separated, relative; "." is the root
	Type    string   `json:"t"`
	Mode    uint32   `json:"m"` // permission bits (and setuid/setgid/sticky)
	MtimeNs int64    `json:"mt"`
	Size    int64    `json:"s,omitempty"`
	Target  string   `json:"l,omitempty"` // symlink target
	Chunks  []string `json:"c,omitempty"` // file content, in order
	// UID and GID are the owner (layer trees only: a workspace's owner
	// is the sandbox user's).
	UID int `json:"u,omitempty"`
	GID int `json:"g,omitempty"`
}

// Snapshot is a snapshot's record.
type Snapshot struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Sandbox string            `json:"sandbox"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	// Tree lists the chunks of the entry list (JSON lines).
	Tree []string `json:"tree"`
	// Layer, when set, lists the chunks of the container's writable layer
	// outside the workspace (entries with paths relative to the container's
	// root, TypeDeleted for deletions); LayerEntries counts them. Records
	// without it (older ones, drivers without a layer) restore the
	// workspace only.
	Layer        []string `json:"layer,omitempty"`
	LayerEntries int      `json:"layer_entries,omitempty"`
	// Files, Dirs, Symlinks and Bytes describe the tree.
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
	// Chunks counts the distinct chunks it names (tree included);
	// AddedBytes is what taking it added to the store (compressed).
	Chunks     int   `json:"chunks"`
	AddedBytes int64 `json:"added_bytes"`
	// Frozen is set when the sandbox's processes were frozen for the capture.
	Frozen     bool  `json:"frozen"`
	DurationMs int64 `json:"duration_ms"`
}

// Repo is an installation's snapshots: the store and the records.
type Repo struct {
	Store *Store
	dir   string
}

// Open opens (creating) the repository under dir ($DARKSHELL_HOME/snapshots).
func Open(dir string) (*Repo, error) {
	st, err := OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "records"), 0o700); err != nil {
		return nil, fmt.Errorf("unable to create the snapshot records dir: %w", err)
	}
	return &Repo{Store: st, dir: dir}, nil
}

// Dir is the repository's directory.
func (r *Repo) Dir() string { return r.dir }

// MirrorDir is where the daemon keeps its copy of sandbox name's workspace.
func (r *Repo) MirrorDir(name string) string {
	return filepath.Join(r.dir, "mirrors", name, "tree")
}

// IndexPath is the capture index of sandbox name's mirror.
func (r *Repo) IndexPath(name string) string {
	return filepath.Join(r.dir, "mirrors", name, "index.json.zst")
}

func (r *Repo) recordPath(id string) string {
	return filepath.Join(r.dir, "records", id+".json")
}

// NewID returns a fresh snapshot id.
func NewID() string {
	var b [6]byte
	rand.Read(b[:])
	return "s-" + hex.EncodeToString(b[:])
}

// ErrNotFound is returned for an unknown snapshot.
var ErrNotFound = errors.New("no such snapshot")

// ValidName checks a snapshot name (--name).
func ValidName(n string) error {
	if err := state.ValidName(n); err != nil {
		return fmt.Errorf("snapshot name: %w", err)
	}
	return nil
}

// Save writes a record atomically.
func (r *Repo) Save(s *Snapshot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(r.recordPath(s.ID), b, 0o600)
}

// List returns the records, of sandbox only when it is not "", oldest first.
func (r *Repo) List(sandbox string) ([]*Snapshot, error) {
	ents, err := os.ReadDir(filepath.Join(r.dir, "records"))
	if err != nil {
		return nil, err
	}
	var out []*Snapshot
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !strings.HasPrefix(id, "s-") {
			continue
		}
		s, err := r.load(id)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		if sandbox == "" || s.Sandbox == sandbox {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *Snapshot) int { return a.Created.Compare(b.Created) })
	return out, nil
}

func (r *Repo) load(id string) (*Snapshot, error) {
	b, err := os.ReadFile(r.recordPath(id))
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot record %s: %w", id, err)
	}
	return &s, nil
}

// Find returns the snapshot with id ref, or named ref (of sandbox, when
// not ""). A name two sandboxes use needs the sandbox or the id.
func (r *Repo) Find(sandbox, ref string) (*Snapshot, error) {
	all, err := r.List(sandbox)
	if err != nil {
		return nil, err
	}
	var hits []*Snapshot
	for _, s := range all {
		if s.ID == ref {
			return s, nil
		}
		if s.Name == ref {
			hits = append(hits, s)
		}
	}
	switch len(hits) {
	case 0:
		if sandbox != "" {
			return nil, fmt.Errorf("%w %q of sandbox %s (see `darkshell sandbox snapshot list %s`)", ErrNotFound, ref, sandbox, sandbox)
		}
		return nil, fmt.Errorf("%w %q (see `darkshell sandbox snapshot list`)", ErrNotFound, ref)
	case 1:
		return hits[0], nil
	}
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.ID+" ("+h.Sandbox+")")
	}
	return nil, fmt.Errorf("snapshot name %q is ambiguous: use one of the ids %s", ref, strings.Join(ids, ", "))
}

// Delete removes a record; its chunks go at the next GC.
func (r *Repo) Delete(id string) error {
	err := os.Remove(r.recordPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w %q", ErrNotFound, id)
	}
	return err
}

// Prune deletes sandbox's snapshots beyond the newest keep (0: no count
// limit) and those older than maxAge (0: no age limit), and returns them.
func (r *Repo) Prune(sandbox string, keep int, maxAge time.Duration, now time.Time) ([]*Snapshot, error) {
	all, err := r.List(sandbox)
	if err != nil {
		return nil, err
	}
	var gone []*Snapshot
	for i, s := range all {
		tooMany := keep > 0 && i < len(all)-keep
		tooOld := maxAge > 0 && now.Sub(s.Created) > maxAge
		if tooMany || tooOld {
			if err := r.Delete(s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return gone, err
			}
			gone = append(gone, s)
		}
	}
	return gone, nil
}
