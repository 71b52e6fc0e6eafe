#!/usr/bin/env bash
# bench-gateway-ab.sh — two gateway builds side by side in one run (a benchmark with a
# report, not a pass/fail test): does a change add cost to the request path?
#
#   1. starts three FAKE upstreams (test-support's fake-upstream, a test fixture, not a
#      model) on 127.0.0.1:9101-9103, as config/example.yaml expects,
#   2. starts gateway A (the baseline binary) on :8080 and gateway B (this tree's, or the
#      one given) on :8081, both with config/example.yaml, and waits for both /readyz,
#   3. runs bench-gateway with A as `--gateway` and B as `--direct`: the same prompts, in
#      interleaved batches that alternate which goes first, so both see the same machine
#      at the same moments; "added latency" in the report is then A − B (positive: B is
#      faster). Once routed (`auto`), once passthrough (a concrete model: no classifier),
#   4. writes loadtest/reports/$BENCH_REPORT-{routed,passthrough}.{md,json} and stops all.
#
# Usage:  scripts/bench-gateway-ab.sh BASELINE_ROUTEMESH_BIN [B_ROUTEMESH_BIN] [bench-gateway flags...]
#         e.g. (baseline built from another checkout)
#           git worktree add /tmp/base <rev> && (cd /tmp/base && cargo build --release -p routemesh-gateway)
#           scripts/bench-gateway-ab.sh /tmp/base/target/release/routemesh
# Env:    BENCH_REPORT  report name prefix (default gateway-ab)
# Needs:  target/release/{routemesh,fake-upstream,bench-gateway} of this tree (built if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/.run/bench-gateway-ab"
reports="$root/loadtest/reports"
mkdir -p "$logs" "$reports"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-gateway-ab.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/bench-fakes.sh
. "$root/scripts/lib/bench-fakes.sh"

[[ $# -ge 1 ]] || die "usage: scripts/bench-gateway-ab.sh BASELINE_ROUTEMESH_BIN [B_ROUTEMESH_BIN] [bench-gateway flags...]"
a_bin=$1
shift
b_bin=target/release/routemesh
if [[ $# -ge 1 && $1 != -* ]]; then
    b_bin=$1
    shift
fi
[[ -x $a_bin ]] || die "baseline gateway binary $a_bin is not an executable"
command -v curl >/dev/null || die "curl is needed to poll the gateways' /readyz"

for p in 9101 9102 9103 8080 8081; do
    port_in_use "$p" && die "port $p is already in use (a demo or an earlier run still going?); stop it first"
done

if [[ ! -x target/release/bench-gateway || ! -x target/release/fake-upstream || ! -x $b_bin ]]; then
    say "building release binaries (the first build takes a while)"
    cargo build --release -p routemesh-gateway -p routemesh-loadtest --bins
fi
scripts/fetch-model.sh

start_gateway() {
    local name=$1 bin=$2 port=$3
    "$bin" serve --config config/example.yaml --listen "127.0.0.1:$port" --reload-poll 0s \
        >"$logs/gateway-$name.out" 2>"$logs/gateway-$name.log" &
    local pid=$!
    pids+=("$pid")
    local deadline=$((SECONDS + 120))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { tail -n 50 "$logs/gateway-$name.log" >&2; die "gateway $name exited"; }
        ((SECONDS < deadline)) || die "gateway $name was not ready within 120 s"
        sleep 0.25
    done
}

say "starting three fake upstreams (test fixtures, not models) on 9101-9103"
start_fake 9101 math qwen-math-7b
start_fake 9102 code qwen-coder-7b
start_fake 9103 chat llama-3.2-1b
say "starting gateway A ($a_bin) on :8080 and gateway B ($b_bin) on :8081"
start_gateway a "$a_bin" 8080
start_gateway b "$b_bin" 8081

prefix=${BENCH_REPORT:-gateway-ab}
run() {
    local kind=$1 model=$2
    shift 2
    say "benchmarking $kind (model $model): A as --gateway, B as --direct"
    target/release/bench-gateway --gateway http://127.0.0.1:8080 --model "$model" \
        --direct http://127.0.0.1:8081 --direct-model "$model" \
        --json "$reports/$prefix-$kind.json" "$@" >"$logs/$prefix-$kind.md.tmp"
    {
        echo "<!-- A = $a_bin on :8080 (\"gateway\"), B = $b_bin on :8081 (\"direct\"); added latency = A − B. -->"
        cat "$logs/$prefix-$kind.md.tmp"
    } >"$reports/$prefix-$kind.md"
    say "wrote loadtest/reports/$prefix-$kind.md"
}
run routed auto "$@"
run passthrough llama-3.2-1b "$@"
