package events

import (
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/probes"
)

// BenchmarkReaderPath: the Go side of one traced exec of /bin/true from a
// shell (fork, exec, two opens of its libraries, exit), decoded from ring
// buffer bytes, turned into events and published into a hub with the
// default history: what sandboxd's reader spends per exec besides waiting.
func BenchmarkReaderPath(b *testing.B) {
	fork := raw(rawFork, 1, 2, nil)
	exec := raw(rawExec, 2, 1, func(r *rawRec) {
		r.s1, r.args = "/bin/true", "/bin/true\x00"
		comps(r, "work", "sandbox")
		r.DirfdRel = 0
		copy(r.Comm[:], []int8{'t', 'r', 'u', 'e'})
	})
	open1 := raw(rawFile, 2, 0, func(r *rawRec) { r.s1, r.Op = "/etc/ld.so.cache", opOpen })
	open2 := raw(rawFile, 2, 0, func(r *rawRec) { r.s1, r.Op = "/lib/x86_64-linux-gnu/libc.so.6", opOpen })
	exit := raw(rawExit, 2, 1, nil)
	var recs [][]byte
	for _, r := range []*rawRec{fork, exec, open1, open2, exit} {
		recs = append(recs, r.bytes())
	}
	tr := newTracker(time.Unix(0, 0), nil)
	hub := NewHub(0, helloFor(probes.HookSyscallTracepoints))
	var r probes.Record
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, rec := range recs {
			if err := probes.ParseRecord(rec, &r); err != nil {
				b.Fatal(err)
			}
			if ev, ok := tr.event(&r); ok {
				hub.Publish(ev)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/exec")
}
