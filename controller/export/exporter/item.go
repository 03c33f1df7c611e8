package exporter

import (
	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/protocol"
)

// item is one event as the exporters take it: decoded once, and encoded
// at most once per form (DarkShell's schema, OCSF), the bytes shared by
// every exporter. It is not changed once the manager hands it out: sinks
// only read it (and must not write to its byte slices, whose capacity
// ends with them so that an append copies).
type item struct {
	ev protocol.Event
	// raw is the event in DarkShell's schema as JSON (no newline): the
	// bytes of the host log's line when the event came from the daemon.
	raw []byte
	// ocsf is the event's OCSF mapping as JSON, when an exporter wants it.
	ocsf []byte
}

// needs says which encodings the running exporters use.
type needs struct{ raw, ocsf bool }

// prepare makes the encodings n asks for that it lacks.
func (it *item) prepare(n needs) {
	if n.raw && it.raw == nil {
		it.raw = clip(eventJSON(&it.ev))
	}
	if n.ocsf && it.ocsf == nil {
		it.ocsf = clip(appendOCSF(make([]byte, 0, 768), &it.ev))
	}
}

// doc is the event as a document sink sends it: OCSF or DarkShell's schema.
func (it *item) doc(ocsf bool) []byte {
	if ocsf {
		if it.ocsf == nil {
			return appendOCSF(nil, &it.ev)
		}
		return it.ocsf
	}
	if it.raw == nil {
		return eventJSON(&it.ev)
	}
	return it.raw
}

// eventJSON is e as json.Marshal encodes it, made as the host log makes it.
func eventJSON(e *protocol.Event) []byte {
	b, err := events.AppendEvent(make([]byte, 0, 384), e)
	if err != nil {
		return mustJSON(e) // fails the same way
	}
	return b
}

func clip(b []byte) []byte { return b[:len(b):len(b)] }

// record is one unit a sink sends: its bytes are what the spool keeps; v
// is its decoded form while it has not been through the spool, so a
// sender need not decode what the builder just made.
type record struct {
	// tag is set by multiSink: which of its sinks made it ('0'+i).
	tag byte
	// b is the record's JSON; nil until it is needed when v is set.
	b []byte
	// v is the decoded form (read-only), nil for a record read back from
	// the spool. With b nil, json.Marshal(v) must make the record's bytes.
	v any
}

// bytes is the record as the spool keeps it (the tag first, if any).
func (r *record) bytes() []byte {
	if r.b == nil && r.v != nil {
		r.b = mustJSON(r.v)
	}
	if r.tag != 0 {
		return append([]byte{r.tag}, r.b...)
	}
	return r.b
}

func spooled(bs [][]byte) []record {
	out := make([]record, len(bs))
	for i, b := range bs {
		out[i] = record{b: b}
	}
	return out
}
