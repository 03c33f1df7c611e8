package inference

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Planted secrets (fake values in the shapes the detectors know).
const (
	plantedAWS    = "AKIAIOSFODNN7EXAMPLE"
	plantedGH     = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"
	plantedOpenAI = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
	plantedJWT    = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	providerKey   = "pk-live-7f3a9c2e1b"
)

func TestRedactorText(t *testing.T) {
	x := NewRedactor(Redaction{Rules: []Rule{{Name: "ticket", Pattern: `TICKET-[0-9]+`}}}, []string{providerKey})
	cases := []struct{ in, secret, tag string }{
		{"key " + plantedAWS + " here", plantedAWS, "aws_access_key"},
		{"token=" + plantedGH, plantedGH, "github_token"},
		{"use " + plantedOpenAI, plantedOpenAI, "openai_key"},
		{"jwt " + plantedJWT, plantedJWT, "jwt"},
		{"Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234", "bearer"},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow", "private_key"},
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "aws_secret_key"},
		{"xoxb-1234567890-abcdefghij", "xoxb-1234567890", "slack_token"},
		{"the provider's own " + providerKey, providerKey, "credential"},
		{"see TICKET-4711", "TICKET-4711", "ticket"},
	}
	for _, c := range cases {
		t.Run(c.tag, func(t *testing.T) {
			out, n := x.Text(c.in)
			if strings.Contains(out, c.secret) || n == 0 || !strings.Contains(out, "[REDACTED:"+c.tag+"]") {
				t.Fatalf("%q -> %q (%d)", c.in, out, n)
			}
		})
	}
	if out, n := x.Text("nothing secret in sk-short or AKIA1"); n != 0 {
		t.Fatalf("false positive: %q", out)
	}
	off := NewRedactor(Redaction{DisableBuiltin: []string{"all"}}, []string{providerKey})
	if out, _ := off.Text(plantedAWS + " " + providerKey); !strings.Contains(out, plantedAWS) || strings.Contains(out, providerKey) {
		t.Fatalf("builtins off must still redact credentials: %q", out)
	}
}

func TestRedactorFields(t *testing.T) {
	x := NewRedactor(Redaction{Drop: []string{"system"}, Hash: []string{"user"}, MaxText: 10}, nil)
	if _, _, _, keep := x.Field("system", "be nice"); keep {
		t.Fatal("dropped field kept")
	}
	if out, _, _, _ := x.Field("user", "alice@example.com"); !strings.HasPrefix(out, "sha256:") || strings.Contains(out, "alice") {
		t.Fatalf("hashed: %q", out)
	}
	// Redaction happens before the cut: a secret beyond the cap leaves no prefix.
	out, n, cut, _ := x.Field("prompt", "héllo wörld "+plantedAWS)
	if !cut || n != 1 || len(out) > 10 || strings.Contains(out, "AKIA") {
		t.Fatalf("capped: %q %d %v", out, n, cut)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []struct {
		c    Config
		want string
	}{
		{Config{Routes: []Route{{API: "gemini", Upstream: "http://x", Provider: "p"}}}, "use openai or anthropic"},
		{Config{Routes: []Route{{API: "openai", Upstream: "ftp://x", Provider: "p"}}}, "want a base URL"},
		{Config{Routes: []Route{{API: "openai", Upstream: "https://u:p@x", Provider: "p"}}}, "no credentials in the URL"},
		{Config{Routes: []Route{{API: "openai", Upstream: "https://x"}}}, "provider is required"},
		{Config{Routes: []Route{{API: "openai", Upstream: "https://x", Provider: "p"}, {API: "openai", Upstream: "https://y", Provider: "p"}}}, "one per API"},
		{Config{Redact: Redaction{Rules: []Rule{{Name: "x", Pattern: "("}}}}, "redaction rule x"},
		{Config{Redact: Redaction{Rules: []Rule{{Name: "x", Pattern: "a*"}}}}, "matches the empty string"},
		{Config{Redact: Redaction{Drop: []string{"messages"}}}, "drop and hash take"},
		{Config{Redact: Redaction{DisableBuiltin: []string{"nope"}}}, "no such detector"},
		{Config{Redact: Redaction{MaxText: 1 << 30}}, "max_text"},
	}
	for _, b := range bad {
		if err := b.c.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: %v, want %q", b.c, err, b.want)
		}
	}
	for _, p := range []string{"/v2/x", "/v1/../etc", "/v1//x", "/"} {
		if _, err := APIOf(p); err == nil {
			t.Errorf("APIOf(%q) accepted", p)
		}
	}
	if a, _ := APIOf("/v1/messages"); a != APIAnthropic {
		t.Fatal(a)
	}
	if a, _ := APIOf("/v1/chat/completions"); a != APIOpenAI {
		t.Fatal(a)
	}
}

