// Package sshx is darkshell's SSH client: it reaches a sandbox host by TCP, a
// unix socket or an OpenSSH-style ProxyCommand, authenticates with unencrypted
// private keys, pins host keys in a known_hosts file (trust on first use is
// opt-in), and detects dead connections with keepalive@openssh.com requests.
//
// A [Client] runs small commands ([Client.Run]) and long-lived processes
// ([Client.Start]); a [Proc] running `sandboxd serve` doubles as the byte
// stream ("carrier") that the darkshell protocol runs over ([Proc.Conn]).
//
// Errors from [Dial] say what failed and wrap one of the sentinels
// [ErrHostKeyMismatch], [ErrUnknownHostKey] or [ErrAuth] where they apply.
package sshx
