#!/usr/bin/env bash
# bench-encoder.sh — the encoder precision benchmark (a report, not a pass/fail test):
# MiniLM-L6 in routemesh at f32, bf16 and int8, and optionally sentence-transformers
# (PyTorch, f32) as the reference, all on one prompts file and the same timing rule.
#
#   1. builds target/release/examples/encode_bench (routemesh-classifier-worker),
#   2. fetches the encoder model (scripts/fetch-model.sh),
#   3. with --pytorch: makes sure .venv-torch exists (creating it from
#      loadtest/pytorch/requirements.txt if needed: a ~5.8 GB, ~5 minute install),
#   4. runs every engine's suite (single-16/64/128/256 at batch 1, batch-8/32/64 of 32-token
#      prompts) INTERLEAVED: the whole set of engines, --rounds times, in a rotating order so
#      that noise from other work spreads over all engines evenly. The first run writes the
#      prompts file; every later routemesh run checks that it would write the same one.
#   5. merges the rounds (median per engine per case) with loadtest/pytorch/report.py into
#      the markdown report and prints it.
#
# Usage:  scripts/bench-encoder.sh [--pytorch] [--seconds S] [--threads N] [--rounds R]
#                                  [--out FILE]
#   --pytorch      also run PyTorch (sentence-transformers) as the reference
#   --seconds S    timed seconds per case per run, after warm-up (default 3)
#   --threads N    threads for every engine (default: nproc)
#   --rounds R     how many times to run the whole set of engines (default 2)
#   --out FILE     the report (default loadtest/reports/encoder-precision.md)
# Time:   about rounds × engines × (7 × (S + ~0.5) s + load); defaults, 3 engines: ~2.5 min.
# Env:    BENCH_SKIP_BUILD=1  use target/release/examples/encode_bench as it is
# Output: the report; per-round JSONs, the prompts file and logs stay in a temp dir
#         (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-encoder.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

cmdline="scripts/bench-encoder.sh"
for a in "$@"; do cmdline+=" $(printf '%q' "$a")"; done

pytorch=0
seconds=3
threads=$(nproc)
rounds=2
out=loadtest/reports/encoder-precision.md

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --pytorch) pytorch=1; shift ;;
        --seconds) need_value "$@"; seconds=$2; shift 2 ;;
        --threads) need_value "$@"; threads=$2; shift 2 ;;
        --rounds) need_value "$@"; rounds=$2; shift 2 ;;
        --out) need_value "$@"; out=$2; shift 2 ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        --threads=*) threads=${1#*=}; shift ;;
        --rounds=*) rounds=${1#*=}; shift ;;
        --out=*) out=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $seconds =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)$ && $seconds =~ [1-9] ]] \
    || die "--seconds must be a positive number, not '$seconds'"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer, not '$threads'"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not '$rounds'"
if ((threads > $(nproc))); then
    say "warning: --threads $threads is more than the $(nproc) cores here; timings will suffer"
fi

command -v python3 >/dev/null || die "python3 is needed for the report (loadtest/pytorch/report.py)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1); the report and the PyTorch side need 3.11 or newer"

model=models/all-MiniLM-L6-v2
bench=target/release/examples/encode_bench
venv=.venv-torch
torch_py=$venv/bin/python
requirements=loadtest/pytorch/requirements.txt

# ---- build, model, venv ----------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "building $bench (the first release build takes a few minutes)"
    cargo build --release -p routemesh-classifier-worker --example encode_bench
fi
[[ -x $bench ]] || die "$bench is missing (unset BENCH_SKIP_BUILD to build it)"

say "fetching the encoder model"
scripts/fetch-model.sh

if ((pytorch)); then
    if ! { [[ -x $torch_py ]] && "$torch_py" -c 'import torch, sentence_transformers' 2>/dev/null; }; then
        say "creating $venv from $requirements: PyTorch from PyPI is the CUDA build, a ~5.8 GB," \
            "~5 minute install (once; later runs reuse it)"
        [[ -x $torch_py ]] || python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        "$torch_py" -m pip install --progress-bar off -r "$requirements" \
            || die "pip install -r $requirements failed (output above); fix it or delete $venv and retry"
        "$torch_py" -c 'import torch, sentence_transformers' \
            || die "$venv still cannot import torch and sentence_transformers"
    fi
fi

# ---- interleaved runs ------------------------------------------------------------------
engines=(f32 bf16 int8)
((pytorch)) && engines+=(pytorch)
n=${#engines[@]}

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-encoder.XXXXXX")
mkdir -p "$work/runs" "$work/logs"
prompts=$work/prompts.json
loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${loadavg_before%% *}" 'BEGIN { exit !(l >= 0.5) }'; then
    say "warning: load average is $loadavg_before: other work is running. Every engine slows," \
        "PyTorch's OpenMP threads far more than the others (ratios come out flattering);" \
        "for numbers to quote, run on a quiet machine"
fi

est=$(awk -v r="$rounds" -v n="$n" -v s="$seconds" 'BEGIN { printf "%d", r * n * (7 * (s + 0.5) + 2) }')
say "running $n engines × $rounds rounds, $seconds s per case, $threads threads (about ${est} s)"
say "per-round JSONs and logs: $work"

run_one() { # run_one ENGINE ROUND
    local engine=$1 round=$2 json log
    json="$work/runs/round$round-$engine.json"
    log="$work/logs/round$round-$engine.log"
    local -a cmd
    if [[ $engine == pytorch ]]; then
        [[ -s $prompts ]] || die "internal: no prompts file before the PyTorch run"
        cmd=("$torch_py" loadtest/pytorch/encoder_bench.py "$model" --prompts "$prompts"
             --seconds "$seconds" --threads "$threads" --json "$json")
    else
        local p_out=$prompts
        [[ -s $prompts ]] && p_out="$work/logs/prompts-round$round-$engine.json"
        cmd=("$bench" "$model" --suite --precision "$engine" --seconds "$seconds"
             --threads "$threads" --json "$json" --prompts-out "$p_out")
    fi
    say "round $round/$rounds: $engine"
    if ! "${cmd[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2 || true
        die "$engine failed in round $round (log above, full log: $log)"
    fi
    [[ -s $json ]] || die "$engine wrote no $json (log: $log)"
    if [[ $engine != pytorch && ${p_out:-} != "$prompts" ]]; then
        cmp -s "$prompts" "$p_out" \
            || die "$engine wrote different prompts in round $round ($p_out vs $prompts): the engines would not compare like for like"
    fi
}

for ((r = 0; r < rounds; r++)); do
    for ((i = 0; i < n; i++)); do
        # Round 1 starts with f32 (which writes the prompts file); each later round
        # starts one engine further on.
        run_one "${engines[(i + r) % n]}" $((r + 1))
    done
done

# ---- report ----------------------------------------------------------------------------
report_args=(--out "$out" --command "$cmdline" --threads "$threads" --seconds "$seconds"
             --rounds "$rounds" --loadavg-before "$loadavg_before" --model "$model")
((pytorch)) || report_args+=(--pytorch-skipped)
python3 loadtest/pytorch/report.py "${report_args[@]}" "$work"/runs/*.json
cat "$out"
say "wrote $out (runs, prompts and logs kept in $work)"
