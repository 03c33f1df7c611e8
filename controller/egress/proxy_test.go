package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/policy"
)

// fakeNet is a stand-in for DNS and routing in these unit tests only: names
// map to addresses, and every dial of a "public" test address goes to a
// local httptest server. The integration tests use real servers in
// network namespaces and a real DNS server instead.
type fakeNet struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	lookups []string
	target  string // host:port of the local server every dial reaches
	dialed  []string
}

func (f *fakeNet) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups = append(f.lookups, host)
	if a, ok := f.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f *fakeNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, addr)
	f.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, f.target)
}

const testPolicy = `version: 1
network_policies:
  web:
    endpoints:
      - { host: public.test, port: 80, protocol: rest, rules: [ { allow: { method: GET, path: "/ok/**" } } ] }
      - { host: public.test, port: 443 }
      - { host: loop.test, port: 80 }
      - { host: private.test, port: 80 }
      - { host: corp.test, port: 80, allowed_ips: [10.9.0.0/16] }
      - { host: rules.test, port: 443, protocol: rest, access: read-only }
      - { host: 198.51.100.7, port: 80 }
    binaries:
      - { path: /usr/bin/curl }
`

// outcomes is the decisions a test proxy reported, safe to read while it runs.
type outcomes struct {
	mu   sync.Mutex
	list []Outcome
}

func (o *outcomes) add(x Outcome) { o.mu.Lock(); o.list = append(o.list, x); o.mu.Unlock() }

// wait returns the decisions once there are at least n (or after 5 s).
func (o *outcomes) wait(n int) []Outcome {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o.mu.Lock()
		l := append([]Outcome(nil), o.list...)
		o.mu.Unlock()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
	}
}

func (f *fakeNet) dials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

func (f *fakeNet) lookedUp() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lookups...)
}

func newTestProxy(t *testing.T) (*Proxy, *fakeNet, *outcomes) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok/host" {
			fmt.Fprintf(w, "host=%s ", r.Host)
		}
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	fn := &fakeNet{target: srv.Listener.Addr().String(), names: map[string][]netip.Addr{
		"public.test":  {netip.MustParseAddr("198.51.100.7")},
		"rules.test":   {netip.MustParseAddr("198.51.100.8")},
		"loop.test":    {netip.MustParseAddr("127.0.0.1")},
		"private.test": {netip.MustParseAddr("10.9.1.1")},
		"corp.test":    {netip.MustParseAddr("10.9.1.2")},
	}}
	pol, err := policy.Parse("test", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	outs := &outcomes{}
	p := &Proxy{Resolver: fn, Dial: fn.Dial, OnDecision: outs.add}
	p.SetEngine(eng)
	return p, fn, outs
}

// client returns a connection served by p as if from caller.
func client(t *testing.T, p *Proxy, who Caller) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Accept before the listener closes: a connection still in the
	// backlog would be reset.
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go p.ServeConn(context.Background(), s, who)
	t.Cleanup(func() { c.Close() })
	return c
}

