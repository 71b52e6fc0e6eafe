#!/usr/bin/env bash
# bench-replay.sh — the routing replay benchmark (a report, not a pass/fail test):
#
#   1. builds the release `replay` binary (routemesh-loadtest),
#   2. fetches the encoder model (scripts/fetch-model.sh) if it is missing,
#   3. replays the dataset through config/replay-mmlu.yaml: signals from the real encoder and
#      heads (embedded mode), decisions from the real decision engine, Thompson selection by the
#      real learner, against a SIMULATED upstream that answers from the recorded outputs,
#   4. writes loadtest/reports/replay/{replay.json,replay.md,cost_accuracy.svg,learning_curve.svg}
#      and prints replay.md.
#
# The first run encodes every question into .cache/replay/ (25 minutes for the 8186 training
# questions on 2 cores shared with builds); later runs read the cache and take seconds.
#
# Usage:  scripts/bench-replay.sh [DATA.jsonl] [extra replay flags...]
#         DATA defaults to ../shared/data/routing/mmlu_pro_train.jsonl; the price list is
#         models.json beside it. Flags: target/release/replay --help
# Env:    BENCH_SKIP_BUILD=1  use target/release/replay as it is
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

data=${1:-../shared/data/routing/mmlu_pro_train.jsonl}
shift || true
[[ -f $data ]] || { printf 'bench-replay.sh: no data file %s\n' "$data" >&2; exit 66; }

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    say "building target/release/replay"
    cargo build --release -p routemesh-loadtest --bin replay
fi
if [[ ! -f models/all-MiniLM-L6-v2/model.safetensors ]]; then
    say "fetching the encoder model"
    scripts/fetch-model.sh
fi
say "replaying $data"
target/release/replay --data "$data" --config config/replay-mmlu.yaml \
    --out loadtest/reports/replay "$@"
