package events

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/bohica-labs/darkshell/protocol"
)

// DecodeEvent sets *e to the event the JSON object b holds: what
// `*e = protocol.Event{}; json.Unmarshal(b, e)` makes of it, error
// included, but without reflection for what AppendEvent writes (the
// exporter helper decodes every event the daemon sends it). It takes the
// object apart itself when it is as AppendEvent writes it (known keys,
// spelled exactly; no whitespace; strings, integers and an argv array) and
// hands anything else (an inference exchange, null, escapes it cannot
// copy, floats, duplicate objects) to encoding/json whole.
// TestDecodeEventMatchesUnmarshal and FuzzDecodeEvent hold it to
// json.Unmarshal.
func DecodeEvent(b []byte, e *protocol.Event) error {
	*e = protocol.Event{}
	if decodeFast(b, e) {
		return nil
	}
	*e = protocol.Event{}
	return json.Unmarshal(b, e)
}

// decodeFast decodes b into the zero e when b is an object of the simple
// form; false leaves e partly set and says to use encoding/json.
func decodeFast(b []byte, e *protocol.Event) bool {
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := 1
	if b[i] == '}' {
		return i+1 == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		// Keys are plain ASCII: find the closing quote.
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' || b[j] < 0x20 || b[j] >= 0x80 {
				return false
			}
			j++
		}
		if j+1 >= len(b) || b[j+1] != ':' {
			return false
		}
		key := b[i+1 : j]
		i = j + 2
		var ok bool
		switch string(key) {
		case "seq":
			e.Seq, i, ok = decUint(b, i)
		case "time":
			var s []byte
			if s, i, ok = rawString(b, i); ok {
				ok = e.Time.UnmarshalText(s) == nil
			}
		case "sandbox":
			e.Sandbox, i, ok = decString(b, i)
		case "kind":
			e.Kind, i, ok = decString(b, i)
		case "pid":
			e.PID, i, ok = decInt(b, i)
		case "ppid":
			e.PPID, i, ok = decInt(b, i)
		case "exec_id":
			e.ExecID, i, ok = decString(b, i)
		case "parent_exec_id":
			e.ParentExecID, i, ok = decString(b, i)
		case "uid":
			var n int
			if n, i, ok = decInt(b, i); ok {
				e.UID = &n
			}
		case "comm":
			e.Comm, i, ok = decString(b, i)
		case "binary":
			e.Binary, i, ok = decString(b, i)
		case "argv":
			e.Argv, i, ok = decStrings(b, i)
		case "cwd":
			e.Cwd, i, ok = decString(b, i)
		case "exit_code":
			var n int
			if n, i, ok = decInt(b, i); ok {
				e.ExitCode = &n
			}
		case "signal":
			e.Signal, i, ok = decInt(b, i)
		case "duration_ns":
			e.DurationNs, i, ok = decInt64(b, i)
		case "path":
			e.Path, i, ok = decString(b, i)
		case "new_path":
			e.NewPath, i, ok = decString(b, i)
		case "intent":
			e.Intent, i, ok = decString(b, i)
		case "result":
			e.Result, i, ok = decString(b, i)
		case "errno":
			e.Errno, i, ok = decString(b, i)
		case "state":
			e.State, i, ok = decString(b, i)
		case "message":
			e.Message, i, ok = decString(b, i)
		case "lost":
			e.Lost, i, ok = decUint(b, i)
		case "host":
			e.Host, i, ok = decString(b, i)
		case "port":
			e.Port, i, ok = decInt(b, i)
		case "policy":
			e.Policy, i, ok = decString(b, i)
		case "rule":
			e.Rule, i, ok = decString(b, i)
		case "server":
			e.Server, i, ok = decString(b, i)
		case "tool":
			e.Tool, i, ok = decString(b, i)
		case "call_id":
			e.CallID, i, ok = decString(b, i)
		case "bytes":
			e.Bytes, i, ok = decInt64(b, i)
		case "files":
			e.Files, i, ok = decInt64(b, i)
		case "source":
			e.Source, i, ok = decString(b, i)
		case "fidelity":
			e.Fidelity, i, ok = decString(b, i)
		}
		// Unknown keys (encoding/json matches them without regard to
		// case), "inference", null and anything odd: encoding/json.
		if !ok || i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i+1 == len(b)
		default:
			return false
		}
	}
}

// rawString is the contents of the string at b[i] when it needs no
// unescaping (no backslash, no control character, valid UTF-8), and the
// index after it.
func rawString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, i, false // encoding/json replaces invalid bytes
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, i, false
}

func decString(b []byte, i int) (string, int, bool) {
	s, j, ok := rawString(b, i)
	if !ok {
		return "", i, false
	}
	return internString(s), j, true
}

// internString returns the constant for values every event repeats (its
// kind, source, fidelity, result), else a copy.
func internString(s []byte) string {
	switch string(s) {
	case protocol.KindExec:
		return protocol.KindExec
	case protocol.KindExit:
		return protocol.KindExit
	case protocol.KindFork:
		return protocol.KindFork
	case protocol.KindExecCall:
		return protocol.KindExecCall
	case protocol.SourceEBPF:
		return protocol.SourceEBPF
	case protocol.SourceDaemon:
		return protocol.SourceDaemon
	case protocol.FidelityComplete:
		return protocol.FidelityComplete
	case protocol.ResultOK:
		return protocol.ResultOK
	}
	return string(s)
}

func decStrings(b []byte, i int) ([]string, int, bool) {
	if i >= len(b) || b[i] != '[' {
		return nil, i, false
	}
	i++
	out := []string{}
	if i < len(b) && b[i] == ']' {
		return out, i + 1, true
	}
	for {
		s, j, ok := rawString(b, i)
		if !ok || j >= len(b) {
			return nil, i, false
		}
		out = append(out, string(s))
		switch b[j] {
		case ',':
			i = j + 1
		case ']':
			return out, j + 1, true
		default:
			return nil, i, false
		}
	}
}

// number is the JSON integer at b[i] (-?(0|[1-9][0-9]*), nothing after it
// that would make it a float), and the index after it.
func number(b []byte, i int) ([]byte, int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	if j >= len(b) || b[j] < '0' || b[j] > '9' {
		return nil, i, false
	}
	if b[j] == '0' {
		j++
	} else {
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E' || (b[j] >= '0' && b[j] <= '9')) {
		return nil, i, false
	}
	return b[i:j], j, true
}

func decInt64(b []byte, i int) (int64, int, bool) {
	s, j, ok := number(b, i)
	if !ok {
		return 0, i, false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	return n, j, err == nil
}

func decInt(b []byte, i int) (int, int, bool) {
	s, j, ok := number(b, i)
	if !ok {
		return 0, i, false
	}
	n, err := strconv.ParseInt(string(s), 10, strconv.IntSize)
	return int(n), j, err == nil
}

func decUint(b []byte, i int) (uint64, int, bool) {
	s, j, ok := number(b, i)
	if !ok || s[0] == '-' {
		return 0, i, false
	}
	n, err := strconv.ParseUint(string(s), 10, 64)
	return n, j, err == nil
}