var curl = Caller{PID: 42, Binary: "/usr/bin/curl"}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var req *http.Request
	if strings.HasPrefix(raw, "CONNECT ") { // a 2xx to CONNECT has no body
		req = &http.Request{Method: http.MethodConnect}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if req != nil && resp.StatusCode == 200 {
		return resp, "" // the tunnel follows
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestProxyHTTP(t *testing.T) {
	p, fn, _ := newTestProxy(t)
	c := client(t, p, curl)
	br := bufio.NewReader(c)
	resp, body := roundTrip(t, c, br, "GET http://public.test/ok/x?y=1 HTTP/1.1\r\nHost: public.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "upstream saw GET /ok/x?y=1" {
		t.Fatalf("allowed GET: %d %q", resp.StatusCode, body)
	}
	// Same connection: a request no rule allows.
	resp, body = roundTrip(t, c, br, "POST http://public.test/ok/x HTTP/1.1\r\nHost: public.test\r\nContent-Length: 0\r\n\r\n")
	if resp.StatusCode != 403 || !strings.Contains(body, "POST /ok/x matches no allow rule of policy web") {
		t.Fatalf("denied POST: %d %q", resp.StatusCode, body)
	}
	resp, body = roundTrip(t, c, br, "GET http://public.test/ok/again HTTP/1.1\r\nHost: public.test\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "/ok/again") {
		t.Fatalf("keep-alive after a deny: %d %q", resp.StatusCode, body)
	}
	if d := fn.dials(); len(d) != 1 || d[0] != "198.51.100.7:80" {
		t.Fatalf("dials: %v (want one, to the checked address)", d)
	}
}

func TestProxyConnect(t *testing.T) {
	p, _, outs := newTestProxy(t)
	c := client(t, p, curl)
	br := bufio.NewReader(c)
	resp, _ := roundTrip(t, c, br, "CONNECT public.test:443 HTTP/1.1\r\nHost: public.test:443\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	// The tunnel reaches the upstream (plain HTTP here).
	resp, body := roundTrip(t, c, br, "GET /through HTTP/1.1\r\nHost: public.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "upstream saw GET /through" {
		t.Fatalf("through the tunnel: %d %q", resp.StatusCode, body)
	}
	if l := outs.wait(1); len(l) != 1 || !l[0].Decision.Allow || l[0].Addr != "198.51.100.7:443" {
		t.Fatalf("outcomes: %+v", l)
	}
}

func TestProxyRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		who       Caller
		status    int
		reason    string
		lookup    bool // whether the name may be resolved
	}{
		{"denied host is never resolved", "CONNECT secret-data.denied.test:443 HTTP/1.1\r\n\r\n", curl, 403, "no network policy allows secret-data.denied.test:443", false},
		{"wrong binary", "CONNECT public.test:443 HTTP/1.1\r\n\r\n", Caller{Binary: "/usr/bin/wget"}, 403, "binary /usr/bin/wget is not allowed", false},
		{"wrong port", "CONNECT public.test:8443 HTTP/1.1\r\n\r\n", curl, 403, "port 8443 is not allowed", false},
		{"name resolving to loopback", "GET http://loop.test/ HTTP/1.1\r\n\r\n", curl, 502, "127.0.0.1 (loopback)", true},
		{"name resolving to a private address", "GET http://private.test/ HTTP/1.1\r\n\r\n", curl, 502, "10.9.1.1 (private)", true},
		{"L7 rules over TLS", "CONNECT rules.test:443 HTTP/1.1\r\n\r\n", curl, 403, "need TLS inspection", false},
		{"not an absolute URL", "GET /x HTTP/1.1\r\n\r\n", curl, 400, "absolute http:// URLs", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fn, _ := newTestProxy(t)
			c := client(t, p, tc.who)
			resp, body := roundTrip(t, c, bufio.NewReader(c), tc.raw)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if l := fn.lookedUp(); !tc.lookup && len(l) > 0 {
				t.Fatalf("resolved %v before an allow", l)
			}
			if d := fn.dials(); len(d) > 0 {
				t.Fatalf("dialed %v", d)
			}
		})
	}
	t.Run("allowed_ips permits a private address", func(t *testing.T) {
		p, fn, _ := newTestProxy(t)
		c := client(t, p, curl)
		resp, _ := roundTrip(t, c, bufio.NewReader(c), "GET http://corp.test/x HTTP/1.1\r\n\r\n")
		if d := fn.dials(); resp.StatusCode != 200 || len(d) != 1 || d[0] != "10.9.1.2:80" {
			t.Fatalf("%d %v", resp.StatusCode, d)
		}
	})
}

