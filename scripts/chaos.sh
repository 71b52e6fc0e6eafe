#!/usr/bin/env bash
# chaos.sh — the chaos suite (issue 16): the real gateway, classifier workers, nats-server and
# FAKE upstreams (loadtest's fake-upstream and `chaos upstream-fixture`: test fixtures, not
# models) under an HTTP fuzzer, slowloris, kill -9, a NATS outage, worker SIGKILLs and a failing
# upstream. A pass/fail test with reports: loadtest/src/chaos.rs and loadtest/README.md say what
# each scenario does and checks.
#
# Steps: install nats-server (Debian package) if missing, fetch the model, build the debug
# binaries it runs (cargo does nothing when they are fresh), run `target/debug/chaos` under
# `timeout`. The slowloris scenario holds 2,000 client sockets: `chaos` raises its own soft
# open-file limit to the hard one (the gateway it attacks runs with its own `ulimit -n 256`).
#
# Usage:  scripts/chaos.sh [chaos flags…]      e.g. scripts/chaos.sh --scenario fuzz --cases 20000
# Env:    CHAOS_SKIP_BUILD=1    use the binaries already in target/debug
#         CHAOS_REPORTS=DIR     where the reports go (default loadtest/reports/chaos; CI passes
#                               .run/chaos-report to leave the committed reports alone)
#         CHAOS_TIMEOUT=300     seconds the suite may run (after the build; it takes ~2.5 min)
# Exit:   0 every target met; 1 a target missed; 2 could not run; 124 the time limit
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> chaos: %s\n' "$*" >&2; }

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    say "installing nats-server (Debian package)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq nats-server >&2
fi

scripts/fetch-model.sh

if [ "${CHAOS_SKIP_BUILD:-0}" != 1 ]; then
    say "building the debug binaries (routemesh, classifier-worker, fake-upstream, chaos)"
    cargo build -p routemesh-gateway -p routemesh-classifier-worker -p routemesh-loadtest \
        --bin routemesh --bin classifier-worker --bin fake-upstream --bin chaos
fi

if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 4096 ]; then
    say "warning: the hard file limit is $(ulimit -Hn); the slowloris scenario needs about 2,300 files"
fi

reports=${CHAOS_REPORTS:-loadtest/reports/chaos}
say "running the suite (reports in $reports, limit ${CHAOS_TIMEOUT:-300} s)"
status=0
timeout --kill-after=10 "${CHAOS_TIMEOUT:-300}" \
    target/debug/chaos --bin-dir target/debug --report "$reports" "$@" || status=$?
if [ "$status" = 124 ]; then
    say "the suite ran past ${CHAOS_TIMEOUT:-300} s and was stopped"
fi
exit "$status"
