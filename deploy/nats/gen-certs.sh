#!/bin/sh
# gen-certs.sh — make the TLS material the routemesh mesh uses to reach NATS.
#
# NATS authenticates every client by its certificate (mutual TLS with
# `verify_and_map`, see auth.conf): no password sits in any config file, and
# the gateway's config (a ConfigMap in Kubernetes) names only file paths.
#
#   gen-certs.sh OUT_DIR [K8S_NAMESPACE]
#
# writes into OUT_DIR (created; nothing is overwritten if OUT_DIR/ca.pem exists):
#   ca.pem, ca-key.pem            a private CA (10 years). Keep ca-key.pem secret.
#   server.pem, server-key.pem    every NATS server (clients and cluster routes);
#                                 DNS names: nats-1..3 (compose), nats, localhost,
#                                 127.0.0.1, and the Kubernetes service names in
#                                 K8S_NAMESPACE (default `routemesh`)
#   gateway.pem, gateway-key.pem  CN=routemesh-gateway  (user in account APP)
#   worker.pem, worker-key.pem    CN=routemesh-worker   (user in account APP)
#   admin.pem, admin-key.pem      CN=routemesh-admin    (APP, all subjects: the nats CLI)
#   sys.pem, sys-key.pem          CN=routemesh-sys      (the system account: monitoring)
#
# Needs only openssl. For production, issue the same subjects from your own
# CA (cert-manager, Vault); only the CN of client certificates matters to NATS.
set -eu

out="${1:?usage: gen-certs.sh OUT_DIR [K8S_NAMESPACE]}"
ns="${2:-routemesh}"
days=3650

if [ -f "$out/ca.pem" ]; then
    echo "gen-certs: $out/ca.pem exists; keeping the certificates there" >&2
    exit 0
fi
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=routemesh NATS CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca-key.pem" -out "$out/ca.pem" 2>/dev/null

# sign NAME SUBJECT EXTFILE
sign() {
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "$2" \
        -keyout "$out/$1-key.pem" -out "$tmp/$1.csr" 2>/dev/null
    openssl x509 -req -sha256 -days "$days" -in "$tmp/$1.csr" \
        -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial -CAserial "$tmp/ca.srl" \
        -extfile "$3" -out "$out/$1.pem" 2>/dev/null
}

cat > "$tmp/server.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:nats,DNS:localhost,IP:127.0.0.1,DNS:nats.$ns,DNS:nats.$ns.svc,DNS:nats.$ns.svc.cluster.local,DNS:*.nats-headless,DNS:*.nats-headless.$ns,DNS:*.nats-headless.$ns.svc,DNS:*.nats-headless.$ns.svc.cluster.local
EXT
cat > "$tmp/client.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT

sign server "/CN=nats" "$tmp/server.ext"
for who in gateway worker admin sys; do
    sign "$who" "/CN=routemesh-$who" "$tmp/client.ext"
done
# Readable by the unprivileged users the containers run as. In Kubernetes the
# files go into Secrets; in compose they stay in a volume of the project.
chmod 0644 "$out"/*.pem
echo "gen-certs: wrote $(ls "$out" | wc -l) files to $out" >&2
