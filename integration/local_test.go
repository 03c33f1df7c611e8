package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/protocol"
)

// bash runs a bash script in sandbox name through the CLI.
func (e *env) bash(name, script string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.ds("exec", name, "--", "bash", "-c", script)
}

// mustBash runs script and fails the test unless it exits 0.
func (e *env) mustBash(name, script string) string {
	e.t.Helper()
	out, errOut, code := e.bash(name, script)
	if code != 0 {
		e.t.Fatalf("%q: exit %d, stdout %q, stderr %q", script, code, out, errOut)
	}
	return out
}

// refused runs script, which must fail with a message containing want.
func (e *env) refused(name, script, want string) {
	e.t.Helper()
	out, errOut, code := e.bash(name, script)
	if code == 0 || !strings.Contains(errOut, want) {
		e.t.Fatalf("%q: exit %d, stdout %q, stderr %q; want a failure with %q", script, code, out, errOut, want)
	}
}

// localRecord is the part of a local sandbox's record the tests read.
type localRecord struct {
	Extra struct {
		PID     int      `json:"pid"`
		Cgroups []string `json:"cgroups"`
	} `json:"extra"`
}

func (e *env) initPID(name string) int {
	e.t.Helper()
	return e.record(name).Extra.PID
}

func (e *env) record(name string) localRecord {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "sandboxes", name, "sandbox.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var r localRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Extra.PID <= 0 {
		e.t.Fatalf("record of %s: %v %s", name, err, b)
	}
	return r
}

// descendants lists pid and every process below it on the host.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, childPIDs(out[i])...)
	}
	return out
}

