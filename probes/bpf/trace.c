// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// trace.c: the process and file audit probes of every sandbox on a host.
//
// Process events come from tp_btf programs: they need no tracefs and load
// where fentry/fexit/lsm are refused (see docs/trace.md). File events come
// from one of two programs, the loader's choice (probes/set.go):
//   - on_sc_exit, a classic tracepoint program the loader attaches to the
//     sys_exit_* event of each watched syscall (tracefs gives their ids):
//     it runs for those syscalls only;
//   - on_sys_exit, tp_btf/sys_exit, the fallback where tracefs cannot be
//     had: it runs for every syscall of the machine and filters by number.
// Both read the syscall's arguments at exit from the task's saved registers
// (the kernel does not change them), so no program runs at syscall entry
// and no state is kept between entry and exit. One loaded copy serves every sandbox:
// each program first looks the current task's pid namespace up in `sandbox_rings`
// and `sandbox_knobs` (entries the loader adds per sandbox), so nothing of the host
// or of a namespace without an entry is ever copied out of the kernel, and
// each sandbox's events go to its own ring buffer, read by its own sandboxd.
// Pids are those of the sandbox's namespace. Kernel types are declared here
// with preserve_access_index, so the object relocates against the running
// kernel's BTF (CO-RE) and no vmlinux.h is needed.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_COMPS 12
#define COMP_LEN 48
#define STR_LEN 256
#define ARGS_LEN 512
// The variable-length part of a record is built in a per-CPU scratch
// buffer: every write starts below DATA_MASK+1 (the verifier's bound) and
// the longest record's data (exec: 256 + 12 x 48 + 512 bytes) fits below it.
#define DATA_SZ 4096
#define DATA_MASK 2047

enum kind {
	K_EXEC = 1,
	K_FORK = 2,
	K_EXIT = 3,
	K_FILE = 4,
};

enum fop {
	OP_OPEN = 1,
	OP_UNLINK = 2,
	OP_RENAME = 3,
	OP_MKDIR = 4,
	OP_RMDIR = 5,
	OP_CHMOD = 6,
};

// Kernel types, only the fields read here (CO-RE relocated).
struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path pwd;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct pid_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));
// Direct loads (the verifier makes them fault-safe): regs is a BTF pointer
// (a tp_btf argument, or bpf_task_pt_regs), no helper call needed.
#define SYSNO(r) ((long)(r)->orig_ax)
#define ARG0(r) ((r)->di)
#define ARG1(r) ((r)->si)
#define ARG2(r) ((r)->dx)
#define ARG3(r) ((r)->r10)
#define NR_open 2
#define NR_creat 85
#define NR_unlink 87
#define NR_rename 82
#define NR_mkdir 83
#define NR_rmdir 84
#define NR_chmod 90
#define NR_openat 257
#define NR_mkdirat 258
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_fchmodat 268
#define NR_renameat2 316
#define NR_openat2 437
#define NR_fchmodat2 452
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	unsigned long regs[31];
	unsigned long orig_x0;
	int syscallno;
} __attribute__((preserve_access_index));
#define SYSNO(r) ((long)(r)->syscallno)
// x0 holds the return value at exit; the first argument is kept in orig_x0.
#define ARG0(r) ((r)->orig_x0)
#define ARG1(r) ((r)->regs[1])
#define ARG2(r) ((r)->regs[2])
#define ARG3(r) ((r)->regs[3])
#define NR_open -1
#define NR_creat -1
#define NR_unlink -1
#define NR_rename -1
#define NR_mkdir -1
#define NR_rmdir -1
#define NR_chmod -1
#define NR_openat 56
#define NR_mkdirat 34
#define NR_unlinkat 35
#define NR_renameat 38
#define NR_fchmodat 53
#define NR_renameat2 276
#define NR_openat2 437
#define NR_fchmodat2 452
#else
#error "unsupported target architecture"
#endif

#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200

