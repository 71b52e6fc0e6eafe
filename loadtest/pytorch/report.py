#!/usr/bin/env python3
"""report.py: merge encoder-benchmark JSONs into a markdown report (stdlib only).

Each input is one engine's run of the suite (the shape written by
`encode_bench --suite --json` and loadtest/pytorch/encoder_bench.py):
  {"engine": "...", "threads": N, "load_ms": x, "rss_mib": x, "version": "...",
   "cases": [{"name","batch","tokens","runs","p50_ms","p99_ms","prompts_per_s"}, ...]}
Several inputs for one engine are rounds; every figure in the report is the median over
rounds for that engine and case. Called by scripts/bench-encoder.sh; runs on plain
Python 3.11 without the torch venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
from collections import defaultdict

PYTORCH = "pytorch f32"
F32 = "routemesh f32"
ENGINE_ORDER = [F32, "routemesh bf16", "routemesh int8", PYTORCH]

# Targets (2 threads on this class of machine); checked against routemesh engines.
TARGET_16_P50_MS = 3.0
TARGET_128_P50_MS = 10.0
TARGET_BATCH_PPS = 500.0
TARGET_BATCH_VS_PYTORCH = 2.5
TARGET_BATCH_CASE = "batch-32"


def die(msg: str) -> None:
    print(f"report.py: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="report.py",
        description="Merge encoder-benchmark JSONs (median over rounds) into a markdown report.",
        epilog="example: python3 loadtest/pytorch/report.py --out report.md runs/*.json",
    )
    p.add_argument("jsons", nargs="+", metavar="RUN.json", help="one engine's run each")
    p.add_argument("--out", required=True, help="markdown file to write ('-' for stdout)")
    p.add_argument("--command", default="", help="command line to record in the header")
    p.add_argument("--threads", type=int, help="threads given to the engines (header)")
    p.add_argument("--seconds", help="timed seconds per case (header)")
    p.add_argument("--rounds", type=int, help="rounds asked for (header)")
    p.add_argument("--loadavg-before", help="/proc/loadavg before the runs (header)")
    p.add_argument("--pytorch-skipped", action="store_true",
                   help="say that PyTorch was not run, and how to run it")
    p.add_argument("--model", default="models/all-MiniLM-L6-v2", help="model folder (header)")
    p.add_argument("--notes", action="append", default=[], help="extra header line (repeatable)")
    return p.parse_args(argv)


# ---- machine ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


# ---- merge -----------------------------------------------------------------------------


def load_runs(paths: list[str]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            die(f"cannot read {path}: {e}")
        if not isinstance(doc, dict) or not isinstance(doc.get("engine"), str) \
                or not isinstance(doc.get("cases"), list):
            die(f"{path}: not an encoder-benchmark result (needs 'engine' and 'cases')")
        runs[doc["engine"]].append(doc)
    return runs


def med(values: list) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def merge(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """engine -> {rounds, load_ms, rss_mib, version, threads, cases: name -> merged case}"""
    merged: dict[str, dict] = {}
    for engine, docs in runs.items():
        per_case: dict[str, list[dict]] = defaultdict(list)
        for d in docs:
            for c in d["cases"]:
                if isinstance(c, dict) and isinstance(c.get("name"), str):
                    per_case[c["name"]].append(c)
        cases = {}
        for name, cs in per_case.items():
            p50s = [c["p50_ms"] for c in cs if isinstance(c.get("p50_ms"), (int, float))]
            cases[name] = {
                "name": name,
                "batch": cs[0].get("batch"),
                "tokens": cs[0].get("tokens"),
                "rounds": len(cs),
                "runs": med([c.get("runs") for c in cs]),
                "p50_ms": med(p50s),
                "p50_min": min(p50s) if p50s else None,
                "p50_max": max(p50s) if p50s else None,
                "p99_ms": med([c.get("p99_ms") for c in cs]),
                "prompts_per_s": med([c.get("prompts_per_s") for c in cs]),
                "pps_min": min((c["prompts_per_s"] for c in cs
                                if isinstance(c.get("prompts_per_s"), (int, float))),
                               default=None),
                "pps_max": max((c["prompts_per_s"] for c in cs
                                if isinstance(c.get("prompts_per_s"), (int, float))),
                               default=None),
            }
        versions = sorted({str(d.get("version", "?")) for d in docs})
        threads = sorted({d.get("threads") for d in docs if d.get("threads") is not None})
        merged[engine] = {
            "rounds": len(docs),
            "load_ms": med([d.get("load_ms") for d in docs]),
            "rss_mib": med([d.get("rss_mib") for d in docs]),
            "version": "; ".join(versions),
            "threads": ", ".join(str(t) for t in threads) or "?",
            "cases": cases,
        }
    return merged


def engine_order(engines) -> list[str]:
    known = [e for e in ENGINE_ORDER if e in engines]
    return known + sorted(e for e in engines if e not in ENGINE_ORDER)


def case_sort_key(c: dict):
    return (c.get("batch") or 0, c.get("tokens") or 0, c["name"])


# ---- formatting ------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0 or num == 0:
        return "—"
    return f"{num / den:.2f}×"


def spread(lo: float | None, hi: float | None, digits: int = 2) -> str:
    if lo is None or hi is None:
        return "—"
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


NOISY = 1.3  # highest / lowest round above this: flagged


def noisy(lo: float | None, hi: float | None) -> str:
    return " (noisy)" if lo and hi and hi / lo > NOISY else ""


def check(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def build(args: argparse.Namespace, merged: dict[str, dict]) -> str:
    engines = engine_order(merged)
    has_pt = PYTORCH in merged
    has_f32 = F32 in merged
    # Ratio columns: speed-up over a baseline, > 1 means faster than the baseline.
    baselines = []
    if has_pt:
        baselines.append((PYTORCH, "vs PyTorch"))
    if has_f32:
        baselines.append((F32, "vs routemesh f32"))

    all_cases: dict[str, dict] = {}
    for e in engines:
        for name, c in merged[e]["cases"].items():
            all_cases.setdefault(name, c)
    singles = sorted((c for c in all_cases.values() if c.get("batch") == 1), key=case_sort_key)
    batches = sorted((c for c in all_cases.values() if (c.get("batch") or 0) > 1),
                     key=case_sort_key)

    def get(e: str, name: str) -> dict | None:
        return merged.get(e, {}).get("cases", {}).get(name)

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    rounds_seen = sorted({merged[e]["rounds"] for e in engines})
    L: list[str] = []
    L.append("# MiniLM-L6 encoder: routemesh f32 / bf16 / int8"
             + (" against PyTorch" if has_pt else " (PyTorch not run)"))
    L.append("")
    L.append(f"- date: {now}")
    L.append(f"- CPU: {cpu_model()} (nproc {os.cpu_count()})")
    if args.loadavg_before:
        L.append(f"- load average before the runs: {args.loadavg_before}; after: {loadavg()} "
                 "(the benchmark itself adds about its thread count; other work moves the numbers)")
    else:
        L.append(f"- load average when the report was written: {loadavg()}")
    try:
        busy = float(args.loadavg_before.split()[0]) >= 0.5 if args.loadavg_before else False
    except ValueError:
        busy = False
    if busy:
        L.append("- **warning: the machine was busy when the runs began** (1-minute load "
                 f"{args.loadavg_before.split()[0]}). Contention slows PyTorch's OpenMP threads "
                 "far more than the other engines, so ratios against PyTorch come out "
                 "flattering; rerun on a quiet machine before quoting them.")
    if args.command:
        L.append(f"- command: `{args.command}`")
    L.append(f"- threads per engine: {args.threads if args.threads else '?'}"
             + (f"; timed seconds per case: {args.seconds}" if args.seconds else "")
             + (f"; rounds: {args.rounds}" if args.rounds else "")
             + f" (rounds merged per engine: {', '.join(str(r) for r in rounds_seen)})")
    L.append(f"- model: {args.model}; the same prompts file for every engine")
    L.append("- method: each case warms up (≥ 3 calls, ≥ 0.3 s), then calls encode(batch) back to "
             "back; every call is timed, tokenising included. p50/p99 are nearest-rank over the "
             "calls; prompts/s = batch × calls / time. Engines run interleaved, in a rotating "
             "order each round; every figure is the median over rounds.")
    for e in engines:
        L.append(f"- {e}: {merged[e]['version']} (threads {merged[e]['threads']})")
    if args.pytorch_skipped or not has_pt:
        L.append("- **PyTorch was not run**, so ratios are against routemesh f32. To include it: "
                 "`scripts/bench-encoder.sh --pytorch` (the first time it creates `.venv-torch` "
                 "from loadtest/pytorch/requirements.txt: a ~5.8 GB, ~5 minute install).")
    for n in args.notes:
        L.append(f"- {n}")
    L.append("")

    # Targets
    L.append("## Targets")
    L.append("")
    L.append(f"16-token p50 ≤ {TARGET_16_P50_MS:g} ms; 128-token p50 ≤ {TARGET_128_P50_MS:g} ms; "
             f"32-token batched ({TARGET_BATCH_CASE}) ≥ {TARGET_BATCH_PPS:g} prompts/s and "
             f"≥ {TARGET_BATCH_VS_PYTORCH:g}× PyTorch.")
    L.append("")
    L.append("| engine | 16-token p50 | ≤ 3 ms | 128-token p50 | ≤ 10 ms | "
             f"{TARGET_BATCH_CASE} prompts/s | ≥ 500/s | vs PyTorch | ≥ 2.5× |")
    L.append("|---|---:|:-:|---:|:-:|---:|:-:|---:|:-:|")
    pt_b = get(PYTORCH, TARGET_BATCH_CASE)
    pt_pps = pt_b["prompts_per_s"] if pt_b else None
    for e in engines:
        s16, s128, b32 = get(e, "single-16"), get(e, "single-128"), get(e, TARGET_BATCH_CASE)
        p16 = s16["p50_ms"] if s16 else None
        p128 = s128["p50_ms"] if s128 else None
        pps = b32["prompts_per_s"] if b32 else None
        vs = (pps / pt_pps) if (pps and pt_pps) else None
        is_pt = e == PYTORCH
        L.append(
            f"| {e} | {fmt(p16)} ms | {'' if is_pt else check(None if p16 is None else p16 <= TARGET_16_P50_MS)} "
            f"| {fmt(p128)} ms | {'' if is_pt else check(None if p128 is None else p128 <= TARGET_128_P50_MS)} "
            f"| {fmt(pps, 1)} | {'' if is_pt else check(None if pps is None else pps >= TARGET_BATCH_PPS)} "
            f"| {'' if is_pt else (f'{vs:.2f}×' if vs else '—')} "
            f"| {'' if is_pt else check(None if vs is None else vs >= TARGET_BATCH_VS_PYTORCH)} |")
    L.append("")

    # Single prompt
    if singles:
        L.append("## One prompt per call (batch 1): latency")
        L.append("")
        L.append("Speed-up columns are baseline p50 / engine p50 (above 1× = faster than the "
                 "baseline). The p50 range is the lowest and highest round; (noisy) marks "
                 f"rounds more than {NOISY:g}× apart.")
        L.append("")
        hdr = "| case | engine | calls | p50 ms | p99 ms | p50 range |"
        sep = "|---|---|---:|---:|---:|---:|"
        for _, label in baselines:
            hdr += f" p50 {label} | p99 {label} |"
            sep += "---:|---:|"
        L.append(hdr)
        L.append(sep)
        for c in singles:
            for e in engines:
                r = get(e, c["name"])
                if r is None:
                    continue
                row = (f"| {c['name']} ({c['tokens']} tokens) | {e} | {fmt(r['runs'], 0)} "
                       f"| {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} "
                       f"| {spread(r['p50_min'], r['p50_max'])}{noisy(r['p50_min'], r['p50_max'])} |")
                for base, _ in baselines:
                    b = get(base, c["name"])
                    if e == base or b is None:
                        row += " | |"
                    else:
                        row += f" {ratio(b['p50_ms'], r['p50_ms'])} | {ratio(b['p99_ms'], r['p99_ms'])} |"
                L.append(row)
        L.append("")

    # Batched
    if batches:
        L.append("## Batched calls (32-token prompts): throughput")
        L.append("")
        L.append("Ratio columns are engine prompts/s / baseline prompts/s (above 1× = faster). "
                 "p50 ms is per call (one batch).")
        L.append("")
        hdr = "| case | engine | calls | prompts/s | prompts/s range | p50 ms per batch | p99 ms per batch |"
        sep = "|---|---|---:|---:|---:|---:|---:|"
        for _, label in baselines:
            hdr += f" {label} |"
            sep += "---:|"
        L.append(hdr)
        L.append(sep)
        for c in batches:
            for e in engines:
                r = get(e, c["name"])
                if r is None:
                    continue
                row = (f"| {c['name']} ({c['batch']} × {c['tokens']} tokens) | {e} "
                       f"| {fmt(r['runs'], 0)} | {fmt(r['prompts_per_s'], 1)} "
                       f"| {spread(r['pps_min'], r['pps_max'], 1)}{noisy(r['pps_min'], r['pps_max'])} "
                       f"| {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} |")
                for base, _ in baselines:
                    b = get(base, c["name"])
                    if e == base or b is None:
                        row += " |"
                    else:
                        row += f" {ratio(r['prompts_per_s'], b['prompts_per_s'])} |"
                L.append(row)
        L.append("")

    # Load / memory
    L.append("## Load time and memory")
    L.append("")
    L.append("Load time: model files to a ready encoder, in the benchmark process. Peak RSS: "
             "VmHWM of that process after all cases. PyTorch's load time is the "
             "`SentenceTransformer(...)` call only, after `import torch` (which takes seconds "
             "more); its RSS includes the Python interpreter and the torch libraries.")
    L.append("")
    L.append("| engine | rounds | load ms | peak RSS MiB |")
    L.append("|---|---:|---:|---:|")
    for e in engines:
        m = merged[e]
        L.append(f"| {e} | {m['rounds']} | {fmt(m['load_ms'], 0)} | {fmt(m['rss_mib'], 0)} |")
    L.append("")

    missing = []
    for e in engines:
        for name in all_cases:
            r = get(e, name)
            if r is None:
                missing.append(f"{e}: {name} absent")
            elif r["rounds"] < merged[e]["rounds"]:
                missing.append(f"{e}: {name} in {r['rounds']} of {merged[e]['rounds']} rounds")
    if missing:
        L.append("Incomplete data: " + "; ".join(missing) + ".")
        L.append("")
    return "\n".join(L).rstrip("\n") + "\n"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    merged = merge(load_runs(args.jsons))
    text = build(args, merged)
    if args.out == "-":
        sys.stdout.write(text)
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"report.py: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
