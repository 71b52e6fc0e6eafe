#!/usr/bin/env bash
# bench-cache.sh — the semantic cache benchmark (a report, not a pass/fail test):
#
#   1. builds the release `bench-cache` binary (routemesh-loadtest),
#   2. measures, through the public `Cache` handle: lookup p50/p99 and recall@1 against exact
#      search with 10k and 100k entries in one shard (HNSW at ef_search 64 and 128, and the
#      flat index at each --rerank), insert throughput (also with a sled store at 100k), RSS and `bytes` per entry, and
#      RSS under 3 minutes of concurrent churn with eviction (4 shards × 20k entries, 8 tasks),
#   3. writes loadtest/reports/cache/{cache.json,cache.md,churn-rss.svg} and prints cache.md.
#
# Data: real MiniLM embeddings from the first .cache/replay/*.jsonl (written by
# scripts/bench-replay.sh), extended by blending; without it the benchmark falls back to
# synthetic vectors and says so. About 10 minutes on 2 cores.
#
# Usage:  scripts/bench-cache.sh [extra bench-cache flags...]
#         e.g. scripts/bench-cache.sh --sizes 1000000 --ef-search 64 --ef-construction 40 \
#                  --flat-sizes none --store-sizes none --no-churn --out loadtest/reports/cache/1m
#         scripts/bench-cache.sh --pairs ../shared/data/cache/qqp_dev.jsonl --out loadtest/reports/cache/paraphrase
#                  (the paraphrase curve: real encoder, hit precision / recall per threshold)
#         Flags: target/release/bench-cache --help
# Env:    BENCH_SKIP_BUILD=1  use target/release/bench-cache as it is
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    say "building target/release/bench-cache"
    cargo build --release -p routemesh-loadtest --bin bench-cache
fi
say "running the cache benchmark"
target/release/bench-cache "$@"
