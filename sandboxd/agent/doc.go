// Package agent keeps one sandboxd Server alive across carrier connections.
//
// With the ssh driver every SSH connection runs a fresh `sandboxd serve`,
// but durable processes must outlive the connection that started them. So
// `serve` is only a relay: it finds the per-build agent socket (SocketPath),
// starts `sandboxd agent` detached when none answers (Dial, Spawner), and
// copies bytes between its stdin/stdout and the socket (Relay). The agent
// (Run) serves every accepted connection with one shared sandboxd.Server and
// exits after an idle period with no connections and no tracked processes.
package agent
