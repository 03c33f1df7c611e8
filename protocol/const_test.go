package protocol

import "testing"

// TestWireConstants pins every on-wire value. Changing one is a protocol
// break: bump ProtocolVersion and update spec.md, then this test.
func TestWireConstants(t *testing.T) {
	if Magic != [8]byte{0x00, 0xD5, 0x9C, 0x1E, 0xA7, 0x3B, 0xF0, 0x0D} {
		t.Errorf("Magic = % x", Magic)
	}
	ints := []struct {
		name      string
		got, want int
	}{
		{"ProtocolVersion", ProtocolVersion, 1},
		{"MinProtocolVersion", MinProtocolVersion, 1},
		{"HeaderSize", HeaderSize, 5},
		{"MaxPayload", MaxPayload, 1048576},
		{"MaxControlPayload", MaxControlPayload, 65536},
		{"DataChunk", DataChunk, 32768},
		{"MaxNoise", MaxNoise, 65536},
		{"MaxArgs", MaxArgs, 4096},
		{"MaxEnv", MaxEnv, 4096},
		{"MaxIDLen", MaxIDLen, 128},
		{"MaxRing", MaxRing, 67108864},
		{"DefaultRing", DefaultRing, 1048576},
		{"MaxGraceMs", MaxGraceMs, 86400000},
		{"MaxSyncPath", MaxSyncPath, 4096},
		{"MaxSyncEntries", MaxSyncEntries, 1000000},
		{"MaxSyncBatch", MaxSyncBatch, 1024},
		{"MaxSyncBatchB", MaxSyncBatchB, 16384},
		{"DirSumSize", DirSumSize, 16},
		{"MaxSyncExclude", MaxSyncExclude, 256},
		{"MaxSyncFileSize", MaxSyncFileSize, 1 << 50},
	}
	for _, c := range ints {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	frames := map[FrameType]uint8{
		FrameInvalid: 0x00, FrameHello: 0x01, FrameError: 0x02,
		FrameExecStart: 0x10, FrameExecAttach: 0x11, FrameInfo: 0x12, FrameExecList: 0x13,
		FrameExecStarted: 0x80, FrameStdin: 0x81, FrameStdinEOF: 0x82, FrameStdout: 0x83,
		FrameStderr: 0x84, FrameSignal: 0x85, FrameResize: 0x86, FrameExit: 0x87,
		FrameDetach: 0x88, FrameInfoReply: 0x89, FrameExecListReply: 0x8A, FrameExecDone: 0x8B,
		FrameSyncPush: 0x20, FrameSyncPull: 0x21,
		FrameSyncEntries: 0x90, FrameSyncEntriesEnd: 0x91, FrameSyncNeed: 0x92, FrameSyncNeedEnd: 0x93,
		FrameSyncFile: 0x94, FrameSyncData: 0x95, FrameSyncDone: 0x96, FrameSyncSummary: 0x97, FrameSyncPlan: 0x98, FrameSyncEntriesZ: 0x99, FrameSyncEntriesB: 0x9a,
		FrameSyncDirSums: 0x9b, FrameSyncDirSumsEnd: 0x9c, FrameSyncWant: 0x9d,
	}
	for ft, want := range frames {
		if uint8(ft) != want {
			t.Errorf("%s = 0x%02x, want 0x%02x", ft, uint8(ft), want)
		}
	}
	strs := map[string]string{
		SyncFile: "f", SyncDir: "d", SyncSymlink: "l", CapSync: "sync", CapSyncDirSums: "sync-dir-sums",
	}
	for got, want := range strs {
		if got != want {
			t.Errorf("sync constant %q, want %q", got, want)
		}
	}
	codes := map[string]string{
		CodeBadRequest: "bad_request", CodeNotFound: "not_found", CodeCannotInvoke: "cannot_invoke",
		CodeNoProcess: "no_process", CodeBusy: "busy", CodeUnsupported: "unsupported",
		CodeLimit: "limit", CodeInternal: "internal",
	}
	for got, want := range codes {
		if got != want {
			t.Errorf("code %q, want %q", got, want)
		}
	}
}
