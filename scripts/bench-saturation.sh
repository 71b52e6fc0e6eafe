#!/usr/bin/env bash
# bench-saturation.sh — routed throughput at saturation (a benchmark with a report, not a
# test): the gateway with config/example.yaml (embedded encoder) in front of three FAKE
# upstreams (loadtest's fake-upstream, a test fixture, not a model), driven OPEN LOOP by
# loadgen with a scenario whose rate ramps past what the machine can classify.
#
#   1. builds release binaries (routemesh, loadgen, fake-upstream) unless BENCH_SKIP_BUILD=1,
#   2. fetches the encoder model, starts the fakes on 9101-9103 and the gateway on 8080,
#   3. runs each scenario given (default: routed-saturation-16 and routed-saturation-256)
#      and prints loadgen's summary; loadgen writes its folder under loadtest/reports/loadgen/,
#   4. stops everything it started, whatever happens.
#
# Usage:  scripts/bench-saturation.sh [SCENARIO.yaml ...]
# Read:   the report's throughput over time: the achieved rate stops following the offered
#         one at the routed capacity (arrivals beyond max_in_flight are dropped and counted).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/.run/bench-saturation"
mkdir -p "$logs"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-saturation.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/bench-fakes.sh
. "$root/scripts/lib/bench-fakes.sh"
command -v curl >/dev/null || die "curl is needed to poll the gateway's /readyz"

scenarios=("$@")
if ((${#scenarios[@]} == 0)); then
    scenarios=(loadtest/scenarios/routed-saturation-16.yaml loadtest/scenarios/routed-saturation-256.yaml)
fi
for s in "${scenarios[@]}"; do [[ -f $s ]] || die "no scenario file $s"; done
for p in 9101 9102 9103 8080; do
    port_in_use "$p" && die "port $p is already in use (a demo or an earlier run still going?)"
done
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "building release binaries (the first build takes a few minutes)"
    cargo build --release -p routemesh-gateway -p routemesh-loadtest \
        --bin routemesh --bin loadgen --bin fake-upstream
fi
say "fetching the encoder model"
scripts/fetch-model.sh
say "starting three fake upstreams (test fixtures, not models) on 9101-9103"
start_fake 9101 math qwen-math-7b
start_fake 9102 code qwen-coder-7b
start_fake 9103 chat llama-3.2-1b
say "starting the gateway (logs: .run/bench-saturation/gateway.log)"
target/release/routemesh serve --config config/example.yaml \
    >"$logs/gateway.out" 2>"$logs/gateway.log" &
gateway=$!
pids+=("$gateway")
deadline=$((SECONDS + 120))
until curl -fsS -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null; do
    kill -0 "$gateway" 2>/dev/null || { tail -n 50 "$logs/gateway.log" >&2; die "the gateway exited"; }
    ((SECONDS < deadline)) || die "the gateway was not ready within 120 s"
    # Polling a child process while it loads the model.
    sleep 0.25
done
for s in "${scenarios[@]}"; do
    say "loadgen run $s"
    target/release/loadgen run "$s" &
    run=$!
    pids+=("$run")
    wait "$run"
done
