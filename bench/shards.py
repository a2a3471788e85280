"""Sharded batch scoring at ML-32M shape: the weekly DAG's ``prepare_batch`` -> ``score_shard`` (N at once)
-> ``publish``, with 1, 2 and 4 shards.

    python -m bench.shards [--scale 0.1] [--shards 1,2,4] [--one-thread-baseline] [--top-n 100]
        [--candidates 500] [--output FILE]

A synthetic ML-32M catalogue (87,585 movies; 200,948 users x ``--scale``; ``bench.batch``'s data: popular-
skewed ratings, content with genres, text vectors and people) in a fresh embedded database, published by an
untrained network of the default architecture (the cost does not depend on the weights; at this catalogue
the blend has no EASE, so explanations name movies by content similarity). For each shard count:
``prepare_shards``, then every shard's ``score_shard`` in a process of its own, all started together (as
Airflow's workers would run the mapped tasks; each with ``cores // N`` torch and BLAS threads, at least 1),
then ``publish_shards``. The processes load the model before the clock starts (a worker loads the champion
before scoring too, but that is not what sharding divides).

Reported: the wall seconds of the scoring phase (first shard start to last shard end) and of the whole
publication (prepare + scoring + publish), the speed-up of each against one shard (target: 2 shards on 2
cores >= 1.6x), each shard's rows/s and its COPY rate against a raw binary COPY of the published rows, and
the wall time expected for N workers of this machine's size from the one-shard rate. Writes
``bench/results/shards.json``.

``--one-thread-baseline`` first publishes with one shard on one thread, and reports every run against it
too: N shards' speed-up over one C-thread process is their speed-up over one thread divided by the C-thread
process's, so this shows how much of the shards' margin one process already takes with its own threads.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.batch import (
    _fill,
    _raw_copy_seconds,
    _shape,
    _synthetic_data,
    _synthetic_model,
    _synthetic_ratings,
    log,
)
from bench.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "shards.json"
TARGET_TWO_SHARDS = 1.6


def _score(model_path: str, home: str, shard: Any, threads: int, start: Any, out: Any) -> None:
    """One shard in this process: load the model, wait for the others, score and write (wall clock), on
    ``threads`` cores' worth of torch and BLAS threads (a worker of that size)."""
    import torch
    from threadpoolctl import threadpool_limits

    from database.engine import get_engine
    from pipeline.batch.shards import score_shard
    from pipeline.core.settings import Settings

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    with open(model_path, "rb") as fh:
        model = pickle.load(fh)
    engine = get_engine(Settings(MOVIEREC_HOME=home))
    start.wait()
    began = time.time()
    result = score_shard(engine, model, shard)
    out.put({"result": result, "began": began, "ended": time.time()})
    engine.dispose()


