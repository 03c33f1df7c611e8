package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocalFilesystemEscapes covers the file-system cases of
// ../shared/escape-checklist.md not covered by TestLocalConfinement, each
// with its allowed counterpart and the layer that refused.
func TestLocalFilesystemEscapes(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("fa")
	e.createLocal("fb")

	t.Run("hard link to an outside file", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "echo a > /sandbox/a && ln /sandbox/a /sandbox/a2 && cat /sandbox/a2") // control
		e.refused("fa", "ln /etc/hostname /sandbox/hl", "Invalid cross-device link")            // another mount
		e.refused("fa", "ln /tmp/../etc/hostname /tmp/hl", "Invalid cross-device link")
	})
	t.Run("device nodes", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "mkfifo /sandbox/fifo && test -p /sandbox/fifo")      // control
		e.refused("fa", "mknod /sandbox/mem c 1 1", "Operation not permitted") // no CAP_MKNOD, Landlock MAKE_CHAR
		e.refused("fa", "mknod /sandbox/sda b 8 0", "Operation not permitted")
	})
	t.Run("read-only files stay intact", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "echo x > /sandbox/t && truncate -s 0 /sandbox/t && test ! -s /sandbox/t") // control
		// Root-owned files: for writes the uid check answers first; chmod
		// (an inode change) meets the read-only mount.
		e.refused("fa", "truncate -s 0 /etc/hostname", "Permission denied")
		e.refused("fa", "echo x >> /usr/bin/env", "Permission denied")
		e.refused("fa", "chmod 777 /etc/hostname", "Read-only file system")
	})
	t.Run("bind mounts cannot be detached by renames", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "mkdir /sandbox/d && mv /sandbox/d /sandbox/d2") // control
		e.refused("fa", "mv /sandbox /sbx", "")
		e.refused("fa", "mv /usr /u", "")
		e.mustBash("fa", "test -f /sandbox/a && test -x /usr/bin/env")
	})
	t.Run("kernel interfaces that launch programs", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "cat /proc/sys/kernel/hostname") // control: /proc is readable
		e.refused("fa", "echo ':x:E::x::/sandbox/x:' > /proc/sys/fs/binfmt_misc/register", "")
		e.refused("fa", "echo /sandbox/x > /proc/sys/kernel/core_pattern", "")
		e.refused("fa", "echo /sandbox/x > /proc/sys/kernel/modprobe", "")
	})
	t.Run("another sandbox's workspace", func(t *testing.T) {
		e.t = t
		e.mustBash("fa", "echo secret-of-fa > /sandbox/mine")
		e.mustBash("fb", "echo mine-of-fb > /sandbox/mine && cat /sandbox/mine") // control
		if out := e.mustBash("fb", "cat /sandbox/mine"); strings.Contains(out, "secret-of-fa") {
			t.Fatal("fb reads fa's workspace")
		}
		fa := filepath.Join(e.home, "sandboxes", "fa", "workspace")
		e.refused("fb", "ls "+fa, "No such file or directory")
		// The pattern is a regex that does not match itself in /proc/*/cmdline.
		out, _, _ := e.bash("fb", "grep -rl 'secret-of-f[a]' /sandbox /tmp /etc /dev/shm /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; true")
		if strings.TrimSpace(out) != "" {
			t.Fatalf("fa's secret visible in fb at %q", out)
		}
		if out := e.mustBash("fb", "grep -rl 'mine-of-f[b]' /sandbox /tmp /etc; true"); !strings.Contains(out, "/sandbox/mine") {
			t.Fatalf("control: the same search does not find fb's own file: %q", out)
		}
	})
	t.Run("host credential files", func(t *testing.T) {
		e.t = t
		secret := fmt.Sprintf("darkshell-test-credential-%d", os.Getpid())
		var planted []string
		for _, dir := range []string{"/root", os.Getenv("HOME")} {
			if dir == "" {
				continue
			}
			p := filepath.Join(dir, ".darkshell-test-credentials")
			if err := os.WriteFile(p, []byte(secret), 0o644); err != nil {
				t.Fatalf("plant %s: %v", p, err)
			}
			planted = append(planted, p)
			t.Cleanup(func() { os.Remove(p) })
		}
		for _, p := range planted {
			if b, err := os.ReadFile(p); err != nil || string(b) != secret { // control: it is there on the host
				t.Fatalf("planted file %s unreadable on the host", p)
			}
			e.refused("fa", "cat "+p, "No such file or directory")
		}
		re := secret[:len(secret)-1] + "[" + secret[len(secret)-1:] + "]"
		out, _, _ := e.bash("fa", "grep -rl '"+re+"' /sandbox /tmp /etc /dev/shm /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; true")
		if strings.Contains(out, "/") {
			t.Fatalf("credential found inside the sandbox: %q", out)
		}
	})
	t.Run("abstract unix sockets of the host", func(t *testing.T) {
		e.t = t
		name := fmt.Sprintf("@darkshell-test-%d", os.Getpid())
		ln, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("reached"))
				c.Close()
			}
		}()
		c, err := net.Dial("unix", name) // control: it serves on the host
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		script := fmt.Sprintf(`use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => "\0%s") or die "connect: $!\n"; print <$s>;`, name[1:])
		out, errOut, code := e.ds("exec", "fa", "--", "perl", "-e", script)
		if code == 0 || strings.Contains(out, "reached") || !strings.Contains(errOut, "Connection refused") {
			t.Fatalf("abstract socket from the sandbox: exit %d %q %q", code, out, errOut)
		}
	})
}