// TestLocalConfinement: one local sandbox, each confinement promise with
// its positive control, asserting the layer that refused.
func TestLocalConfinement(t *testing.T) {
	e := newLocalEnv(t)
	const name = "conf"
	e.createLocal(name)
	ws := filepath.Join(e.home, "sandboxes", name, "workspace")

	t.Run("unprivileged", func(t *testing.T) {
		if got := strings.TrimSpace(e.mustBash(name, "id -u")); got == "0" || got == "" {
			t.Fatalf("id -u = %q, want a non-root uid", got)
		}
		st := e.mustBash(name, "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
		for _, want := range []string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
			"CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(st, want) {
				t.Errorf("/proc/self/status lacks %q:\n%s", want, st)
			}
		}
	})
	t.Run("hostname", func(t *testing.T) {
		if got := strings.TrimSpace(e.mustBash(name, "hostname")); got != name {
			t.Fatalf("hostname = %q, want %q", got, name)
		}
	})
	t.Run("pid 1 is sandboxd", func(t *testing.T) {
		got := e.mustBash(name, "cat /proc/1/cmdline")
		if got != "sandboxd\x00init\x00" {
			t.Fatalf("/proc/1/cmdline = %q (no host paths may show)", got)
		}
	})
	t.Run("root holds only the system dirs", func(t *testing.T) {
		want := []string{"dev", "proc", "run", "sandbox", "tmp"} // run holds only darkshell's trust files
		for _, d := range []string{"usr", "lib", "lib64", "lib32", "bin", "sbin", "etc", "opt"} {
			if _, err := os.Lstat("/" + d); err == nil {
				want = append(want, d)
			}
		}
		slices.Sort(want)
		got := strings.Fields(e.mustBash(name, "ls -A /"))
		if !slices.Equal(got, want) {
			t.Fatalf("ls / = %v, want %v", got, want)
		}
	})
	t.Run("workspace is writable and shared", func(t *testing.T) {
		e.mustBash(name, "echo from-sandbox > /sandbox/hello && echo tmp > /tmp/t && echo null > /dev/null")
		b, err := os.ReadFile(filepath.Join(ws, "hello"))
		if err != nil || string(b) != "from-sandbox\n" {
			t.Fatalf("host workspace file: %q %v", b, err)
		}
	})
	t.Run("system dirs are read-only", func(t *testing.T) {
		// The read-only bind refuses first (EROFS) ...
		e.refused(name, "echo x > /etc/darkshell-test", "Read-only file system")
		e.refused(name, "echo x > /usr/darkshell-test", "Read-only file system")
		if _, err := os.Stat("/etc/darkshell-test"); err == nil {
			t.Fatal("the write reached the host's /etc")
		}
		// ... and Landlock (EACCES) where no other layer would: the
		// process's own /proc/self/comm, writable by its owner, is
		// outside the read-write list. Positive control: it is readable.
		e.mustBash(name, "cat /proc/self/comm")
		e.refused(name, "echo x > /proc/self/comm", "Permission denied")
	})
	t.Run("namespace creation refused by seccomp", func(t *testing.T) {
		e.mustBash(name, "true") // positive control: processes start
		e.refused(name, "unshare -r true", "Operation not permitted")
		e.refused(name, "unshare -n true", "Operation not permitted")
	})
	t.Run("only loopback", func(t *testing.T) {
		out := e.mustBash(name, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
		if got := strings.Fields(out); !slices.Equal(got, []string{"lo"}) {
			t.Fatalf("interfaces = %v, want [lo]", got)
		}
		out = e.mustBash(name, "tail -n +2 /proc/net/route")
		if strings.TrimSpace(out) != "" {
			t.Fatalf("routes in the sandbox: %q", out)
		}
	})
	t.Run("host loopback TCP unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan struct{}, 4)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- struct{}{}
				c.Close()
			}
		}()
		port := l.Addr().(*net.TCPAddr).Port
		// Positive control: the listener works from the host.
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		<-accepted
		// Landlock refuses every TCP connect (EACCES) before routing.
		e.refused(name, fmt.Sprintf("echo > /dev/tcp/127.0.0.1/%d", port), "Permission denied")
		select {
		case <-accepted:
			t.Fatal("the sandbox reached the host's loopback listener")
		case <-time.After(100 * time.Millisecond):
		}
	})
	t.Run("host loopback UDP unreachable (network namespace)", func(t *testing.T) {
		// Landlock (ABI < 10) does not restrict UDP: this checks the
		// network namespace alone.
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		port := pc.LocalAddr().(*net.UDPAddr).Port
		buf := make([]byte, 64)
		// Positive control: a datagram from the host arrives.
		if c, err := net.Dial("udp4", pc.LocalAddr().String()); err == nil {
			c.Write([]byte("host"))
			c.Close()
		}
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "host" {
			t.Fatalf("positive control: %q %v", buf[:n], err)
		}
		e.bash(name, fmt.Sprintf("for i in 1 2 3; do echo sandbox > /dev/udp/127.0.0.1/%d; done", port))
		pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := pc.ReadFrom(buf); err == nil {
			t.Fatalf("a datagram from the sandbox reached the host: %q", buf[:n])
		}
		// No route out at all (checked in the routing table: tests never
		// address anything outside, even expecting a failure).
		e.refused(name, "test $(tail -n +2 /proc/net/route | wc -l) = 0 && test $(tail -n +2 /proc/net/ipv6_route 2>/dev/null | grep -v ' lo$' | wc -l) = 0 && echo 'no route' >&2; exit 1", "no route")
	})
	t.Run("host files invisible", func(t *testing.T) {
		home, _ := os.UserHomeDir()
		if got := e.mustBash(name, "ls -A /run /run/darkshell"); got != "/run:\ndarkshell\n\n/run/darkshell:\nca-bundle.pem\negress-ca.pem\n" {
			t.Fatalf("/run holds more than the trust files: %q", got)
		}
		for _, p := range []string{"/root", "/home", "/run/sshd", "/run/user", "/var", "/mnt", "/srv", home + "/.ssh", e.home,
			filepath.Join(e.home, "sandboxes", name, "keys")} {
			e.refused(name, "ls "+p, "No such file or directory")
		}
		e.mustBash(name, "ls /etc/hostname /sandbox") // positive control
		e.refused(name, "ls -l /proc/1/root/", "Permission denied")
		e.refused(name, "cat /proc/1/environ", "Permission denied")
	})
	t.Run("host processes invisible", func(t *testing.T) {
		// The sandbox sees its init, the agent and this shell only (CI
		// containers have few host processes, so no count comparison).
		out := e.mustBash(name, "ls /proc | grep -E '^[0-9]+$'")
		pids := strings.Fields(out)
		if len(pids) > 5 || !slices.Contains(pids, "1") {
			t.Fatalf("the sandbox sees pids %v", pids)
		}
		if comm := strings.TrimSpace(e.mustBash(name, "cat /proc/1/comm")); !strings.HasPrefix(comm, "sandboxd") {
			t.Fatalf("pid 1 in the sandbox is %q, not its own init", comm)
		}
		// Signals cannot reach the host: its pids do not exist here.
		e.refused(name, fmt.Sprintf("kill -0 %d", os.Getpid()), "No such process")
		if strings.Contains(e.mustBash(name, "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '"), "go test") {
			t.Fatal("the sandbox sees the test process")
		}
	})
}

