package inject

import "strings"

// word is a path as a POSIX shell word: an optional unquoted "$HOME" prefix
// followed by a literal, single-quoted part.
type word struct {
	home bool   // starts with "$HOME"
	lit  string // literal rest
}

// String renders the word for a POSIX shell command line.
func (w word) String() string {
	if w.home {
		return `"$HOME"` + quote(w.lit)
	}
	return quote(w.lit)
}

func (w word) join(elem string) word {
	w.lit = strings.TrimSuffix(w.lit, "/") + "/" + elem
	return w
}

// versionDir is the directory holding the sandboxd of build version v.
func versionDir(base, v string) word {
	if base == "" {
		base = DefaultRemoteDir
	}
	var w word
	switch {
	case strings.HasPrefix(base, "$HOME/"):
		w = word{home: true, lit: strings.TrimPrefix(base, "$HOME")}
	case strings.HasPrefix(base, "~/"):
		w = word{home: true, lit: strings.TrimPrefix(base, "~")}
	default:
		w = word{lit: base}
	}
	return w.join(pathSafe(v))
}

// pathSafe turns a build version into one safe path element.
func pathSafe(v string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '+':
			return r
		}
		return '_'
	}, v)
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	return s
}

// quote single-quotes s for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
