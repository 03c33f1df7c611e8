// Package protocol is the wire protocol between the darkshell controller and
// sandboxd: the handshake, frame codec, stream kinds, message types, limits
// and version negotiation. Both sides import it; it imports nothing from the
// repository and does no I/O policy of its own. spec.md is the normative text.
package protocol
