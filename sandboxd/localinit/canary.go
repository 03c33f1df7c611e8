package localinit

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Canaries probes the confinement from inside, after lock-down: each probe
// must fail. It returns an error naming every probe that succeeded.
func Canaries() error {
	var bad []string
	for _, p := range []string{"/darkshell-canary", "/etc/darkshell-canary", "/usr/darkshell-canary"} {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600); err == nil {
			f.Close()
			os.Remove(p)
			bad = append(bad, "wrote "+p)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWUSER); err == nil || !errors.Is(err, unix.EPERM) {
		bad = append(bad, fmt.Sprintf("unshare(CLONE_NEWUSER) was not refused with EPERM (%v)", err))
	}
	if err := unix.Mount("none", "/tmp", "tmpfs", 0, ""); err == nil {
		bad = append(bad, "mount succeeded")
	}
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM} {
		if err := connectOut(typ); err == nil {
			bad = append(bad, fmt.Sprintf("connect (socket type %d) to 10.255.255.1:80 succeeded: a route out exists", typ))
		} else if !errors.Is(err, unix.ENETUNREACH) && !errors.Is(err, unix.EACCES) {
			bad = append(bad, fmt.Sprintf("connect (socket type %d) to 10.255.255.1:80: want ENETUNREACH or EACCES, got %v", typ, err))
		}
	}
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, ipprotoMPTCP); err == nil {
		unix.Close(fd)
		bad = append(bad, "MPTCP socket created")
	}
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		bad = append(bad, "cannot read /proc/self/status: "+err.Error())
	}
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(st), want+"\n") {
			bad = append(bad, "/proc/self/status lacks "+strings.ReplaceAll(want, "\t", " "))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// connectOut connects a socket of typ to 10.255.255.1:80; in the sandbox's
// empty network namespace it must fail at once, with nothing sent.
func connectOut(typ int) error {
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{10, 255, 255, 1}})
}
