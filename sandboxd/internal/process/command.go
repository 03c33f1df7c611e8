package process

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bohica-labs/darkshell/protocol"
)

// defaultPath is used when neither the request nor the base environment sets PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mergeEnv returns base overridden by extra (KEY=VALUE entries, a later entry
// wins), keeping the first position of every key.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	idx := make(map[string]int, len(base)+len(extra))
	for _, list := range [][]string{base, extra} {
		for _, kv := range list {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				continue
			}
			if i, seen := idx[k]; seen {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// lookupEnv returns the value of key in env.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// lookPath resolves file the way a shell would, against pathEnv (not
// sandboxd's own PATH) and relative to dir. A name with a slash is used as
// is. It returns a *Error with CodeNotFound when nothing exists and
// CodeCannotInvoke when a candidate exists but is not executable.
func lookPath(file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", classify(file, err)
		}
		return p, nil
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	var denied error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, file)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", classify(file, denied)
	}
	return "", errorf(protocol.CodeNotFound, nil, "%s: command not found", file)
}

// checkExecutable returns nil for an executable regular file.
func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return syscall.EISDIR
	}
	if st.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// classify maps a lookup or execve failure for file to a protocol error.
func classify(file string, err error) *Error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf(protocol.CodeNotFound, nil, "%s: no such file or directory", file)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return errorf(protocol.CodeCannotInvoke, nil, "%s: permission denied", file)
	case errors.Is(err, syscall.EISDIR):
		return errorf(protocol.CodeCannotInvoke, nil, "%s: is a directory", file)
	case errors.Is(err, syscall.ENOEXEC):
		return errorf(protocol.CodeCannotInvoke, nil, "%s: exec format error", file)
	case errors.Is(err, syscall.ETXTBSY):
		return errorf(protocol.CodeCannotInvoke, nil, "%s: text file busy", file)
	}
	return errorf(protocol.CodeCannotInvoke, err, "%s: cannot run", file)
}

// startError maps an error from exec.Cmd.Start of an already resolved file.
func startError(file string, err error) *Error {
	if errors.Is(err, fs.ErrNotExist) {
		// The file exists (lookPath found it), so its interpreter or loader is missing.
		return errorf(protocol.CodeCannotInvoke, nil, "%s: bad interpreter or missing dynamic loader", file)
	}
	return classify(file, err)
}