// TestLocalVersion: `darkshell version NAME` reports the Landlock ABI and
// the confinements in force.
func TestLocalVersion(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("v")
	out, errOut, code := e.ds("-o", "json", "version", "v")
	if code != 0 {
		t.Fatalf("version: %d %s %s", code, out, errOut)
	}
	var v struct {
		Sandboxd protocol.Info `json:"sandboxd"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Sandboxd.LandlockABI < 1 || v.Sandboxd.PID != 1 {
		t.Fatalf("landlock ABI %d, pid %d: %s", v.Sandboxd.LandlockABI, v.Sandboxd.PID, out)
	}
	for _, c := range []string{"landlock", "seccomp", "net-ns", "pid-ns", "mount-ns", "no-new-privs", "no-caps"} {
		if !slices.Contains(v.Sandboxd.Confined, c) {
			t.Errorf("confined %v lacks %s", v.Sandboxd.Confined, c)
		}
	}
	out, _, _ = e.ds("version", "v")
	if !strings.Contains(out, "landlock:  ABI "+strconv.Itoa(v.Sandboxd.LandlockABI)) || !strings.Contains(out, "seccomp") {
		t.Fatalf("version text: %s", out)
	}
	out, _, _ = e.ds("sandbox", "get", "v") // the session is warm: get shows the confinements too
	if !strings.Contains(out, "Landlock: ABI "+strconv.Itoa(v.Sandboxd.LandlockABI)) || !strings.Contains(out, "net-ns") || !strings.Contains(out, "Driver:   local") {
		t.Fatalf("sandbox get: %s", out)
	}
}

// TestLocalBadLimits: a limit that cannot be applied refuses the create
// clearly and leaves nothing behind.
func TestLocalBadLimits(t *testing.T) {
	e := newLocalEnv(t)
	for _, args := range [][]string{{"--memory-limit", "lots"}, {"--cpu-limit", "-1"}, {"--pids-limit", "-3"}} {
		_, errOut, code := e.ds(append([]string{"sandbox", "create", "lim"}, args...)...)
		if code == 0 || !strings.Contains(errOut, args[0]) {
			t.Fatalf("create %v: exit %d, stderr %q", args, code, errOut)
		}
		if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "lim")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused create left state behind: %v", err)
		}
	}
}

// TestLocalLimits: pids, memory and CPU limits through the v1 controllers
// (hybrid layout); a fork bomb stops at the pids limit, a memory hog is
// killed at the memory limit, the sandbox survives both, and delete
// removes the cgroups.
func TestLocalLimits(t *testing.T) {
	e := newLocalEnv(t)
	if _, err := os.Stat("/sys/fs/cgroup/pids"); err != nil {
		requireFeature(t, "cgroup v1 pids and memory controllers (hybrid layout)")
	}
	e.createLocal("lim", "--pids-limit", "16", "--memory-limit", "64M", "--cpu-limit", "0.5")
	var rec struct {
		Extra struct {
			Cgroups []string `json:"cgroups"`
			Limits  []string `json:"limits"`
		} `json:"extra"`
	}
	b, _ := os.ReadFile(filepath.Join(e.home, "sandboxes", "lim", "sandbox.json"))
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	// pids: the workload cgroup holds the limit; its parent, where
	// sandboxd (PID 1) stays, has 64 more for sandboxd's own threads.
	want := map[string]string{"workload/pids.max": "16", "pids.max": "80", "memory.limit_in_bytes": "67108864", "cpu.cfs_quota_us": "50000"}
	var workload string
	for _, d := range rec.Extra.Cgroups {
		if filepath.Base(d) == "workload" {
			workload = d
			continue
		}
		for f, v := range want {
			if got, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				if strings.TrimSpace(string(got)) != v {
					t.Errorf("%s/%s = %q, want %s", d, f, got, v)
				}
				delete(want, f)
			}
		}
	}
	if len(want) > 0 || workload == "" {
		t.Fatalf("limit files not found: %v (cgroups %v)", want, rec.Extra.Cgroups)
	}
	out, _, _ := e.ds("version", "lim")
	if !strings.Contains(out, "pids.max=16") || !strings.Contains(out, "memory.limit=67108864") {
		t.Fatalf("version does not report the limits:\n%s", out)
	}

	t.Run("fork bomb stops at the pids limit", func(t *testing.T) {
		e.mustBash("lim", "sleep 0.1 & sleep 0.1 & wait") // positive control
		_, errOut, _ := e.ds("exec", "lim", "--", "sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done; wait")
		if !strings.Contains(errOut, "fork") {
			t.Fatalf("40 background processes under pids.max=16: stderr %q", errOut)
		}
		ev, _ := os.ReadFile(filepath.Join(workload, "pids.events"))
		if !strings.HasPrefix(string(ev), "max ") || strings.TrimSpace(string(ev)) == "max 0" {
			t.Errorf("workload pids.events = %q, want refused forks counted", ev)
		}
		// sandboxd (PID 1) keeps working while the workload is at its limit ...
		if out, _, code := e.ds("version", "lim"); code != 0 || !strings.Contains(out, "pid 1") {
			t.Fatalf("sandboxd during the fork bomb: %d %s", code, out)
		}
		// ... and the sandbox recovers when the sleeps end.
		waitFor(t, 10*time.Second, "the sandbox to recover", func() bool {
			_, _, code := e.bash("lim", "true")
			return code == 0
		})
	})
	t.Run("memory hog killed at the limit", func(t *testing.T) {
		if got := strings.TrimSpace(e.mustBash("lim", "head -c 16M /dev/zero | wc -c")); got != "16777216" { // positive control
			t.Fatalf("16M through a pipe: %q", got)
		}
		_, _, code := e.ds("exec", "lim", "--", "tail", "/dev/zero")
		if code != 128+9 {
			t.Fatalf("memory hog: exit %d, want %d (SIGKILL by the OOM killer)", code, 128+9)
		}
		// The sandbox reports the OOM kill.
		var sb api.Sandbox
		out, _, _ := e.ds("sandbox", "get", "lim", "-o", "json")
		if err := json.Unmarshal([]byte(out), &sb); err != nil || sb.Resources == nil || sb.Resources.OOMKills < 1 ||
			sb.Resources.MemoryLimitBytes != 64<<20 {
			t.Fatalf("get after an OOM kill: %v %s", err, out)
		}
		if out, _, _ := e.ds("sandbox", "get", "lim"); !strings.Contains(out, "OOM kills") {
			t.Fatalf("get text: %s", out)
		}
		e.mustBash("lim", "true") // the sandbox survives
	})
	if _, _, code := e.ds("sandbox", "delete", "lim"); code != 0 {
		t.Fatal("delete failed")
	}
	for _, d := range rec.Extra.Cgroups {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after delete: %v", d, err)
		}
	}
}

// TestLocalPID1: sandboxd as PID 1 reaps orphans and exec timeouts kill.
func TestLocalPID1(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("p1")
	e.mustBash("p1", "for i in 1 2 3 4 5; do (sleep 0.05 &) ; done")
	time.Sleep(300 * time.Millisecond)
	out := e.mustBash("p1", "grep -l '^State:.*Z' /proc/[0-9]*/status || true")
	if strings.TrimSpace(out) != "" {
		t.Fatalf("zombies left in the sandbox: %s", out)
	}
	for range 5 { // a timeout signals the process from whichever sandboxd thread runs the timer
		_, errOut, code := e.ds("exec", "p1", "--timeout", "100ms", "--", "sleep", "30")
		if code != 128+15 || !strings.Contains(errOut, "timed out") {
			t.Fatalf("timeout: exit %d, stderr %q", code, errOut)
		}
	}
}

// TestLocalDeleteLeavesNothing: create, run something in the background,
// delete: no process, mount or state is left, ten times over.
func TestLocalDeleteLeavesNothing(t *testing.T) {
	e := newLocalEnv(t)
	for i := range 10 {
		name := fmt.Sprintf("del-%d", i)
		e.createLocal(name)
		dir := filepath.Join(e.home, "sandboxes", name)
		e.mustBash(name, "sleep 1000 </dev/null >/dev/null 2>&1 & disown; setsid sleep 1000 </dev/null >/dev/null 2>&1 &")
		rec := e.record(name)
		pid := rec.Extra.PID
		procs := descendants(pid)
		if len(rec.Extra.Cgroups) == 0 && i == 0 {
			t.Log("no cgroups recorded (no cgroup2 mount here)")
		}
		if !pidAlive(pid) {
			t.Fatalf("init %d of %s is not running", pid, name)
		}
		if _, errOut, code := e.ds("sandbox", "delete", name); code != 0 {
			t.Fatalf("delete %s failed: %s", name, errOut)
		}
		for _, p := range procs {
			if pidAlive(p) {
				t.Fatalf("%s: process %d (of %v) survived delete", name, p, procs)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: state dir left: %v", name, err)
		}
		for _, d := range rec.Extra.Cgroups {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: cgroup %s left: %v", name, d, err)
			}
		}
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mi), dir) {
			t.Fatalf("%s: a mount is left on the host:\n%s", name, mi)
		}
	}
	if left := pgrep("sandboxd", "init"); len(left) > 0 {
		for _, p := range left {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p)); strings.Contains(string(b), e.home) {
				t.Fatalf("sandboxd init %d of this test is still running", p)
			}
		}
	}
}

// BenchmarkLocalCreate measures create to first exec completed (through the
// daemon API, the way DarkClaw creates sandboxes), and exec on a warm local
// sandbox; it prints p50/p99. Target: create to first exec p50 < 100 ms.
func BenchmarkLocalCreate(b *testing.B) {
	e := newLocalEnv(b)
	ctx := context.Background()
	if _, err := e.c.Version(ctx); err != nil { // start the daemon outside the timing
		b.Fatal(err)
	}
	run := e.execTrue
	n := benchRuns()
	var create, execs []time.Duration
	b.ResetTimer()
	for i := range n {
		name := fmt.Sprintf("bench-%d", i)
		t0 := time.Now()
		if _, err := e.c.Create(ctx, &api.CreateRequest{Name: name, Driver: "local"}); err != nil {
			b.Fatal(err)
		}
		if err := run(name); err != nil {
			b.Fatal(err)
		}
		create = append(create, time.Since(t0))
		if i == 0 {
			for range 3 * n {
				t1 := time.Now()
				if err := run(name); err != nil {
					b.Fatal(err)
				}
				execs = append(execs, time.Since(t1))
			}
		}
		b.StopTimer()
		if err := e.c.Delete(ctx, name); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(create)
	slices.Sort(execs)
	sshExecs := benchSSHExecs(b, 3*n)
	nsCreate, nsExec := benchNamespaceFloor(b, n)
	b.ReportMetric(float64(pct(create, 50).Microseconds()), "create-p50-µs")
	b.ReportMetric(float64(pct(execs, 50).Microseconds()), "exec-p50-µs")
	fmt.Printf("\nlocal driver, %d creates, %d execs (same machine, same run)\n", len(create), len(execs))
	fmt.Printf("%-44s %10s %10s\n", "what", "p50", "p99")
	row := func(what string, ds []time.Duration) {
		fmt.Printf("%-44s %10s %10s\n", what, pct(ds, 50).Round(time.Microsecond), pct(ds, 99).Round(time.Microsecond))
	}
	row("local: create to first exec", create)
	row("floor: unshare -fpnmiu --mount-proc true", nsCreate)
	row("local: exec true (api, warm)", execs)
	row("ssh driver (loopback sshd): exec true (api)", sshExecs)
	row("floor: nsenter -a into a namespace, true", nsExec)
	fmt.Printf("target: create to first exec p50 < 100ms: %v\n", pct(create, 50) < 100*time.Millisecond)
}

// benchSSHExecs times exec true through the daemon API on an ssh-driver
// sandbox on a loopback sshd.
func benchSSHExecs(b *testing.B, n int) []time.Duration {
	e := newEnv(b)
	e.create("ssh-bench")
	ctx := context.Background()
	var ds []time.Duration
	for i := range n + 10 {
		t0 := time.Now()
		p, err := e.c.Exec(ctx, "ssh-bench", &protocol.ExecStart{Argv: []string{"true"}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(nil, nil); err != nil {
			b.Fatal(err)
		}
		p.Close()
		if i >= 10 { // warm-up
			ds = append(ds, time.Since(t0))
		}
	}
	slices.Sort(ds)
	return ds
}

// benchNamespaceFloor times what the kernel and util-linux cost without
// darkshell: making the namespaces and running true in them (create), and
// entering running namespaces to run true (exec).
func benchNamespaceFloor(b *testing.B, n int) (create, execs []time.Duration) {
	for range n {
		t0 := time.Now()
		if out, err := exec.Command("unshare", "-fpnmiu", "--mount-proc", "true").CombinedOutput(); err != nil {
			b.Fatalf("unshare: %v %s", err, out)
		}
		create = append(create, time.Since(t0))
	}
	holder := exec.Command("unshare", "-fpnmiu", "--mount-proc", "sleep", "600")
	if err := holder.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	var target int
	waitFor(b, 5*time.Second, "the namespace holder", func() bool {
		kids := childPIDs(holder.Process.Pid)
		if len(kids) > 0 {
			target = kids[0]
		}
		return target > 0
	})
	for range 3 * n {
		t0 := time.Now()
		if out, err := exec.Command("nsenter", "-t", strconv.Itoa(target), "-a", "true").CombinedOutput(); err != nil {
			b.Fatalf("nsenter: %v %s", err, out)
		}
		execs = append(execs, time.Since(t0))
	}
	slices.Sort(create)
	slices.Sort(execs)
	return create, execs
}

// TestLocalSyscallEscapes calls refused syscalls directly (perl's
// syscall(), as the sandbox has no compiler) and asserts seccomp's errno;
// each has an allowed counterpart that works.
func TestLocalSyscallEscapes(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("SKIPPING: syscall numbers only for amd64 and arm64")
	}
	if _, err := os.Stat("/usr/bin/perl"); err != nil {
		requireFeature(t, "/usr/bin/perl (used to make raw syscalls inside the sandbox)")
	}
	e := newLocalEnv(t)
	e.createLocal("sys")
	// call returns "<ret> <errno>" of one raw syscall.
	call := func(sb string, nr int, args string) string {
		t.Helper()
		// Arguments in an array: perl passes string constants read-only.
		script := fmt.Sprintf(`my @a = (%s); $! = 0; my $r = syscall(%d, @a); print $r, " ", $!+0, "\n";`, args, nr)
		out, errOut, code := e.ds("exec", sb, "--", "perl", "-e", script)
		if code != 0 {
			t.Fatalf("perl %s: exit %d %s", script, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	eperm := "-1 " + strconv.Itoa(int(unix.EPERM))
	if got := call("sys", unix.SYS_GETPPID, ""); got != "1 0" { // positive control: the parent is sandboxd, PID 1
		t.Fatalf("getppid = %q", got)
	}
	if got := call("sys", unix.SYS_SOCKET, "1, 1, 0"); strings.HasPrefix(got, "-1") { // AF_UNIX stream: allowed
		t.Fatalf("socket(AF_UNIX) = %q", got)
	}
	if got := call("sys", unix.SYS_SOCKET, "2, 1, 0"); strings.HasPrefix(got, "-1") { // plain TCP socket: allowed
		t.Fatalf("socket(AF_INET, TCP) = %q", got)
	}
	if got := call("sys", unix.SYS_SOCKET, "16, 3, 0"); strings.HasPrefix(got, "-1") { // netlink route (ip, ss): allowed
		t.Fatalf("socket(AF_NETLINK, NETLINK_ROUTE) = %q", got)
	}
	if got := call("sys", unix.SYS_IOCTL, "0, 0x5413, 0"); got == eperm { // TIOCGWINSZ: not the filter's business
		t.Fatalf("ioctl(TIOCGWINSZ) = %q", got)
	}
	// seccompOnly cases are arguments that another layer would answer
	// differently (EFAULT, EINVAL or success): an --unconfined sandbox
	// (same namespaces, uid and capabilities, no seccomp) must not get
	// EPERM for them, which proves the filter is the layer that refused.
	// The others are also behind a capability check, so their EPERM alone
	// does not name the layer.
	cases := []struct {
		name        string
		nr          int
		args        string
		want        string
		seccompOnly bool
	}{
		{"mount", unix.SYS_MOUNT, `1, 1, 1, 0, 0`, eperm, true},
		{"umount2", unix.SYS_UMOUNT2, `1, 0`, eperm, true},
		{"pivot_root", unix.SYS_PIVOT_ROOT, `"/tmp", "/tmp"`, eperm, false},
		{"ptrace traceme", unix.SYS_PTRACE, `0, 0, 0, 0`, eperm, true},
		{"ptrace attach pid 1", unix.SYS_PTRACE, `16, 1, 0, 0`, eperm, false},
		{"bpf", unix.SYS_BPF, `5, 0, 0`, eperm, false},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, `0, 0, -1, -1, 0`, eperm, true},
		{"unshare user", unix.SYS_UNSHARE, strconv.Itoa(unix.CLONE_NEWUSER), eperm, true},
		{"setns", unix.SYS_SETNS, `0, 0`, eperm, true},
		{"clone new user ns", unix.SYS_CLONE, fmt.Sprintf("%d, 0, 0, 0, 0", unix.CLONE_NEWUSER|int(unix.SIGCHLD)), eperm, true},
		{"clone3", unix.SYS_CLONE3, `0, 0`, "-1 " + strconv.Itoa(int(unix.ENOSYS)), true},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, `1, 0`, eperm, true},
		{"keyctl", unix.SYS_KEYCTL, `0, 0, 0`, eperm, true},
		{"add_key", unix.SYS_ADD_KEY, `"user", "d", 0, 0, 0`, eperm, true},
		{"init_module", unix.SYS_INIT_MODULE, `0, 0, 0`, eperm, false},
		{"kexec_load", unix.SYS_KEXEC_LOAD, `0, 0, 0, 0`, eperm, false},
		{"reboot", unix.SYS_REBOOT, `0, 0, 0, 0`, eperm, false},
		{"userfaultfd user mode", unix.SYS_USERFAULTFD, `1`, eperm, true},
		{"open_tree", unix.SYS_OPEN_TREE, `-100, "/", 0`, eperm, true},
		{"fsopen", unix.SYS_FSOPEN, `"tmpfs", 0`, eperm, false},
		{"move_mount", unix.SYS_MOVE_MOUNT, `-100, "/tmp", -100, "/sandbox", 0`, eperm, false},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, `-100, "/tmp", 0, 0, 0`, eperm, false},
		{"process_vm_writev self", unix.SYS_PROCESS_VM_WRITEV, `$$, 0, 0, 0, 0, 0`, eperm, true},
		{"TIOCSTI ioctl", unix.SYS_IOCTL, `0, 0x5412, 0`, eperm, true},
		{"TIOCSTI ioctl, high bits", unix.SYS_IOCTL, `0, 0x100005412, 0`, eperm, true},
		{"TIOCLINUX ioctl", unix.SYS_IOCTL, `0, 0x541C, 0`, eperm, true},
		{"AF_VSOCK socket", unix.SYS_SOCKET, `40, 1, 0`, eperm, true},
		{"AF_PACKET socket", unix.SYS_SOCKET, `17, 3, 0`, eperm, false},
		{"AF_NETLINK audit socket", unix.SYS_SOCKET, `16, 3, 9`, eperm, true},
		{"AF_ALG socket", unix.SYS_SOCKET, `38, 5, 0`, eperm, true},
		{"MPTCP socket", unix.SYS_SOCKET, `2, 1, 262`, eperm, true},
		{"MPTCP socket v6", unix.SYS_SOCKET, `10, 1, 262`, eperm, true},
		{"process_vm_readv self", unix.SYS_PROCESS_VM_READV, `$$, 0, 0, 0, 0, 0`, eperm, true},
	}
	for _, c := range cases {
		if got := call("sys", c.nr, c.args); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	t.Run("the filter is the refusing layer", func(t *testing.T) {
		_, errOut, code := e.ds("sandbox", "create", "unc", "--unconfined")
		if code != 0 || !strings.Contains(errOut, "WARNING") {
			t.Fatalf("create --unconfined: exit %d, stderr %q (want a warning)", code, errOut)
		}
		for _, c := range cases {
			if got := call("unc", c.nr, c.args); c.seccompOnly && got == c.want {
				t.Errorf("%s: unconfined sandbox also got %q: this case does not show seccomp's refusal", c.name, got)
			}
		}
	})
	t.Run("setuid binary gives no root", func(t *testing.T) {
		out, errOut, code := e.bash("sys", "su root -c id </dev/null")
		if code == 0 || strings.Contains(out, "uid=0") {
			t.Fatalf("su: exit %d, %q %q", code, out, errOut)
		}
		e.refused("sys", "echo x > /proc/1/mem", "Permission denied")
	})
	t.Run("workspace symlinks resolve inside", func(t *testing.T) {
		ws := filepath.Join(e.home, "sandboxes", "sys", "workspace")
		if err := os.Symlink(filepath.Join(e.home, "sandboxes", "sys", "keys"), filepath.Join(ws, "keys")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc", filepath.Join(ws, "etc")); err != nil {
			t.Fatal(err)
		}
		e.refused("sys", "ls /sandbox/keys/", "No such file or directory")
		e.mustBash("sys", "cat /sandbox/etc/hostname") // positive control: the sandbox's own /etc
		e.refused("sys", "echo x > /sandbox/etc/darkshell-test", "Read-only file system")
	})
}

// TestLocalForeignArch: an i386 syscall (int $0x80) from a 64-bit process
// is refused by the architecture filter. The probe is built with the
// host's gcc and run from the workspace.
func TestLocalForeignArch(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("SKIPPING: the int $0x80 probe is x86-64 only")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		requireFeature(t, "gcc (to build the int $0x80 probe)")
	}
	e := newLocalEnv(t)
	e.createLocal("arch")
	src := filepath.Join(t.TempDir(), "i386.c")
	os.WriteFile(src, []byte(`void _start(void) {
	long r;
	__asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory"); /* i386 getpid */
	long code = r > 0 ? 0 : (r == -1 ? 1 : 2);
	__asm__ volatile ("syscall" :: "a"(60L), "D"(code) : "memory");
	for (;;) {}
}
`), 0o644)
	bin := filepath.Join(e.home, "sandboxes", "arch", "workspace", "i386")
	if out, err := exec.Command(gcc, "-static", "-nostdlib", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		requireFeature(t, "a gcc that builds static x86-64 binaries: "+string(out))
	}
	os.Chmod(bin, 0o755)
	host := exec.Command(bin).Run()
	var ee *exec.ExitError
	switch {
	case host == nil:
		t.Log("host: int $0x80 works here (IA32 emulation on), so the filter is what refuses it")
	case errors.As(host, &ee) && ee.ExitCode() == -1:
		t.Log("host: int $0x80 raises a signal here (IA32 emulation off); the filter is checked by TestArgFilter")
	default:
		t.Fatalf("host probe: %v", host)
	}
	_, errOut, code := e.ds("exec", "arch", "--", "/sandbox/i386")
	if host == nil && code != 1 {
		t.Fatalf("in the sandbox int $0x80 getpid: exit %d (%s), want 1 (EPERM from the arch filter)", code, errOut)
	}
	if host != nil && code == 0 {
		t.Fatal("int $0x80 worked in the sandbox but not on the host")
	}
}

// TestLocalOutlivesDaemon: a sandbox keeps running when the daemon is
// killed, and a new daemon finds it again (the record's pid and start time).
func TestLocalOutlivesDaemon(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("live")
	e.mustBash("live", "echo before > /sandbox/f")
	pid := e.initPID("live")
	v, err := e.c.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	syscallKill(v.PID)
	// A killed multi-threaded process shows as a zombie before its last
	// thread closed the listening socket: wait until the socket refuses.
	waitFor(t, 5*time.Second, "the daemon to die", func() bool {
		c, err := net.Dial("unix", filepath.Join(e.home, "darkshell.sock"))
		if err == nil {
			c.Close()
		}
		return !pidAlive(v.PID) && err != nil
	})
	if !pidAlive(pid) {
		t.Fatal("the sandbox died with the daemon")
	}
	if got := e.mustBash("live", "cat /sandbox/f"); got != "before\n" {
		t.Fatalf("after a daemon restart: %q", got)
	}
	if v2, err := e.c.Version(context.Background()); err != nil || v2.PID == v.PID {
		t.Fatalf("no new daemon: %v %v", v2, err)
	}
}

// TestLocalWorkspaceDir: --workspace binds an existing host dir at /sandbox,
// and delete leaves it (it is the user's).
func TestLocalWorkspaceDir(t *testing.T) {
	e := newLocalEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "in"), []byte("from-host\n"), 0o644)
	os.Chmod(dir, 0o777) // the sandbox uid needs write access; darkshell does not chown a user's dir
	e.createLocal("ws", "--workspace", dir)
	if got := e.mustBash("ws", "cat /sandbox/in && echo out > /sandbox/out"); got != "from-host\n" {
		t.Fatalf("read: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "out\n" {
		t.Fatalf("write: %q", b)
	}
	e.refused("ws", "ls "+dir, "No such file or directory") // the host path itself is not visible
	if _, _, code := e.ds("sandbox", "delete", "ws"); code != 0 {
		t.Fatal("delete failed")
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err != nil {
		t.Fatalf("delete removed the user's workspace: %v", err)
	}
	_, errOut, code := e.ds("sandbox", "create", "ws2", "--workspace", filepath.Join(dir, "missing"))
	if code == 0 || !strings.Contains(errOut, "not an existing directory") {
		t.Fatalf("missing workspace: exit %d, %q", code, errOut)
	}
}

// TestLocalConnectInteractive: a PTY login shell in a local sandbox (the
// new devpts instance and /dev/ptmx pass Landlock's ioctl rule).
func TestLocalConnectInteractive(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("tty")
	connectSession(t, e.home, "tty", "echo marker-$((40+2)) $(id -u); stty size; tty\n", "marker-42 65000", "30 100", "/dev/pts/")
}

// TestLocalNoInheritedFDs: descriptors the controller inherited from its own
// parent (here a daemon started with two extra open files) never reach
// sandbox processes, nor stay open in sandboxd.
func TestLocalNoInheritedFDs(t *testing.T) {
	e := newLocalEnv(t)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f1, _ := os.Open(os.DevNull)
	f2, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	defer f2.Close()
	daemon := exec.Command(filepath.Join(binDir, "darkshell"), "daemon", "run")
	daemon.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	// fds 3 to 43 of the daemon, inherited by its children: the host file
	// last, above the descriptors the daemon hands init on purpose (the
	// readiness pipe and the probes' share, from 3 on: the ring buffer,
	// the knobs and a link per probe, 18 links with the file audit on
	// the syscall tracepoints).
	for range 40 {
		daemon.ExtraFiles = append(daemon.ExtraFiles, f1)
	}
	daemon.ExtraFiles = append(daemon.ExtraFiles, f2)
	secretFD := 2 + len(daemon.ExtraFiles)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	go daemon.Wait()
	waitForDaemon(t, e.home, 5*time.Second)
	e.createLocal("fds")
	// Positive control: the daemon does hold the file the test leaked to it.
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", daemon.Process.Pid, secretFD)); l != secret {
		t.Fatalf("the daemon's fd %d is %q, want %s", secretFD, l, secret)
	}
	out := e.mustBash("fds", "ls /proc/self/fd")
	if got := strings.Fields(out); !slices.Equal(got, []string{"0", "1", "2", "3"}) { // 3: ls's own directory
		t.Fatalf("descriptors of a sandbox process: %v", got)
	}
	// sandboxd did receive it (from the daemon, across exec) and closed it.
	if b, _ := os.ReadFile(filepath.Join(e.home, "sandboxes", "fds", "sandboxd.log")); !strings.Contains(string(b), "target="+secret) {
		t.Fatalf("sandboxd.log does not show the inherited descriptor being closed:\n%s", b)
	}
	pid := e.initPID("fds")
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, d := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, d.Name())); l == secret {
			t.Fatalf("sandboxd (pid %d) holds the host file as fd %s", pid, d.Name())
		}
	}
}
