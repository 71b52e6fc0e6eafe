#!/usr/bin/env bash
# multihost.sh — the mesh on three "hosts" of this machine (a pass/fail test, not a benchmark):
#
#   host 1 (netns rmh-h1, 10.77.0.1): NATS node 1, the gateway (`routemesh serve`, connected to
#                                     node 1), a FAKE OpenAI upstream (loadtest's fake-upstream,
#                                     a test fixture, not a model) on host 1's own loopback
#   host 2 (netns rmh-h2, 10.77.0.2): NATS node 2, classifier workers
#   host 3 (netns rmh-h3, 10.77.0.3): NATS node 3, classifier workers
#
# joined by veth pairs on a bridge (rmh-br0, 10.77.0.254/24 in the root namespace). The three
# nats-servers form one cluster (routes between the namespace addresses). The workers run the
# simulated fixed-cost model (20 ms per pass, 1 prompt per pass: 50 prompts/s each). The
# `multihost` driver (loadtest/src/multihost.rs), in the root namespace, starts and stops the
# workers (`ip netns exec`), keeps a fixed number of routed requests (`model: auto`) in flight
# to the gateway, and measures throughput with 1..4 workers, then adds a worker and SIGTERMs two
# under the same load. It fails (exit 1) on any HTTP error, any `x-routemesh-degraded` response,
# or throughput that does not grow with workers; the report goes to
# loadtest/reports/multihost.{md,json}.
#
# Steps: build the binaries (routemesh, classifier-worker, fake-upstream, multihost), remove
# leftovers of an aborted run, set up the network, start the cluster, the fake and the gateway,
# run the driver, tear everything down (trap on EXIT/INT/TERM). The driver runs under `timeout`
# (MULTIHOST_TIMEOUT, default 200 s; its own waits are bounded too), so everything after the
# build ends within about 3.5 minutes; a passing run takes about 55 s.
#
# Needs root (network namespaces) and iproute2 (`ip`); exits 77 (and says how to run it) without
# them. Uses only 10.77.0.0/24 on its own bridge, plus loopback inside the namespaces.
#
# Usage:  sudo scripts/multihost.sh
# Env:    MULTIHOST_SKIP_BUILD=1   use the binaries already built
#         MULTIHOST_PROFILE=debug  build and use target/debug (what scripts/test.sh does: the
#                                  test suite has built them already); default release
#         MULTIHOST_ARGS="..."     extra flags for the driver, e.g. "--window 5s --in-flight 32"
#         MULTIHOST_TIMEOUT=200    seconds the driver may run
#         MULTIHOST_CLEANUP_ONLY=1 remove what an aborted run left behind, and exit
#         MULTIHOST_REPORTS=DIR    where the report goes (default loadtest/reports; scripts/test.sh
#                                  uses .run/multihost-report, leaving the committed report alone)
# Exit:   0 passed; 1 failed (errors, degraded responses, or no scaling); 2 could not run;
#         77 cannot run here: not root, no `ip`, or namespaces not permitted (nothing was done)
set -euo pipefail
cd "$(dirname "$0")/.."

readonly NS=(rmh-h1 rmh-h2 rmh-h3)
readonly BRIDGE=rmh-br0
readonly SUBNET_PREFIX=10.77.0
readonly BRIDGE_ADDR=$SUBNET_PREFIX.254
readonly GATEWAY_PORT=8080
readonly FAKE_PORT=9100
# Relative paths: the report quotes the command line, which should not name this checkout.
readonly work=.run/multihost
readonly profile=${MULTIHOST_PROFILE:-release}
case $profile in release | debug) ;; *)
    printf 'multihost.sh: MULTIHOST_PROFILE must be release or debug\n' >&2
    exit 2
    ;;
esac
readonly bins=target/$profile

say() { printf '==> multihost: %s\n' "$*" >&2; }
die() {
    printf 'multihost.sh: %s\n' "$*" >&2
    exit 2
}

