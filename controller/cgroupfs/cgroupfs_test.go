package cgroupfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bohica-labs/darkshell/controller/driver"
)

func TestFillUsage(t *testing.T) {
	v1mem, v1pids, v2 := t.TempDir(), t.TempDir(), t.TempDir()
	w := func(d, f, s string) { os.WriteFile(filepath.Join(d, f), []byte(s), 0o644) }
	w(v1mem, "memory.usage_in_bytes", "1048576\n")
	w(v1mem, "memory.limit_in_bytes", "9223372036854771712\n") // "no limit"
	w(v1mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	w(v1pids, "pids.current", "7\n")
	v1cpu, v2cpu := t.TempDir(), t.TempDir()
	w(v1cpu, "cpu.cfs_quota_us", "50000\n")
	w(v1cpu, "cpu.cfs_period_us", "100000\n")
	w(v1cpu, "cpu.stat", "nr_periods 3\nnr_throttled 1\nthrottled_time 5\n") // v1: no usage here
	w(v2cpu, "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
	var r driver.Resources
	FillUsage(&r, v1mem, v1pids, v1cpu, v2cpu)
	if r.MemoryBytes != 1<<20 || r.MemoryLimitBytes != 0 || r.OOMKills != 3 || r.Pids != 7 || r.CPUSeconds != 2.5 || r.CPULimit != 0.5 {
		t.Fatalf("v1: %+v", r)
	}
	w(v1cpu, "cpuacct.usage", "1500000000\n") // cpuacct, where mounted with cpu, wins
	r = driver.Resources{}
	FillUsage(&r, v1cpu, v2cpu)
	if r.CPUSeconds != 1.5 {
		t.Fatalf("cpuacct: %+v", r)
	}
	w(v2, "memory.current", "2048\n")
	w(v2, "memory.max", "67108864\n")
	w(v2, "memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
	w(v2, "pids.current", "3\n")
	w(v2, "cpu.max", "150000 100000\n")
	r = driver.Resources{}
	FillUsage(&r, v2)
	if r.MemoryBytes != 2048 || r.MemoryLimitBytes != 64<<20 || r.OOMKills != 2 || r.Pids != 3 || r.CPULimit != 1.5 {
		t.Fatalf("v2: %+v", r)
	}
}

func TestMountsAndOf(t *testing.T) {
	m, err := Mounts()
	if err != nil {
		t.Fatal(err)
	}
	own, err := Of(0)
	if err != nil || len(own) == 0 {
		t.Fatalf("own cgroups: %v %v", own, err)
	}
	if len(m) == 0 {
		t.Skip("SKIPPING: no cgroup file system mounted here")
	}
	self, _ := Of(os.Getpid())
	for k, v := range own {
		if self[k] != v {
			t.Fatalf("Of(0) and Of(self) differ for %q: %q %q", k, v, self[k])
		}
	}
}
