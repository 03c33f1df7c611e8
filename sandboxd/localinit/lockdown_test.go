package localinit

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestNameFilterAssembles(t *testing.T) {
	f := NameFilter()
	if _, err := f.Policy.Assemble(); err != nil {
		t.Fatalf("deny-list does not assemble (unknown syscall name?): %v", err)
	}
}

// seccompData builds a struct seccomp_data as a little-endian kernel lays
// it out (an argument's low word first), with each 32-bit word stored
// big-endian: x/net/bpf's VM loads words in network order, the kernel's
// seccomp loads them in native order.
func seccompData(arch uint32, nr int, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], uint32(nr))
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

func TestArgFilter(t *testing.T) {
	prog, err := argFilter()
	if err != nil {
		t.Skip("SKIPPING: ", err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	native, _ := nativeArch()
	const hi = uint64(1) << 32
	tests := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"foreign arch (i386 int 0x80)", seccompData(unix.AUDIT_ARCH_I386, 1), retEPERM},
		{"x32 syscall number", seccompData(native, 0x40000000+39), retEPERM},
		{"getpid", seccompData(native, unix.SYS_GETPID), retAllow},
		{"clone3", seccompData(native, unix.SYS_CLONE3), retENOSYS},
		{"clone thread", seccompData(native, unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), retAllow},
		{"clone fork with high bits", seccompData(native, unix.SYS_CLONE, hi|uint64(unix.SIGCHLD)), retAllow},
		{"clone new user ns", seccompData(native, unix.SYS_CLONE, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), retEPERM},
		{"clone new net ns", seccompData(native, unix.SYS_CLONE, unix.CLONE_NEWNET), retEPERM},
		{"ioctl TIOCSTI", seccompData(native, unix.SYS_IOCTL, 0, unix.TIOCSTI), retEPERM},
		{"ioctl TIOCSTI high bits", seccompData(native, unix.SYS_IOCTL, 0, hi|unix.TIOCSTI), retEPERM},
		{"ioctl TIOCLINUX", seccompData(native, unix.SYS_IOCTL, 0, unix.TIOCLINUX), retEPERM},
		{"ioctl TIOCGWINSZ", seccompData(native, unix.SYS_IOCTL, 0, unix.TIOCGWINSZ), retAllow},
		{"socket inet mptcp", seccompData(native, unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, ipprotoMPTCP), retEPERM},
		{"socket inet6 mptcp high bits", seccompData(native, unix.SYS_SOCKET, hi|unix.AF_INET6, unix.SOCK_STREAM, hi|ipprotoMPTCP), retEPERM},
		{"socket inet tcp", seccompData(native, unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0), retAllow},
		{"socket unix", seccompData(native, unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0), retAllow},
		{"socket inet6 udp", seccompData(native, unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM, 0), retAllow},
		{"socket netlink route", seccompData(native, unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), retAllow},
		{"socket netlink audit", seccompData(native, unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT), retEPERM},
		{"socket netlink route high bits", seccompData(native, unix.SYS_SOCKET, hi|unix.AF_NETLINK, unix.SOCK_RAW, hi|unix.NETLINK_ROUTE), retAllow},
		{"socket vsock", seccompData(native, unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0), retEPERM},
		{"socket packet", seccompData(native, unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW, 0), retEPERM},
		{"socket alg", seccompData(native, unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET, 0), retEPERM},
		{"socket key", seccompData(native, unix.SYS_SOCKET, unix.AF_KEY, unix.SOCK_RAW, 2), retEPERM},
		{"socket vsock high bits", seccompData(native, unix.SYS_SOCKET, hi|unix.AF_VSOCK, unix.SOCK_STREAM, 0), retEPERM},
		{"getpid after socket rules", seccompData(native, unix.SYS_WRITE, 1), retAllow},
	}
	for _, tt := range tests {
		got, err := vm.Run(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if uint32(got) != tt.want {
			t.Errorf("%s: filter returned %#x, want %#x", tt.name, got, tt.want)
		}
	}
}
