package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
)

// frame is what the relay needs of one JSON-RPC message, found by a scan
// of its raw bytes: offsets into the message for the id, params and result,
// and the few strings policy reads. Keys match exactly (case-sensitive) and
// the last of duplicate keys wins, as JSON.parse (the upstream's reader)
// does, so that policy judges what the upstream will read.
type frame struct {
	// idStart:idEnd is the raw id (a string or number); idEnd == 0: none.
	idStart, idEnd int
	jsonrpc20      bool   // "jsonrpc":"2.0"
	method         string // "" if absent or not a string
	hasMethod      bool
	// params (raw) and, for tools/call, params.name; progress reports
	// params._meta.progressToken.
	paramsStart, paramsEnd int
	tool                   string
	progress               bool
	// result (raw), result.isError == true, and whether an error member is
	// present (responses).
	resultStart, resultEnd int
	isError                bool
	hasError               bool
	errStart, errEnd       int
}

var (
	errNotObject = errors.New("not a single JSON-RPC object")
	errBadJSON   = errors.New("malformed JSON")
)

func (f *frame) id(b []byte) []byte {
	if f.idEnd == 0 {
		return nil
	}
	return b[f.idStart:f.idEnd]
}

func (f *frame) params(b []byte) []byte {
	if f.paramsEnd == 0 {
		return nil
	}
	return b[f.paramsStart:f.paramsEnd]
}

// scanFrame scans one message. It validates the whole message first (no
// allocation), then walks the top-level object and, for the few members
// policy needs, one level into params, params._meta and result.
func scanFrame(b []byte) (frame, error) {
	var f frame
	if !json.Valid(b) {
		return f, errBadJSON
	}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return f, errNotObject
	}
	_, err := eachMember(b, i, func(key []byte, vs, ve int) {
		v := b[vs:ve]
		switch {
		case keyIs(key, "id"):
			f.idStart, f.idEnd = 0, 0
			if v[0] == '"' || v[0] == '-' || v[0] >= '0' && v[0] <= '9' {
				f.idStart, f.idEnd = vs, ve
			}
		case keyIs(key, "jsonrpc"):
			f.jsonrpc20 = bytes.Equal(v, []byte(`"2.0"`))
		case keyIs(key, "method"):
			f.method, f.hasMethod = stringValue(v)
		case keyIs(key, "params"):
			f.paramsStart, f.paramsEnd = vs, ve
		case keyIs(key, "result"):
			f.resultStart, f.resultEnd = vs, ve
		case keyIs(key, "error"):
			f.hasError = true
			f.errStart, f.errEnd = vs, ve
		}
	})
	if err != nil {
		return f, err
	}
	f.tool, f.progress, f.isError = "", false, false
	if p := f.params(b); len(p) > 0 && p[0] == '{' {
		_, _ = eachMember(b, f.paramsStart, func(key []byte, vs, ve int) {
			switch {
			case keyIs(key, "name"):
				f.tool, _ = stringValue(b[vs:ve])
			case keyIs(key, "_meta"):
				f.progress = false
				if b[vs] == '{' {
					_, _ = eachMember(b, vs, func(key []byte, vs, ve int) {
						if keyIs(key, "progressToken") {
							f.progress = true
						}
					})
				}
			}
		})
	}
	if f.resultEnd > 0 && b[f.resultStart] == '{' {
		_, _ = eachMember(b, f.resultStart, func(key []byte, vs, ve int) {
			if keyIs(key, "isError") {
				f.isError = bytes.Equal(b[vs:ve], []byte("true"))
			}
		})
	}
	return f, nil
}

// eachMember calls fn for every member of the object at b[i] ('{'), with
// the raw key (without quotes) and the value's bounds; it returns the
// index after the object. b must be valid JSON.
func eachMember(b []byte, i int, fn func(key []byte, vs, ve int)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return 0, errBadJSON
		}
		ke := skipString(b, i)
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, errBadJSON
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return 0, err
		}
		fn(key, vs, ve)
		i = skipWS(b, ve)
		if i >= len(b) {
			break
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errBadJSON
		}
	}
	return 0, errBadJSON
}

// keyIs compares a raw key with name; a key with escapes is decoded first
// (`"na\u006de"` is "name" to every JSON reader).
func keyIs(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	var s string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	return json.Unmarshal(q, &s) == nil && s == name
}

// stringValue returns a JSON string's value; ok is false for other types.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i] ('"').
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case '"':
		return skipString(b, i), nil
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errBadJSON
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}

// withID returns msg with its id (f's bounds) replaced by id, followed by
// a newline when nl is set, in one new buffer.
func withID(msg []byte, f *frame, id []byte, nl bool) []byte {
	out := make([]byte, 0, len(msg)-(f.idEnd-f.idStart)+len(id)+1)
	out = append(out, msg[:f.idStart]...)
	out = append(out, id...)
	out = append(out, msg[f.idEnd:]...)
	if nl {
		out = append(out, '\n')
	}
	return out
}
