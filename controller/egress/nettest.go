package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Step is one hop of a net-test.
type Step struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Ms     int64  `json:"ms"`
}

// NetTest is where a request from the sandbox gets and where it stops.
type NetTest struct {
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Steps []Step `json:"steps"`
	// OK: every step passed.
	OK bool `json:"ok"`
}

// Probe checks the path of r beyond the sandbox, hop by hop, with the
// proxy's own engine, resolver, SSRF rules and dialer: policy decision,
// resolution, TCP connect, TLS handshake (tlsOn), HTTP status (httpOn).
// It stops at the first hop that fails.
func (p *Proxy) Probe(ctx context.Context, r Request, tlsOn, httpOn bool, prefix []Step) NetTest {
	p.init()
	nt := NetTest{Host: r.Host, Port: r.Port, Steps: prefix}
	for _, s := range prefix {
		if !s.OK {
			return nt
		}
	}
	add := func(name string, t0 time.Time, ok bool, format string, args ...any) bool {
		nt.Steps = append(nt.Steps, Step{Step: name, OK: ok, Detail: fmt.Sprintf(format, args...), Ms: time.Since(t0).Milliseconds()})
		return ok
	}
	t0 := time.Now()
	d := p.Engine().Decide(r)
	detail := d.Reason
	if d.Rule != "" {
		detail += " [" + d.Rule + "]"
	}
	if d.Inspect && r.Method == "" {
		detail += "; the endpoint has L7 rules: each request is checked (give --method and --path)"
	}
	if !add("policy decision", t0, d.Allow, "%s", detail) {
		return nt
	}
	t0 = time.Now()
	c, addr, err := p.dial(ctx, r.Host, r.Port, d)
	if err != nil {
		add("resolve and connect", t0, false, "%v", err)
		return nt
	}
	defer c.Close()
	add("resolve and connect", t0, true, "connected to %s (resolved by the host proxy after the allow; SSRF checks passed)", addr)
	var conn net.Conn = c
	if tlsOn {
		t0 = time.Now()
		tc := tls.Client(c, &tls.Config{ServerName: r.Host, RootCAs: p.UpstreamRoots, NextProtos: []string{"http/1.1"}})
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			add("TLS handshake", t0, false, "%v", err)
			return nt
		}
		st := tc.ConnectionState()
		add("TLS handshake", t0, true, "%s, certificate for %v issued by %q", tls.VersionName(st.Version), st.PeerCertificates[0].DNSNames, st.PeerCertificates[0].Issuer.CommonName)
		conn = tc
	}
	if httpOn {
		t0 = time.Now()
		method, path := r.Method, r.Path
		if method == "" {
			method, path = http.MethodHead, "/"
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: darkshell-net-test\r\nConnection: close\r\n\r\n", method, path, net.JoinHostPort(r.Host, strconv.Itoa(r.Port)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
		if err != nil {
			add("HTTP", t0, false, "%v", err)
			return nt
		}
		resp.Body.Close()
		add("HTTP", t0, resp.StatusCode < 500, "%s %s -> %s", method, path, resp.Status)
	}
	nt.OK = true
	for _, s := range nt.Steps {
		nt.OK = nt.OK && s.OK
	}
	return nt
}
