#!/usr/bin/env python3
"""encoder_bench.py: the PyTorch side of the encoder benchmark (scripts/bench-encoder.sh).

Runs sentence-transformers on the CPU over the same prompts as the Rust suite
(`encode_bench MODEL_DIR --suite ... --prompts-out PROMPTS.json`) and writes the same
JSON shape, so loadtest/pytorch/report.py can put both side by side.

Timing rule (identical to the Rust side): for each case, warm-up of at least 3 calls and
at least 0.3 s, then back-to-back calls of
`model.encode(texts, batch_size=len(texts), convert_to_numpy=True)` for S seconds, each call
timed (tokenising included). p50/p99 are nearest-rank over the calls;
prompts_per_s = batch * calls / wall time of the timed loop.

Needs the venv from loadtest/pytorch/requirements.txt (scripts/bench-encoder.sh --pytorch
creates .venv-torch). Progress goes to stderr; the result goes to --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ENGINE = "pytorch f32"
MAX_SEQ_LENGTH = 256
WARMUP_CALLS = 3
WARMUP_SECONDS = 0.3


def log(msg: str) -> None:
    print(f"encoder_bench.py: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    log(msg)
    sys.exit(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="encoder_bench.py",
        description=(
            "Benchmark sentence-transformers (PyTorch, CPU, fp32) on the prompts written by "
            "the Rust suite, in the same JSON shape as "
            "`encode_bench MODEL_DIR --suite --json OUT.json`."
        ),
        epilog=(
            "example: .venv-torch/bin/python loadtest/pytorch/encoder_bench.py "
            "models/all-MiniLM-L6-v2 --prompts /tmp/prompts.json --seconds 3 --threads 2 "
            "--json /tmp/pytorch.json\n"
            "PROMPTS.json: {\"cases\":[{\"name\":\"single-16\",\"batch\":1,\"tokens\":16,"
            "\"texts\":[...]}, ...]}; batch-1 cases cycle through `texts` one prompt a call, "
            "batched cases encode texts[0:batch] each call."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="sentence-transformers folder (e.g. models/all-MiniLM-L6-v2)")
    p.add_argument("--prompts", required=True, metavar="PROMPTS.json",
                   help="the cases and texts (written by encode_bench --prompts-out)")
    p.add_argument("--json", required=True, metavar="OUT.json", help="where to write the result")
    p.add_argument("--seconds", type=float, default=3.0, metavar="S",
                   help="timed seconds per case, after warm-up (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="torch.set_num_threads(N) (default: all cores)")
    p.add_argument("--cases", metavar="NAME[,NAME...]",
                   help="run only these cases (default: all in PROMPTS.json)")
    a = p.parse_args(argv)
    if a.seconds <= 0:
        p.error("--seconds must be > 0")
    if a.threads < 1:
        p.error("--threads must be >= 1")
    return a


def nearest_rank(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct% of values <= it."""
    n = len(sorted_values)
    rank = max(1, math.ceil(pct / 100.0 * n))
    return sorted_values[min(rank, n) - 1]


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return float("nan")


def load_cases(path: str, only: str | None) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        die(f"cannot read prompts file {path}: {e}")
    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(cases, list) or not cases:
        die(f"{path}: expected {{\"cases\": [...]}} with at least one case")
    for c in cases:
        for key, typ in (("name", str), ("batch", int), ("tokens", int), ("texts", list)):
            if not isinstance(c.get(key), typ):
                die(f"{path}: case {c.get('name', '?')!r} lacks {key!r} ({typ.__name__})")
        if c["batch"] < 1 or not c["texts"]:
            die(f"{path}: case {c['name']!r} needs batch >= 1 and at least one text")
        if c["batch"] > 1 and len(c["texts"]) < c["batch"]:
            die(f"{path}: case {c['name']!r} has batch {c['batch']} but only "
                f"{len(c['texts'])} texts")
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        names = {c["name"] for c in cases}
        missing = [n for n in wanted if n not in names]
        if missing:
            die(f"--cases: not in {path}: {', '.join(missing)} (have: {', '.join(sorted(names))})")
        cases = [c for c in cases if c["name"] in wanted]
    return cases


def check_tokens(model, case: dict) -> None:
    """Warn when the texts do not tokenise to the case's token count (special tokens included)."""
    texts = case["texts"] if case["batch"] == 1 else case["texts"][: case["batch"]]
    enc = model.tokenizer(texts, truncation=True, max_length=MAX_SEQ_LENGTH)
    lengths = [len(ids) for ids in enc["input_ids"]]
    if any(n != case["tokens"] for n in lengths):
        log(f"warning: case {case['name']}: token counts {min(lengths)}..{max(lengths)} "
            f"here, the case says {case['tokens']} (tokenizers differ?)")


def run_case(model, case: dict, seconds: float) -> dict:
    batch = case["batch"]
    if batch == 1:
        inputs = [[t] for t in case["texts"]]  # cycled, one prompt a call
    else:
        inputs = [case["texts"][:batch]]

    def call(i: int) -> None:
        texts = inputs[i % len(inputs)]
        model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                     show_progress_bar=False)

    clock = time.perf_counter
    i = 0
    start = clock()
    while i < WARMUP_CALLS or clock() - start < WARMUP_SECONDS:
        call(i)
        i += 1

    times: list[float] = []
    loop_start = clock()
    deadline = loop_start + seconds
    while True:
        t0 = clock()
        call(i)
        t1 = clock()
        times.append(t1 - t0)
        i += 1
        if t1 >= deadline:
            break
    total = clock() - loop_start

    ms = sorted(t * 1000.0 for t in times)
    return {
        "name": case["name"],
        "batch": batch,
        "tokens": case["tokens"],
        "runs": len(times),
        "p50_ms": round(nearest_rank(ms, 50), 4),
        "p99_ms": round(nearest_rank(ms, 99), 4),
        "prompts_per_s": round(batch * len(times) / total, 3),
    }


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not os.path.isdir(args.model_dir):
        die(f"model folder not found: {args.model_dir} (scripts/fetch-model.sh installs it)")
    cases = load_cases(args.prompts, args.cases)

    # A local folder needs no network (the device machines have none); no progress bars in logs.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import torch
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        die(f"{e}; install the venv first: python3 -m venv .venv-torch && "
            ".venv-torch/bin/pip install -r loadtest/pytorch/requirements.txt "
            "(or scripts/bench-encoder.sh --pytorch)")
    try:
        import transformers
        tf_version = transformers.__version__
        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        tf_version = "?"

    torch.set_num_threads(args.threads)
    log(f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"{torch.get_num_threads()} threads")

    t0 = time.perf_counter()
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    model.eval()
    load_ms = (time.perf_counter() - t0) * 1000.0
    log(f"loaded {args.model_dir} in {load_ms:.0f} ms")

    results = []
    for case in cases:
        check_tokens(model, case)
        r = run_case(model, case, args.seconds)
        log(f"{r['name']:<11} batch {r['batch']:>2} x {r['tokens']:>3} tokens: {r['runs']:>5} runs, "
            f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"{r['prompts_per_s']:.1f} prompts/s")
        results.append(r)

    out = {
        "engine": ENGINE,
        "threads": args.threads,
        "load_ms": round(load_ms, 2),
        "rss_mib": round(peak_rss_mib(), 1),
        "version": (f"sentence-transformers {sentence_transformers.__version__}, "
                    f"torch {torch.__version__}, transformers {tf_version}, "
                    f"python {sys.version.split()[0]}"),
        "cases": results,
    }
    tmp = args.json + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.json)
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