# Removes everything this script creates, whether or not it exists (idempotent): processes in
# our namespaces (by the ids `ip netns pids` lists; nothing else is touched), the namespaces
# (which removes their veth ends and so the pairs), the bridge.
cleanup_network() {
    local ns pids
    for ns in "${NS[@]}"; do
        if [[ -e /run/netns/$ns ]]; then
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            if [[ -n $pids ]]; then
                # shellcheck disable=SC2086 # one id per word
                kill -TERM $pids 2>/dev/null || true
                for _ in 1 2 3 4 5 6 7 8 9 10; do
                    pids=$(ip netns pids "$ns" 2>/dev/null || true)
                    [[ -z $pids ]] && break
                    sleep 0.3
                done
                # shellcheck disable=SC2086
                [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
            fi
            ip netns delete "$ns" 2>/dev/null || true
        fi
    done
    local i
    for i in 1 2 3; do
        ip link delete "rmh-v$i" 2>/dev/null || true
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
}

if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null 2>&1; then
    why="it needs root"
    [[ $(id -u) == 0 ]] && why="it needs iproute2 (the \`ip\` command; apt-get install iproute2)"
    cat >&2 <<EOF
multihost.sh: not run: $why — it creates network namespaces, veth pairs and a bridge.
Run it as root, e.g.:

    sudo scripts/multihost.sh

(it uses only 10.77.0.0/24 on its own bridge rmh-br0 and namespaces rmh-h1..3, and removes
them when it ends)
EOF
    exit 77
fi

# One run at a time on a machine (the namespace names are fixed, and a run's first step removes
# what it finds): a second run waits for the first.
lock=/run/lock/routemesh-multihost.lock
[[ -d /run/lock ]] || lock=/tmp/routemesh-multihost.lock
exec 9>"$lock"
if ! flock -n 9; then
    say "another multihost run holds $lock; waiting (at most 5 minutes)"
    flock -w 300 9 || die "another multihost run still holds $lock"
fi

if [[ ${MULTIHOST_CLEANUP_ONLY:-0} == 1 ]]; then
    ip netns delete rmh-probe 2>/dev/null || true
    cleanup_network
    say "removed leftovers (if any)"
    exit 0
fi

# Root is not always enough (a container without CAP_SYS_ADMIN): try a namespace first.
ip netns delete rmh-probe 2>/dev/null || true
if ! ip netns add rmh-probe 2>/dev/null; then
    cat >&2 <<EOF
multihost.sh: not run: \`ip netns add\` fails here (a container without CAP_SYS_ADMIN and
CAP_NET_ADMIN?). Run it on a machine or VM where root can create network namespaces:

    sudo scripts/multihost.sh
EOF
    exit 77
fi
ip netns delete rmh-probe

if [[ ${MULTIHOST_SKIP_BUILD:-0} != 1 ]]; then
    say "building $profile binaries (the first release build takes a few minutes)"
    release=()
    [[ $profile == release ]] && release=(--release)
    cargo build "${release[@]}" -p routemesh-gateway -p routemesh-classifier-worker \
        -p routemesh-loadtest --bin routemesh --bin classifier-worker \
        --bin fake-upstream --bin multihost
fi
limit=${MULTIHOST_TIMEOUT:-200}

nats_bin=$(command -v nats-server || true)
[[ -z $nats_bin && -x /usr/sbin/nats-server ]] && nats_bin=/usr/sbin/nats-server
[[ -n $nats_bin ]] || die "nats-server is not installed (apt-get install nats-server)"
for bin in routemesh classifier-worker fake-upstream multihost; do
    [[ -x $bins/$bin ]] || die "$bins/$bin is missing; run without MULTIHOST_SKIP_BUILD=1"
done

driver=
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $driver ]]; then
        kill -TERM "$driver" 2>/dev/null || true
        wait "$driver" 2>/dev/null || true
    fi
    cleanup_network
    say "cleaned up (namespaces, veths, bridge, processes)"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "removing leftovers of an earlier run (if any)"
cleanup_network
rm -rf "$work"
reports=${MULTIHOST_REPORTS:-loadtest/reports}
mkdir -p "$work" "$reports"

say "network: bridge $BRIDGE $BRIDGE_ADDR/24, namespaces ${NS[*]} at $SUBNET_PREFIX.1-3"
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for i in 1 2 3; do
    ns=${NS[$((i - 1))]}
    ip netns add "$ns"
    ip link add "rmh-v$i" type veth peer name eth0 netns "$ns"
    ip link set "rmh-v$i" master "$BRIDGE" up
    ip -n "$ns" addr add "$SUBNET_PREFIX.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done
# (No ping here: the driver waits until the three NATS nodes have routed to each other, which
# needs every host to reach every other.)

# in_ns NS LOG COMMAND...: starts COMMAND in namespace NS in the background, output to LOG.
in_ns() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
}

say "NATS cluster: one node per host (client 4222, routes 6222, monitoring 8222)"
for i in 1 2 3; do
    routes=()
    for j in 1 2 3; do
        [[ $j != "$i" ]] && routes+=("nats://$SUBNET_PREFIX.$j:6222")
    done
    in_ns "${NS[$((i - 1))]}" "$work/nats-$i.log" "$nats_bin" -n "node-$i" \
        -a "$SUBNET_PREFIX.$i" -p 4222 -m 8222 --cluster_name routemesh-multihost \
        --cluster "nats://$SUBNET_PREFIX.$i:6222" --routes "$(IFS=,; echo "${routes[*]}")"
done

say "fake upstream (a test fixture, not a model) on host 1's loopback :$FAKE_PORT"
in_ns rmh-h1 "$work/fake-upstream.log" "$bins/fake-upstream" \
    --listen "127.0.0.1:$FAKE_PORT" --name fake-chat --latency 0ms

cat >"$work/gateway.yaml" <<EOF
# Written by scripts/multihost.sh. The gateway on host 1: classifier over NATS (its local node;
# the client learns the other nodes from the cluster for failover), a fake upstream.
server:
  listen: $SUBNET_PREFIX.1:$GATEWAY_PORT
classifier:
  transport: nats
  pool: multihost
  deadline: 3s
  # A failed classify is a response with x-routemesh-degraded, which the driver counts.
  on_unavailable: degrade
nats:
  url: nats://$SUBNET_PREFIX.1:4222
upstreams:
  - name: fake
    base_url: http://127.0.0.1:$FAKE_PORT/v1
    timeout: 10s
models:
  - name: fake-chat
    upstream: fake
router:
  aliases: [auto]
signals:
  routes:
    # Needs every prompt's embedding, so every routed request asks a worker.
    - name: arithmetic
      threshold: 0.5
      examples: ["What is 17 times 23?", "Compute 2 + 2."]
decisions:
  - { name: arithmetic, priority: 10, when: { route: arithmetic }, model: fake-chat }
default: { model: fake-chat }
EOF
"$bins/routemesh" check-config "$work/gateway.yaml" >/dev/null ||
    die "the generated gateway config is invalid: $work/gateway.yaml"

say "gateway on host 1 ($SUBNET_PREFIX.1:$GATEWAY_PORT); ready once a worker answers"
in_ns rmh-h1 "$work/gateway.log" env ROUTEMESH_LOG=warn "$bins/routemesh" serve \
    --config "$work/gateway.yaml" --reload-poll 0s

read -r -a extra <<<"${MULTIHOST_ARGS:-}"
say "driver: workers on hosts 2 and 3, load from the root namespace"
set +e
# The time bound: the set-up above takes a second or two; the driver runs under `timeout`
# (SIGTERM at the limit: it kills its workers and exits; SIGKILL 10 s later), then the trap
# removes everything.
timeout -k 10 "$limit" "$bins/multihost" \
    --gateway "http://$SUBNET_PREFIX.1:$GATEWAY_PORT" \
    --worker-bin "$bins/classifier-worker" \
    --worker-host "rmh-h2=nats://$SUBNET_PREFIX.2:4222" \
    --worker-host "rmh-h3=nats://$SUBNET_PREFIX.3:4222" \
    --nats-monitor "node-1=http://$SUBNET_PREFIX.1:8222" \
    --nats-monitor "node-2=http://$SUBNET_PREFIX.2:8222" \
    --nats-monitor "node-3=http://$SUBNET_PREFIX.3:8222" \
    --pool multihost --logs "$work" \
    --md "$reports/multihost.md" --json "$reports/multihost.json" \
    "${extra[@]}" &
driver=$!
wait "$driver"
rc=$?
driver=
set -e
if [[ $rc == 124 || $rc == 137 ]]; then
    printf 'multihost.sh: the driver timed out after %s s (MULTIHOST_TIMEOUT)\n' "$limit" >&2
    rc=2
fi
if [[ $rc == 0 ]]; then
    say "PASSED; report in $reports/multihost.{md,json}"
else
    say "FAILED (exit $rc); logs in $work/"
    for f in "$work"/gateway.log "$work"/nats-1.log; do
        [[ -s $f ]] && { printf -- '--- tail of %s\n' "$f" >&2; tail -n 15 "$f" >&2; }
    done
fi
exit "$rc"
