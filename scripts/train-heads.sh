#!/usr/bin/env bash
# train-heads.sh — retrain the committed heads (heads/domain, heads/injection,
# heads/difficulty, heads/pii) from the shared data sets and print their metrics.
#
# Usage:   scripts/train-heads.sh [DATA_DIR] [HEAD...]     (works from any directory)
#          DATA_DIR  the shared data folder (default: ../shared/data next to the repo)
#          HEAD      domain | injection | difficulty | pii (default: all four)
# Env:     HEADS_OUT  where to write the head folders (default: <repo>/heads).
#                     Anything else is a dry run: the new metrics are compared
#                     with the committed heads' and the script says whether
#                     they are reproduced exactly.
#          ROUTEMESH_EMBED_CACHE  embedding cache (default: <repo>/.cache/embeddings)
#
# The texts are embedded once with all-MiniLM-L6-v2 (scripts/fetch-model.sh) and
# cached; a retrain with the same data skips encoding (a cold run embeds ~29k
# texts: about 15 minutes on 2 cores). Training is seeded (--seed 42) and
# deterministic, so the same data gives the same weights and metrics.

set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/.." && pwd -P)"

log() { printf 'train-heads: %s\n' "$*" >&2; }
die() { printf 'train-heads: ERROR: %s\n' "$*" >&2; exit 1; }