// The header of a record of the ring buffer, shared with the Go decoder
// (probes.ParseRecord, through the bpf2go type). Fork and exit records are
// the header alone. Exec and file records are followed by their data, only
// the bytes used, in this order: s1 (exec: the filename; file: the path),
// s2 (file: the rename target), the directory components (innermost
// first), args (exec: argv, NUL separated, as read). s1, s2 and each
// component end with a NUL that their lengths count; an empty part is 0
// bytes. Fixed-size strings cost the producer, and above all the reader,
// cache lines of padding: an exec of /bin/true is about 500 bytes of
// records instead of 4 KiB.
struct event {
	__u64 ts;         // bpf_ktime_get_boot_ns
	__u64 start;      // exit: the task's start_boottime
	__u32 kind;       // enum kind
	__u32 pid;        // tgid in the sandbox's pid namespace
	__u32 ppid;       // fork: the child's pid; exec/exit: the parent's
	__u32 uid;        // kernel uid
	__s32 ret;        // exit: raw exit_code; file: syscall return
	__u32 op;         // file: enum fop
	__u32 flags;      // file: open flags / unlinkat flags
	__u32 ncomp;      // directory components in the data
	__u32 truncated;  // 1 if the directory walk stopped at MAX_COMPS
	__u32 dirfd_rel;  // file: 1 if s1 is relative to the walked dir
	__u16 s1_len;     // bytes of each part of the data, in order
	__u16 s2_len;
	__u16 comps_len;
	__u16 args_len;
	char comm[16];
};

#define HDR_SIZE sizeof(struct event)

// A record being built: exec and file programs fill one (a slot of their
// own in the per-CPU scratch map: a program does not nest in itself on
// one CPU, two programs could) and copy out the used bytes.
struct scratch {
	struct event h;
	char data[DATA_SZ];
};

enum slot {
	SLOT_EXEC = 0,
	SLOT_FILE = 1,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// Per sandbox: a switch and a loss counter, in a one-element array the
// sandbox's sandboxd maps into memory (it writes `on` and `files_on` and
// reads `lost` after lock-down, with no bpf() call).
struct knobs {
	__u32 on;       // 0 until sandboxd is confined: its own set-up is not traced
	__u32 files_on; // the file audit
	__u64 lost;     // events dropped on a full ring buffer
	__u32 hook;     // set by the loader: which program makes file events (HOOK_*)
	__u32 pad;
};

// Values of knobs.hook (probes/set.go: FileHook).
enum hook {
	HOOK_SYSCALL_TRACEPOINTS = 1, // on_sc_exit on tracepoint/syscalls/sys_exit_*
	HOOK_RAW_SYS_EXIT = 2,        // on_sys_exit on tp_btf/sys_exit
};

struct inner_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
};

struct inner_knobs {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct knobs);
};

// The sandboxes, keyed by the inode number of their pid namespace.
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct inner_ring);
} sandbox_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct inner_knobs);
} sandbox_knobs SEC(".maps");

// Force BTF for these types so bpf2go generates Go structs for them.
const struct event *unused_event __attribute__((unused));
const struct knobs *unused_knobs __attribute__((unused));

// ns_tgid is the tgid of task t in the pid namespace at level.
// t is a BTF pointer (the current task, or a tracepoint's argument): the
// pointer walks below are direct loads, which the verifier makes
// fault-safe, not helper calls (a helper call is dear on machines with
// return-stack mitigations). Only the variable-index reads of
// pid->numbers[level] go through bpf_probe_read_kernel.
static __always_inline __u32 ns_tgid(struct task_struct *t, unsigned int level)
{
	struct pid *p = t->group_leader->thread_pid;
	if (!p)
		return 0;
	unsigned int plevel = p->level;
	if (plevel != level || level > 32)
		return 0; // another namespace (the parent of the sandbox's init)
	int nr = 0;
	unsigned long off = bpf_core_field_offset(struct pid, numbers) + level * bpf_core_type_size(struct upid);
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)p + off);
	return nr;
}

// sandbox is where the current task's events go.
struct sandbox {
	void *ring;
	struct knobs *k;
	__u32 tgid;  // the task's tgid in the sandbox's pid namespace
	__u32 level; // the depth of that namespace
};

// sandbox_of finds the sandbox of the current task t: the entries of its
// own pid namespace. Host tasks (level 0) return at the first test.
static __always_inline int sandbox_of(struct task_struct *t, struct sandbox *sb)
{
	struct pid *p = t->thread_pid;
	if (!p)
		return 0;
	unsigned int level = p->level;
	if (level == 0 || level > 32)
		return 0;
	unsigned long off = bpf_core_field_offset(struct pid, numbers) + level * bpf_core_type_size(struct upid) +
			    bpf_core_field_offset(struct upid, ns);
	struct pid_namespace *ns = 0;
	bpf_probe_read_kernel(&ns, sizeof(ns), (void *)p + off);
	if (!ns)
		return 0;
	__u32 inum = BPF_CORE_READ(ns, ns.inum);
	void *km = bpf_map_lookup_elem(&sandbox_knobs, &inum);
	if (!km)
		return 0;
	__u32 zero = 0;
	struct knobs *k = bpf_map_lookup_elem(km, &zero);
	if (!k || !k->on)
		return 0;
	void *ring = bpf_map_lookup_elem(&sandbox_rings, &inum);
	if (!ring)
		return 0;
	sb->ring = ring;
	sb->k = k;
	sb->level = level;
	sb->tgid = ns_tgid(t, level);
	return 1;
}

