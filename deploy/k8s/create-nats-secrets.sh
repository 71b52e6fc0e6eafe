#!/bin/sh
# create-nats-secrets.sh — make the NATS TLS certificates (deploy/nats/gen-certs.sh)
# and store them as the Secrets the manifests mount:
#   nats-server-tls         ca.pem server.pem server-key.pem   (StatefulSet nats)
#   nats-admin-tls          ca.pem admin.pem admin-key.pem     (Job nats-outcome-stream)
#   routemesh-gateway-nats  ca.pem gateway.pem gateway-key.pem (Deployment routemesh-gateway)
#   routemesh-worker-nats   ca.pem worker.pem worker-key.pem   (Deployments routemesh-worker-*)
#
#   deploy/k8s/create-nats-secrets.sh [NAMESPACE] [CERT_DIR]
#
# NAMESPACE defaults to routemesh (kustomization.yaml's); CERT_DIR to
# deploy/certs/k8s-NAMESPACE (git-ignored). Existing certificates in CERT_DIR
# are reused; the Secrets are applied (created or updated). Keep ca-key.pem
# out of the cluster: it stays in CERT_DIR. With cert-manager, issue the
# same CNs (routemesh-gateway, routemesh-worker, routemesh-admin, nats)
# into Secrets of these names and keys instead.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
ns="${1:-routemesh}"
dir="${2:-$here/../certs/k8s-$ns}"

"$here/../nats/gen-certs.sh" "$dir" "$ns"

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

secret() {  # secret NAME FILE...
    name="$1"; shift
    args=""
    for f in "$@"; do args="$args --from-file=$f=$dir/$f"; done
    # shellcheck disable=SC2086
    kubectl -n "$ns" create secret generic "$name" $args --dry-run=client -o yaml | kubectl apply -f -
}
secret nats-server-tls ca.pem server.pem server-key.pem
secret nats-admin-tls ca.pem admin.pem admin-key.pem
secret routemesh-gateway-nats ca.pem gateway.pem gateway-key.pem
secret routemesh-worker-nats ca.pem worker.pem worker-key.pem
echo "create-nats-secrets: Secrets applied in namespace $ns (certificates in $dir)" >&2
