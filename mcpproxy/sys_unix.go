//go:build unix

package mcpproxy

import "syscall"

// sysProcAttr puts an upstream in its own process group, so that stopping
// it also stops its children.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
