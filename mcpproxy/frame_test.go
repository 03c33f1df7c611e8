package mcpproxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScanFrame(t *testing.T) {
	tests := []struct {
		name, in       string
		err            bool
		id, method     string
		tool, params   string
		progress       bool
		result         string
		isError, hasEr bool
	}{
		{name: "call", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}`,
			id: `1`, method: "tools/call", tool: "echo", params: `{"name":"echo","arguments":{"m":"x"}}`},
		{name: "string id, spaces", in: " {\n \"id\" : \"a\\\"b\" ,\"method\":\"ping\" } ", id: `"a\"b"`, method: "ping"},
		{name: "notification", in: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, method: "notifications/initialized"},
		{name: "null id is no id", in: `{"id":null,"method":"x"}`, method: "x"},
		{name: "object id is no id", in: `{"id":{"a":1},"method":"x"}`, method: "x"},
		{name: "last duplicate wins", in: `{"id":1,"id":2,"method":"a","method":"b","params":{"name":"x","name":"y"}}`, id: `2`, method: "b", tool: "y", params: `{"name":"x","name":"y"}`},
		{name: "escaped keys", in: `{"\u0069d":3,"meth\u006fd":"tools/call","params":{"n\u0061me":"d\u0061nger"}}`, id: `3`, method: "tools/call", tool: "danger", params: `{"n\u0061me":"d\u0061nger"}`},
		{name: "keys are case-sensitive", in: `{"ID":1,"Method":"x","params":{"Name":"y"}}`, params: `{"Name":"y"}`},
		{name: "progress", in: `{"id":1,"method":"tools/call","params":{"name":"s","_meta":{"progressToken":7}}}`, id: `1`, method: "tools/call", tool: "s", progress: true, params: `{"name":"s","_meta":{"progressToken":7}}`},
		{name: "nested name is not the tool", in: `{"id":1,"method":"tools/call","params":{"arguments":{"name":"x"}}}`, id: `1`, method: "tools/call", params: `{"arguments":{"name":"x"}}`},
		{name: "result", in: `{"jsonrpc":"2.0","id":"dsr-4","result":{"content":[{"type":"text","text":"}\"{"}],"isError":true}}`, id: `"dsr-4"`, result: `{"content":[{"type":"text","text":"}\"{"}],"isError":true}`, isError: true},
		{name: "error", in: `{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"no"}}`, id: `5`, hasEr: true},
		{name: "array", in: `[{"id":1}]`, err: true},
		{name: "partial", in: `{"id":1,"method":"tools/call","params":{"name":"e`, err: true},
		{name: "two values", in: `{"id":1}{"id":2}`, err: true},
		{name: "empty", in: ``, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			f, err := scanFrame(b)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			var res string
			if f.resultEnd > 0 {
				res = string(b[f.resultStart:f.resultEnd])
			}
			if got := string(f.id(b)); got != tt.id || f.method != tt.method || f.tool != tt.tool || string(f.params(b)) != tt.params ||
				f.progress != tt.progress || res != tt.result || f.isError != tt.isError || f.hasError != tt.hasEr {
				t.Errorf("got id=%s method=%q tool=%q params=%s progress=%v result=%s isError=%v error=%v",
					got, f.method, f.tool, f.params(b), f.progress, res, f.isError, f.hasError)
			}
		})
	}
}

// TestScanFrameAllocs: the scan of a plain call allocates only the two
// strings it returns (method and tool name).
func TestScanFrameAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes escape analysis: allocation counts mean nothing under -race")
	}
	b := []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":{"message":"bench","n":[1,2,{"x":"y"}]}}}`)
	n := testing.AllocsPerRun(200, func() {
		if _, err := scanFrame(b); err != nil {
			t.Fatal(err)
		}
	})
	if n > 2 {
		t.Errorf("scanFrame allocates %.0f times per message, want at most 2", n)
	}
}

