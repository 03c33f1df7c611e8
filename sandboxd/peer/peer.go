// Package peer finds the process on the other end of a loopback TCP
// connection inside the sandbox: the socket's inode from /proc/net/tcp*,
// the process holding it from /proc/*/fd, its real executable from
// /proc/PID/exe and its ancestors'. The egress proxy decides on this
// identity, never on argv.
package peer

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Process is a process and its ancestors' executables, nearest first.
type Process struct {
	PID       int      `json:"pid"`
	Binary    string   `json:"binary"`
	Ancestors []string `json:"ancestors,omitempty"`
}

// MaxAncestors bounds the parent walk.
const MaxAncestors = 32

// Of identifies the process that owns the remote end of c, an accepted
// loopback TCP connection. proc is the procfs root ("/proc").
func Of(proc string, c net.Conn) (Process, error) {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return Process{}, errors.New("not a TCP connection")
	}
	// The client's socket has local = our remote, remote = our local.
	ino, err := socketInode(proc, remote.AddrPort(), local.AddrPort())
	if err != nil {
		return Process{}, err
	}
	pid, err := pidOfInode(proc, ino)
	if err != nil {
		return Process{}, err
	}
	return Describe(proc, pid)
}

// Describe returns pid's executable and its ancestors'.
func Describe(proc string, pid int) (Process, error) {
	p := Process{PID: pid}
	exe, err := os.Readlink(fmt.Sprintf("%s/%d/exe", proc, pid))
	if err != nil {
		return p, fmt.Errorf("executable of pid %d: %w", pid, err)
	}
	p.Binary = strings.TrimSuffix(exe, " (deleted)")
	for cur, i := pid, 0; i < MaxAncestors; i++ {
		ppid, err := parentOf(proc, cur)
		if err != nil || ppid <= 1 {
			break
		}
		if exe, err := os.Readlink(fmt.Sprintf("%s/%d/exe", proc, ppid)); err == nil {
			p.Ancestors = append(p.Ancestors, strings.TrimSuffix(exe, " (deleted)"))
		}
		cur = ppid
	}
	return p, nil
}

func parentOf(proc string, pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", proc, pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, errors.New("bad stat")
	}
	return strconv.Atoi(f[1])
}

// socketInode finds the inode of the TCP socket with the given local and
// remote addresses in /proc/net/tcp and tcp6.
func socketInode(proc string, local, remote netip.AddrPort) (uint64, error) {
	for _, file := range []string{"net/tcp", "net/tcp6"} {
		f, err := os.Open(proc + "/" + file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 {
				continue
			}
			l, err1 := parseHexAddr(fs[1])
			r, err2 := parseHexAddr(fs[2])
			if err1 != nil || err2 != nil {
				continue
			}
			if sameAddrPort(l, local) && sameAddrPort(r, remote) {
				f.Close()
				return strconv.ParseUint(fs[9], 10, 64)
			}
		}
		f.Close()
	}
	return 0, fmt.Errorf("no socket %s -> %s in %s/net/tcp", local, remote, proc)
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// parseHexAddr parses /proc/net/tcp's "0100007F:1F90" (address words in
// host byte order).
func parseHexAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("bad address")
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(hexAddr) != 8 && len(hexAddr) != 32 {
		return netip.AddrPort{}, errors.New("bad address length")
	}
	var b [16]byte
	n := len(hexAddr) / 2
	for w := 0; w < n/4; w++ {
		word, err := strconv.ParseUint(hexAddr[w*8:w*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, err
		}
		// little-endian words (the machines sandboxd is built for)
		b[w*4], b[w*4+1], b[w*4+2], b[w*4+3] = byte(word), byte(word>>8), byte(word>>16), byte(word>>24)
	}
	var a netip.Addr
	if n == 4 {
		a = netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	} else {
		a = netip.AddrFrom16(b)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// pidOfInode finds the process holding socket inode ino.
func pidOfInode(proc string, ino uint64) (int, error) {
	want := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("%s/%d/fd", proc, pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("%s/%d/fd/%s", proc, pid, fd.Name())); err == nil && l == want {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds socket inode %d (it may have exited, or be another user's)", ino)
}
