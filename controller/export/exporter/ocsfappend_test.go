package exporter

import (
	"bytes"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// ocsfKinds are every kind OCSF maps differently, and one it does not know.
var ocsfKinds = []string{protocol.KindExec, protocol.KindFork, protocol.KindExit, protocol.KindFileOpen, protocol.KindFileWrite,
	protocol.KindFileUnlink, protocol.KindFileRename, protocol.KindFileMkdir, protocol.KindFileRmdir, protocol.KindFileChmod,
	protocol.KindNetConnect, protocol.KindPolicy, protocol.KindMCPCall, protocol.KindExecCall, protocol.KindSync,
	protocol.KindInference, protocol.KindAlert, protocol.KindSandboxState, "something_new"}

func checkOCSF(t testing.TB, e *protocol.Event) {
	t.Helper()
	want := appendJSON(nil, OCSF(e))
	if got := appendOCSF([]byte("x"), e); !bytes.Equal(got[1:], want) || got[0] != 'x' {
		t.Fatalf("%s:\n got %s\nwant %s", e.Kind, got[1:], want)
	}
}

// TestAppendOCSFMatchesMap: the direct OCSF encoder writes what
// appendJSON (json.Marshal) writes of the OCSF map, for every kind with
// every optional field absent, present, zero and odd, and the odd events.
func TestAppendOCSFMatchesMap(t *testing.T) {
	for _, e := range oddEvents() {
		checkOCSF(t, e)
	}
	zero, one, uid := 0, 1, 1000
	variants := []func(e *protocol.Event){
		func(e *protocol.Event) {},
		func(e *protocol.Event) {
			e.PID, e.PPID, e.ExecID, e.ParentExecID, e.UID, e.Binary, e.Argv, e.Cwd = 7, 1, "7-1", "1-0", &uid, "/bin/true", []string{"true", "x"}, "/w"
		},
		func(e *protocol.Event) {
			e.Comm, e.ParentExecID, e.ExitCode, e.Result, e.Errno = "c", "1-0", &zero, protocol.ResultDenied, ""
		},
		func(e *protocol.Event) {
			e.PPID, e.ExitCode, e.Signal, e.Result, e.Errno = 3, &one, 9, protocol.ResultError, "EIO"
		},
		func(e *protocol.Event) {
			e.Path, e.NewPath, e.Intent, e.Host, e.Port, e.Policy, e.Rule, e.Result = "/a/b", "/c/d", "write,create", "h", 443, "p", "r", "deny"
		},
		func(e *protocol.Event) {
			e.Path, e.Host, e.Result, e.Message, e.DurationNs, e.Tool, e.Server, e.State, e.CallID = "/x", "h", "allow", "m", 2e6, "t", "s", "ended", "up"
		},
		func(e *protocol.Event) {
			e.Result, e.DurationNs, e.Source, e.Fidelity = protocol.ResultOK, 1, protocol.SourceEBPF, protocol.FidelityComplete
			e.Inference = &protocol.Inference{API: "anthropic", Model: "m", Truncated: []string{"prompt"}}
		},
	}
	for _, k := range ocsfKinds {
		for _, v := range variants {
			e := &protocol.Event{Time: time.Unix(1700000000, 123456789).In(time.FixedZone("x", -3600)), Sandbox: "sb", Kind: k}
			v(e)
			checkOCSF(t, e)
		}
	}
}

// FuzzAppendOCSF holds appendOCSF to appendJSON(OCSF(e)) on arbitrary
// strings and numbers in every field OCSF reads.
func FuzzAppendOCSF(f *testing.F) {
	f.Add(uint8(0), "plain", "/a<b>&\u2028\xff", int64(-3), true)
	f.Add(uint8(11), "", "\x00\x1f\"\\", int64(1<<40), false)
	f.Fuzz(func(t *testing.T, kind uint8, s, p string, n int64, set bool) {
		e := &protocol.Event{Time: time.Unix(n%(1<<35), n%1e9), Sandbox: s, Kind: ocsfKinds[int(kind)%len(ocsfKinds)],
			PID: int(n), PPID: int(n >> 3), Path: p, NewPath: s, Intent: s, Result: s, Errno: p, Host: s, Port: int(n % 65536),
			Policy: p, Rule: s, Server: p, Tool: s, CallID: p, State: s, Message: p, DurationNs: n, Comm: s, Cwd: p,
			Source: s, Fidelity: p, Signal: int(n % 3)}
		if set {
			c, u := int(n%5), int(n)
			e.ExitCode, e.UID, e.Binary, e.Argv, e.ExecID, e.ParentExecID = &c, &u, p, []string{s, p}, s, p
			e.Inference = &protocol.Inference{API: s, Prompt: p}
		}
		checkOCSF(t, e)
	})
}

// BenchmarkAppendOCSF: the direct encoder vs the map and appendJSON.
func BenchmarkAppendOCSF(b *testing.B) {
	e := execEv("bench", 2, 1, "2-1", "1-0", "true", "x")
	b.Run("appendOCSF", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendOCSF(make([]byte, 0, 768), e)
		}
	})
	b.Run("map+appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendJSON(make([]byte, 0, 768), OCSF(e))
		}
	})
}