// TestReadLine: lines split across reads, CRLF, a last line without a
// newline, and a line over the limit.
func TestReadLine(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{`{"a":`, `1}` + "\n" + `{"b":2}` + "\r\n", strings.Repeat("x", 100), strings.Repeat("y", 100) + "\n", `{"c":3}`} {
			pw.Write([]byte(part))
		}
		pw.Close()
	}()
	br := bufio.NewReaderSize(pr, 16)
	var got []string
	for {
		l, err := readLine(br, 1<<10)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		got = append(got, string(l))
	}
	want := []string{`{"a":1}`, `{"b":2}`, strings.Repeat("x", 100) + strings.Repeat("y", 100), `{"c":3}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q", got)
	}
	br = bufio.NewReaderSize(strings.NewReader(strings.Repeat("z", 5000)+"\n"), 16)
	if _, err := readLine(br, 1000); err == nil || !strings.Contains(err.Error(), "longer than 1000 bytes") {
		t.Errorf("oversized line: %v", err)
	}
}

// TestRawReplyID: only replies to the relay's own ids are taken from the
// SDK connection's stream.
func TestRawReplyID(t *testing.T) {
	for in, want := range map[string]uint64{
		`{"jsonrpc":"2.0","id":"dsr-42","result":{}}`:                  42,
		`{"result":{"text":"\"dsr-1\""},"jsonrpc":"2.0","id":"dsr-7"}`: 7,
	} {
		if n, ok := rawReplyID([]byte(in)); !ok || n != want {
			t.Errorf("%s: %d %v", in, n, ok)
		}
	}
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":3,"result":{"text":"\"dsr-1\""}}`,
		`{"jsonrpc":"2.0","id":"dsr-x","result":{}}`,
		`{"jsonrpc":"2.0","id":"dsr-1","method":"roots/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"dsr-1"}}`,
	} {
		if _, ok := rawReplyID([]byte(in)); ok {
			t.Errorf("%s taken as a relay reply", in)
		}
	}
}

// TestRedactorClean: the no-decode shortcut only applies where the full
// walk would change nothing.
func TestRedactorClean(t *testing.T) {
	r := &Redactor{}
	r.SetValues([]string{"s3cr3t-value"})
	for in, clean := range map[string]bool{
		`{"message":"bench","n":[1,2]}`:     true,
		`{"password":"x"}`:                  false,
		`{"p\u0061ssword":"x"}`:             false,
		`{"q":"s3cr3t-value"}`:              false,
		`{"q":"s3cr3t\u002dvalue"}`:         false,
		`{"q":"line\nbreak"}`:               false,
		`{"author":"x"}`:                    false, // looks sensitive: the walk decides
		`{"a":`:                             false,
		`["s3cr3t","value","s3cr3t-valu"]`:  true,
		`{"Token":"x"}`:                     false,
		`{"arguments":{"session_key":"k"}}`: false,
	} {
		if got := r.clean([]byte(in)); got != clean {
			t.Errorf("clean(%s) = %v, want %v", in, got, clean)
		}
		var v any
		_ = json.Unmarshal(r.JSON([]byte(in)), &v)
		if got, _ := json.Marshal(v); strings.Contains(string(got), "s3cr3t-value") || strings.Contains(in, "ssword") && strings.Contains(string(got), `"x"`) {
			t.Errorf("JSON(%s) = %s", in, got)
		}
	}
}