struct walk_ctx {
	struct dentry *d;
	struct vfsmount *vm;
	struct mount *m;
	unsigned long moff;
	struct scratch *s;
	__u32 n;
	__u32 off; // the next free byte of s->data
};

// walk_step is one step of walk, run by bpf_loop: the verifier checks it
// once instead of once per unrolled iteration (which made loading slow).
static long walk_step(__u64 i, struct walk_ctx *c)
{
	// Copy to locals first: inside BPF_CORE_READ, c->x would be a CO-RE
	// access of walk_ctx, a type the kernel does not have.
	struct dentry *d = c->d;
	struct vfsmount *vm = c->vm;
	struct mount *m = c->m;
	struct dentry *root = BPF_CORE_READ(vm, mnt_root);
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (d == root) {
		struct mount *mp = BPF_CORE_READ(m, mnt_parent);
		if (mp == m || !mp)
			return 1;
		c->d = BPF_CORE_READ(m, mnt_mountpoint);
		c->m = mp;
		c->vm = (void *)mp + c->moff;
		return 0;
	}
	if (d == parent || !d)
		return 1;
	__u32 n = c->n;
	if (n >= MAX_COMPS) {
		c->s->h.truncated = 1;
		return 1;
	}
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long l = bpf_probe_read_kernel_str(c->s->data + (c->off & DATA_MASK), COMP_LEN, name);
	if (l <= 0)
		return 1;
	c->off += l;
	c->n = n + 1;
	c->d = parent;
	return 0;
}

// walk appends the components of a path to s's data at off, innermost
// first, crossing mounts up to the root of the task's mount namespace, and
// returns the new end of the data.
static __always_inline __u32 walk(struct path *pp, struct scratch *s, __u32 off)
{
	struct walk_ctx c = {};
	c.d = BPF_CORE_READ(pp, dentry);
	c.vm = BPF_CORE_READ(pp, mnt);
	c.moff = bpf_core_field_offset(struct mount, mnt);
	c.m = (void *)c.vm - c.moff;
	c.s = s;
	c.off = off;
	bpf_loop(MAX_COMPS + 6, walk_step, &c, 0);
	s->h.ncomp = c.n;
	s->h.comps_len = c.off - off;
	return c.off;
}

// Wakeups are the ring buffer's adaptive ones (flags 0): the kernel wakes
// the reader only for a record written when the reader had read everything
// before it, so an idle reader sleeps in epoll instead of polling, and a
// busy one, which drains every pollInterval (sandboxd/events) and does not
// wait in epoll between drains, costs the producers one wakeup per drain,
// not one per record.
#define RB_FLAGS 0

static __always_inline void submit(struct sandbox *sb, struct event *e)
{
	bpf_ringbuf_submit(e, RB_FLAGS);
}

static __always_inline void header(struct sandbox *sb, struct event *e, __u32 kind);

// reserve takes a header-only record and fills it; a full ring buffer
// counts a loss.
static __always_inline struct event *reserve(struct sandbox *sb, __u32 kind)
{
	struct event *e = bpf_ringbuf_reserve(sb->ring, HDR_SIZE, 0);
	if (!e) {
		__sync_fetch_and_add(&sb->k->lost, 1);
		return 0;
	}
	header(sb, e, kind);
	return e;
}

// begin takes the scratch record of slot and fills its header.
static __always_inline struct scratch *begin(struct sandbox *sb, __u32 slot, __u32 kind)
{
	struct scratch *s = bpf_map_lookup_elem(&scratch, &slot);
	if (!s)
		return 0;
	header(sb, &s->h, kind);
	return s;
}

