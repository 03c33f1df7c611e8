package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestProxyInferenceHost: requests to inference.local, plain and over TLS
// terminated with the sandbox's CA, go to the Inference handler whatever
// the policy (it denies everything here) and are not policy decisions;
// other hosts still are.
func TestProxyInferenceHost(t *testing.T) {
	eng, _ := Compile(nil) // deny all
	ca, err := LoadOrCreateCA(t.TempDir(), "t")
	if err != nil {
		t.Fatal(err)
	}
	outs := &outcomes{}
	var mu sync.Mutex
	var seen []string
	p := &Proxy{CA: ca, OnDecision: outs.add, Inference: func(ctx context.Context, req *http.Request) *http.Response {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		seen = append(seen, req.Method+" "+req.URL.Scheme+"://"+req.URL.Host+req.URL.Path+" "+string(b))
		mu.Unlock()
		return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, ContentLength: 2, Body: io.NopCloser(strings.NewReader("ok")), Request: req}
	}}
	p.SetEngine(eng)
	c := client(t, p, curl)
	br := bufio.NewReader(c)
	resp, body := roundTrip(t, c, br, "POST http://inference.local/v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 2\r\n\r\n{}")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("plain: %d %q", resp.StatusCode, body)
	}
	// Keep-alive: the next request on the connection is decided as usual.
	if resp, _ := roundTrip(t, c, br, "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n"); resp.StatusCode != 403 {
		t.Fatalf("other host: %d", resp.StatusCode)
	}
	c2 := client(t, p, curl)
	br2 := bufio.NewReader(c2)
	if resp, _ := roundTrip(t, c2, br2, "CONNECT inference.local:443 HTTP/1.1\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.PEM())
	tc := tls.Client(&readerConn{Conn: c2, r: br2}, &tls.Config{ServerName: "inference.local", RootCAs: trust})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("the sandbox must trust the inference endpoint's leaf: %v", err)
	}
	tbr := bufio.NewReader(tc)
	for range 2 {
		if resp, body := roundTrip(t, tc, tbr, "POST /v1/messages HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 3\r\n\r\nabc"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("over TLS: %d %q", resp.StatusCode, body)
		}
	}
	mu.Lock()
	got := strings.Join(seen, "\n")
	mu.Unlock()
	want := "POST http://inference.local/v1/chat/completions {}\nPOST https://inference.local/v1/messages abc\nPOST https://inference.local/v1/messages abc"
	if got != want {
		t.Fatalf("handler saw:\n%s\nwant:\n%s", got, want)
	}
	if l := outs.wait(1); len(l) != 1 || l[0].Request.Host != "other.test" {
		t.Fatalf("decisions: %+v (inference.local must not be one)", l)
	}
}
