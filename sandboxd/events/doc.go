// Package events is sandboxd's event sources and the stream that serves
// them: what the processes of the sandbox run and which files they touch.
//
// Sources, best first:
//
//   - EBPF (ebpf.go): the tp_btf probes of package probes, loaded by
//     `sandboxd init` while it is still privileged and filtered in the
//     kernel to the sandbox's pid namespace. After lock-down the ring
//     buffer is read with mmap and epoll only, and the knobs (the filter,
//     the loss counter) live in the mmap'd .bss, so no bpf() call is needed
//     again: seccomp denies it. Fidelity "complete".
//   - Procfs (procfs.go): /proc polled for the descendants of sandboxd, for
//     sandboxes where BPF cannot be loaded (ssh, OpenShell). Fidelity
//     "polled": short-lived processes are missed, exit codes unknown.
//   - Inotify (inotify.go): file changes under the writable workspace.
//     Fidelity "changes": no reads, no pids, no denied attempts.
//
// Every source publishes into a Hub, which numbers events, keeps a bounded
// history (so a finished process tree can still be traced) and fans out to
// subscribers through bounded queues: a slow reader skips events (counted
// and reported to it), it never blocks a source. Losses in the kernel (a
// full ring buffer) are counted in the probe and reported on every batch.
package events
