#!/usr/bin/env bash
# validate-deploy.sh — check everything under deploy/ with real validators,
# offline. scripts/test.sh runs it after the test suite; CI runs test.sh.
#
# What it runs (each step prints what it checked):
#   1. nats-server -t       both NATS configs (compose and Kubernetes), with
#                           certificates from deploy/nats/gen-certs.sh
#   2. check-cluster.py     those configs as a real 3-node cluster on loopback:
#                           routes, JetStream, the permission matrix of
#                           auth.conf, the outcome stream with 3 replicas
#   3. check-jsonschema     compose.yaml against the compose-spec schema
#   4. promtool             deploy/compose/prometheus.yml
#   5. kubectl kustomize    deploy/k8s renders, then kubernetes-validate
#                           --strict checks every object against the
#                           Kubernetes 1.30 schemas
#   6. routemesh check-config  both gateway configs of deploy/ (paths of the
#                           image mapped to this checkout), if the gateway
#                           binary is built (test.sh builds it first)
# The references between the files (labels, names, COPY sources, binary
# names) are checked by deploy/checks/tests/deploy_files.rs in the Rust suite.
#
# Installs what it lacks, once: check-jsonschema and kubernetes-validate
# from PyPI into .venv-deploy; promtool (Debian package prometheus) and, when
# no kubectl is on PATH, kubectl 1.20 (Debian package kubernetes-client)
# unpacked into .venv-deploy/debian without installing them; nats-server from
# Debian (apt-get install, as root or through sudo) if missing.
# Docker images cannot be built here (no Docker engine): see deploy/docker/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tools="$root/.venv-deploy"
CHECK_JSONSCHEMA_VERSION=0.39.0
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_SCHEMA_VERSION=1.30.0

say() { printf 'validate-deploy: %s\n' "$*"; }
die() { printf 'validate-deploy: ERROR: %s\n' "$*" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

nats_server="$(command -v nats-server || true)"
[ -n "$nats_server" ] || [ ! -x /usr/sbin/nats-server ] || nats_server=/usr/sbin/nats-server
if [ -z "$nats_server" ]; then
    say "installing nats-server (Debian package)"
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq nats-server; } >&2 \
        || die "could not install nats-server from Debian's packages; install it (apt-get install nats-server) and rerun"
    nats_server="$(command -v nats-server || echo /usr/sbin/nats-server)"
fi
command -v openssl >/dev/null || die "openssl is needed to make test certificates (apt-get install openssl)"

if ! "$tools/bin/check-jsonschema" --version >/dev/null 2>&1 \
   || ! "$tools/bin/python" -c "import kubernetes_validate" >/dev/null 2>&1; then
    say "creating .venv-deploy with check-jsonschema==$CHECK_JSONSCHEMA_VERSION and kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (needs PyPI)"
    python3 -m venv "$tools" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$tools/bin/pip" install --quiet --disable-pip-version-check \
        "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        || die "pip could not install check-jsonschema / kubernetes-validate: PyPI must be reachable"
fi

# debian_tool PACKAGE BINARY: the binary from a Debian package, unpacked
# into .venv-deploy/debian (not installed: no root needed, no conflicts).
debian_tool() {
    local bin="$tools/debian/usr/bin/$2"
    if [ ! -x "$bin" ]; then
        say "unpacking $2 from the Debian package $1 into .venv-deploy/debian" >&2
        local dl; dl="$(mktemp -d)"
        if ! (cd "$dl" && apt-get download "$1" >/dev/null 2>&1); then
            { $sudo apt-get update -qq >/dev/null 2>&1 && (cd "$dl" && apt-get download "$1" >/dev/null 2>&1); } \
                || die "apt-get download $1 failed: Debian's package index must be reachable (apt-get update, as root)"
        fi
        dpkg-deb -x "$dl"/"$1"_*.deb "$tools/debian" || die "cannot unpack $1"
        rm -rf "$dl"
    fi
    echo "$bin"
}
promtool="$(debian_tool prometheus promtool)"
kubectl="$(command -v kubectl || true)"
[ -n "$kubectl" ] || kubectl="$(debian_tool kubernetes-client kubectl)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/deploy/nats/gen-certs.sh" "$work/certs" >/dev/null 2>&1 || die "gen-certs.sh failed"
say "tools: $("$nats_server" --version), promtool $("$promtool" --version 2>&1 | grep -o 'version [0-9.]*' | head -1), $("$kubectl" version --client 2>/dev/null | head -1), check-jsonschema $CHECK_JSONSCHEMA_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION"

