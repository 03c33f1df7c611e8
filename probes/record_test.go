package probes

import (
	"strings"
	"testing"
	"unsafe"
)

// TestParseRecord: a record is its header and the used bytes of its data;
// samples too short for either are refused with an error naming the
// sizes; parts are split by the header's lengths, and an unaligned copy
// parses the same.
func TestParseRecord(t *testing.T) {
	build := func(h TraceEvent, data string) []byte {
		b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))...)
		return append(b, data...)
	}
	exec := TraceEvent{Kind: KindExec, Pid: 7, S1Len: 8, CompsLen: 7, ArgsLen: 8, Ncomp: 2}
	file := TraceEvent{Kind: KindFile, Pid: 7, S1Len: 2, S2Len: 2, CompsLen: 4, Ncomp: 1}
	tests := []struct {
		name                string
		b                   []byte
		err                 string
		s1, s2, args, comps string
	}{
		{"shorter than a header", make([]byte, RecordHeader-1), "shorter than its", "", "", "", ""},
		{"fork header", build(TraceEvent{Kind: KindFork, Pid: 7}, ""), "", "", "", "", ""},
		{"exec", build(exec, "/bin/sh\x00b\x00work\x00sh\x00-c\x00x\x00"), "", "/bin/sh", "", "sh\x00-c\x00x\x00", "b/work"},
		{"exec cut short", build(exec, "/bin/sh\x00b\x00work\x00sh\x00-c"), "its header states 23", "", "", "", ""},
		{"rename", build(file, "f\x00g\x00dir\x00"), "", "f", "g", "", "dir"},
		{"trailing bytes ignored", build(file, "f\x00g\x00dir\x00junk"), "", "f", "g", "", "dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, shift := range []int{0, 1} { // aligned, then an unaligned copy
				b := append(make([]byte, shift, shift+len(tc.b)), tc.b...)[shift:]
				var r Record
				err := ParseRecord(b, &r)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("error %v, want one saying %q", err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				var comps []string
				r.Dir(func(c []byte) { comps = append(comps, string(c)) })
				if r.Pid != 7 || string(r.S1) != tc.s1 || string(r.S2) != tc.s2 || string(r.Args) != tc.args || strings.Join(comps, "/") != tc.comps {
					t.Errorf("shift %d: pid %d s1 %q s2 %q args %q comps %q", shift, r.Pid, r.S1, r.S2, r.Args, comps)
				}
			}
		})
	}
}
