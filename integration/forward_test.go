package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestForward: host-to-sandbox and reverse forwards over the session of a
// local sandbox, whose network namespace has only loopback.
func TestForward(t *testing.T) {
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, "")
	e.createLocal("fw", "--workspace", ws)
	if _, err := exec.LookPath("node"); err != nil {
		requireFeature(t, "node (the in-sandbox echo server of this test)")
	}
	const inPort, revPort = 7391, 7392

	// A TCP echo server inside the sandbox, left running.
	e.mustBash("fw", fmt.Sprintf(`setsid -f node -e "require('net').createServer(s=>s.pipe(s)).listen(%d,'127.0.0.1')" >/dev/null 2>&1`, inPort))
	waitFor(t, 10*time.Second, "sandbox echo server", func() bool {
		_, _, code := e.bash("fw", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", inPort))
		return code == 0
	})
	e.mustDS("forward", "start", fmt.Sprint(inPort), "fw")
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, fmt.Sprintf("through the forward %d\n", i))
		c.Close()
	}
	var l []struct {
		Sandbox string `json:"sandbox"`
		Port    int    `json:"port"`
		Reverse bool   `json:"reverse"`
		Total   int64  `json:"total_connections"`
	}
	if err := json.Unmarshal([]byte(e.mustDS("forward", "list", "-o", "json")), &l); err != nil || len(l) != 1 || l[0].Port != inPort || l[0].Total != 3 {
		t.Fatalf("forward list = %+v, %v", l, err)
	}
	e.mustDS("forward", "stop", fmt.Sprint(inPort), "fw")
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", inPort), time.Second); err == nil {
		c.Close()
		t.Fatal("host port still open after forward stop")
	}

	// Reverse: the sandbox reaches a host service by its loopback port.
	hl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", revPort))
	if err != nil {
		t.Skipf("SKIPPING the reverse part: host port %d is taken: %v", revPort, err)
	}
	defer hl.Close()
	go func() {
		for {
			c, err := hl.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	e.mustDS("forward", "start", fmt.Sprint(revPort), "fw", "--reverse")
	out := e.mustBash("fw", fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d; echo from-the-sandbox >&3; head -1 <&3`, revPort))
	if strings.TrimSpace(out) != "from-the-sandbox" {
		t.Fatalf("reverse forward echo = %q", out)
	}
	e.mustDS("forward", "stop", fmt.Sprint(revPort), "fw", "--reverse")
	waitFor(t, 5*time.Second, "sandbox listener closed", func() bool {
		_, _, code := e.bash("fw", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", revPort))
		return code != 0
	})

	// Outside the local driver's loopback port range Landlock refuses the bind.
	_, errOut, code := e.ds("forward", "start", "8089", "fw", "--reverse")
	if code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("reverse forward on a port outside 7300-7399: exit %d %s", code, errOut)
	}
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo = %q, %v", b, err)
	}
}
