package sshdtest_test

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/integration/internal/sshdtest"
)

// TestOpenSSHClient logs in with the OpenSSH client, checking the harness
// without darkshell's own client: key login, SetEnv HOME, host key pinning,
// and RotateHostKey.
func TestOpenSSHClient(t *testing.T) {
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no OpenSSH client")
	}
	home := t.TempDir()
	s := sshdtest.Start(t, sshdtest.WithHome(home), sshdtest.WithEnv("DARKSHELL_TEST", "a b"))
	kh := t.TempDir() + "/known_hosts"
	login := func() (string, error) {
		cmd := exec.Command(ssh, "-F", "/dev/null", "-i", s.ClientKey, "-p", strconv.Itoa(s.Port),
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+kh,
			s.User+"@127.0.0.1", `echo "$HOME|$DARKSHELL_TEST"`)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			return "", &exec.ExitError{Stderr: errb.Bytes()}
		}
		return strings.TrimSpace(out.String()), nil
	}
	if err := writeFile(kh, s.KnownHostsLine()+"\n"); err != nil {
		t.Fatal(err)
	}
	out, err := login()
	if err != nil {
		t.Fatalf("ssh login: %v %s\nsshd log: %s", err, err.(*exec.ExitError).Stderr, s.Log())
	}
	if want := home + "|a b"; out != want {
		t.Fatalf("session env = %q, want %q", out, want)
	}
	s.RotateHostKey()
	if _, err := login(); err == nil {
		t.Fatal("OpenSSH accepted the rotated host key")
	}
}
