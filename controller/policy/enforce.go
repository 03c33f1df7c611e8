package policy

import (
	"path"
	"slices"
)

// Workdir is the workspace path include_workdir adds (OpenShell's default
// workspace root).
const Workdir = "/sandbox"

// Baseline paths every confined sandbox keeps so that programs run, as
// OpenShell's supervisor enriches every policy: the system dirs read-only,
// /tmp and the null device and terminals read-write.
var (
	BaselineReadOnly  = []string{"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/dev/urandom", "/run/darkshell"}
	BaselineReadWrite = []string{"/tmp", "/dev/null", "/dev/tty", "/dev/pts"}
)

// FSRules is what a driver enforces with Landlock.
type FSRules struct {
	ReadOnly  []string `json:"read_only"`
	ReadWrite []string `json:"read_write"`
	// Hard: a listed path that is missing stops the sandbox from starting.
	Hard bool `json:"hard,omitempty"`
}

// FSRules returns the allow-list the policy asks for, or ok=false when it
// has no filesystem_policy (the driver's default applies).
func (p *Policy) FSRules() (r FSRules, ok bool) {
	if p == nil || p.FilesystemPolicy == nil {
		return FSRules{}, false
	}
	fs := p.FilesystemPolicy
	add := func(dst []string, ps ...string) []string {
		for _, q := range ps {
			q = path.Clean(q)
			if !slices.Contains(dst, q) {
				dst = append(dst, q)
			}
		}
		return dst
	}
	r.ReadOnly = add(r.ReadOnly, BaselineReadOnly...)
	r.ReadOnly = add(r.ReadOnly, fs.ReadOnly...)
	r.ReadWrite = add(r.ReadWrite, BaselineReadWrite...)
	if fs.IncludeWorkdir == nil || *fs.IncludeWorkdir {
		r.ReadWrite = add(r.ReadWrite, Workdir)
	}
	r.ReadWrite = add(r.ReadWrite, fs.ReadWrite...)
	// A path listed read-write is not also read-only.
	r.ReadOnly = slices.DeleteFunc(r.ReadOnly, func(q string) bool { return slices.Contains(r.ReadWrite, q) })
	r.Hard = p.Landlock != nil && p.Landlock.Compatibility == CompatHardRequirement
	return r, true
}

// RunAs returns the uid and gid the policy asks for; -1 means the driver's
// default sandbox identity.
func (p *Policy) RunAs() (uid, gid int64) {
	uid, gid = -1, -1
	if p == nil || p.Process == nil {
		return
	}
	uid, _ = ParseID(p.Process.RunAsUser)
	gid, _ = ParseID(p.Process.RunAsGroup)
	return
}
