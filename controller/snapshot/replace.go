package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/state"
)

// journal records an in-place restore of one directory, so an interrupted
// one is finished (or undone) by the next Recover: the target is always
// the old tree or the new one, never a mix.
type journal struct {
	Target   string `json:"target"`
	Staging  string `json:"staging"`
	Old      string `json:"old"`
	Snapshot string `json:"snapshot"`
	// Phase is "staging" (the target is untouched; undo: remove the
	// staging dir) or "swap" (the staging dir is complete; redo: move it
	// into place).
	Phase string `json:"phase"`
}

func (r *Repo) journalPath(target string) string {
	h := sha256.Sum256([]byte(target))
	return filepath.Join(r.dir, "restores", hex.EncodeToString(h[:8])+".json")
}

func (r *Repo) writeJournal(j *journal) error {
	if err := os.MkdirAll(filepath.Join(r.dir, "restores"), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(j)
	return state.WriteFileAtomic(r.journalPath(j.Target), b, 0o600)
}

// Recover finishes or undoes an interrupted ReplaceDir of target. It
// reports whether there was one to recover.
func (r *Repo) Recover(target string) (bool, error) {
	jp := r.journalPath(target)
	b, err := os.ReadFile(jp)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil || j.Target != target {
		return false, fmt.Errorf("restore journal %s is damaged: remove it after checking %s", jp, target)
	}
	switch j.Phase {
	case "staging":
		if err := os.RemoveAll(j.Staging); err != nil {
			return true, fmt.Errorf("unable to remove the staging dir %s: %w", j.Staging, err)
		}
	case "swap":
		if err := swap(&j); err != nil {
			return true, err
		}
	default:
		return true, fmt.Errorf("restore journal %s has unknown phase %q", jp, j.Phase)
	}
	return true, os.Remove(jp)
}

// swap moves target aside and staging into place, from any point of an
// earlier attempt, then removes the old tree.
func swap(j *journal) error {
	_, serr := os.Lstat(j.Staging)
	_, terr := os.Lstat(j.Target)
	if serr == nil {
		if terr == nil {
			if err := os.Rename(j.Target, j.Old); err != nil {
				return fmt.Errorf("unable to move %s aside: %w", j.Target, err)
			}
		}
		if err := os.Rename(j.Staging, j.Target); err != nil {
			return fmt.Errorf("unable to move the restored tree into %s: %w", j.Target, err)
		}
	}
	if err := os.RemoveAll(j.Old); err != nil {
		return fmt.Errorf("unable to remove the old tree %s: %w", j.Old, err)
	}
	return nil
}

// ReplaceDir makes the directory target a copy of snapshot s: it writes
// the snapshot into a staging directory next to target (verifying every
// chunk), then swaps the two by rename. Killed at any point, target holds
// the old tree or the new one; the next ReplaceDir or Recover of target
// finishes the job.
func (r *Repo) ReplaceDir(ctx context.Context, s *Snapshot, target string, o MaterializeOptions) error {
	target = filepath.Clean(target)
	if _, err := r.Recover(target); err != nil {
		return err
	}
	base := "." + filepath.Base(target) + ".ds-"
	j := &journal{Target: target, Snapshot: s.ID, Phase: "staging",
		Staging: filepath.Join(filepath.Dir(target), base+"stage-"+s.ID),
		Old:     filepath.Join(filepath.Dir(target), base+"old-"+s.ID)}
	if err := os.RemoveAll(j.Staging); err != nil {
		return err
	}
	if err := r.writeJournal(j); err != nil {
		return fmt.Errorf("unable to write the restore journal: %w", err)
	}
	if err := r.Materialize(ctx, s, j.Staging, o); err != nil {
		if _, rerr := r.Recover(target); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	if err := syncDir(j.Staging); err != nil {
		return err
	}
	j.Phase = "swap"
	if err := r.writeJournal(j); err != nil {
		return fmt.Errorf("unable to write the restore journal: %w", err)
	}
	if err := swap(j); err != nil {
		return err
	}
	return os.Remove(r.journalPath(target))
}

// syncDir flushes the file system holding dir (the staged tree's files
// and directories) before the swap makes it the target.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
