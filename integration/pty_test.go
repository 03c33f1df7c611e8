package integration

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/bohica-labs/darkshell/protocol"
)

// TestConnectInteractive drives `darkshell sandbox connect` on a real
// terminal: a login shell answers typed commands and exits cleanly.
func TestConnectInteractive(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	connectSession(t, e.home, "s", "echo marker-$((40+2)); stty size\n", "marker-42", "30 100")
}

// connectSession runs `darkshell sandbox connect NAME` on a 30x100 pty,
// types input, waits until the output holds every one of want, then types
// `exit 5` and checks that connect ends with status 5.
func connectSession(t *testing.T, home, name, input string, want ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "darkshell"), "sandbox", "connect", name)
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+home, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out syncBuf
	go io.Copy(&out, tty)
	io.WriteString(tty, input)
	waitFor(t, 10*time.Second, "the shell to answer", func() bool {
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				return false
			}
		}
		return true
	})
	io.WriteString(tty, "exit 5\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Fatalf("connect ended with %v, want exit status 5; output %q", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("connect did not end after exit; output %q", out.String())
	}
}

// TestInteractiveNotStarved: while a bulk stream moves gigabytes over the
// same session, PTY keystrokes still echo and small execs still complete
// promptly. Starvation would show as seconds; the bound is generous.
func TestInteractiveNotStarved(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bulk, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"cat", "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	var moved countWriter
	go bulk.Wait(&moved, nil)
	defer bulk.Close()
	waitFor(t, 5*time.Second, "bulk traffic", func() bool { return moved > 64<<20 })

	p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"cat"}, Stdin: true, PTY: &protocol.PTY{Rows: 24, Cols: 80}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var echo syncBuf
	go p.Wait(&echo, nil)
	var rtts []time.Duration
	for i := range 20 {
		key := string(rune('a' + i))
		t0 := time.Now()
		p.Write([]byte(key))
		waitFor(t, 5*time.Second, "echo of "+key, func() bool { return strings.Count(echo.String(), key) > 0 })
		rtts = append(rtts, time.Since(t0))
	}
	var execs []time.Duration
	for range 5 {
		t0 := time.Now()
		q, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Wait(nil, nil); err != nil {
			t.Fatal(err)
		}
		execs = append(execs, time.Since(t0))
	}
	before := moved
	time.Sleep(200 * time.Millisecond)
	slices.Sort(rtts)
	slices.Sort(execs)
	t.Logf("with bulk at %.0f MiB/s: keystroke echo p50 %s max %s; exec true p50 %s max %s",
		float64(moved-before)/(1<<20)/0.2, rtts[len(rtts)/2], rtts[len(rtts)-1], execs[len(execs)/2], execs[len(execs)-1])
	if rtts[len(rtts)/2] > 250*time.Millisecond || execs[len(execs)/2] > 500*time.Millisecond {
		t.Fatalf("interactive traffic starved: echo p50 %s, exec p50 %s", rtts[len(rtts)/2], execs[len(execs)/2])
	}
	if moved == before {
		t.Fatal("bulk stream stalled")
	}
}