// FuzzScanFrame checks the scanner against encoding/json: for any input
// it does not panic, it accepts only valid JSON objects, and what it finds
// (id, method, params, params.name, progress token, result, isError,
// error) is what a decoder finds (exact keys, last duplicate wins; inputs
// with invalid UTF-8 are compared only for what the relay uses of them,
// which is nothing: it leaves them to the SDK). Replacing the id keeps the
// message valid and changes nothing else.
func FuzzScanFrame(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}`,
		`{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"e","_meta":{"progressToken":"t"}}}`,
		`{"id":1,"id":"x","params":{"name":"a","na\u006de":"b"}}`,
		`{"jsonrpc":"2.0","id":"dsr-4","result":{"content":[],"isError":true}}`,
		`{"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":"m"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		` { "id" : 1.5e3 , "method" : "x" } `,
		`[1]`, `{`, `"x"`, `{"a":[{"b":"}"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := scanFrame(b)
		var top map[string]json.RawMessage
		refErr := json.Unmarshal(b, &top)
		if err != nil {
			if refErr == nil && top != nil && json.Valid(b) {
				t.Fatalf("scan refused a JSON object: %v", err)
			}
			return
		}
		if refErr != nil || top == nil {
			t.Fatalf("scan accepted what is not a JSON object: %q", b)
		}
		if !utf8.Valid(b) {
			return
		}
		id, hasID := top["id"]
		if hasID && len(id) > 0 && (id[0] == '"' || id[0] == '-' || id[0] >= '0' && id[0] <= '9') {
			if !bytes.Equal(fr.id(b), id) {
				t.Fatalf("id %q, want %q", fr.id(b), id)
			}
		} else if fr.idEnd != 0 {
			t.Fatalf("id %q found where there is none usable", fr.id(b))
		}
		var method string
		mOK := json.Unmarshal(top["method"], &method) == nil && len(top["method"]) > 0 && top["method"][0] == '"'
		if fr.method != method || fr.hasMethod != mOK {
			t.Fatalf("method %q/%v, want %q/%v", fr.method, fr.hasMethod, method, mOK)
		}
		if !bytes.Equal(fr.params(b), top["params"]) {
			t.Fatalf("params %q, want %q", fr.params(b), top["params"])
		}
		var params map[string]json.RawMessage
		var tool string
		progress := false
		if json.Unmarshal(top["params"], &params) == nil && params != nil {
			if n := params["name"]; len(n) > 0 && n[0] == '"' {
				_ = json.Unmarshal(n, &tool)
			}
			var meta map[string]json.RawMessage
			if json.Unmarshal(params["_meta"], &meta) == nil && meta != nil {
				_, progress = meta["progressToken"]
			}
		}
		if fr.tool != tool || fr.progress != progress {
			t.Fatalf("tool %q progress %v, want %q %v", fr.tool, fr.progress, tool, progress)
		}
		var res map[string]json.RawMessage
		isError := json.Unmarshal(top["result"], &res) == nil && res != nil && string(res["isError"]) == "true"
		if r := top["result"]; fr.resultEnd > 0 != (r != nil) || fr.isError != isError {
			t.Fatalf("result %v isError %v, want %v %v", fr.resultEnd > 0, fr.isError, r != nil, isError)
		}
		if _, e := top["error"]; fr.hasError != e {
			t.Fatalf("error %v, want %v", fr.hasError, e)
		}
		if fr.idEnd > 0 {
			out := withID(b, &fr, []byte(`"dsr-9"`), false)
			var top2 map[string]json.RawMessage
			if err := json.Unmarshal(out, &top2); err != nil || string(top2["id"]) != `"dsr-9"` || !bytes.Equal(top2["params"], top["params"]) {
				t.Fatalf("id rewrite broke the message: %q (%v)", out, err)
			}
		}
	})
}

// FuzzLooksSensitive: the regexp-free check never misses what the regexp
// finds, and on ASCII text it agrees with it exactly.
func FuzzLooksSensitive(f *testing.F) {
	for _, s := range []string{"token", "x-Api_Key", "API-KEY", "apikey", "authority", "to\u212aen", "ſecret", "plain", "Private-Key", "session_key", "PassWord"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		re, got := sensitiveKey.Match(b), looksSensitive(b)
		if re && !got {
			t.Fatalf("%q: the regexp matches, the check does not", b)
		}
		ascii := true
		for _, c := range b {
			ascii = ascii && c < 0x80
		}
		if ascii && re != got {
			t.Fatalf("%q: regexp %v, check %v", b, re, got)
		}
	})
}