# ---- 1. nats-server -t -----------------------------------------------------------
# The configs name /certs and /data; point them at the test certificates.
nats_check() {  # nats_check CONF VAR=VALUE
    local dir="$work/nats-$(basename "$(dirname "$1")")"
    mkdir -p "$dir"
    sed -e "s|/certs/|$work/certs/|g; s|/data/jetstream|$dir/js|" "$1" > "$dir/nats.conf"
    cp "$(dirname "$1")/auth.conf" "$dir/auth.conf"
    env "$2" "$nats_server" -t -c "$dir/nats.conf" >"$dir/out" 2>&1 \
        || { cat "$dir/out" >&2; die "nats-server -t rejected $1"; }
    say "ok   nats-server -t ${1#$root/} ($2)"
}
nats_check "$root/deploy/nats/nats.conf" SERVER_NAME=nats-1
nats_check "$root/deploy/k8s/nats/nats.conf" POD_NAME=nats-0

# ---- 2. the cluster, for real ----------------------------------------------------
python3 "$root/deploy/nats/check-cluster.py" "$work/certs" "$nats_server" | sed 's/^/validate-deploy: /'
[ "${PIPESTATUS[0]}" = 0 ] || die "check-cluster.py failed"

# ---- 3. compose ------------------------------------------------------------------
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml >"$work/compose.out" 2>&1 \
    || { cat "$work/compose.out" >&2; die "deploy/compose/compose.yaml does not match the compose-spec schema"; }
say "ok   check-jsonschema (compose-spec) deploy/compose/compose.yaml"

# ---- 4. prometheus ---------------------------------------------------------------
"$promtool" check config deploy/compose/prometheus.yml >"$work/prom.out" 2>&1 \
    || { cat "$work/prom.out" >&2; die "promtool rejected deploy/compose/prometheus.yml"; }
say "ok   promtool check config deploy/compose/prometheus.yml"

# ---- 5. kubernetes -----------------------------------------------------------------
"$kubectl" kustomize deploy/k8s > "$work/k8s.yaml" 2>"$work/kustomize.err" \
    || { cat "$work/kustomize.err" >&2; die "kubectl kustomize deploy/k8s failed"; }
objects="$(grep -c '^kind:' "$work/k8s.yaml")"
"$tools/bin/kubernetes-validate" --strict --quiet -k "$K8S_SCHEMA_VERSION" "$work/k8s.yaml" >"$work/kv.out" 2>&1 \
    || { cat "$work/kv.out" >&2; die "kubernetes-validate rejected the rendered deploy/k8s"; }
say "ok   kubectl kustomize deploy/k8s: $objects objects, all valid for Kubernetes $K8S_SCHEMA_VERSION (kubernetes-validate --strict)"

# ---- 6. the gateway's own validation -----------------------------------------------
routemesh=""
for b in target/debug/routemesh target/release/routemesh; do
    if [ -x "$b" ] && { [ -z "$routemesh" ] || [ "$b" -nt "$routemesh" ]; }; then routemesh="$b"; fi
done
if [ -n "$routemesh" ]; then
    for cfg in deploy/compose/gateway.yaml deploy/k8s/config/gateway.yaml; do
        # In the image, heads are under /opt/routemesh and certificates under /certs.
        local_cfg="$work/$(echo "$cfg" | tr / _)"
        sed -e "s|/opt/routemesh/|$root/|g; s|/certs/|$work/certs/|g" "$cfg" > "$local_cfg"
        ROUTEMESH_API_KEYS=demo:validate-deploy-0123456789 ROUTEMESH_ADMIN_TOKEN=validate-deploy-admin-0123456789 \
            "$routemesh" check-config "$local_cfg" >"$work/cc.out" 2>&1 \
            || { cat "$work/cc.out" >&2; die "routemesh check-config rejected $cfg"; }
        say "ok   $routemesh check-config $cfg"
    done
else
    say "skip routemesh check-config: no gateway binary built yet (cargo build -p routemesh-gateway);" \
        "deploy/checks/tests/deploy_files.rs still parses the configs with routemesh-common"
fi
say "all deploy checks passed (Docker images are not built here: no Docker engine)"
