package egress

import (
	"path"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// MatchHost reports whether host matches an endpoint host pattern:
// an exact name (case-insensitive), `*` as a whole label (exactly one
// label), `**` as the first label (one or more labels), or `*` inside the
// first label (`*-api.example.com`). policy.CheckHostPattern has already
// refused patterns that are too broad.
func MatchHost(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if pattern == host {
		return true
	}
	pl, hl := strings.Split(pattern, "."), strings.Split(host, ".")
	if pl[0] == "**" {
		rest := pl[1:]
		if len(hl) <= len(rest) {
			return false
		}
		return labelsMatch(rest, hl[len(hl)-len(rest):])
	}
	return len(pl) == len(hl) && labelsMatch(pl, hl)
}

func labelsMatch(pl, hl []string) bool {
	for i := range pl {
		if hl[i] == "" {
			return false
		}
		if ok, _ := path.Match(pl[i], hl[i]); !ok {
			return false
		}
	}
	return true
}

// MatchPath reports whether p matches a slash-separated glob: `*` (and
// `?`, `[...]`) within one segment, `**` as a whole segment for zero or
// more segments. Used for binary paths and REST paths.
func MatchPath(pattern, p string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(p, "/"))
}

func matchSegs(ps, ss []string) bool {
	for len(ps) > 0 {
		if ps[0] == "**" {
			if len(ps) == 1 {
				return true
			}
			for i := 0; i <= len(ss); i++ {
				if matchSegs(ps[1:], ss[i:]) {
					return true
				}
			}
			return false
		}
		if len(ss) == 0 {
			return false
		}
		if ok, _ := path.Match(ps[0], ss[0]); !ok {
			return false
		}
		ps, ss = ps[1:], ss[1:]
	}
	return len(ss) == 0
}

// MatchWild matches s against a pattern where `*` is any run of bytes
// (slashes included) and `?` one byte: query values, tool names. It is the
// glob of MCP rules (protocol.MatchMCPGlob), shared so both agree.
func MatchWild(pattern, s string) bool { return protocol.MatchMCPGlob(pattern, s) }