func TestParse(t *testing.T) {
	var x Exchange
	ParseRequest(APIOpenAI, []byte(`{"model":"gpt-x","stream":true,"user":"u1","messages":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":"hello"}]}]}`), &x)
	if x.Model != "gpt-x" || !x.Stream || x.System != "sys" || x.Prompt != "user: hello" || x.User != "u1" {
		t.Fatalf("openai request: %+v", x)
	}
	ParseStream([]byte("data: {\"model\":\"gpt-x-1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"), &x)
	if x.Response != "Hello" || x.InputTokens != 7 || x.OutputTokens != 2 || x.Model != "gpt-x-1" || x.StopReason != "stop" {
		t.Fatalf("openai stream: %+v", x)
	}
	x = Exchange{}
	ParseRequest(APIAnthropic, []byte(`{"model":"claude-x","system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"u2"}}`), &x)
	if x.System != "be brief" || x.Prompt != "user: hi" || x.User != "u2" {
		t.Fatalf("anthropic request: %+v", x)
	}
	ParseStream([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x-2\",\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n"+
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Bon\"}}\n\n"+
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"jour\"}}\n\n"+
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n"), &x)
	if x.Response != "Bonjour" || x.InputTokens != 11 || x.OutputTokens != 3 || x.Model != "claude-x-2" || x.StopReason != "end_turn" {
		t.Fatalf("anthropic stream: %+v", x)
	}
	x = Exchange{}
	ParseResponse([]byte(`{"model":"claude-x","content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":4,"output_tokens":1},"stop_reason":"end_turn"}`), &x)
	if x.Response != "ok" || x.InputTokens != 4 || x.OutputTokens != 1 {
		t.Fatalf("anthropic response: %+v", x)
	}
}

type fakeCreds map[string]string

func (f fakeCreds) Credential(p, k string) (string, error) { return f[p], nil }
func (f fakeCreds) AllValues() []string {
	var out []string
	for _, v := range f {
		out = append(out, v)
	}
	return out
}

// TestRelay runs the relay against a stand-in OpenAI-compatible upstream
// (httptest; no model provider is reachable here): the credential is
// added, the sandbox's own Authorization dropped, streaming passes through
// chunk by chunk, and the event is redacted.
func TestRelay(t *testing.T) {
	var gotAuth []string
	var mu sync.Mutex
	standIn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		var req struct {
			Stream bool `json:"stream"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if !req.Stream {
			fmt.Fprintf(w, `{"model":"m1","choices":[{"message":{"content":"here: %s"}}],"usage":{"prompt_tokens":5,"completion_tokens":3}}`, plantedGH)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		// The secret is split across two deltas.
		for _, part := range []string{"key ", plantedGH[:10], plantedGH[10:], " done"} {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": part}}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n")
	}))
	defer standIn.Close()
	var events []protocol.Event
	r := &Relay{Sandbox: "sb", Creds: fakeCreds{"oai": providerKey}, OnEvent: func(e protocol.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }}
	r.SetConfig(&Config{Routes: []Route{{API: APIOpenAI, Upstream: standIn.URL, Provider: "oai"}}})
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"model":"m1","stream":%v,"messages":[{"role":"user","content":"my key is %s"}]}`, stream, plantedAWS)
		req, _ := http.NewRequest("POST", "http://inference.local/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer placeholder-from-sandbox")
		resp := r.Handle(context.Background(), req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var chunks int
		if stream {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data:") {
					chunks++
				}
			}
		} else {
			b, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(b), plantedGH) {
				t.Fatalf("the client must get the upstream's bytes unchanged: %s", b)
			}
		}
		resp.Body.Close()
		if stream && chunks != 6 {
			t.Fatalf("%d data lines streamed", chunks)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range gotAuth {
		if a != "Bearer "+providerKey {
			t.Fatalf("upstream saw Authorization %q", a)
		}
	}
	if len(events) != 2 {
		t.Fatalf("%d events", len(events))
	}
	for i, e := range events {
		b, _ := json.Marshal(e)
		for _, s := range []string{plantedAWS, plantedGH, providerKey, plantedGH[10:]} {
			if strings.Contains(string(b), s) {
				t.Fatalf("event %d holds %q: %s", i, s, b)
			}
		}
		in := e.Inference
		if e.Kind != protocol.KindInference || in.Model != "m1" || in.Stream != (i == 1) || !strings.Contains(in.Prompt, "my key is [REDACTED:aws_access_key]") ||
			!strings.Contains(in.Response, "[REDACTED:github_token]") || in.Redactions != 2 || e.DurationNs <= 0 {
			t.Fatalf("event %d: %s", i, b)
		}
	}
	if events[0].Inference.InputTokens != 5 || events[1].Inference.InputTokens != 9 || events[1].Inference.OutputTokens != 4 {
		t.Fatalf("tokens: %+v %+v", events[0].Inference, events[1].Inference)
	}
	// Refusals are clear.
	for path, want := range map[string]string{"/v1/messages": "no anthropic route", "/etc/passwd": "takes /v1/"} {
		req, _ := http.NewRequest("POST", "http://inference.local"+path, strings.NewReader("{}"))
		resp := r.Handle(context.Background(), req)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 400 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}
