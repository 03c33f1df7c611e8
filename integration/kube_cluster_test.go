package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// A real single-node Kubernetes cluster for the kubernetes driver tests,
// started once per test binary (the first test that needs it) and torn
// down in TestMain: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kubelet (built from the Go module proxy by `make k8s`
// into .cache/k8s/bin), containerd and runc from Debian, the CNI bridge
// plugin, images imported from archives the test writes. It runs in a
// network namespace the test makes (kubelet refuses a loopback node
// address); the test reaches the API through a veth pair whose other end is
// the node address. scripts/k8s/up.sh and down.sh do the work.

// kubeImage is the sandbox image the tests run (host tools, no sandboxd).
const kubeImage = "darkshell.test/tools:1"

type kubeCluster struct {
	dir, run, netns, hostVeth, nodeIP string
	kubeconfig                        string // admin, server at the node address
	kubectl                           string
	sysctls                           []byte // saved before kubelet started
}

var (
	kubeOnce sync.Once
	kubeCl   *kubeCluster
	kubeErr  error
	kubeSkip string
)

// repoRoot is the module's directory.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd) // tests run in integration/
}

// requireKube returns the running test cluster, starting it on first use.
func requireKube(t testing.TB) *kubeCluster {
	t.Helper()
	requireIntegration(t)
	kubeOnce.Do(func() { kubeCl, kubeSkip, kubeErr = startKube() })
	if kubeSkip != "" {
		requireFeature(t, kubeSkip)
	}
	if kubeErr != nil {
		t.Fatalf("test cluster: %v", kubeErr)
	}
	return kubeCl
}

// stopKube tears the cluster down (TestMain calls it after the tests).
func stopKube() {
	if kubeCl != nil {
		kubeCl.stop()
	}
}

