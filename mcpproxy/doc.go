// Package mcpproxy fronts one upstream MCP server (a stdio command or a
// remote Streamable HTTP endpoint) with a Streamable HTTP endpoint built on
// the official Go SDK, applying DarkShell's tool policy (allow/deny globs)
// and reporting every tool call as an Event with redaction applied.
//
// Both sides use it: the controller's bridge runs host-side servers that hold
// provider credentials, and sandboxd serves in-sandbox servers under the
// sandbox's confinement. It therefore imports neither controller nor
// sandboxd (layout_test.go enforces the boundaries).
//
// One upstream process serves every downstream session. On the hot path
// (fast.go) requests of established sessions are relayed as raw JSON-RPC
// bytes to a stdio upstream (frame.go scans them, link.go owns the
// upstream's stdio); everything else is forwarded method by method through
// an SDK client session that shares the same stdio, and progress tokens
// are rewritten so that notifications reach the session (and the HTTP
// stream) of the call that asked for them, and an upstream that exits is
// restarted with backoff. A call in flight when the upstream dies fails with
// a JSON-RPC error that says so; the next call starts a fresh process.
//
// Shim (shim.go) is the other direction, for agents that only speak stdio
// (`sandboxd mcp connect`): a raw JSON-RPC relay from stdin/stdout to such
// an endpoint over kept-alive loopback HTTP (rawhttp.go).
package mcpproxy
