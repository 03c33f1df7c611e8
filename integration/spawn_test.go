package integration

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// tinyExitELF is a complete static ELF executable of 132 bytes that calls
// exit(0) at once: no loader, no libc, no file opened. An exec of it costs
// the kernel's exec and little else, so a spawner can reach rates that
// /bin/true (dynamically linked) cannot. Nil on an architecture without one.
func tinyExitELF() []byte {
	var machine uint16
	var code []byte
	switch runtime.GOARCH {
	case "amd64":
		machine = 0x3e
		code = []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05} // mov eax,60; xor edi,edi; syscall
	case "arm64":
		machine = 0xb7
		code = []byte{0xa8, 0x0b, 0x80, 0xd2, 0x00, 0x00, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4} // mov x8,#93; mov x0,#0; svc #0
	default:
		return nil
	}
	const base, hdr = 0x400000, 64 + 56
	le := binary.LittleEndian
	b := make([]byte, hdr, hdr+len(code))
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le.PutUint16(b[16:], 2) // ET_EXEC
	le.PutUint16(b[18:], machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+hdr) // entry
	le.PutUint64(b[32:], 64)       // program headers
	le.PutUint16(b[52:], 64)       // header size
	le.PutUint16(b[54:], 56)       // program header size
	le.PutUint16(b[56:], 1)        // one program header
	ph := b[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	b = append(b, code...)
	le.PutUint64(ph[32:], uint64(len(b)))
	le.PutUint64(ph[40:], uint64(len(b)))
	le.PutUint64(ph[48:], 0x1000)
	return b
}

// spawnLoop is the body of the test binary run as a workload
// (DARKSHELL_TEST_SPAWN=BIN:N:PAR): PAR goroutines each fork and exec BIN
// N times, waiting for each; it exits non-zero if any run failed.
func spawnLoop(spec string) int {
	f := strings.Split(spec, ":")
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "DARKSHELL_TEST_SPAWN wants BIN:N:PAR")
		return 2
	}
	n, _ := strconv.Atoi(f[1])
	par, _ := strconv.Atoi(f[2])
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				pid, err := syscall.ForkExec(f[0], []string{f[0]}, &syscall.ProcAttr{})
				var ws syscall.WaitStatus
				if err == nil {
					_, err = syscall.Wait4(pid, &ws, 0, nil)
				}
				if err != nil || ws.ExitStatus() != 0 {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d spawns failed\n", failed)
		return 1
	}
	return 0
}

// TestTinyExitELF: the benchmark's no-op executable runs and exits 0, and
// the spawner runs it.
func TestTinyExitELF(t *testing.T) {
	elf := tinyExitELF()
	if elf == nil {
		t.Skipf("no tiny executable for %s", runtime.GOARCH)
	}
	p := filepath.Join(t.TempDir(), "tiny")
	if err := os.WriteFile(p, elf, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p).CombinedOutput(); err != nil {
		t.Fatalf("tiny executable: %v %q", err, out)
	}
	if code := spawnLoop(p + ":20:2"); code != 0 {
		t.Fatalf("spawner exit %d", code)
	}
}