func startKube() (k *kubeCluster, skip string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v\n%s", r, debug.Stack())
		}
	}()
	bin := filepath.Join(repoRoot(), ".cache", "k8s", "bin")
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, "the Kubernetes binaries in .cache/k8s/bin (`make k8s` builds them, about 11 minutes the first time)", nil
		}
	}
	for _, b := range []string{"etcd", "containerd", "ctr", "runc", "ip", "nsenter", "gcc"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, b + " (make deps installs it)", nil
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, "the CNI bridge plugin (containernetworking-plugins; make deps installs it)", nil
	}
	if os.Geteuid() != 0 {
		return nil, "root (the test cluster's kubelet and containerd need it)", nil
	}
	reapStaleKube()
	dir, err := os.MkdirTemp("/var/tmp", "darkshell-k8s-")
	if err != nil {
		return nil, "", err
	}
	id := os.Getpid() % 100000
	cl := &kubeCluster{dir: dir, run: filepath.Join(dir, "run"), kubectl: filepath.Join(bin, "kubectl"),
		netns: fmt.Sprintf("dsk8s-%d", id), hostVeth: fmt.Sprintf("dsk%dh", id),
		nodeIP: fmt.Sprintf("10.%d.%d.2", 200+id%50, (id/50)%250)}
	k = cl
	os.WriteFile(filepath.Join(dir, "netns"), []byte(k.netns), 0o644)
	ok := false
	defer func() {
		if !ok {
			cl.stop()
		}
	}()
	hostIP := strings.TrimSuffix(k.nodeIP, ".2") + ".1"
	for _, c := range [][]string{
		{"ip", "netns", "add", k.netns},
		{"ip", "link", "add", k.hostVeth, "type", "veth", "peer", "name", "eth-k8s", "netns", k.netns},
		{"ip", "addr", "add", hostIP + "/30", "dev", k.hostVeth},
		{"ip", "link", "set", k.hostVeth, "up"},
		{"ip", "-n", k.netns, "addr", "add", k.nodeIP + "/30", "dev", "eth-k8s"},
		{"ip", "-n", k.netns, "link", "set", "eth-k8s", "up"},
		{"ip", "-n", k.netns, "link", "set", "lo", "up"},
		{"ip", "-n", k.netns, "route", "add", "default", "via", hostIP},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("%s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	// Images: a static pause (the pod sandbox) and the tools image.
	pause := filepath.Join(dir, "pause")
	if out, err := exec.Command("gcc", "-Os", "-static", "-o", pause, filepath.Join(repoRoot(), "scripts", "k8s", "pause.c")).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("build pause: %v %s", err, out)
	}
	proot := filepath.Join(dir, "pause-root")
	os.MkdirAll(proot, 0o755)
	if b, err := os.ReadFile(pause); err == nil {
		os.WriteFile(filepath.Join(proot, "pause"), b, 0o755)
	}
	pauseTar, toolsTar := filepath.Join(dir, "pause.tar"), filepath.Join(dir, "tools.tar")
	if err := writeImage(proot, pauseTar, "darkshell.test/pause:1", v1.Config{Entrypoint: []string{"/pause"}}); err != nil {
		return nil, "", err
	}
	// The conformance suite's tools, and tar for kubectl cp (the benchmark's peer).
	tb := &panicTB{}
	troot := toolRoot(tb, "bash", "sh", "cat", "ls", "id", "touch", "mkdir", "rm", "uname", "chmod", "mv",
		"sha256sum", "tr", "sleep", "head", "tail", "seq", "stty", "env", "true", "ln", "grep", "echo", "tar", "find", "wc", "pwd")
	err = writeImage(troot, toolsTar, kubeImage, v1.Config{})
	tb.done()
	if err != nil {
		return nil, "", err
	}

	k.sysctls, _ = exec.Command("sysctl", "vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "vm.panic_on_oom").Output()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+k.netns, filepath.Join(repoRoot(), "scripts", "k8s", "up.sh"))
	cmd.Env = append(os.Environ(), "RUN="+k.run, "BIN="+bin, "NODE_IP="+k.nodeIP,
		"IMAGES="+pauseTar+" "+toolsTar, "PAUSE_IMAGE=darkshell.test/pause:1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	k.restoreSysctls()
	if err != nil {
		return nil, "", fmt.Errorf("up.sh: %v\n%s", err, out.String())
	}
	k.kubeconfig = filepath.Join(k.run, "pki", "node-admin.kubeconfig")
	fmt.Fprintf(os.Stderr, "test cluster up in %s (node %s, netns %s)\n", time.Since(t0).Round(time.Millisecond), k.nodeIP, k.netns)
	ok = true
	return k, "", nil
}

// restoreSysctls puts back what kubelet changed (kernel.panic_on_oops=1
// would reboot this shared machine on any kernel oops).
func (k *kubeCluster) restoreSysctls() {
	for _, l := range strings.Split(string(k.sysctls), "\n") {
		if kv := strings.ReplaceAll(strings.TrimSpace(l), " ", ""); kv != "" {
			exec.Command("sysctl", "-q", "-w", kv).Run()
		}
	}
}

func (k *kubeCluster) stop() {
	if k.run != "" {
		cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "k8s", "down.sh"))
		cmd.Env = append(os.Environ(), "RUN="+k.run)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "down.sh: %v %s\n", err, out)
		}
	}
	// Anything still running from the run dir is ours: say so and end it.
	if k.run != "" {
		for _, pid := range pgrep(k.run) {
			fmt.Fprintf(os.Stderr, "test cluster: killing leftover pid %d\n", pid)
			syscallKill(pid)
		}
	}
	k.restoreSysctls()
	exec.Command("ip", "link", "del", k.hostVeth).Run()
	exec.Command("ip", "netns", "del", k.netns).Run()
	os.RemoveAll(k.dir)
}

// reapStaleKube tears down clusters a killed test run left behind.
func reapStaleKube() {
	dirs, _ := filepath.Glob("/var/tmp/darkshell-k8s-*")
	for _, d := range dirs {
		ns, err := os.ReadFile(filepath.Join(d, "netns"))
		if err != nil {
			continue
		}
		k := &kubeCluster{dir: d, run: filepath.Join(d, "run"), netns: string(ns), hostVeth: "dsk" + strings.TrimPrefix(string(ns), "dsk8s-") + "h"}
		fmt.Fprintf(os.Stderr, "removing a test cluster left behind in %s\n", d)
		k.stop()
	}
}

// kubectl runs kubectl against the test cluster.
func (k *kubeCluster) kubectlOut(args ...string) (string, error) {
	cmd := exec.Command(k.kubectl, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeImage writes dir as a one-layer docker-archive image with config cfg.
func writeImage(dir, archive, tag string, cfg v1.Config) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	tb := &panicTB{}
	defer tb.done()
	img := layerImage(tb, dir)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	// containerd imports only images for its platform.
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return tarball.WriteToFile(archive, ref, img)
}

// panicTB lets testing.TB helpers run outside a test (cluster start-up):
// a failure panics with its message; cleanups run at done.
type panicTB struct {
	testing.TB
	cleanups []func()
}

func (*panicTB) Helper()                   {}
func (*panicTB) Fatal(a ...any)            { panic(fmt.Sprint(a...)) }
func (*panicTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (p *panicTB) Cleanup(f func())        { p.cleanups = append(p.cleanups, f) }
func (p *panicTB) done() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
}
