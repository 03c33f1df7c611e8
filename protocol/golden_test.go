package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCase is one frame type with a representative value: a message
// (given as JSON decoded into its type, so the golden file pins the
// encoding of the Go value), raw bytes, or nothing (empty frames).
type goldenCase struct {
	t    FrameType
	msg  func() Validator // nil: raw frame
	json string
	raw  []byte
}

func goldenCases() []goldenCase {
	sha := strings.Repeat("ab", 32)
	ev := `{"seq":7,"time":"2026-11-26T01:02:03.000000004Z","sandbox":"dev","kind":"exit","pid":42,"ppid":1,"exec_id":"e42","exit_code":0,"duration_ns":1500,"source":"ebpf","fidelity":"complete"}`
	return []goldenCase{
		{t: FrameHello, msg: func() Validator { return &Hello{} }, json: `{"role":"sandboxd","protocol_min":1,"protocol_max":1,"build_version":"v1.2.3","caps":["exec","pty","mcp-rules"]}`},
		{t: FrameError, msg: func() Validator { return &ErrorMsg{} }, json: `{"code":"not_found","message":"no process p9"}`},
		{t: FrameExecStart, msg: func() Validator { return &ExecStart{} }, json: `{"argv":["sh","-c","echo hi"],"env":["A=1"],"dir":"/sandbox","stdin":true,"pty":{"rows":24,"cols":80},"timeout_ms":5000,"durable":true,"grace_ms":1000,"idempotency_key":"k1","ring_bytes":4096}`},
		{t: FrameExecAttach, msg: func() Validator { return &ExecAttach{} }, json: `{"id":"p1","offset":10,"stdin":true}`},
		{t: FrameInfo, msg: func() Validator { return &InfoRequest{} }, json: `{}`},
		{t: FrameExecList, msg: func() Validator { return &ExecListRequest{} }, json: `{}`},
		{t: FrameExecStarted, msg: func() Validator { return &ExecStarted{} }, json: `{"id":"p1","pid":42,"offset":0}`},
		{t: FrameStdin, raw: []byte("input line\n")},
		{t: FrameStdinEOF},
		{t: FrameStdout, raw: []byte("hello\x00\xff")},
		{t: FrameStderr, raw: []byte("warning: x\n")},
		{t: FrameSignal, msg: func() Validator { return &SignalMsg{} }, json: `{"signal":15}`},
		{t: FrameResize, msg: func() Validator { return &ResizeMsg{} }, json: `{"rows":40,"cols":120}`},
		{t: FrameExit, msg: func() Validator { return &ExitMsg{} }, json: `{"code":3,"duration_ms":12}`},
		{t: FrameDetach},
		{t: FrameExecDone},
		{t: FrameInfoReply, msg: func() Validator { return &Info{} }, json: `{"role":"sandboxd","protocol_min":1,"protocol_max":1,"build_version":"v1.2.3","pid":1}`},
		{t: FrameExecListReply, msg: func() Validator { return &ExecList{} }, json: `{"processes":[{"id":"p1","pid":42,"argv":["make"],"idempotency_key":"k1","running":false,"attached":false,"exit":{"code":0,"duration_ms":9},"output_bytes":120}]}`},
		{t: FrameSyncPush, msg: func() Validator { return &SyncRequest{} }, json: `{"root":"/sandbox","delete":true,"checksum":true,"include":["src/**/*.go"],"exclude":["*.o","build/"],"git_ignore":true}`},
		{t: FrameSyncPull, msg: func() Validator { return &SyncRequest{} }, json: `{"root":"work","dry_run":true}`},
		{t: FrameSyncEntries, msg: func() Validator { return &SyncEntries{} }, json: `{"entries":[{"p":"a","y":"d","m":493,"t":1},{"p":"a/f","y":"f","m":420,"s":3,"t":2,"h":"` + sha + `"},{"p":"l","y":"l","l":"a/f"}]}`},
		{t: FrameSyncEntriesEnd},
		{t: FrameSyncNeed, msg: func() Validator { return &SyncNeed{} }, json: `{"i":3,"sig":true}`},
		{t: FrameSyncNeedEnd},
		{t: FrameSyncFile, msg: func() Validator { return &SyncFileHeader{} }, json: `{"i":3,"skip":"gone"}`},
		{t: FrameSyncData, raw: []byte{0x01, 0x02, 0x03, 0xfe}},
		{t: FrameSyncDone},
		{t: FrameSyncSummary, msg: func() Validator { return &SyncSummary{} }, json: `{"entries":3,"added":1,"modified":1,"deleted":0,"unchanged":1,"bytes_to_send":10,"sent_bytes":100,"recv_bytes":20}`},
		{t: FrameSyncPlan, msg: func() Validator { return &SyncPlan{} }, json: `{"files":3,"bytes":100}`},
		// zstd-compressed SyncEntries JSON: opaque to this package.
		{t: FrameSyncEntriesZ, raw: []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00}},
		// zstd-compressed binary SyncEntries (syncbin.go; its own golden
		// file is sync-entries-bin.golden): opaque to the frame layer.
		{t: FrameSyncEntriesB, raw: []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00}},
		// Directory digests (syncdirsum.go): ".", then "a" front-coded.
		{t: FrameSyncDirSums, raw: append(append([]byte{0x02, 0x00, 0x01, '.'}, bytes.Repeat([]byte{0x11}, DirSumSize)...),
			append([]byte{0x00, 0x01, 'a'}, bytes.Repeat([]byte{0x22}, DirSumSize)...)...)},
		{t: FrameSyncDirSumsEnd},
		// Want bitmap for 3 directories: the first and the third.
		{t: FrameSyncWant, raw: []byte{0x05}},
		{t: FrameEvents, msg: func() Validator { return &EventsRequest{} }, json: `{"history":true,"follow":true,"files":true,"since_seq":5,"since_unix_ms":1700000000000}`},
		{t: FrameEventsHello, msg: func() Validator { return &EventsHello{} }, json: `{"sources":["ebpf"],"fidelity":"complete","file_fidelity":"changes","lost":0}`},
		{t: FrameEventsBatch, msg: func() Validator { return &EventsBatch{} }, json: `{"events":[` + ev + `],"lost":1,"skipped":2}`},
		{t: FrameEventsEnd, msg: func() Validator { return &EventsEnd{} }, json: `{"lost":1,"evicted":2,"last_seq":7}`},
		{t: FrameForwardListen, msg: func() Validator { return &ForwardListen{} }, json: `{"addr":"127.0.0.1:7301","tag":"mcp:fs","mcp":{"name":"fs","transport":"in-sandbox","path":"/mcp"}}`},
		{t: FrameForwardConn, msg: func() Validator { return &ForwardConn{} }, json: `{"tag":"rfwd:8080","peer":"127.0.0.1:40000","caller":{"pid":42,"binary":"/usr/bin/curl","ancestors":["/usr/bin/bash"]}}`},
		{t: FrameForwardDial, msg: func() Validator { return &ForwardDial{} }, json: `{"addr":"127.0.0.1:22"}`},
		{t: FrameForwardReady, msg: func() Validator { return &ForwardReady{} }, json: `{"addr":"127.0.0.1:7301"}`},
		{t: FrameMCPServe, msg: func() Validator { return &MCPServe{} }, json: `{"name":"fs","argv":["node","server.js"],"env":["LOG=1"],"dir":"/sandbox","addr":"127.0.0.1:0","deny":["write_*"],"rules":[{"method":"tools/call","tool":["read_*"],"params":{"arguments.path":["/sandbox/*"]}}],"deny_rules":[{"method":"resources/*"}]}`},
		{t: FrameMCPReady, msg: func() Validator { return &MCPReady{} }, json: `{"addr":"127.0.0.1:7300","url":"http://127.0.0.1:7300/mcp"}`},
		{t: FrameMCPStatus, msg: func() Validator { return &MCPStatus{} }, json: `{"state":"running","pid":9,"restarts":1,"tools":4,"calls":10,"denied":2,"last_error":"exit status 1"}`},
		{t: FrameMCPEvent, raw: []byte(`{"kind":"mcp_call","server":"fs","tool":"read_file","decision":"allow"}`)},
		{t: FrameMCPLog, raw: []byte("server started\n")},
	}
}