// output copies the header and the first len bytes of s's data to the
// ring buffer; a full ring buffer counts a loss.
static __always_inline void output(struct sandbox *sb, struct scratch *s, __u32 len)
{
	__u64 size = HDR_SIZE + (len & DATA_MASK);
	if (bpf_ringbuf_output(sb->ring, s, size, RB_FLAGS))
		__sync_fetch_and_add(&sb->k->lost, 1);
}

static __always_inline void header(struct sandbox *sb, struct event *e, __u32 kind)
{
	e->ts = bpf_ktime_get_boot_ns();
	e->start = 0;
	e->kind = kind;
	e->pid = sb->tgid;
	e->ppid = 0;
	e->ncomp = 0;
	e->truncated = 0;
	e->dirfd_rel = 0;
	e->s1_len = 0;
	e->s2_len = 0;
	e->comps_len = 0;
	e->args_len = 0;
	e->op = 0;
	e->flags = 0;
	e->ret = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->uid = (__u32)bpf_get_current_uid_gid();
}

static __always_inline struct task_struct *current(void)
{
	return (struct task_struct *)bpf_get_current_task_btf();
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	struct task_struct *t = current();
	struct sandbox sb;
	if (!sandbox_of(t, &sb))
		return 0;
	struct scratch *s = begin(&sb, SLOT_EXEC, K_EXEC);
	if (!s)
		return 0;
	s->h.ppid = ns_tgid(t->real_parent, sb.level);
	long l = bpf_probe_read_kernel_str(s->data, STR_LEN, BPF_CORE_READ(bprm, filename));
	__u32 off = l > 0 ? l : 0;
	s->h.s1_len = off;
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	off = walk(&fs->pwd, s, off);
	unsigned long as = BPF_CORE_READ(t, mm, arg_start);
	unsigned long ae = BPF_CORE_READ(t, mm, arg_end);
	unsigned long len = ae - as;
	if (len > ARGS_LEN)
		len = ARGS_LEN;
	if (len > 0 && bpf_probe_read_user(s->data + (off & DATA_MASK), len, (void *)as) == 0) {
		s->h.args_len = len;
		off += len;
	}
	output(&sb, s, off);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; // a new thread, not a process
	struct sandbox sb;
	if (!sandbox_of(current(), &sb))
		return 0;
	struct event *e = reserve(&sb, K_FORK);
	if (!e)
		return 0;
	e->ppid = ns_tgid(child, sb.level);
	submit(&sb, e);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0; // a thread other than the group leader
	struct sandbox sb;
	if (!sandbox_of(current(), &sb))
		return 0;
	struct event *e = reserve(&sb, K_EXIT);
	if (!e)
		return 0;
	e->ppid = ns_tgid(p->real_parent, sb.level);
	e->ret = BPF_CORE_READ(p, exit_code);
	e->start = BPF_CORE_READ(p, start_boottime);
	submit(&sb, e);
	return 0;
}

static __always_inline int watched(long id)
{
	return id == NR_openat || id == NR_open || id == NR_creat || id == NR_openat2 ||
	       id == NR_unlink || id == NR_unlinkat || id == NR_rename || id == NR_renameat ||
	       id == NR_renameat2 || id == NR_mkdir || id == NR_mkdirat || id == NR_rmdir ||
	       id == NR_chmod || id == NR_fchmodat || id == NR_fchmodat2;
}

// dir_of walks the directory a relative path is resolved against: the
// working directory for AT_FDCWD, else the directory descriptor's path,
// into s's data at off, and returns the new end of the data.
static __always_inline __u32 dir_of(long dfd, struct scratch *s, __u32 off)
{
	struct task_struct *t = current();
	struct path *pp;
	if ((int)dfd == AT_FDCWD) {
		struct fs_struct *fs = BPF_CORE_READ(t, fs);
		pp = &fs->pwd;
	} else {
		struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
		unsigned int max = BPF_CORE_READ(fdt, max_fds);
		if (dfd < 0 || (unsigned long)dfd >= max)
			return off;
		struct file **fds = BPF_CORE_READ(fdt, fd);
		struct file *f = 0;
		bpf_probe_read_kernel(&f, sizeof(f), &fds[dfd]);
		if (!f)
			return off;
		pp = &f->f_path;
	}
	s->h.dirfd_rel = 1;
	return walk(pp, s, off);
}

