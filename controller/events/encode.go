package events

import (
	"bytes"
	"encoding/json"
	"fmt"

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
	b := &Encoded{end: make([]int, 0, len(es))}
	var buf bytes.Buffer
	buf.Grow(384 * len(es))
	enc := json.NewEncoder(&buf) // Encode = json.Marshal + '\n', HTML escaping included
	var bad error
	for i := range es {
		if err := enc.Encode(&es[i]); err != nil {
			if bad == nil {
				bad = fmt.Errorf("unable to encode a %s event: %w", es[i].Kind, err)
			}
			continue
		}
		b.end = append(b.end, buf.Len())
	}
	b.buf = buf.Bytes()
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