func TestProxyReload(t *testing.T) {
	p, _, _ := newTestProxy(t)
	c := client(t, p, curl)
	br := bufio.NewReader(c)
	if resp, _ := roundTrip(t, c, br, "GET http://public.test/ok/1 HTTP/1.1\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	e, _ := Compile(nil)
	p.SetEngine(e)
	if resp, body := roundTrip(t, c, br, "GET http://public.test/ok/2 HTTP/1.1\r\n\r\n"); resp.StatusCode != 403 || !strings.Contains(body, "no network_policies") {
		t.Fatalf("after reload: %s %q", resp.Status, body)
	}
}

func TestProxyDomainFronting(t *testing.T) {
	p, fn, outs := newTestProxy(t)
	c := client(t, p, curl)
	resp, body := roundTrip(t, c, bufio.NewReader(c), "GET http://public.test/ok/host HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "host=public.test ") {
		t.Fatalf("the upstream must see the checked authority, not the client's Host header: %d %q", resp.StatusCode, body)
	}
	// TLS: a ClientHello for another name through a CONNECT to public.test.
	c = client(t, p, curl)
	br := bufio.NewReader(c)
	if resp, _ := roundTrip(t, c, br, "CONNECT public.test:443 HTTP/1.1\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a fronted TLS handshake went through")
	}
	l := outs.wait(2)
	last := l[len(l)-1]
	if last.Decision.Allow || !strings.Contains(last.Decision.Reason, `TLS server name "evil.test" does not match`) {
		t.Fatalf("decision: %+v", last.Decision)
	}
	if d := fn.dials(); len(d) != 2 { // the plain request, then the tunnel
		t.Fatalf("dials: %v", d)
	}
	// The matching name passes the check (the test upstream then fails
	// the handshake, being plain HTTP, which is fine here).
	c = client(t, p, curl)
	br = bufio.NewReader(c)
	roundTrip(t, c, br, "CONNECT public.test:443 HTTP/1.1\r\n\r\n")
	tc = tls.Client(c, &tls.Config{ServerName: "public.test", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	tc.Handshake()
	for _, o := range outs.wait(3) {
		if strings.Contains(o.Decision.Reason, `"public.test" does not match`) {
			t.Fatalf("the matching name was refused: %+v", o)
		}
	}
}

func TestProxyInterceptsForRulesAndCredentials(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s auth=%q", r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
	}))
	defer up.Close()
	pol, err := policy.Parse("t", []byte(`version: 1
network_policies:
  api:
    endpoints:
      - host: example.com
        port: 443
        protocol: rest
        rules: [ { allow: { method: GET, path: "/ok/**" } } ]
        credential_binding: { provider: tok }
`))
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := Compile(pol)
	fn := &fakeNet{target: up.Listener.Addr().String(), names: map[string][]netip.Addr{"example.com": {netip.MustParseAddr("198.51.100.9")}}}
	ca, err := LoadOrCreateCA(t.TempDir(), "t")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	ph := Placeholder("tok", "TOKEN")
	p := &Proxy{Resolver: fn, Dial: fn.Dial, CA: ca, UpstreamRoots: roots,
		Secrets: func(prov string) map[string]string {
			if prov == "tok" {
				return map[string]string{ph: "s3cret-value"}
			}
			return nil
		}}
	p.SetEngine(eng)
	c := client(t, p, curl)
	br := bufio.NewReader(c)
	if resp, _ := roundTrip(t, c, br, "CONNECT example.com:443 HTTP/1.1\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca.PEM())
	tc := tls.Client(&readerConn{Conn: c, r: br}, &tls.Config{ServerName: "example.com", RootCAs: trust})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("the sandbox must trust the proxy's leaf: %v", err)
	}
	tbr := bufio.NewReader(tc)
	resp, body := roundTrip(t, tc, tbr, "GET /ok/1 HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer "+ph+"\r\n\r\n")
	if resp.StatusCode != 200 || body != `upstream saw GET /ok/1 auth="Bearer s3cret-value"` {
		t.Fatalf("allowed request: %d %q", resp.StatusCode, body)
	}
	resp, body = roundTrip(t, tc, tbr, "POST /ok/1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != 403 || !strings.Contains(body, "POST /ok/1 matches no allow rule") {
		t.Fatalf("denied request inside TLS: %d %q", resp.StatusCode, body)
	}
	resp, body = roundTrip(t, tc, tbr, "GET /ok/2 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "GET /ok/2") {
		t.Fatalf("after a deny, the connection still serves: %d %q", resp.StatusCode, body)
	}
}
