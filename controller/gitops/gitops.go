// Package gitops reads sandbox policies from a git repository (go-git): a
// mapping file names which policy file applies to which sandboxes (by name,
// glob or label selector); Load reads and validates one commit's policies
// and mapping from the commit's tree (never from a work tree), and Plan
// says what to apply to which sandbox, telling a new commit from drift (a
// sandbox changed by hand since the last apply).
package gitops

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/goccy/go-yaml"

	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/state"
)

// MappingFile is the mapping's name in the policy directory.
const MappingFile = "darkshell-policies.yaml"

// Mapping is the mapping file.
type Mapping struct {
	Version   int    `yaml:"version"`
	Sandboxes []Bind `yaml:"sandboxes"`
}

// Bind applies one policy file to the sandboxes it selects: by exact
// name, by glob (path.Match), or by labels (all must match).
type Bind struct {
	Policy   string            `yaml:"policy"`
	Names    []string          `yaml:"names,omitempty"`
	Match    []string          `yaml:"match,omitempty"`
	Selector map[string]string `yaml:"selector,omitempty"`
}

// Desired is one commit's validated content.
type Desired struct {
	Commit string
	// Policies by file (relative to the policy dir): content.
	Policies map[string]string
	Mapping  Mapping
}

// Repo is an opened repository.
type Repo struct {
	r   *git.Repository
	url string
}

// Open opens the repository at src: a local path (read in place), or a URL
// cloned once into cacheDir and fetched on each Refresh.
func Open(src, cacheDir string) (*Repo, error) {
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		r, err := git.PlainOpenWithOptions(src, &git.PlainOpenOptions{DetectDotGit: true})
		if err != nil {
			return nil, fmt.Errorf("unable to open git repository %s: %w", src, err)
		}
		return &Repo{r: r}, nil
	}
	h := sha256.Sum256([]byte(src))
	dir := filepath.Join(cacheDir, hex.EncodeToString(h[:8]))
	if r, err := git.PlainOpen(dir); err == nil {
		return &Repo{r: r, url: src}, nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, err
	}
	r, err := git.PlainClone(dir, true, &git.CloneOptions{URL: src, Tags: git.NoTags})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("unable to clone %s: %w", src, err)
	}
	return &Repo{r: r, url: src}, nil
}

// Refresh fetches a cloned repository (a local one is read as it is).
func (g *Repo) Refresh() error {
	if g.url == "" {
		return nil
	}
	err := g.r.Fetch(&git.FetchOptions{RefSpecs: []config.RefSpec{"+refs/heads/*:refs/heads/*"}, Force: true, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("unable to fetch %s: %w", g.url, err)
	}
	return nil
}

// Head resolves branch (empty: HEAD) to a commit hash.
func (g *Repo) Head(branch string) (string, error) {
	var h *plumbing.Reference
	var err error
	if branch == "" {
		h, err = g.r.Head()
	} else {
		h, err = g.r.Reference(plumbing.NewBranchReferenceName(branch), true)
	}
	if err != nil {
		return "", fmt.Errorf("unable to resolve branch %q: %w", branch, err)
	}
	return h.Hash().String(), nil
}

// Load reads and validates the mapping and every policy it names at
// commit, under dir of the commit's tree. Any problem fails the whole
// commit: nothing of a bad commit is applied.
func (g *Repo) Load(commit, dir string) (*Desired, error) {
	c, err := g.r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", short(commit), err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", short(commit), err)
	}
	dir = strings.Trim(path.Clean("/"+filepath.ToSlash(dir)), "/")
	read := func(name string) ([]byte, error) {
		p := path.Join(dir, name)
		f, err := tree.File(p)
		if errors.Is(err, object.ErrFileNotFound) {
			return nil, fmt.Errorf("%s: not in commit %s", p, short(commit))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		s, err := f.Contents()
		return []byte(s), err
	}
	d := &Desired{Commit: commit, Policies: map[string]string{}}
	mb, err := read(MappingFile)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalWithOptions(mb, &d.Mapping, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", path.Join(dir, MappingFile), yaml.FormatError(err, false, true))
	}
	if d.Mapping.Version != 1 {
		return nil, fmt.Errorf("%s: version must be 1", path.Join(dir, MappingFile))
	}
	var errs []error
	for i, b := range d.Mapping.Sandboxes {
		where := fmt.Sprintf("%s: sandboxes[%d]", path.Join(dir, MappingFile), i)
		if b.Policy == "" || strings.Contains(b.Policy, "..") || path.IsAbs(b.Policy) {
			errs = append(errs, fmt.Errorf("%s: policy %q must be a file name under the policy dir", where, b.Policy))
			continue
		}
		if len(b.Names)+len(b.Match)+len(b.Selector) == 0 {
			errs = append(errs, fmt.Errorf("%s: selects no sandbox (give names, match or selector)", where))
		}
		for _, m := range b.Match {
			if _, err := path.Match(m, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s: match %q: %v", where, m, err))
			}
		}
		if _, ok := d.Policies[b.Policy]; ok {
			continue
		}
		pb, err := read(b.Policy)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := policy.Parse(path.Join(dir, b.Policy), pb); err != nil {
			errs = append(errs, err)
			continue
		}
		d.Policies[b.Policy] = string(pb)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// Target is one sandbox's desired policy.
type Target struct {
	Sandbox string
	File    string
	Content string
}

// Targets resolves the mapping against the sandboxes; the first binding
// that selects a sandbox wins.
func (d *Desired) Targets(sbs []*state.Sandbox) []Target {
	var out []Target
	for _, sb := range sbs {
		for _, b := range d.Mapping.Sandboxes {
			if selects(b, sb) {
				out = append(out, Target{Sandbox: sb.Name, File: b.Policy, Content: d.Policies[b.Policy]})
				break
			}
		}
	}
	return out
}

func selects(b Bind, sb *state.Sandbox) bool {
	if slices.Contains(b.Names, sb.Name) {
		return true
	}
	for _, m := range b.Match {
		if ok, _ := path.Match(m, sb.Name); ok {
			return true
		}
	}
	if len(b.Selector) > 0 {
		for k, v := range b.Selector {
			if sb.Labels[k] != v {
				return false
			}
		}
		return true
	}
	return false
}

// Hash names a policy's content (what the state remembers as applied).
func Hash(content string) string {
	h := sha256.Sum256([]byte(content))
	return hex.EncodeToString(h[:])
}

// Action is what to do for one target.
type Action struct {
	Target
	// Do is "apply" (the commit changed it, or first apply), "correct"
	// (drift: changed by hand since the last apply) or "none".
	Do string
}

// Plan compares each target's desired policy with the sandbox's current
// one (current: sandbox -> content) and what was last applied (applied:
// sandbox -> Hash).
func Plan(targets []Target, current map[string]string, applied map[string]string) []Action {
	var out []Action
	for _, t := range targets {
		cur := current[t.Sandbox]
		a := Action{Target: t, Do: "none"}
		switch {
		case bytes.Equal([]byte(cur), []byte(t.Content)):
		case applied[t.Sandbox] != "" && Hash(cur) != applied[t.Sandbox]:
			a.Do = "correct"
		default:
			a.Do = "apply"
		}
		out = append(out, a)
	}
	return out
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
