// Package inject starts sandboxd inside a sandbox with zero setup, the way
// mutagen and devpod start their agents: it runs the sandboxd of this
// darkshell build from a per-version cache directory in the remote $HOME
// ($HOME/.cache/darkshell/sandboxd/<BuildVersion>/sandboxd) and handshakes
// with it. If it is missing or of another version, it probes the remote
// architecture with `uname -m`, streams the matching embedded build
// (controller/agentbin) over the same connection with `cat`, verifies its
// sha256, moves it into place atomically and tries once more.
//
// Everything happens through a [Runner], so the same code serves SSH
// ([SSHRunner] adapts an *sshx.Client), `podman exec -i`, `kubectl exec -i` and
// the like. The remote side needs only a POSIX sh, uname, cat, mkdir, chmod,
// mv and a writable $HOME (or [Options.RemoteDir]); no scp, sftp or curl.
package inject
