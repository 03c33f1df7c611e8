#!/bin/bash
# Start a single-node Kubernetes cluster for the kubernetes driver tests, adapted from ../shared/k8s:
# etcd (Debian) + kube-apiserver + kube-controller-manager + kube-scheduler + kubelet (built by build.sh)
# + containerd and runc (Debian) + the CNI bridge plugin, no registry: images are imported archives.
# Run it INSIDE a network namespace the caller made (nsenter --net=/run/netns/NS up.sh): kubelet refuses
# a loopback node address, and everything the cluster listens on stays in that namespace.
#   RUN=dir NODE_IP=addr [BIN=.cache/k8s/bin] [IMAGES="a.tar b.tar"] [PAUSE_IMAGE=ref] [MODE=api] up.sh
# MODE=api stops after etcd and kube-apiserver.
# All state under $RUN; PIDs in $RUN/pids (down.sh stops them by PID); logs in $RUN/logs.
# Kernel sysctls kubelet changes are saved in $RUN/sysctl.saved and restored once the node is Ready
# (and again by down.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../.cache/k8s/bin}
R=${RUN:?set RUN to the state directory}
NODE=${NODE_NAME:-darkshell-node}
[ -n "${NODE_IP:-}" ] || { echo "set NODE_IP to an address inside a test-made network namespace" >&2; exit 1; }
KUBECTL=${KUBECTL:-$BIN/kubectl}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
PAUSE_IMAGE=${PAUSE_IMAGE:-darkshell.test/pause:1}
CTRD_SOCK=$R/containerd/containerd.sock
T0=$(date +%s%N)
ts() { echo "[$(( ($(date +%s%N) - T0) / 1000000 ))ms] $*"; }

if ls $R/pids/*.pid >/dev/null 2>&1; then echo "$R/pids not empty: run down.sh first" >&2; exit 1; fi
mkdir -p $R/pids $R/logs $R/etc/cni/net.d $R/etc/manifests $R/pod-logs

start() { # name cmd...  (own session; log and pid recorded)
  local n=$1; shift
  setsid "$@" >$R/logs/$n.log 2>&1 < /dev/null &
  echo $! > $R/pids/$n.pid
}
waitfor() { # desc timeout_s cmd...
  local d=$1 to=$2; shift 2; local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i+1)); if [ $i -gt $((to*10)) ]; then echo "timeout waiting for $d; log tail:" >&2; tail -20 $R/logs/*.log >&2; exit 1; fi; sleep 0.1
  done
  ts "$d ok"
}

KUBECTL=$KUBECTL $HERE/gen-pki.sh $R/pki $NODE_IP $NODE
P=$R/pki
ts "pki (node $NODE, $NODE_IP)"

start etcd etcd --name ds --data-dir $R/etcd \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster ds=http://127.0.0.1:2380 --listen-metrics-urls '' --log-level warn --logger zap \
  --snapshot-count 10000 --quota-backend-bytes 1073741824
waitfor etcd 30 curl -sf http://127.0.0.1:2379/health

# The API listens on every address of this network namespace: loopback for the components, the node
# address for clients outside (the veth pair's other end).
start kube-apiserver $BIN/kube-apiserver \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --advertise-address=$NODE_IP \
  --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key --client-ca-file=$P/ca.crt \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file=$P/sa.pub --service-account-signing-key-file=$P/sa.key \
  --service-cluster-ip-range=10.96.0.0/24 \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=false \
  --kubelet-client-certificate=$P/apiserver-kubelet-client.crt --kubelet-client-key=$P/apiserver-kubelet-client.key \
  --kubelet-preferred-address-types=InternalIP \
  --profiling=false --v=1
export KUBECONFIG=$P/admin.kubeconfig
waitfor kube-apiserver 120 curl -sf --cacert $P/ca.crt --cert $P/admin.crt --key $P/admin.key https://127.0.0.1:6443/readyz
if [ "${MODE:-full}" = api ]; then ts "API only (MODE=api): KUBECONFIG=$P/node-admin.kubeconfig"; exit 0; fi

start kube-controller-manager $BIN/kube-controller-manager \
  --kubeconfig=$P/controller-manager.kubeconfig --secure-port=0 --leader-elect=false \
  --service-account-private-key-file=$P/sa.key --root-ca-file=$P/ca.crt \
  --cluster-signing-cert-file=$P/ca.crt --cluster-signing-key-file=$P/ca.key \
  --use-service-account-credentials=true --v=1
start kube-scheduler $BIN/kube-scheduler \
  --kubeconfig=$P/scheduler.kubeconfig --authentication-kubeconfig=$P/scheduler.kubeconfig \
  --authorization-kubeconfig=$P/scheduler.kubeconfig --bind-address=127.0.0.1 --secure-port=10259 \
  --leader-elect=false --v=1

mkdir -p $R/containerd
cat > $R/containerd/config.toml <<EOF
version = 2
root = "$R/containerd/root"
state = "$R/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CTRD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$R/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  # root here may lack CAP_SYS_RESOURCE: runc then cannot set oom_score_adj < 0 for the pause container
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "$R/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$R/etc/cni/net.d"
EOF
cat > $R/etc/cni/net.d/10-darkshell.conflist <<EOF
{ "cniVersion": "0.4.0", "name": "darkshellnet",
  "plugins": [ { "type": "bridge", "bridge": "dscni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
                 "ipam": { "type": "host-local", "dataDir": "$R/cni-ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
                           "routes": [{"dst": "0.0.0.0/0"}] } } ] }
EOF
start containerd containerd --config $R/containerd/config.toml
waitfor containerd 30 ctr --address $CTRD_SOCK version
for img in ${IMAGES:-}; do
  ctr --address $CTRD_SOCK -n k8s.io images import "$img" >/dev/null
done
ts "images: $(ctr --address $CTRD_SOCK -n k8s.io images ls -q | tr '\n' ' ')"

# kubelet sets kernel sysctls (kernel.panic_on_oops=1, kernel.panic=10, vm.overcommit_memory=1, ...)
# at start: save them, restore once the node is Ready (the caller does that too) and in down.sh.
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
for s in $SYSCTLS; do echo "$s=$(sysctl -n $s)"; done > $R/sysctl.saved
cat > $R/kubelet-config.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CTRD_SOCK
failSwapOn: false
staticPodPath: $R/etc/manifests
podLogsDir: $R/pod-logs
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 5s
nodeStatusReportFrequency: 10s
EOF
start kubelet $BIN/kubelet --config=$R/kubelet-config.yaml --kubeconfig=$P/kubelet.kubeconfig \
  --root-dir=$R/kubelet --hostname-override=$NODE --node-ip=$NODE_IP --v=1
waitfor "node $NODE Ready" 180 sh -c "$KUBECTL get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
while read -r kv; do sysctl -q -w "$kv" || true; done < $R/sysctl.saved
ts "sysctls restored"
waitfor "default serviceaccount" 60 $KUBECTL -n default get serviceaccount default
ts "cluster up: KUBECONFIG=$P/node-admin.kubeconfig"
