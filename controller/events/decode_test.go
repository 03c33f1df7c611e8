package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// checkDecode: DecodeEvent makes of b what json.Unmarshal makes of it
// into a zero event, error or not.
func checkDecode(t testing.TB, b []byte) {
	t.Helper()
	var want protocol.Event
	werr := json.Unmarshal(b, &want)
	got := protocol.Event{Kind: "stale", Argv: []string{"stale"}} // DecodeEvent starts from zero
	gerr := DecodeEvent(b, &got)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%s: errors differ: json.Unmarshal %v, DecodeEvent %v", b, werr, gerr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", b, got, want)
	}
}

// TestDecodeEventMatchesUnmarshal: events as AppendEvent writes them
// (every field set, each alone, odd strings), and JSON it does not write
// (whitespace, null, unknown and differently cased keys, duplicates,
// escapes, floats, overflows, broken objects).
func TestDecodeEventMatchesUnmarshal(t *testing.T) {
	for _, s := range []string{"plain", "a<b>&\"q\"\\ \x01\t\n\u2028 é \xff", "é ü"} {
		var e protocol.Event
		fill(t, reflect.ValueOf(&e).Elem(), s, 1700000000)
		b, err := AppendEvent(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		checkDecode(t, b)
		v := reflect.ValueOf(&e).Elem()
		for i := range v.NumField() {
			var one protocol.Event
			reflect.ValueOf(&one).Elem().Field(i).Set(v.Field(i))
			b, err := AppendEvent(nil, &one)
			if err != nil {
				t.Fatal(err)
			}
			checkDecode(t, b)
		}
	}
	for _, s := range []string{
		`{}`, `{"kind":"exec"}`, `{"time":"2024-01-02T03:04:05.123456789+01:00","kind":"exit","exit_code":0,"uid":0,"argv":[]}`,
		`{"argv":["a","b"],"argv":["c"]}`, `{"uid":1,"uid":2}`, `{"kind":"exec","kind":"exit"}`,
		`{ "kind":"exec"}`, `{"kind" :"exec"}`, `{"kind":"exec"} `, `{"kind":"exec"}x`, `{"kind":null}`, `{"argv":null}`, `{"uid":null}`,
		`{"Kind":"exec"}`, `{"PID":5}`, `{"unknown":{"a":[1,2]},"pid":3}`, `{"ki\u006ed":"exec"}`, `{"kind":"e\u0078ec\n"}`,
		`{"pid":1.0}`, `{"pid":1e3}`, `{"pid":01}`, `{"pid":-0}`, `{"pid":-}`, `{"pid":99999999999999999999}`, `{"seq":-1}`,
		`{"lost":18446744073709551615}`, `{"seq":18446744073709551616}`, `{"pid":"5"}`, `{"kind":5}`, `{"argv":["a",1]}`,
		`{"time":"yesterday"}`, `{"time":"2024-01-02T03:04:05Z"`, `{"time":null}`, `{"time":"2024-01-02T03:04:05\u005a"}`,
		`{"kind":"` + "\xff" + `"}`, `{"kind":"` + "\x01" + `"}`, `{"kind":"a` + "\u2028" + `"}`, `{"inference":{"api":"openai","model":"m"}}`,
		`{"pid":1,}`, `{,}`, `{"pid"}`, `{"pid":}`, `[]`, `null`, ``, `{`, `{"argv":["a",]}`, `{"argv":[`, `{"argv":["a"`,
	} {
		checkDecode(t, []byte(s))
	}
}

// FuzzDecodeEvent holds DecodeEvent to json.Unmarshal on arbitrary bytes
// and on AppendEvent's output for arbitrary field values.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"time":"2024-01-02T03:04:05Z","kind":"exec","pid":3,"argv":["a"]}`), "x", int64(1))
	f.Add([]byte(`{"Kind":"exec","pid":1e2}`), "<\xff\u2028", int64(-1<<40))
	f.Fuzz(func(t *testing.T, b []byte, s string, n int64) {
		checkDecode(t, b)
		var e protocol.Event
		fill(t, reflect.ValueOf(&e).Elem(), s, n)
		if enc, err := AppendEvent(nil, &e); err == nil {
			checkDecode(t, enc)
		}
	})
}

// BenchmarkDecodeEvent: an exec event as the exporter helper gets it.
func BenchmarkDecodeEvent(b *testing.B) {
	uid := 0
	e := protocol.Event{Seq: 9, Time: time.Now(), Sandbox: "bench", Kind: protocol.KindExec, PID: 12, PPID: 11, ExecID: "12-1", ParentExecID: "11-1",
		UID: &uid, Binary: "/bin/true", Argv: []string{"/bin/true"}, Cwd: "/sandbox", Source: protocol.SourceEBPF, Fidelity: protocol.FidelityComplete}
	line, _ := AppendEvent(nil, &e)
	b.Run("DecodeEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e protocol.Event
			DecodeEvent(line, &e)
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e protocol.Event
			json.Unmarshal(line, &e)
		}
	})
}