// render is a golden file: the frame's bytes in hex (header, then payload
// in 32-byte lines) and, for a message, its payload as indented JSON.
func render(frame []byte, payload []byte, isMsg bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "header %s\n", hex.EncodeToString(frame[:HeaderSize]))
	for p := payload; len(p) > 0; {
		n := min(32, len(p))
		fmt.Fprintf(&b, "payload %s\n", hex.EncodeToString(p[:n]))
		p = p[n:]
	}
	if isMsg {
		var v bytes.Buffer
		json.Indent(&v, payload, "", "  ")
		b.WriteString("json ")
		b.Write(v.Bytes())
		b.WriteString("\n")
	}
	return b.Bytes()
}

// parseGolden returns the frame a golden file holds.
func parseGolden(t *testing.T, b []byte) []byte {
	t.Helper()
	var frame []byte
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k != "header" && k != "payload" {
			continue
		}
		x, err := hex.DecodeString(v)
		if err != nil {
			t.Fatalf("golden hex: %v", err)
		}
		frame = append(frame, x...)
	}
	return frame
}

// TestGoldenFrames: every frame type's encoding is pinned in
// testdata/golden/FRAME.golden (`go test ./protocol -run TestGoldenFrames
// -update` rewrites them), and decoding the golden bytes gives the value
// back, validated.
func TestGoldenFrames(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.t.String(), func(t *testing.T) {
			var want Validator
			var buf bytes.Buffer
			if c.msg != nil {
				want = c.msg()
				dec := json.NewDecoder(strings.NewReader(c.json))
				dec.DisallowUnknownFields()
				if err := dec.Decode(want); err != nil {
					t.Fatalf("case JSON: %v", err)
				}
				if err := want.Validate(); err != nil {
					t.Fatalf("case is not valid: %v", err)
				}
				if err := WriteMsg(&buf, c.t, want); err != nil {
					t.Fatal(err)
				}
			} else if err := WriteFrame(&buf, c.t, c.raw); err != nil {
				t.Fatal(err)
			}
			frame := buf.Bytes()
			golden := filepath.Join("testdata", "golden", c.t.String()+".golden")
			got := render(frame, frame[HeaderSize:], c.msg != nil)
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			gb, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v: run `go test ./protocol -run TestGoldenFrames -update`", err)
			}
			if !bytes.Equal(gb, got) {
				t.Errorf("encoding of %s changed (run with -update if intended; a wire change needs a protocol version)\n--- golden\n%s--- now\n%s", c.t, gb, got)
			}
			// decode(golden) == value
			f, err := ReadFrame(bytes.NewReader(parseGolden(t, gb)), MaxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != c.t {
				t.Fatalf("golden frame type %s", f.Type)
			}
			if c.msg == nil {
				if !bytes.Equal(f.Payload, c.raw) {
					t.Fatalf("raw payload %q, want %q", f.Payload, c.raw)
				}
				return
			}
			got2 := c.msg()
			if err := DecodeMsg(f, c.t, got2); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normTime(got2), normTime(want)) {
				t.Fatalf("decoded %+v, want %+v", got2, want)
			}
		})
	}
}

// normTime makes time values comparable with DeepEqual (monotonic and
// location parts aside).
func normTime(v Validator) Validator {
	if b, ok := v.(*EventsBatch); ok {
		for i := range b.Events {
			b.Events[i].Time = b.Events[i].Time.UTC()
		}
	}
	return v
}

// TestGoldenCoversEveryFrame: each FrameType constant of the package has a
// golden case.
func TestGoldenCoversEveryFrame(t *testing.T) {
	have := map[FrameType]bool{}
	for _, c := range goldenCases() {
		if have[c.t] {
			t.Errorf("%s has two cases", c.t)
		}
		have[c.t] = true
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "FrameType" {
					continue
				}
				for i, name := range vs.Names {
					if name.Name == "FrameInvalid" {
						continue
					}
					n++
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Errorf("%s: not a literal", name.Name)
						continue
					}
					v, err := strconv.ParseUint(lit.Value, 0, 8)
					if err != nil || !have[FrameType(v)] {
						t.Errorf("%s (%s) has no golden case", name.Name, lit.Value)
					}
				}
			}
		}
	}
	if n != len(have) {
		t.Errorf("%d frame types, %d golden cases", n, len(have))
	}
}
