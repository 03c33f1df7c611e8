// Package sandboxd is the in-sandbox server of DarkShell. A Server speaks the
// wire protocol of package protocol on any reliable byte stream: it answers
// the handshake, runs a yamux session over the carrier and serves one request
// per stream (exec, attach, info, exec list).
//
// Processes belong to the Server, not to a connection: a client whose
// connection was cut can re-attach to a durable process on a new connection
// served by the same Server (see package sandboxd/agent for how the ssh
// carrier keeps one Server alive across connections).
package sandboxd
