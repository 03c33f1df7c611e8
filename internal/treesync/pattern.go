package treesync

import (
	"bufio"
	"io"
	"path"
	"strings"
	"sync"
)

// MaxIgnoreFile bounds the bytes read from one .gitignore file.
const MaxIgnoreFile = 1 << 20

// rule is one gitignore-style pattern.
type rule struct {
	neg      bool     // "!pattern": re-include
	dirOnly  bool     // "pattern/": matches directories only
	anchored bool     // has a "/" before its end: matched from the base directory
	segs     []string // the pattern split on "/"; "**" matches any number of components
}

// parseRule parses one pattern line of a .gitignore file or a command-line
// --include/--exclude; ok is false for blank lines and comments.
func parseRule(line string) (rule, bool) {
	line = strings.TrimRight(line, "\r")
	// Trailing spaces are ignored unless escaped.
	for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\\ ") {
		line = line[:len(line)-1]
	}
	if line == "" || line[0] == '#' {
		return rule{}, false
	}
	var r rule
	if line[0] == '!' {
		r.neg, line = true, line[1:]
	} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		r.dirOnly, line = true, strings.TrimRight(line, "/")
	}
	if line == "" {
		return rule{}, false
	}
	if strings.Contains(line, "/") {
		r.anchored = true
		line = strings.TrimPrefix(line, "/")
	}
	r.segs = strings.Split(line, "/")
	return r, true
}

// match reports whether r matches rel (relative to the rule's base
// directory, slash-separated).
func (r *rule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if !r.anchored {
		ok, _ := path.Match(r.segs[0], path.Base(rel))
		return ok
	}
	return matchSegs(r.segs, strings.Split(rel, "/"))
}

func matchSegs(p, s []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			for i := 0; i <= len(s); i++ {
				if matchSegs(p[1:], s[i:]) {
					return true
				}
			}
			return false
		}
		if len(s) == 0 {
			return false
		}
		if ok, _ := path.Match(p[0], s[0]); !ok {
			return false
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

// mayContain reports whether r could match a path strictly under dir.
func (r *rule) mayContain(dir string) bool {
	if !r.anchored {
		return true
	}
	p, s := r.segs, strings.Split(dir, "/")
	for len(s) > 0 {
		if len(p) == 0 {
			return false
		}
		if p[0] == "**" {
			return true
		}
		if ok, _ := path.Match(p[0], s[0]); !ok {
			return false
		}
		p, s = p[1:], s[1:]
	}
	return len(p) > 0
}

func parseRules(lines []string) []rule {
	var rs []rule
	for _, l := range lines {
		if r, ok := parseRule(l); ok {
			rs = append(rs, r)
		}
	}
	return rs
}

func readRules(rd io.Reader) []rule {
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(rd, MaxIgnoreFile))
	sc.Buffer(make([]byte, 0, 4096), MaxIgnoreFile)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return parseRules(lines)
}

// lastMatch returns the verdict of the last rule of rs matching rel:
// +1 matched (ignored/selected), -1 re-included by a "!" rule, 0 none.
func lastMatch(rs []rule, rel string, isDir bool) int {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].match(rel, isDir) {
			if rs[i].neg {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Filter decides which paths of a tree take part in a sync: the request's
// --exclude patterns, its --include patterns and, with GitIgnore, the
// .gitignore files of the tree (each applies to its directory, deeper ones
// win, as git does). Patterns follow gitignore syntax: "!" re-includes, a
// trailing "/" matches directories only, a "/" elsewhere anchors the
// pattern at the root, "*", "?", "[...]" match within a component and "**"
// across components. A path under an excluded directory is excluded.
//
// With include patterns only matching paths, everything under a matching
// directory, and the directories leading to them take part; a walk prunes
// the directories that no anchored include pattern can reach, so including
// "/.factory/" reads only that subtree.
type Filter struct {
	exclude, include []rule
	gitIgnore        bool
	mu               sync.RWMutex      // walks load and read ignores concurrently
	ignores          map[string][]rule // directory -> rules of its .gitignore
}

// NewFilter returns the filter of the options.
func NewFilter(opt Options) *Filter {
	return &Filter{
		exclude:   parseRules(opt.Exclude),
		include:   parseRules(opt.Include),
		gitIgnore: opt.GitIgnore,
		ignores:   map[string][]rule{},
	}
}

// Excluded reports whether p (whose parent is not excluded) is left out by
// the exclude patterns or, with GitIgnore, by a loaded .gitignore.
func (f *Filter) Excluded(p string, isDir bool) bool {
	switch lastMatch(f.exclude, p, isDir) {
	case 1:
		return true
	case -1:
		return false
	}
	return f.Ignored(p, isDir)
}

// ExcludedByPattern reports whether p is left out by the exclude patterns.
func (f *Filter) ExcludedByPattern(p string, isDir bool) bool {
	return lastMatch(f.exclude, p, isDir) == 1
}

// Ignored reports whether, with GitIgnore, a loaded .gitignore ignores p.
func (f *Filter) Ignored(p string, isDir bool) bool {
	if !f.gitIgnore {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for dir := path.Dir(p); ; dir = path.Dir(dir) {
		if rs := f.ignores[dir]; len(rs) > 0 {
			rel := p
			if dir != "." {
				rel = p[len(dir)+1:]
			}
			switch lastMatch(rs, rel, isDir) {
			case 1:
				return true
			case -1:
				return false
			}
		}
		if dir == "." {
			return false
		}
	}
}

// UsesGitIgnore reports whether the filter reads .gitignore files.
func (f *Filter) UsesGitIgnore() bool { return f.gitIgnore }

// LoadIgnore records the .gitignore rules of directory dir.
func (f *Filter) LoadIgnore(dir string, rd io.Reader) {
	if rs := readRules(rd); len(rs) > 0 {
		f.mu.Lock()
		f.ignores[dir] = rs
		f.mu.Unlock()
	}
}

// Selected reports whether p is chosen by the include patterns (always,
// without any); parentSelected says a parent directory was.
func (f *Filter) Selected(p string, isDir, parentSelected bool) bool {
	if len(f.include) == 0 || parentSelected {
		return true
	}
	return lastMatch(f.include, p, isDir) == 1
}

// MayContain reports whether an unselected directory dir may hold selected
// paths, i.e. whether a walk must enter it.
func (f *Filter) MayContain(dir string) bool {
	for i := range f.include {
		if f.include[i].mayContain(dir) {
			return true
		}
	}
	return false
}
