#!/bin/bash
# A throw-away PKI (ECDSA P-256) and kubeconfigs for the test cluster (adapted from ../shared/k8s).
# Usage: gen-pki.sh DIR NODE_IP NODE_NAME   (KUBECTL: the kubectl to write kubeconfigs with)
set -euo pipefail
D=$1; NODE_IP=$2; NODE=$3
mkdir -p $D; cd $D
KUBECTL=${KUBECTL:-kubectl}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=lab-k8s-ca" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key; openssl pkey -in sa.key -pubout -out sa.pub
cert() { # name subj ext
  local n=$1 subj=$2 ext=${3:-}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr -subj "$subj" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n' \
    "$( [ -n "$ext" ] && echo serverAuth || echo clientAuth)" "$ext" > $n.ext
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 3650 -extfile $n.ext 2>/dev/null
  rm -f $n.csr $n.ext
}
cert apiserver "/CN=kube-apiserver" "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
cert admin "/O=system:masters/CN=lab-admin"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kubelet-client "/O=system:nodes/CN=system:node:$NODE"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
kc() { # name cert
  $KUBECTL config --kubeconfig=$1.kubeconfig set-cluster lab --server=https://127.0.0.1:6443 --certificate-authority=ca.crt --embed-certs >/dev/null
  $KUBECTL config --kubeconfig=$1.kubeconfig set-credentials $1 --client-certificate=$2.crt --client-key=$2.key --embed-certs >/dev/null
  $KUBECTL config --kubeconfig=$1.kubeconfig set-context lab --cluster=lab --user=$1 >/dev/null
  $KUBECTL config --kubeconfig=$1.kubeconfig use-context lab >/dev/null
}
kc admin admin; kc kubelet kubelet-client; kc controller-manager controller-manager; kc scheduler scheduler
# the kubeconfig for clients outside the cluster's network namespace: the API on the node address
cp admin.kubeconfig node-admin.kubeconfig
$KUBECTL config --kubeconfig=node-admin.kubeconfig set-cluster lab --server=https://$NODE_IP:6443 >/dev/null
chmod 600 *.key