// file_event makes the record of a finished file syscall id of the current
// task, its arguments read from the task's saved registers.
static __always_inline void file_event(struct sandbox *sb, long id, long ret, struct pt_regs *regs)
{
	__u64 a0 = ARG0(regs), a1 = ARG1(regs), a2 = ARG2(regs), a3 = ARG3(regs);
	struct scratch *s = begin(sb, SLOT_FILE, K_FILE);
	if (!s)
		return;
	struct event *e = &s->h;
	e->ret = (__s32)ret;
	long dfd = AT_FDCWD;
	const char *p1 = 0, *p2 = 0;
	if (id == NR_openat || id == NR_openat2) {
		e->op = OP_OPEN;
		dfd = a0;
		p1 = (const char *)a1;
		if (id == NR_openat)
			e->flags = a2;
		else {
			__u64 fl = 0; // struct open_how starts with flags
			bpf_probe_read_user(&fl, sizeof(fl), (void *)a2);
			e->flags = fl;
		}
	} else if (id == NR_open) {
		e->op = OP_OPEN;
		p1 = (const char *)a0;
		e->flags = a1;
	} else if (id == NR_creat) {
		e->op = OP_OPEN;
		p1 = (const char *)a0;
		e->flags = 01 | 0100 | 01000; // O_WRONLY|O_CREAT|O_TRUNC
	} else if (id == NR_unlink) {
		e->op = OP_UNLINK;
		p1 = (const char *)a0;
	} else if (id == NR_unlinkat) {
		dfd = a0;
		p1 = (const char *)a1;
		e->flags = a2;
		e->op = (a2 & AT_REMOVEDIR) ? OP_RMDIR : OP_UNLINK;
	} else if (id == NR_rmdir) {
		e->op = OP_RMDIR;
		p1 = (const char *)a0;
	} else if (id == NR_rename) {
		e->op = OP_RENAME;
		p1 = (const char *)a0;
		p2 = (const char *)a1;
	} else if (id == NR_renameat || id == NR_renameat2) {
		e->op = OP_RENAME;
		dfd = a0;
		p1 = (const char *)a1;
		p2 = (const char *)a3; // newdirfd (a2) is assumed equal to olddirfd
	} else if (id == NR_mkdir) {
		e->op = OP_MKDIR;
		p1 = (const char *)a0;
		e->flags = a1;
	} else if (id == NR_mkdirat) {
		e->op = OP_MKDIR;
		dfd = a0;
		p1 = (const char *)a1;
		e->flags = a2;
	} else if (id == NR_chmod) {
		e->op = OP_CHMOD;
		p1 = (const char *)a0;
		e->flags = a1;
	} else {
		e->op = OP_CHMOD; // fchmodat, fchmodat2
		dfd = a0;
		p1 = (const char *)a1;
		e->flags = a2;
	}
	__u32 off = 0;
	s->data[0] = 0;
	if (p1) {
		long l = bpf_probe_read_user_str(s->data, STR_LEN, p1);
		if (l > 0)
			off = l;
	}
	e->s1_len = off;
	// An absolute path (the dynamic loader's opens of its libraries, most
	// opens) needs no walk.
	int rel = s->data[0] != '/';
	if (p2) {
		long l = bpf_probe_read_user_str(s->data + (off & DATA_MASK), STR_LEN, p2);
		if (l > 0) {
			e->s2_len = l;
			off += l;
		}
	}
	if (rel)
		off = dir_of(dfd, s, off);
	output(sb, s, off);
}

// The context of a classic tracepoint/syscalls/sys_exit_* event
// (events/syscalls/sys_exit_openat/format).
struct sc_exit {
	__u64 common;
	int nr;
	int pad;
	long ret;
};

// on_sc_exit: the loader attaches this one program to the sys_exit_* event
// of every watched syscall (the section name only sets the program type),
// so it never runs for other syscalls.
SEC("tracepoint/syscalls/sys_exit")
int on_sc_exit(struct sc_exit *ctx)
{
	struct task_struct *t = current();
	struct sandbox sb;
	if (!sandbox_of(t, &sb) || !sb.k->files_on)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return 0;
	file_event(&sb, ctx->nr, ctx->ret, regs);
	return 0;
}

// on_sys_exit: the fallback when tracefs cannot be had. Every syscall of
// the machine passes here: the cheap test first.
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = SYSNO(regs);
	if (nr < 0 || !watched(nr))
		return 0;
	struct sandbox sb;
	if (!sandbox_of(current(), &sb) || !sb.k->files_on)
		return 0;
	file_event(&sb, nr, ret, regs);
	return 0;
}
