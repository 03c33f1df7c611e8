package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Planted secrets: fake values in the shapes the built-in detectors know.
const (
	infPromptSecret = "AKIAZ7QPLANTEDPROMPT" // an AWS access key id
	infReplySecret  = "ghp_PlantedInTheReply0123456789abcdefXYZ"
	infRegexSecret  = "TICKET-90210"        // caught by a configured regex rule
	infOpenAIKey    = "oai-cred-5d1f0a77c3" // the providers' credentials
	infAnthropicKey = "ant-cred-9be4c26d18"
)

// inferenceStandIn is a STAND-IN for an OpenAI-compatible and an
// Anthropic-compatible model API (no model provider is reachable from
// here), on host loopback: it answers /v1/chat/completions and
// /v1/messages, streamed (SSE, the secret split across chunks) or not, only
// when the request carries the provider's real credential, and echoes the
// prompt with a planted secret in the reply.
type inferenceStandIn struct {
	*httptest.Server
	mu   sync.Mutex
	auth []string // credentials seen, "openai:..." / "anthropic:..."
}

func newInferenceStandIn(t *testing.T) *inferenceStandIn {
	s := &inferenceStandIn{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Stream   bool   `json:"stream"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		prompt := ""
		if len(req.Messages) > 0 {
			prompt = req.Messages[len(req.Messages)-1].Content
		}
		reply := []string{"You said: ", prompt, ". Also, my token is ", infReplySecret[:12], infReplySecret[12:], " ", infRegexSecret, "."}
		flush := func() { w.(http.Flusher).Flush() }
		switch r.URL.Path {
		case "/v1/chat/completions":
			s.mu.Lock()
			s.auth = append(s.auth, "openai:"+r.Header.Get("Authorization"))
			s.mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+infOpenAIKey {
				http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
				return
			}
			if !req.Stream {
				b, _ := json.Marshal(map[string]any{"model": req.Model + "-0613", "choices": []any{map[string]any{"message": map[string]string{"role": "assistant", "content": strings.Join(reply, "")}, "finish_reason": "stop"}},
					"usage": map[string]int{"prompt_tokens": 21, "completion_tokens": 13, "total_tokens": 34}})
				w.Write(b)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for _, part := range reply {
				b, _ := json.Marshal(map[string]any{"model": req.Model + "-0613", "choices": []any{map[string]any{"delta": map[string]string{"content": part}}}})
				fmt.Fprintf(w, "data: %s\n\n", b)
				flush()
			}
			io.WriteString(w, `data: {"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":22,"completion_tokens":14}}`+"\n\ndata: [DONE]\n\n")
		case "/v1/messages":
			s.mu.Lock()
			s.auth = append(s.auth, "anthropic:"+r.Header.Get("X-Api-Key"))
			s.mu.Unlock()
			if r.Header.Get("X-Api-Key") != infAnthropicKey || r.Header.Get("Anthropic-Version") == "" {
				http.Error(w, `{"type":"error","error":{"type":"authentication_error"}}`, http.StatusUnauthorized)
				return
			}
			if !req.Stream {
				b, _ := json.Marshal(map[string]any{"model": req.Model, "type": "message", "role": "assistant", "content": []any{map[string]string{"type": "text", "text": strings.Join(reply, "")}},
					"stop_reason": "end_turn", "usage": map[string]int{"input_tokens": 31, "output_tokens": 17}})
				w.Write(b)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			ev := func(name string, v any) {
				b, _ := json.Marshal(v)
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
				flush()
			}
			ev("message_start", map[string]any{"type": "message_start", "message": map[string]any{"model": req.Model, "usage": map[string]int{"input_tokens": 32, "output_tokens": 1}}})
			for _, part := range reply {
				ev("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]string{"type": "text_delta", "text": part}})
			}
			ev("message_delta", map[string]any{"type": "message_delta", "delta": map[string]string{"stop_reason": "end_turn"}, "usage": map[string]int{"output_tokens": 18}})
			ev("message_stop", map[string]string{"type": "message_stop"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestInferenceLogging: sandbox processes call inference.local (plain
// HTTP and HTTPS through the egress proxy, OpenAI and Anthropic shapes,
// streamed and not); the host adds each provider's credential, the
// workload gets the stand-in's answers, and every exchange is an
// inference event (model, tokens, latency, prompt and reassembled
// response) in the JSON lines exporter and the host event log, with the
// planted secrets redacted; neither the secrets nor the credentials are
// anywhere in the daemon's state, and the credentials are nowhere in the
// sandbox.
func TestInferenceLogging(t *testing.T) {
	e := newLocalEnv(t)
	up := newInferenceStandIn(t)
	for _, p := range [][]string{{"oai", "openai", "OPENAI_API_KEY=" + infOpenAIKey}, {"ant", "anthropic", "ANTHROPIC_API_KEY=" + infAnthropicKey}} {
		if _, errOut, code := e.ds("provider", "create", "--name", p[0], "--type", p[1], "--credential", p[2]); code != 0 {
			t.Fatalf("provider create %s: %s", p[0], errOut)
		}
	}
	jsonl := filepath.Join(t.TempDir(), "events.jsonl")
	if _, errOut, code := e.ds("export", "add", "jsonl", "--file", jsonl); code != 0 {
		t.Fatalf("export add jsonl: %s", errOut)
	}
	e.createLocal("inf")
	// Before any route: a clear refusal.
	if out, _, _ := e.bash("inf", `curl -sS --max-time 10 -d '{}' http://inference.local/v1/chat/completions`); !strings.Contains(out, "no inference route is configured") {
		t.Fatalf("no route: %q", out)
	}
	if _, errOut, code := e.ds("inference", "set", "inf", "--api", "openai", "--upstream", up.URL, "--provider", "oai", "--redact", `ticket=TICKET-[0-9]+`); code != 0 {
		t.Fatalf("inference set openai: %s", errOut)
	}
	if _, errOut, code := e.ds("inference", "set", "inf", "--api", "anthropic", "--upstream", up.URL, "--provider", "ant", "--hash", "user"); code != 0 {
		t.Fatalf("inference set anthropic: %s", errOut)
	}
	if _, errOut, code := e.ds("inference", "set", "inf", "--api", "openai", "--upstream", up.URL); code != 2 || !strings.Contains(errOut, "--provider") {
		t.Fatalf("a route without a provider: %d %q", code, errOut)
	}
	out, errOut, code := e.ds("-o", "json", "inference", "get", "inf")
	if code != 0 || !strings.Contains(out, `"ticket"`) || strings.Contains(out, infOpenAIKey) {
		t.Fatalf("inference get: %d %q %q", code, out, errOut)
	}

	prompt := "please keep " + infPromptSecret + " safe"
	calls := []struct {
		name, url, body string
		stream          bool
	}{
		{"openai", "http://inference.local/v1/chat/completions", `{"model":"gpt-standin","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"%s"}],"user":"alice"}`, false},
		{"openai-stream", "https://inference.local/v1/chat/completions", `{"model":"gpt-standin","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"%s"}]}`, true},
		{"anthropic", "https://inference.local/v1/messages", `{"model":"claude-standin","max_tokens":64,"metadata":{"user_id":"bob"},"messages":[{"role":"user","content":"%s"}]}`, false},
		{"anthropic-stream", "http://inference.local/v1/messages", `{"model":"claude-standin","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"%s"}]}`, true},
	}
	// sandbox watch sees the events live.
	watchOut := &lockedBuffer{}
	watch := exec.Command(filepath.Join(binDir, "darkshell"), "sandbox", "watch", "inf")
	watch.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	watch.Stdout = watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := false
	stopWatch := func() {
		if !watchDone {
			watchDone = true
			watch.Process.Kill()
			watch.Wait()
		}
	}
	t.Cleanup(stopWatch)
	// Subscribed once it shows an event of an exec made after it started.
	waitFor(t, 20*time.Second, "sandbox watch to stream", func() bool {
		e.ds("exec", "inf", "--", "true")
		return strings.Contains(watchOut.String(), `"kind":"exec_call"`)
	})
	var workload strings.Builder
	for i, c := range calls {
		// The body reaches the sandbox on stdin (argv would put the
		// planted secret in exec events, which are not inference logging).
		body := fmt.Sprintf(c.body, prompt)
		f := fmt.Sprintf("/tmp/req%d.json", i)
		if _, errOut, code := e.dsIn([]byte(body), "exec", "inf", "-i", "--", "sh", "-c", "cat > "+f); code != 0 {
			t.Fatalf("writing %s: %s", f, errOut)
		}
		// The workload tries to pass a credential of its own: it is replaced.
		script := fmt.Sprintf(`curl -sS -N -i --max-time 20 -H 'Content-Type: application/json' -H 'Authorization: Bearer sandbox-guess' -H 'x-api-key: sandbox-guess' --data-binary @%s %s`, f, c.url)
		out, errOut, code := e.bash("inf", script)
		if code != 0 || !strings.Contains(out, "200") {
			t.Fatalf("%s: exit %d\n%s\n%s", c.name, code, out, errOut)
		}
		// The workload gets the answer (streamed in pieces when asked).
		if c.stream && !strings.Contains(out, "data: ") {
			t.Fatalf("%s: not streamed: %q", c.name, out)
		}
		if !c.stream && !strings.Contains(out, infReplySecret) {
			t.Fatalf("%s: the workload did not get the answer: %q", c.name, out)
		}
		workload.WriteString(out)
	}
	up.mu.Lock()
	auth := strings.Join(up.auth, "\n")
	up.mu.Unlock()
	if strings.Count(auth, "openai:Bearer "+infOpenAIKey) != 2 || strings.Count(auth, "anthropic:"+infAnthropicKey) != 2 || strings.Contains(auth, "sandbox-guess") {
		t.Fatalf("credentials the stand-in saw:\n%s", auth)
	}

	// The events, from the JSON lines exporter.
	var evs []protocol.Event
	waitFor(t, 20*time.Second, "4 inference events in the jsonl exporter's file", func() bool {
		evs = evs[:0]
		f, err := os.Open(jsonl)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev protocol.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Kind == protocol.KindInference && ev.Sandbox == "inf" {
				evs = append(evs, ev)
			}
		}
		return len(evs) >= 4
	})
	if len(evs) != 4 {
		t.Fatalf("%d inference events", len(evs))
	}
	for i, ev := range evs {
		in := ev.Inference
		b, _ := json.Marshal(ev)
		c := calls[i]
		api, model := "openai", "gpt-standin-0613"
		in1, out1 := int64(21), int64(13)
		if strings.HasPrefix(c.name, "anthropic") {
			api, model, in1, out1 = "anthropic", "claude-standin", 31, 17
		}
		if c.stream {
			in1, out1 = in1+1, out1+1
		}
		if in == nil || in.API != api || in.Model != model || in.Stream != c.stream || in.InputTokens != in1 || in.OutputTokens != out1 || in.Status != 200 ||
			ev.DurationNs <= 0 || ev.Result != protocol.ResultOK {
			t.Fatalf("event %d (%s): %s", i, c.name, b)
		}
		if in.Prompt != "user: please keep [REDACTED:aws_access_key] safe" {
			t.Fatalf("event %d prompt: %q", i, in.Prompt)
		}
		// The response is reassembled from the stream's chunks, and the
		// secret split across two of them is redacted.
		if !strings.Contains(in.Response, "my token is [REDACTED:github_token]") || !strings.HasPrefix(in.Response, "You said: please keep") {
			t.Fatalf("event %d response: %q", i, in.Response)
		}
		if api == "openai" && !strings.Contains(in.Response, "[REDACTED:ticket]") {
			t.Fatalf("event %d: the regex rule did not apply: %q", i, in.Response)
		}
	}
	// --hash user (the sandbox's redaction rules apply to both routes).
	if in := evs[0].Inference; in.System != "be brief" || !strings.HasPrefix(in.User, "sha256:") || strings.Contains(in.User, "alice") {
		t.Fatalf("openai system/user: %+v", in)
	}
	if u := evs[2].Inference.User; !strings.HasPrefix(u, "sha256:") || u == evs[0].Inference.User {
		t.Fatalf("anthropic user should be hashed: %q", u)
	}

	// No secret and no credential anywhere in the daemon's state (host event
	// log, daemon log, egress log, exporter records and spool), nor in the
	// exporter's file; the credentials only in the provider store.
	secrets := []string{infPromptSecret, infReplySecret, infReplySecret[12:], infOpenAIKey, infAnthropicKey}
	checkNoSecret := func(path string, data []byte) {
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("%s holds %q", path, s)
			}
		}
	}
	b, _ := os.ReadFile(jsonl)
	checkNoSecret(jsonl, b)
	hostLogs := 0
	filepath.WalkDir(e.home, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.IsDir() && d.Name() == "providers" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".sock") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if strings.Contains(string(data), `"kind":"inference"`) {
			hostLogs++
		}
		checkNoSecret(p, data)
		return nil
	})
	if hostLogs == 0 {
		t.Fatalf("no file under %s (the host event log) holds the inference events", e.home)
	}
	waitFor(t, 10*time.Second, "4 inference events on sandbox watch", func() bool {
		return strings.Count(watchOut.String(), `"kind":"inference"`) >= 4
	})
	stopWatch()
	if n := strings.Count(watchOut.String(), `"kind":"inference"`); n != 4 {
		t.Fatalf("sandbox watch: %d inference events", n)
	}
	checkNoSecret("sandbox watch output", []byte(watchOut.String()))

	// The credentials never enter the sandbox: not in its environment,
	// files or arguments, nor in what the workload received.
	for _, k := range []string{infOpenAIKey, infAnthropicKey} {
		re := k[:len(k)-1] + "[" + k[len(k)-1:] + "]"
		if found, _, _ := e.bash("inf", "grep -rl '"+re+"' /sandbox /tmp /run/darkshell /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; env | grep -c '"+re+"'; true"); strings.TrimSpace(found) != "0" {
			t.Fatalf("credential %s inside the sandbox: %q", k, found)
		}
		if strings.Contains(workload.String(), k) {
			t.Fatalf("the workload received credential %s", k)
		}
	}
}

// lockedBuffer is a bytes.Buffer a child process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
