package daemon

import (
	"net"
	"strings"

	"github.com/bohica-labs/darkshell/controller/state"
)

// localLink reports whether the sandbox's sandboxd runs on this host: the
// local driver, or the ssh driver on a loopback address or a unix socket
// without a proxy command. There a sync sends new files without zstd: the
// link is faster than the compressor, so compressing would only cost CPU
// on both sides (as rsync leaves -z off). Anything else (remote hosts,
// clusters, proxies) compresses.
func localLink(sb *state.Sandbox) bool {
	switch sb.Driver {
	case "local", "":
		return true
	case "ssh":
		t := sb.SSH
		if t == nil || t.ProxyCommand != "" {
			return false
		}
		if t.UnixSocket != "" {
			return true
		}
		h := strings.Trim(t.Host, "[]")
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}
