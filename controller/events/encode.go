package events

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/bohica-labs/darkshell/protocol"
)

// Encoded is a batch of events encoded once as JSON lines, the host log's
// format (json.Marshal of the event and a newline). The bus encodes each
// batch once and shares the bytes between the host log and its line
// subscribers (the exporter helper's pipe), so an event costs one
// encoding however many of them take it. An Encoded is never changed
// after Encode returns: the bytes are what the events were when they were
// published, whatever happens to the events afterwards, and readers must
// not write to them.
type Encoded struct {
	buf []byte // every line, in order
	end []int  // end[i] is where line i ends in buf (after its newline)
}

// Encode encodes es as JSON lines. An event that cannot be encoded (it
// holds no such value today) is left out and named in the error; the
// others are encoded all the same.
func Encode(es []protocol.Event) (*Encoded, error) {
	b := &Encoded{buf: make([]byte, 0, 384*len(es)), end: make([]int, 0, len(es))}
	var bad error
	for i := range es {
		var err error
		if b.buf, err = AppendEvent(b.buf, &es[i]); err != nil {
			if bad == nil {
				bad = fmt.Errorf("unable to encode a %s event: %w", es[i].Kind, err)
			}
			continue
		}
		b.buf = append(b.buf, '\n')
		b.end = append(b.end, len(b.buf))
	}
	return b, bad
}

// Len is the number of lines.
func (b *Encoded) Len() int { return len(b.end) }

// Line is line i with its newline. The slice's capacity ends with it, so
// an append copies; never write to it.
func (b *Encoded) Line(i int) []byte {
	start := 0
	if i > 0 {
		start = b.end[i-1]
	}
	return b.buf[start:b.end[i]:b.end[i]]
}

// Bytes is every line, in order (read-only).
func (b *Encoded) Bytes() []byte { return b.buf[:len(b.buf):len(b.buf)] }

// AppendEvent appends e as json.Marshal encodes it (the same bytes: field
// order, omitempty, HTML escaping, time format), without reflection: the
// host log encodes every event, so this is on the path of every exec.
// TestAppendEventMatchesMarshal sets every field of Event (found by
// reflection, so a new field is covered) and compares with json.Marshal.
func AppendEvent(dst []byte, e *protocol.Event) ([]byte, error) {
	start := len(dst)
	dst = append(dst, '{')
	if e.Seq != 0 {
		dst = append(dst, `"seq":`...)
		dst = strconv.AppendUint(dst, e.Seq, 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"time":"`...)
	t, err := e.Time.AppendText(dst)
	if err != nil {
		// json.Marshal fails the same way (a year outside 0..9999).
		return dst[:start], fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
	}
	dst = append(t, '"')
	dst = appendStr(dst, "sandbox", e.Sandbox, true)
	dst = appendStr(dst, "kind", e.Kind, false)
	dst = appendInt(dst, "pid", int64(e.PID))
	dst = appendInt(dst, "ppid", int64(e.PPID))
	dst = appendStr(dst, "exec_id", e.ExecID, true)
	dst = appendStr(dst, "parent_exec_id", e.ParentExecID, true)
	if e.UID != nil {
		dst = append(dst, `,"uid":`...)
		dst = strconv.AppendInt(dst, int64(*e.UID), 10)
	}
	dst = appendStr(dst, "comm", e.Comm, true)
	dst = appendStr(dst, "binary", e.Binary, true)
	if len(e.Argv) > 0 {
		dst = append(dst, `,"argv":[`...)
		for i, a := range e.Argv {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, a)
		}
		dst = append(dst, ']')
	}
	dst = appendStr(dst, "cwd", e.Cwd, true)
	if e.ExitCode != nil {
		dst = append(dst, `,"exit_code":`...)
		dst = strconv.AppendInt(dst, int64(*e.ExitCode), 10)
	}
	dst = appendInt(dst, "signal", int64(e.Signal))
	dst = appendInt(dst, "duration_ns", e.DurationNs)
	dst = appendStr(dst, "path", e.Path, true)
	dst = appendStr(dst, "new_path", e.NewPath, true)
	dst = appendStr(dst, "intent", e.Intent, true)
	dst = appendStr(dst, "result", e.Result, true)
	dst = appendStr(dst, "errno", e.Errno, true)
	dst = appendStr(dst, "state", e.State, true)
	dst = appendStr(dst, "message", e.Message, true)
	if e.Lost != 0 {
		dst = append(dst, `,"lost":`...)
		dst = strconv.AppendUint(dst, e.Lost, 10)
	}
	dst = appendStr(dst, "host", e.Host, true)
	dst = appendInt(dst, "port", int64(e.Port))
	dst = appendStr(dst, "policy", e.Policy, true)
	dst = appendStr(dst, "rule", e.Rule, true)
	dst = appendStr(dst, "server", e.Server, true)
	dst = appendStr(dst, "tool", e.Tool, true)
	dst = appendStr(dst, "call_id", e.CallID, true)
	dst = appendInt(dst, "bytes", e.Bytes)
	dst = appendInt(dst, "files", e.Files)
	dst = appendStr(dst, "source", e.Source, false)
	dst = appendStr(dst, "fidelity", e.Fidelity, false)
	if e.Inference != nil {
		b, err := json.Marshal(e.Inference)
		if err != nil {
			return dst[:start], err
		}
		dst = append(dst, `,"inference":`...)
		dst = append(dst, b...)
	}
	return append(dst, '}'), nil
}

// appendStr appends ,"key":"val" (nothing for an empty val if omitEmpty).
func appendStr(dst []byte, key, val string, omitEmpty bool) []byte {
	if omitEmpty && val == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendJSONString(dst, val)
}

// appendInt appends ,"key":n unless n is 0 (omitempty).
func appendInt(dst []byte, key string, n int64) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, n, 10)
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII other than " \ < > & as it is; anything else through json.Marshal
// (escapes, HTML escaping, invalid UTF-8, U+2028/9).
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
