package events

import (
	"testing"
	"time"
	"unsafe"

	"github.com/bohica-labs/darkshell/probes"
)

// BenchmarkReaderPath: the Go side of one traced exec of /bin/true from a
// shell (fork, exec, two opens of its libraries, exit), decoded from ring
// buffer bytes, turned into events and published into a hub with the
// default history: what sandboxd's reader spends per exec besides waiting.
func BenchmarkReaderPath(b *testing.B) {
	bytesOf := func(r *probes.TraceEvent, size int) []byte {
		return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(r)), size)...)
	}
	fork := raw(rawFork, 1, 2, nil)
	exec := raw(rawExec, 2, 1, func(r *probes.TraceEvent) {
		setStr(r.S1[:], "/bin/true")
		copy(r.Args[:], []int8{'/', 'b', 'i', 'n', '/', 't', 'r', 'u', 'e', 0})
		r.ArgsLen = 10
		comps(r, "work", "sandbox")
		r.DirfdRel = 0
		setStr(r.Comm[:], "true")
	})
	open1 := raw(rawFile, 2, 0, func(r *probes.TraceEvent) { setStr(r.S1[:], "/etc/ld.so.cache"); r.Op = opOpen })
	open2 := raw(rawFile, 2, 0, func(r *probes.TraceEvent) {
		setStr(r.S1[:], "/lib/x86_64-linux-gnu/libc.so.6")
		r.Op = opOpen
	})
	exit := raw(rawExit, 2, 1, nil)
	recs := [][]byte{
		bytesOf(fork, probes.RecordHeader), bytesOf(exec, probes.RecordExec), bytesOf(open1, probes.RecordFile),
		bytesOf(open2, probes.RecordFile), bytesOf(exit, probes.RecordHeader),
	}
	tr := newTracker(time.Unix(0, 0), nil)
	hub := NewHub(0, helloFor(probes.HookSyscallTracepoints))
	var scratch probes.TraceEvent
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, rec := range recs {
			r, ok := decodeRecord(rec, &scratch)
			if !ok {
				b.Fatal("record refused")
			}
			if ev, ok := tr.event(r); ok {
				hub.Publish(ev)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/exec")
}
