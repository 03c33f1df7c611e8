package integration

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocalHealthProxyStopped: the sandbox's egress proxy stops listening
// and health exits 1 naming egress-proxy; when it listens again the
// sandbox is healthy. How it is stopped: the test destroys the proxy's
// listening socket in the sandbox's network namespace (`ss -K`, as a
// crashed listener would vanish) while a process of the test holds the
// port in that namespace (started through nsenter: a stand-in for any
// process that grabs 127.0.0.1:7399 first), so the daemon cannot listen
// again. A connect to the port still succeeds then (the squatter
// answers): health must go by the daemon's listener, not by a dial.
func TestLocalHealthProxyStopped(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t)
	for _, b := range []string{"ss", "nsenter", "python3"} {
		if _, err := exec.LookPath(b); err != nil {
			requireFeature(t, b+" (make deps)")
		}
	}
	const name = "hp"
	e.createLocal(name)
	e.mustBeHealthy(name)
	pid := strconv.Itoa(e.initPID(name))

	// The squatter binds the port as soon as it is free, then holds it.
	sq := exec.Command("nsenter", "-t", pid, "-n", "--", "python3", "-c", `
import socket, sys, time
while True:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 7399))
        s.listen(8)
        break
    except OSError:
        s.close()
        time.sleep(0.0002)
print("bound", flush=True)
sys.stdin.read()
`)
	sq.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := sq.StdoutPipe()
	stdin, _ := sq.StdinPipe()
	if err := sq.Start(); err != nil {
		t.Fatal(err)
	}
	bound := make(chan struct{})
	go func() {
		b := make([]byte, 16)
		if n, _ := stdout.Read(b); strings.Contains(string(b[:n]), "bound") {
			close(bound)
		}
	}()
	defer func() {
		stdin.Close()
		sq.Process.Kill()
		sq.Wait()
	}()
	// Kill the proxy's listener until the squatter, not the daemon, has
	// the port (the daemon re-listens at once).
	waitFor(t, 20*time.Second, "the squatter to take the proxy's port", func() bool {
		select {
		case <-bound:
			return true
		default:
		}
		exec.Command("nsenter", "-t", pid, "-n", "--", "ss", "-K", "-t", "-l", "sport = :7399").Run()
		time.Sleep(20 * time.Millisecond)
		return false
	})
	r := e.mustFail(name, "egress-proxy")
	if len(r.Failing) != 1 {
		t.Fatalf("only egress-proxy should fail: %v", r.Failing)
	}
	for _, c := range r.Checks {
		if c.Name == "egress-proxy" {
			t.Logf("stopped proxy: %s", c.Detail)
			if !strings.Contains(c.Detail, "no listener") {
				t.Fatalf("egress-proxy detail does not say why: %q", c.Detail)
			}
		}
	}
	if out := e.mustDS("sandbox", "list"); !strings.Contains(out, "unhealthy(egress-proxy)") {
		t.Fatalf("sandbox list does not name the failing check:\n%s", out)
	}

	// The port is free again: the daemon's proxy listens again (its
	// retries back off, at most 30 s apart) and the sandbox is healthy.
	stdin.Close()
	sq.Process.Kill()
	sq.Wait()
	waitFor(t, 45*time.Second, "the proxy to listen again", func() bool {
		r, code, _ := e.healthOf(name)
		return code == 0 && r.Healthy && !slices.Contains(r.Failing, "egress-proxy")
	})
	e.mustBash(name, "true")
}
