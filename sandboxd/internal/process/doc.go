// Package process is sandboxd's process manager: it starts commands (on pipes
// or a pseudo-terminal) in their own process group, keeps their recent output
// in a bounded ring addressed by a combined stdout+stderr offset, and serves
// exec streams of the wire protocol on them: live output with back-pressure,
// stdin, signals, resize, detach, re-attach after a connection cut,
// idempotent starts, timeouts and retention of durable processes.
//
// One Manager is shared by every connection of a sandboxd server, so that a
// client that reconnects on a new connection finds its processes again.
package process
