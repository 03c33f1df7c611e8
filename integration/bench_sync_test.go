package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
)

// genBenchTree writes files small files of 1..64 KiB in 50 directories plus
// one file of bigMiB MiB; content is pseudo-random (incompressible).
func genBenchTree(b testing.TB, dir string, files, bigMiB int) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	fill := func(n int) []byte {
		p := buf[:n]
		for i := 0; i+8 <= len(p); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				p[i+k] = byte(v >> (8 * k))
			}
		}
		return p
	}
	for i := range files {
		d := filepath.Join(dir, fmt.Sprintf("pkg%02d", i%50))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file%04d.go", i)), fill(1024+rng.IntN(63*1024)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	for range bigMiB {
		f.Write(fill(1 << 20))
	}
	f.Close()
}

var rsyncStat = regexp.MustCompile(`Total bytes (sent|received): ([0-9,]+)`)

// BenchmarkSync compares darkshell sync (through the warm daemon API) with
// `rsync -a` over the same sshd, on the same generated tree, in one run
// (make bench-sync). rsync runs through a warm ssh ControlMaster so that
// neither side pays an SSH handshake per run.
func BenchmarkSync(b *testing.B) {
	e := newEnv(b)
	e.create("s")
	ctx := context.Background()
	src := filepath.Join(b.TempDir(), "src")
	files, bigMiB := 2000, 64
	if v, _ := strconv.Atoi(os.Getenv("DARKSHELL_BENCH_SYNC_MIB")); v > 0 {
		bigMiB = v
	}
	genBenchTree(b, src, files, bigMiB)
	cm := filepath.Join(b.TempDir(), "cm")
	sshCmd := fmt.Sprintf("ssh -F /dev/null -i %s -p %d -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ControlMaster=auto -o ControlPath=%s -o ControlPersist=120",
		e.sshd.ClientKey, e.sshd.Port, cm)
	host := e.sshd.User + "@127.0.0.1"
	defer exec.Command("sh", "-c", sshCmd+" -O exit "+host).Run()

	ds := func(dir, local, remote string) (time.Duration, int64, error) {
		t0 := time.Now()
		r, err := e.c.Sync(ctx, "s", &api.SyncRequest{Direction: dir, Local: local, Remote: remote, Delete: true})
		if err != nil {
			return 0, 0, err
		}
		return time.Since(t0), r.SentBytes + r.RecvBytes, nil
	}
	rs := func(from, to string) (time.Duration, int64, error) {
		t0 := time.Now()
		out, err := exec.Command("rsync", "-a", "--delete", "--stats", "-e", sshCmd, from, to).CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return 0, 0, fmt.Errorf("rsync: %v\n%s", err, out)
		}
		var wire int64
		for _, m := range rsyncStat.FindAllStringSubmatch(string(out), -1) {
			n, _ := strconv.ParseInt(regexp.MustCompile(`,`).ReplaceAllString(m[2], ""), 10, 64)
			wire += n
		}
		return d, wire, nil
	}
	// Warm both: the session and the ControlMaster.
	if _, err := e.c.Info(ctx, "s"); err != nil {
		b.Fatal(err)
	}
	exec.Command("sh", "-c", sshCmd+" "+host+" true").Run()

	dsDst, rsDst := filepath.Join(e.sbHome, "ds"), filepath.Join(e.sbHome, "rs")
	small := filepath.Join(src, "pkg07", "file0007.go")
	bump := func(p string) {
		t := time.Now().Add(time.Minute)
		os.Chtimes(p, t, t)
	}
	cases := []struct {
		name string
		prep func()
		ds   func() (time.Duration, int64, error)
		rs   func() (time.Duration, int64, error)
	}{
		{"initial upload", nil,
			func() (time.Duration, int64, error) { return ds(api.SyncPush, src, dsDst) },
			func() (time.Duration, int64, error) { return rs(src+"/", host+":"+rsDst+"/") }},
		{"nothing changed", nil,
			func() (time.Duration, int64, error) { return ds(api.SyncPush, src, dsDst) },
			func() (time.Duration, int64, error) { return rs(src+"/", host+":"+rsDst+"/") }},
		{"one small file changed", func() {
			os.WriteFile(small, []byte("package x // changed\n"), 0o644)
			bump(small)
		},
			func() (time.Duration, int64, error) { return ds(api.SyncPush, src, dsDst) },
			func() (time.Duration, int64, error) { return rs(src+"/", host+":"+rsDst+"/") }},
		{fmt.Sprintf("1 MiB changed in %d MiB file", bigMiB), func() {
			f, _ := os.OpenFile(filepath.Join(src, "big.bin"), os.O_WRONLY, 0)
			junk := make([]byte, 1<<20)
			for i := range junk {
				junk[i] = byte(i * 31)
			}
			f.WriteAt(junk, int64(bigMiB/2)<<20)
			f.Close()
			bump(filepath.Join(src, "big.bin"))
		},
			func() (time.Duration, int64, error) { return ds(api.SyncPush, src, dsDst) },
			func() (time.Duration, int64, error) { return rs(src+"/", host+":"+rsDst+"/") }},
		{"download one subdir", nil,
			func() (time.Duration, int64, error) {
				return ds(api.SyncPull, filepath.Join(b.TempDir(), "dl"), filepath.Join(dsDst, "pkg03"))
			},
			func() (time.Duration, int64, error) {
				return rs(host+":"+filepath.Join(rsDst, "pkg03")+"/", filepath.Join(b.TempDir(), "dl")+"/")
			}},
	}
	fmt.Printf("\nsync benchmark: %d files of 1-64 KiB + one %d MiB file, same sshd\n", files, bigMiB)
	fmt.Printf("%-32s %12s %14s %12s %14s %8s %8s\n", "case", "darkshell s", "darkshell wire", "rsync s", "rsync wire", "time x", "wire x")
	for _, c := range cases {
		if c.prep != nil {
			c.prep()
		}
		dt, dw, err := c.ds()
		if err != nil {
			b.Fatalf("%s: darkshell: %v", c.name, err)
		}
		rt, rw, err := c.rs()
		if err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		fmt.Printf("%-32s %12.3f %14d %12.3f %14d %8.2f %8.2f\n", c.name, dt.Seconds(), dw, rt.Seconds(), rw,
			dt.Seconds()/rt.Seconds(), float64(dw)/float64(max(rw, 1)))
	}
	if d := treeDiff(b, src, dsDst); len(d) > 0 {
		b.Fatalf("darkshell copy differs: %v", d[:min(len(d), 10)])
	}
}
