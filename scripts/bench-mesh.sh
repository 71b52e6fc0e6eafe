#!/usr/bin/env bash
# bench-mesh.sh — the NATS mesh benchmarks (reports, not pass/fail tests):
#
#   1. builds release binaries (routemesh-loadtest's bench-mesh, classifier-worker) and the
#      encoder example,
#   2. fetches the encoder model (scripts/fetch-model.sh),
#   3. `bench-mesh hop`: the classify hop on the bus alone (its own nats-server and an instant
#      in-process responder) -> loadtest/reports/mesh-hop.{md,json},
#   4. `bench-mesh scale`: 1, 2, 4 and 8 classifier-workers with the simulated fixed-cost model
#      (20 ms per pass), each step with a fresh nats-server -> loadtest/reports/mesh-scale.{md,json},
#   5. the encode_bench example: MiniLM throughput on CPU against batch size
#      -> loadtest/reports/encoder-batch.md,
#   6. stops everything it started, whatever happens (bench-mesh stops its own nats-servers and
#      workers on SIGINT/SIGTERM and on errors).
#
# The steps run one after another: the machine has 2 cores and each step wants them.
# Takes about 2 minutes after the build.
#
# Usage:  scripts/bench-mesh.sh
# Env:    BENCH_SKIP_BUILD=1  use the release binaries already in target/release
#         BENCH_ONLY=hop|scale|encoder  run one step only
#         BENCH_HOP_ARGS, BENCH_SCALE_ARGS, BENCH_ENCODER_ARGS  extra flags for each step,
#                            e.g. BENCH_SCALE_ARGS="--duration 10s --max-batch 4"
# Output: progress on stderr; each report on stdout and in loadtest/reports/
set -euo pipefail
cd "$(dirname "$0")/.."
# Relative paths: the reports quote the command lines, which should not name this checkout.
work=.run/bench-mesh
reports=loadtest/reports
mkdir -p "$work" "$reports"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-mesh.sh: %s\n' "$*" >&2; exit 1; }

only=${BENCH_ONLY:-}
case $only in "" | hop | scale | encoder) ;; *) die "BENCH_ONLY must be hop, scale or encoder" ;; esac
wants() { [[ -z $only || $only == "$1" ]]; }
# Extra flags per step (word-split on purpose: flags without spaces in their values).
read -r -a hop_args <<<"${BENCH_HOP_ARGS:-}"
read -r -a scale_args <<<"${BENCH_SCALE_ARGS:-}"
read -r -a encoder_args <<<"${BENCH_ENCODER_ARGS:-}"

# The step running now, if any; killed on exit so nothing outlives the script.
child=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $child ]]; then
        kill "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_step NAME OUT_MD -- COMMAND...: runs COMMAND in the background (`wait`, unlike a
# foreground command, lets the INT/TERM traps run at once), its stdout (the report) to a
# temporary file moved to OUT_MD on success; progress (stderr) stays on the terminal.
run_step() {
    local name=$1 out=$2
    shift 3
    local tmp="$work/$name.md.tmp"
    "$@" >"$tmp" &
    child=$!
    wait "$child"
    child=
    mv "$tmp" "$out"
    cat "$out"
    echo
}

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "building release binaries (the first build takes a few minutes)"
    cargo build --release -p routemesh-loadtest -p routemesh-classifier-worker
    cargo build --release -p routemesh-classifier-worker --example encode_bench
fi
for bin in target/release/bench-mesh target/release/classifier-worker; do
    [[ -x $bin ]] || die "$bin is missing; run without BENCH_SKIP_BUILD=1"
done

if wants hop; then
    say "bench-mesh hop: NATS classify hop, instant responder"
    run_step mesh-hop "$reports/mesh-hop.md" -- \
        target/release/bench-mesh hop --json "$reports/mesh-hop.json" "${hop_args[@]}"
fi

if wants scale; then
    say "bench-mesh scale: 1, 2, 4, 8 workers, simulated 20 ms per pass"
    run_step mesh-scale "$reports/mesh-scale.md" -- \
        target/release/bench-mesh scale --worker-bin target/release/classifier-worker \
        --json "$reports/mesh-scale.json" "${scale_args[@]}"
fi

if wants encoder; then
    say "fetching the encoder model"
    scripts/fetch-model.sh
    example=target/release/examples/encode_bench
    [[ -x $example ]] || die "$example is missing; run without BENCH_SKIP_BUILD=1"
    say "encode_bench: MiniLM throughput on CPU against batch size"
    run_step encoder-batch "$reports/encoder-batch.md" -- \
        "$example" models/all-MiniLM-L6-v2 --tokens 32 --seconds 3 "${encoder_args[@]}"
fi

say "reports in loadtest/reports/ (mesh-hop, mesh-scale, encoder-batch)"