# Paths are recorded in head.json as given, so pass them relative to the repo
# root (../shared/data/...), not as this machine's absolute paths.
if [[ $# -ge 1 && "$1" != domain && "$1" != injection && "$1" != difficulty && "$1" != pii ]]; then
    [[ -d "$1" ]] || die "data folder $1 not found"
    DATA="$(realpath --relative-to="$REPO_ROOT" -- "$1")"
    shift
else
    DATA="../shared/data"
fi
HEADS=("$@")
[[ ${#HEADS[@]} -gt 0 ]] || HEADS=(domain injection difficulty pii)
for h in "${HEADS[@]}"; do
    case "$h" in domain|injection|difficulty|pii) ;; *) die "unknown head '$h' (domain, injection, difficulty, pii)" ;; esac
done

cd -- "$REPO_ROOT"
OUT="${HEADS_OUT:-heads}"
CACHE="${ROUTEMESH_EMBED_CACHE:-.cache/embeddings}"
MODEL="models/all-MiniLM-L6-v2"
BIN="target/release/routemesh-tools"

for f in routing/mmlu_pro_train.jsonl safety/injection_train.jsonl safety/injection_validation.jsonl pii/pii_train.jsonl; do
    [[ -f "$DATA/$f" ]] || die "$DATA/$f not found (pass the shared data folder as the first argument)"
done

log "building the release binary"
cargo build --release -p routemesh-tools
log "checking the model"
scripts/fetch-model.sh

common=(--model-dir "$MODEL" --cache "$CACHE" --max-tokens 256 --seed 42
        --epochs 200 --lr 1e-2 --weight-decay 1e-4 --batch-size 256 --patience 10
        --val-fraction 0.1 --class-weights balanced)

started=$SECONDS
summaries=()
for h in "${HEADS[@]}"; do
    log "training ${h} -> ${OUT}/${h}"
    if [[ "$h" == pii ]]; then
        # A token head (BIO tags over the token states), measured per type on
        # the 20% of texts it never sees; see heads/pii/README.md.
        "$BIN" train-pii-head --data "$DATA/pii/pii_train.jsonl" --model-dir "$MODEL" --out "$OUT/pii" --seed 42
        summaries+=("pii: see $OUT/pii/README.md")
        continue
    fi
    case "$h" in
    domain)
        # Logistic regression vs a one-hidden-layer MLP; the better macro-F1 on
        # the validation split is kept, both are recorded in the README.
        args=(--data "$DATA/routing/mmlu_pro_train.jsonl" --text-field question --label-field category
              --hidden 0,256
              --description "MMLU-Pro subject of a prompt (14 categories)")
        ;;
    injection)
        # The shared training file plus the generated hard negatives, synthetic
        # attacks, the permissively licensed rows of five PyPI wheels and the
        # tricks applied to training rows (heads/INJECTION-DATA.md), in one
        # file so head.json records one hash (the manifest records each input's).
        # The threshold holds false positives at 1% of the validation split's
        # benign rows; the separate validation file then measures it unseen.
        scripts/fetch-injection-data.sh >&2
        python3 scripts/make-injection-data.py --out .cache/heads/injection-data --shared "$DATA" >/dev/null
        cat "$DATA/safety/injection_train.jsonl" \
            .cache/heads/injection-data/{hard_negatives,synthetic_injections,extra_train,augmented_train}.jsonl \
            > .cache/heads/injection_train_all.jsonl
        args=(--data .cache/heads/injection_train_all.jsonl --data-eval "$DATA/safety/injection_validation.jsonl"
              --text-field text --label-field label --hidden 0,256
              --positive-label injection --choose-threshold fpr --max-fpr 0.01 --threshold-on validation
              --windows max
              --description "Prompt injection / jailbreak / harmful request (injection) or benign")
        ;;
    difficulty)
        # Labels from the per-model correctness: hard = at most 1 of the 4 cheap
        # models (< \$0.1 per 1k queries) answered correctly. See heads/README.md.
        mkdir -p .cache/heads
        "$BIN" make-difficulty-data "$DATA/routing/mmlu_pro_train.jsonl" .cache/heads/difficulty_train.jsonl >&2
        args=(--data .cache/heads/difficulty_train.jsonl --text-field question --label-field label
              --hidden 0,256
              --positive-label hard --choose-threshold accuracy
              --description "Does this prompt need a strong model? hard = at most 1 of 4 cheap models answered the MMLU-Pro question correctly")
        ;;
    esac
    line="$("$BIN" train-head --name "$h" --out "$OUT/$h" "${common[@]}" "${args[@]}")"
    printf '%s\n' "$line"
    summaries+=("$line")
    if [[ "$h" == injection ]]; then
        # Recall and false-positive rate per source: on the validation split
        # (the threshold's rows), on the separate validation file and on the
        # attackers' tricks applied to it (never trained on).
        for spec in "validation-split|.cache/heads/injection_train_all.jsonl|validation" \
                    "validation-file|$DATA/safety/injection_validation.jsonl|all" \
                    "robustness|.cache/heads/injection-data/robustness.jsonl|all"; do
            IFS='|' read -r name file split <<<"$spec"
            log "measuring injection per source on ${name}"
            "$BIN" eval-head --head "$OUT/injection" --data "$file" --split "$split" \
                --group-field source --model-dir "$MODEL" --cache "$CACHE" \
                > "$OUT/injection/eval-${name}.md"
        done
    fi
done

echo
echo "== heads trained in $((SECONDS - started)) s =="
printf '%s\n' "${summaries[@]}" | grep -v '^wrote ' || true

# A dry run compares the new metrics with the committed ones.
if [[ "$OUT" != heads ]]; then
    status=0
    for h in "${HEADS[@]}"; do
        if [[ "$h" == pii ]]; then
            python3 - "heads/pii/head.json" "$OUT/pii/head.json" <<'PY' || status=1
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:3])
same = old["span_metrics"]["per_type"] == new["span_metrics"]["per_type"]
print(f"pii: {'reproduced exactly' if same else 'DIFFERS from the committed head'}")
sys.exit(0 if same else 1)
PY
            continue
        fi
        python3 - "heads/$h/head.json" "$OUT/$h/head.json" <<'PY' || status=1
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:3])
keys = ("metrics", "threshold", "architecture", "labels")
same = all(old.get(k) == new.get(k) for k in keys)
print(f"{new['name']}: {'reproduced exactly' if same else 'DIFFERS from the committed head'}"
      f" (accuracy {new['metrics']['accuracy']:.4f}, committed {old['metrics']['accuracy']:.4f})")
sys.exit(0 if same else 1)
PY
    done
    exit "$status"
fi
