#!/usr/bin/env bash
# bench-gateway.sh — measure the gateway's per-stage latency and the latency it adds over
# calling an upstream directly (a benchmark with a report, not a pass/fail test).
#
#   1. builds release binaries (routemesh-gateway, routemesh-loadtest),
#   2. fetches the encoder model (scripts/fetch-model.sh),
#   3. starts three FAKE upstreams (loadtest's fake-upstream, a test fixture, not a model)
#      on 127.0.0.1:9101/9102/9103 with --latency 0ms, serving qwen-math-7b, qwen-coder-7b
#      and llama-3.2-1b as config/example.yaml expects,
#   4. starts the gateway with config/example.yaml and waits for GET /readyz (up to 120 s),
#   5. runs bench-gateway against the gateway (model "auto") and the llama-3.2-1b fake
#      directly, writing loadtest/reports/gateway-latency.{md,json},
#   6. stops everything it started, whatever happens.
#
# Usage:  scripts/bench-gateway.sh [bench-gateway flags...]
#         e.g. scripts/bench-gateway.sh --requests 5000 --concurrency 4
#              scripts/bench-gateway.sh --model llama-3.2-1b     # passthrough, no classification
# Env:    BENCH_GATEWAY_URL  benchmark a gateway that is already running at this base URL
#                            (nothing is built or started for it, no model is fetched)
#         BENCH_SKIP_BUILD=1 use the release binaries already in target/release
#         BENCH_REPORT=NAME  report file name without extension (default gateway-latency)
# Logs:   .run/bench-gateway/
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/.run/bench-gateway"
reports="$root/loadtest/reports"
mkdir -p "$logs" "$reports"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-gateway.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/bench-fakes.sh
. "$root/scripts/lib/bench-fakes.sh"

command -v curl >/dev/null || die "curl is needed to poll the gateway's /readyz"

external=${BENCH_GATEWAY_URL:-}
gateway_url=${external:-http://127.0.0.1:8080}
gateway_url=${gateway_url%/}

ports=(9101 9102 9103)
if [[ -z $external ]]; then ports+=(8080); fi
for p in "${ports[@]}"; do
    if port_in_use "$p"; then
        die "port $p is already in use (a demo or an earlier run still going?); stop it first"
    fi
done

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    if [[ -z $external ]]; then
        say "building release binaries (the first build takes a few minutes)"
        cargo build --release -p routemesh-gateway -p routemesh-loadtest
    else
        say "building release binaries (loadtest only: the gateway is external)"
        cargo build --release -p routemesh-loadtest
    fi
fi
if [[ -z $external ]]; then
    say "fetching the encoder model"
    scripts/fetch-model.sh
fi

say "starting three fake upstreams (test fixtures, not models) on 9101-9103"
start_fake 9101 math qwen-math-7b
start_fake 9102 code qwen-coder-7b
start_fake 9103 chat llama-3.2-1b

if [[ -z $external ]]; then
    say "starting the gateway (logs: .run/bench-gateway/gateway.log)"
    target/release/routemesh serve --config config/example.yaml \
        >"$logs/gateway.out" 2>"$logs/gateway.log" &
    gateway=$!
    pids+=("$gateway")
    say "waiting for $gateway_url/readyz (up to 120 s)"
    deadline=$((SECONDS + 120))
    until curl -fsS -o /dev/null "$gateway_url/readyz" 2>/dev/null; do
        if ! kill -0 "$gateway" 2>/dev/null; then
            tail -n 50 "$logs/gateway.log" >&2 || true
            die "the gateway exited before it was ready (log above)"
        fi
        ((SECONDS < deadline)) || die "the gateway was not ready within 120 s"
        sleep 0.25
    done
fi
# An external gateway is checked by bench-gateway's first request, which fails clearly.

say "benchmarking (progress on stderr; report in loadtest/reports/)"
report=${BENCH_REPORT:-gateway-latency}
md_tmp="$logs/$report.md.tmp"
target/release/bench-gateway \
    --gateway "$gateway_url" \
    --direct http://127.0.0.1:9103 \
    --direct-model llama-3.2-1b \
    --json "$reports/$report.json" \
    "$@" >"$md_tmp" &
bench=$!
pids+=("$bench")
# `wait` (unlike a foreground command) lets the INT/TERM traps run at once.
wait "$bench"
mv "$md_tmp" "$reports/$report.md"
cat "$reports/$report.md"
say "wrote loadtest/reports/$report.md and loadtest/reports/$report.json"
