// Command openshell-standin is a STAND-IN for NVIDIA OpenShell's `openshell`
// CLI and its in-sandbox SSH server, for darkshell's openshell driver tests
// (OpenShell itself cannot run here). It reproduces what the driver relies
// on, as openshell-facts.md describes it:
//
//   - `openshell [-g G] [--workspace W] sandbox ssh-config NAME` prints a Host
//     block openshell-NAME.W with User sandbox, host key checking off, and
//     ProxyCommand `<this binary> ssh-proxy --gateway-name G --name NAME
//     --workspace W`;
//   - `ssh-proxy` copies stdin/stdout to the sandbox's SSH server on a unix
//     socket (OpenShell: gateway relay to /run/openshell/ssh.sock);
//   - the SSH server is a real OpenSSH sshd (`sshd -i` per connection) with a
//     fresh host key at every start, any client key accepted, user sandbox,
//     exec as `/bin/bash -lc CMD` and a login shell that prints noise;
//   - `sandbox get NAME -o json`, `sandbox stop NAME`, `sandbox start NAME`
//     keep a phase per sandbox; a stopped sandbox's relay refuses to connect.
//
// Not reproduced: the gateway's gRPC API, tokens and mTLS, OpenShell's
// Landlock/seccomp policy, the supervisor, sftp and direct-tcpip.
//
// State lives next to the binary: sandboxes/NAME/{phase,ssh.sock}, calls.log
// (one line per CLI call), sshd_config. `serve NAME` runs the SSH server
// of one sandbox until killed.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var dir string

func main() {
	exe, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	dir = filepath.Dir(exe)
	args := os.Args[1:]
	gateway, tenant := "openshell", "default"
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-g", "--gateway":
			gateway = args[1]
		case "--workspace":
			tenant = args[1]
		default:
			fail("unknown global flag %s", args[0])
		}
		args = args[2:]
	}
	logCall(os.Args[1:])
	switch {
	case len(args) == 3 && args[0] == "sandbox" && args[1] == "ssh-config":
		name := args[2]
		mustExist(name)
		fmt.Printf("Host openshell-%s.%s\n    User sandbox\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    GlobalKnownHostsFile /dev/null\n    LogLevel ERROR\n    ServerAliveInterval 15\n    ServerAliveCountMax 3\n    ProxyCommand %s ssh-proxy --gateway-name %s --name %s --workspace %s\n",
			name, tenant, exe, gateway, name, tenant)
	case len(args) == 5 && args[0] == "sandbox" && args[1] == "get" && args[3] == "-o" && args[4] == "json":
		name := args[2]
		mustExist(name)
		b, _ := json.Marshal(map[string]any{"name": name, "workspace": tenant, "status": map[string]string{"phase": phase(name)}})
		fmt.Println(string(b))
	case len(args) == 3 && args[0] == "sandbox" && (args[1] == "stop" || args[1] == "start"):
		mustExist(args[2])
		p := map[string]string{"stop": "Stopped", "start": "Ready"}[args[1]]
		if err := os.WriteFile(filepath.Join(dir, "sandboxes", args[2], "phase"), []byte(p), 0o644); err != nil {
			fail("%v", err)
		}
	case len(args) == 7 && args[0] == "ssh-proxy" && args[1] == "--gateway-name" && args[3] == "--name" && args[5] == "--workspace":
		proxy(args[4])
	case len(args) == 2 && args[0] == "serve":
		serve(args[1])
	default:
		fail("openshell stand-in: unsupported command %q", strings.Join(os.Args[1:], " "))
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "Error: "+f+"\n", a...)
	os.Exit(1)
}

func logCall(args []string) {
	f, err := os.OpenFile(filepath.Join(dir, "calls.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
}

func mustExist(name string) {
	if _, err := os.Stat(filepath.Join(dir, "sandboxes", name)); err != nil {
		fail("sandbox %q not found", name)
	}
}

func phase(name string) string {
	b, err := os.ReadFile(filepath.Join(dir, "sandboxes", name, "phase"))
	if err != nil {
		return "Provisioning"
	}
	return strings.TrimSpace(string(b))
}

// proxy is the ssh-proxy: the gateway relay, here a unix socket.
func proxy(name string) {
	mustExist(name)
	if p := phase(name); p != "Ready" {
		fail("sandbox %s is not ready (phase %s)", name, p)
	}
	c, err := net.Dial("unix", filepath.Join(dir, "sandboxes", name, "ssh.sock"))
	if err != nil {
		fail("relay to sandbox %s: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(c, os.Stdin)
		c.(*net.UnixConn).CloseWrite()
	})
	io.Copy(os.Stdout, c)
	c.Close()
}

// serve is the in-sandbox SSH server: one `sshd -i` per connection, and
// connections refused while the sandbox is not Ready.
func serve(name string) {
	sock := filepath.Join(dir, "sandboxes", name, "ssh.sock")
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		fail("%v", err)
	}
	os.Chmod(sock, 0o600)
	// A fresh host key at every start, as OpenShell's supervisor does.
	key := filepath.Join(dir, "sandboxes", name, "host_ed25519")
	os.Remove(key)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		fail("ssh-keygen: %v %s", err, out)
	}
	logf, _ := os.OpenFile(filepath.Join(dir, "sandboxes", name, "sshd.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	for {
		c, err := l.Accept()
		if err != nil {
			fail("%v", err)
		}
		if phase(name) != "Ready" {
			c.Close()
			continue
		}
		f, err := c.(*net.UnixConn).File()
		c.Close()
		if err != nil {
			continue
		}
		cmd := exec.Command("/usr/sbin/sshd", "-i", "-e", "-f", filepath.Join(dir, "sshd_config"), "-h", key)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, logf
		if err := cmd.Start(); err == nil {
			go cmd.Wait()
		}
		f.Close()
	}
}
