package peer

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestOf: a real child process connects; Of names its pid, its real
// executable (bash, though argv[0] lies) and the test binary as ancestor.
func TestOf(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("SKIPPING: no bash")
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skip("SKIPPING: ", err)
			}
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "::1"
			}
			cmd := exec.Command(bash, "-c", "exec 3<>/dev/tcp/"+host+"/"+port+"; read -t 5 <&3")
			cmd.Args[0] = "/usr/bin/curl" // argv lies; identity must not
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p, err := Of("/proc", c)
			if err != nil {
				t.Fatal(err)
			}
			real, _ := os.Readlink("/proc/self/exe")
			if p.PID != cmd.Process.Pid || !strings.HasSuffix(p.Binary, "/bash") || len(p.Ancestors) == 0 || p.Ancestors[0] != real {
				t.Fatalf("%+v (want pid %d, bash, ancestor %s)", p, cmd.Process.Pid, real)
			}
		})
	}
}

func TestParseHexAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0016": "[::ffff:127.0.0.1]:22",
	} {
		got, err := parseHexAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "0100007F:zz", "01:0050"} {
		if _, err := parseHexAddr(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
