#!/bin/bash
# Stop the test cluster up.sh started in $RUN and remove what it made outside its own processes:
# only the PIDs recorded in $RUN/pids are signalled; then pod containers (runc), containerd shims,
# mounts under $RUN, kubelet's cgroups, /var/log/containers links, and the kernel sysctls kubelet
# changed are restored. Safe to run twice, and on a half-started cluster.
#   RUN=dir down.sh
R=${RUN:?set RUN to the state directory}
running() { local pid=$1 n=$2; [ -r /proc/$pid/stat ] && [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" != Z ] &&
  tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q -- "$n"; }
stop() { # names...: SIGTERM, up to 10 s, then SIGKILL
  local n pid i
  for n in "$@"; do [ -f $R/pids/$n.pid ] && pid=$(cat $R/pids/$n.pid) && running $pid $n && kill -TERM $pid; done
  for n in "$@"; do
    [ -f $R/pids/$n.pid ] || continue; pid=$(cat $R/pids/$n.pid)
    for i in $(seq 100); do running $pid $n || break; sleep 0.1; done
    running $pid $n && kill -KILL $pid
    rm -f $R/pids/$n.pid
  done
}
# 1. kubelet first, so that it restarts nothing that is torn down
stop kubelet
# 2. every pod container, through runc (containerd keeps its runc state under $R/runc/<namespace>)
for root in $R/runc/*; do
  [ -d "$root" ] || continue
  for id in $(runc --root "$root" list -q 2>/dev/null); do
    runc --root "$root" kill -a "$id" KILL 2>/dev/null
    runc --root "$root" delete -f "$id" 2>/dev/null
  done
done
stop kube-scheduler kube-controller-manager kube-apiserver containerd
stop etcd
# 3. shims containerd started: by their pid files in its state dir, and by the containerd address
#    on their command line (a shim whose task was already deleted has no pid file left)
for f in $R/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [ -f "$f" ] || continue; p=$(cat "$f"); running $p containerd-shim && kill -KILL $p
done
A=$R/containerd/containerd.sock
for d in /proc/[0-9]*; do
  cl=$(tr '\0' ' ' < $d/cmdline 2>/dev/null)
  case "$cl" in *containerd-shim*" -address $A"*) ;; *) continue;; esac
  kill -KILL ${d#/proc/} 2>/dev/null
  # its socket: /run/containerd/s/sha256(ADDRESS/NAMESPACE/ID) (containerd 1.6)
  ns=$(echo "$cl" | sed -n 's/.* -namespace \([^ ]*\).*/\1/p'); id=$(echo "$cl" | sed -n 's/.* -id \([^ ]*\).*/\1/p')
  [ -n "$ns" ] && [ -n "$id" ] && rm -f /run/containerd/s/$(printf '%s' "$A/$ns/$id" | sha256sum | cut -c1-64)
done
for b in $R/containerd/state/io.containerd.runtime.v2.task/*/*; do
  [ -d "$b" ] || continue; id=${b##*/}; ns=${b%/*}; ns=${ns##*/}
  rm -f /run/containerd/s/$(printf '%s' "$A/$ns/$id" | sha256sum | cut -c1-64)
done
# 4. mounts under $R, deepest first
for i in 1 2 3; do
  for m in $(awk -v r="$R" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
# 5. cgroups, log links, sysctls, empty dirs containerd and CNI make outside $R
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
for l in /var/log/containers/*.log; do [ -L "$l" ] && case "$(readlink "$l")" in $R/*) rm -f "$l";; esac; done
if [ -f $R/sysctl.saved ]; then
  while read -r kv; do sysctl -q -w "$kv" 2>/dev/null; done < $R/sysctl.saved
fi
rmdir /run/containerd/s /run/containerd/fifo /run/containerd /var/lib/cni/results /var/lib/cni /var/log/containers /var/log/pods 2>/dev/null
exit 0
