#!/usr/bin/env bash
# precision-gate.sh — issue 17's accuracy gate, point 2 (a measurement, not a pass/fail test):
#
#   1. every shipped head measured again on the rows its head.json records its metrics on
#      (`routemesh-tools eval-head`: the validation split of its training file for domain and
#      difficulty, `--split validation`; injection_validation.jsonl for injection, by source),
#      with the encoder in f32, bf16 and int8; each prints recorded, measured and Δ points;
#   2. the routing replay's decisions (config/replay-mmlu.yaml) under f32 vs int8 and f32 vs
#      bf16 (`replay --compare-precision`).
#
# Report: loadtest/reports/precision-gate.md. Embeddings are cached per model, window and
# precision (CACHE_DIR/embeddings, CACHE_DIR/replay): a cold run takes about 7 minutes on 2
# cores, a warm one half a minute. The caches do not know the kernels' code: after a change to
# crates/inference (or the encoder), measure with an empty CACHE_DIR.
#
# Usage:  scripts/precision-gate.sh [DATA_DIR]    (default ../shared/data)
# Env:    OUT=DIR             where the outputs go (default /tmp/precision-gate): per head and
#                             precision <head>-<precision>.md and .json, replay-f32-<p>.md
#         CACHE_DIR=DIR       the embedding caches (default .cache, shared with train-heads.sh
#                             and bench-replay.sh)
#         BENCH_SKIP_BUILD=1  use target/debug/{routemesh-tools,replay} as they are
#
# Dev-profile binaries: the encoder's kernels and every dependency are optimised in dev too
# (Cargo.toml), and these are the binaries the report was measured with.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

DATA=${1:-../shared/data}
OUT=${OUT:-/tmp/precision-gate}
CACHE_DIR=${CACHE_DIR:-.cache}
TOOLS=target/debug/routemesh-tools
REPLAY=target/debug/replay
for f in routing/mmlu_pro_train.jsonl safety/injection_validation.jsonl; do
    [[ -f $DATA/$f ]] || { printf 'precision-gate.sh: no %s\n' "$DATA/$f" >&2; exit 66; }
done

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    say "building $TOOLS and $REPLAY"
    cargo build -p routemesh-tools -p routemesh-loadtest --bin routemesh-tools --bin replay
fi
scripts/fetch-model.sh >&2
mkdir -p "$OUT" .cache/heads
# The difficulty head's labels, as scripts/train-heads.sh writes them (head.json records the
# sha256; eval-head compares it).
"$TOOLS" make-difficulty-data "$DATA/routing/mmlu_pro_train.jsonl" .cache/heads/difficulty_train.jsonl >&2

for p in f32 bf16 int8; do
    say "heads, encoder $p"
    "$TOOLS" eval-head --head heads/domain --data "$DATA/routing/mmlu_pro_train.jsonl" \
        --text-field question --label-field category --split validation --precision "$p" --cache "$CACHE_DIR/embeddings" \
        --json "$OUT/domain-$p.json" > "$OUT/domain-$p.md"
    "$TOOLS" eval-head --head heads/difficulty --data .cache/heads/difficulty_train.jsonl \
        --text-field question --label-field label --split validation --precision "$p" --cache "$CACHE_DIR/embeddings" \
        --json "$OUT/difficulty-$p.json" > "$OUT/difficulty-$p.md"
    "$TOOLS" eval-head --head heads/injection --data "$DATA/safety/injection_validation.jsonl" \
        --text-field text --label-field label --group-field source --precision "$p" --cache "$CACHE_DIR/embeddings" \
        --json "$OUT/injection-$p.json" > "$OUT/injection-$p.md"
done
for p in int8 bf16; do
    say "replay decisions, f32 vs $p"
    "$REPLAY" --config config/replay-mmlu.yaml --data "$DATA/routing/mmlu_pro_train.jsonl" \
        --compare-precision "f32,$p" --cache-dir "$CACHE_DIR/replay" --quiet > "$OUT/replay-f32-$p.md"
done

echo "== heads: recorded vs measured (points) =="
for h in domain difficulty injection; do
    for p in f32 bf16 int8; do
        printf '%s %s: ' "$h" "$p"
        grep -m1 '^Largest difference' "$OUT/$h-$p.md" || echo '(not the recorded rows)'
    done
done
echo "== replay: same decision =="
for p in int8 bf16; do
    grep -m1 '^| same decision' "$OUT/replay-f32-$p.md"
done
