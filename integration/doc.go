// Package integration holds DarkShell's end-to-end tests and benchmarks. They
// run the real binaries (built by `make build`, found through
// DARKSHELL_BIN_DIR) against real peers: an OpenSSH sshd started on
// loopback by each test, the kernel, and ssh/rsync as baselines.
package integration