def one_count(
    engine: Any, model: Any, model_path: str, home: str, shards: int, lists: Any, threads: int | None = None
) -> dict[str, Any]:
    """One publication in ``shards`` processes of ``threads`` threads each (default: the cores shared)."""
    from pipeline.batch.shards import prepare_shards, publish_shards

    t0 = time.time()
    planned = prepare_shards(engine, 1, as_of=None, lists=lists, shards=shards)
    prepared = time.time()
    threads = threads or max(1, (os.cpu_count() or 1) // shards)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(len(planned) + 1), ctx.Queue()
    workers = [
        ctx.Process(target=_score, args=(model_path, home, shard, threads, start, out)) for shard in planned
    ]
    for w in workers:
        w.start()
    start.wait()
    runs = sorted((out.get() for _ in workers), key=lambda r: r["result"]["shard"])
    for w in workers:
        w.join()
        if w.exitcode:
            raise RuntimeError(f"a shard's process failed with exit code {w.exitcode}")
    scored = time.time()
    published = publish_shards(engine, model, planned, [r["result"] for r in runs], force=True)
    done = time.time()
    scoring = max(r["ended"] for r in runs) - min(r["began"] for r in runs)
    figures = {
        "shards": len(planned),
        "threads_per_shard": threads,
        "users": published["users"],
        "rows": published["rows"],
        "prepare_seconds": round(prepared - t0, 2),
        "scoring_seconds": round(scoring, 2),
        "publish_seconds": round(done - scored, 2),
        "total_seconds": round(prepared - t0 + scoring + done - scored, 2),
        "batch_id": published["batch_id"],
        "per_shard": [
            {
                "users": r["result"]["users"],
                "rows": r["result"]["rows"],
                "seconds": round(r["ended"] - r["began"], 2),
                "rows_per_s": round(r["result"]["rows"] / (r["ended"] - r["began"]), 1),
                "copy_seconds": r["result"]["timings"].get("copy", 0.0),
                "timings": r["result"]["timings"],
            }
            for r in runs
        ],
    }
    log(
        f"{figures['shards']} shard(s) x {threads} thread(s): scoring {figures['scoring_seconds']} s, "
        f"whole publication {figures['total_seconds']} s"
    )
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    from database import embedded
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.batch.publish import ListSettings
    from pipeline.core.settings import Settings

    n_users, n_items = _shape("ml32m", args.scale)
    t = time.perf_counter()
    data = _synthetic_data(n_users, n_items, *_synthetic_ratings(n_users, n_items))
    model = _synthetic_model(data, 0, 1.0, 1.0)
    log(
        f"ml32m shape: {n_users:,} users x {n_items:,} movies, model built in {time.perf_counter() - t:.0f} s"
    )
    counts = [int(c) for c in args.shards.split(",")]
    lists = ListSettings(top_n=args.top_n, candidates=args.candidates)
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as home:
        model_path = os.path.join(home, "model.pickle")
        with open(model_path, "wb") as fh:
            pickle.dump(model, fh)
        settings = Settings(MOVIEREC_HOME=home)
        embedded.start(settings)
        try:
            engine = get_engine(settings)
            upgrade(engine)
            _fill(engine, data)
            baseline = (
                one_count(engine, model, model_path, home, 1, lists, threads=1)
                if args.one_thread_baseline
                else None
            )
            runs = [one_count(engine, model, model_path, home, n, lists) for n in counts]
            raw = _raw_copy_seconds(engine, runs[-1]["batch_id"])
            engine.dispose()
        finally:
            embedded.stop(settings)
    raw_rate = runs[-1]["rows"] / raw
    base = runs[0]
    for r in runs:
        r["scoring_speedup"] = round(base["scoring_seconds"] / r["scoring_seconds"], 3)
        r["total_speedup"] = round(base["total_seconds"] / r["total_seconds"], 3)
        if baseline:
            r["total_speedup_vs_one_thread"] = round(baseline["total_seconds"] / r["total_seconds"], 3)
            r["scoring_speedup_vs_one_thread"] = round(baseline["scoring_seconds"] / r["scoring_seconds"], 3)
        for s in r["per_shard"]:
            s["copy_rate_vs_raw_copy"] = (
                round(s["rows"] / s["copy_seconds"] / raw_rate, 3) if s["copy_seconds"] else None
            )
    # N workers of this machine's size, each scoring 1/N of the users at the one-shard rate, plus the
    # prepare and publish steps, which do not shrink with N (they read or check every user once)
    fixed = base["prepare_seconds"] + base["publish_seconds"]
    full_users = _shape("ml32m", 1.0)[0]
    per_user = base["scoring_seconds"] / base["users"]
    expected = {
        str(n): round(fixed * full_users / base["users"] + per_user * full_users / n, 0)
        for n in (1, 2, 4, 8, 16)
    }
    return {
        "machine": machine_info(),
        "shape": "ml32m",
        "scale": args.scale,
        "users": n_users,
        "movies": n_items,
        "top_n": args.top_n,
        "candidates": args.candidates,
        "blend": model.describe(),
        "raw_copy_rows_per_s": round(raw_rate, 1),
        "one_thread_baseline": baseline,
        "runs": runs,
        "target_two_shards_speedup": TARGET_TWO_SHARDS,
        "expected_seconds_all_ml32m_users_by_workers": expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.1, help="users multiplier for the ml32m shape")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument(
        "--one-thread-baseline",
        action="store_true",
        help="first publish with one shard on one thread and report every run against it too",
    )
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures = run(args)
    print(f"\nML-32M shape, {figures['users']:,} users x {figures['movies']:,} movies, {figures['blend']}")
    header = ("shards", "threads", "scoring s", "speed-up", "total s", "speed-up")
    print(" ".join(f"{h:>9}" for h in header), " per-shard rows/s (COPY rate / raw COPY)")
    for r in figures["runs"]:
        shards = ", ".join(f"{s['rows_per_s']:,.0f} ({s['copy_rate_vs_raw_copy']})" for s in r["per_shard"])
        keys = ("shards", "threads_per_shard", "scoring_seconds", "scoring_speedup", "total_seconds")
        print(" ".join(f"{r[k]:>9}" for k in (*keys, "total_speedup")), "", shards)
    baseline = figures["one_thread_baseline"]
    if baseline:
        print(
            f"one shard on one thread: scoring {baseline['scoring_seconds']} s, "
            f"whole publication {baseline['total_seconds']} s; against it (whole publication, scoring):",
            "; ".join(
                f"{r['shards']} x {r['threads_per_shard']}: {r['total_speedup_vs_one_thread']}x "
                f"({r['scoring_speedup_vs_one_thread']}x)"
                for r in figures["runs"]
            ),
        )
    two = next((r for r in figures["runs"] if r["shards"] == 2), None)
    if two:
        verdict = "met" if two["total_speedup"] >= TARGET_TWO_SHARDS else "missed"
        print(
            f"2 shards: {two['total_speedup']}x the single process (target >= {TARGET_TWO_SHARDS}): {verdict}"
        )
    print(
        "expected wall seconds for all 200,948 users by workers of this size:",
        figures["expected_seconds_all_ml32m_users_by_workers"],
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=1))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
