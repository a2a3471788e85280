"""Batch scoring and publishing benchmark: ``pipeline.batch.publish_recommendations`` end to end.

    python -m bench.batch [--shapes ml100k,ml1m,ml32m] [--scale 0.1] [--top-n 100] [--home DIR] [--output FILE]

* ``ml100k``: the champion of ``--home`` (a MOVIEREC_HOME after ``movierec run``; default ``.movierec``)
  scoring every real ML-100K user, SQL write included. Target: <= 10 s.
* ``ml1m`` (6,040 users x 3,706 movies) and ``ml32m`` (200,948 x 87,585; users multiplied by ``--scale``):
  synthetic catalogues and ratings (popularity-skewed, ~160 ratings per user like the originals) in a fresh
  embedded database, scored by an untrained network of the default architecture (scoring cost does not
  depend on the weights) with EASE in the blend where the catalogue allows it (ML-1M: yes; ML-32M: above
  ``EASE_MAX_ITEMS``, the network ranks alone).
  Reported: users/s, rows written/s, and the write rate against a raw ``COPY`` of the same rows into a table
  of the same definition (``COPY ... FROM STDIN (FORMAT binary)`` of the rows dumped back out); peak RSS of
  the scoring process at half and at all of the users (flat = bounded by the chunk, not the user count).

Every shape runs in its own child process (so peak RSS is its own). Prints a table and writes
``bench/results/batch.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "batch.json"
SHAPES = {"ml1m": (6_040, 3_706), "ml32m": (200_948, 87_585)}
RATINGS_PER_USER = 160


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _synthetic_model(n_users: int, n_items: int, users, items) -> Any:  # noqa: ANN001
    import numpy as np
    import torch

    from pipeline.features import MAX_PEOPLE, FeatureVocab, MovieContent
    from pipeline.interactions import IdMap, Interactions
    from pipeline.model import HybridConfig, HybridModel, build_network
    from pipeline.published import PublishedModel

    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    vocab = FeatureVocab(genres=[f"g{k}" for k in range(18)],
                         persons={r: [f"{r}{k}" for k in range(500)] for r in MAX_PEOPLE})
    text = rng.normal(size=(n_items, 384)).astype(np.float32)
    movies = MovieContent((rng.random((n_items, 18)) < 0.15).astype(np.float32),
                          text / np.linalg.norm(text, axis=1, keepdims=True),
                          {r: rng.integers(0, 501, (n_items, k)) for r, k in MAX_PEOPLE.items()},
                          rng.normal(size=(n_items, 4)).astype(np.float32))
    cfg = HybridConfig()
    net = build_network(n_users, movies, 0, vocab, cfg, 3.5)
    network = HybridModel(net, cfg, IdMap(np.arange(1, n_users + 1)), IdMap(np.arange(1, n_items + 1)), vocab,
                          movies, np.zeros((n_users, 0), np.float32), {"rating_range": [1, 5]}, "cpu",
                          (users, items))
    train = Interactions(users, items, np.full(len(users), 4.0, np.float32), np.zeros(len(users), np.int64),
                         n_users, n_items)
    return PublishedModel.from_training(network, train, 0.5, 1.0)


def _fill(engine: Any, n_users: int, n_items: int) -> tuple[Any, Any]:
    """Movies, users and popularity-skewed ratings (~RATINGS_PER_USER each) by COPY; returns index pairs."""
    import numpy as np

    from database.bulk import copy_columns

    rng = np.random.default_rng(42)
    per_user = np.clip(rng.lognormal(np.log(RATINGS_PER_USER * 0.6), 0.8, n_users).astype(np.int64), 20,
                       n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=len(users), p=popularity)
    pairs = np.unique(users * n_items + items)
    users, items = pairs // n_items, pairs % n_items
    from datetime import UTC, datetime

    with engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("INSERT INTO movies (movie_id, title, source) SELECT g, 'movie ' || g, 'synthetic' FROM generate_series(1, :n) g"),
                     {"n": n_items})
        conn.execute(text("INSERT INTO users (user_id) SELECT g FROM generate_series(1, :n) g"), {"n": n_users})
        copy_columns(conn, "ratings", {"user_id": (users + 1).astype(np.int32), "movie_id": (items + 1).astype(np.int32),
                                       "rating": np.full(len(users), 4.0, np.float32),
                                       "rated_at": datetime(2020, 1, 1, tzinfo=UTC)})
        conn.execute(text(
            "INSERT INTO model_versions (registered_model, registered_version, dataset, protocol, primary_metric, "
            "status) VALUES ('movierec-hybrid', 1, 'synthetic', 'temporal', 'ndcg_at_10', 'champion')"))
    return users, items


def _raw_copy_seconds(engine: Any, batch_id: int) -> float:
    """Seconds to COPY the batch's rows, already in COPY's binary format, into a same-definition table."""
    from sqlalchemy import text

    from database.bulk import dbapi_cursor

    with engine.begin() as conn:
        cur = dbapi_cursor(conn)
        buf = io.BytesIO()
        cur.copy_expert(f"COPY (SELECT * FROM batch_recommendations WHERE batch_id = {int(batch_id)}) "
                        "TO STDOUT (FORMAT binary)", buf)
        conn.execute(text("CREATE TABLE raw_copy (LIKE batch_recommendations INCLUDING ALL)"))
        buf.seek(0)
        t = time.perf_counter()
        cur.copy_expert("COPY raw_copy FROM STDIN (FORMAT binary)", buf)
        seconds = time.perf_counter() - t
        conn.execute(text("DROP TABLE raw_copy"))
    return seconds


def one_synthetic(shape: str, users_fraction: float, scale: float, top_n: int) -> dict[str, Any]:
    from database import embedded
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.batch import publish_recommendations
    from pipeline.settings import Settings

    full_users, n_items = SHAPES[shape]
    n_users = max(100, int(full_users * (scale if shape == "ml32m" else 1.0) * users_fraction))
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as home:
        settings = Settings(MOVIEREC_HOME=home)
        embedded.start(settings)
        try:
            engine = get_engine(settings)
            upgrade(engine)
            t = time.perf_counter()
            users, items = _fill(engine, n_users, n_items)
            log(f"{shape}: {n_users:,} users x {n_items:,} movies, {len(users):,} ratings loaded in "
                f"{time.perf_counter() - t:.1f} s")
            model = _synthetic_model(n_users, n_items, users, items)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            result = publish_recommendations(engine, model, 1, top_n_items=top_n)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            raw = _raw_copy_seconds(engine, result.batch_id)
            engine.dispose()
        finally:
            embedded.stop(settings)
    write, copy = result.timings["write"], result.timings["copy"]
    return {"shape": shape, "users": n_users, "movies": n_items, "ratings": int(len(users)), "rows": result.rows,
            "seconds": round(seconds, 2), "timings": result.timings, "users_per_s": round(n_users / seconds, 1),
            "rows_written_per_s": round(result.rows / write, 1), "raw_copy_seconds": round(raw, 3),
            "raw_copy_rows_per_s": round(result.rows / raw, 1), "write_vs_raw_copy": round(raw / write, 3),
            "copy_vs_raw_copy": round(raw / copy, 3),
            "blend": model.describe(), "peak_rss_mib": round(peak / 1024, 1),
            "rss_before_scoring_mib": round(rss_before / 1024, 1)}


def one_ml100k(home: str, top_n: int) -> dict[str, Any]:
    from database.engine import get_engine
    from pipeline.batch import publish_recommendations
    from pipeline.registry import load_champion
    from pipeline.settings import Settings

    settings = Settings(MOVIEREC_HOME=home)
    model, version = load_champion(settings)
    engine = get_engine(settings)
    t = time.perf_counter()
    result = publish_recommendations(engine, model, version, top_n_items=top_n)
    seconds = time.perf_counter() - t
    return {"shape": "ml100k", "users": result.users, "movies": model.n_items, "rows": result.rows,
            "seconds": round(seconds, 2), "timings": result.timings, "users_per_s": round(result.users / seconds, 1),
            "rows_written_per_s": round(result.rows / result.timings["write"], 1), "blend": model.describe(),
            "target_seconds": 10.0, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.batch", "--child", *args], check=True, capture_output=True,
                         text=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="ml100k,ml1m,ml32m")
    parser.add_argument("--scale", type=float, default=0.1, help="users multiplier for the ml32m shape")
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--home", default=os.environ.get("MOVIEREC_HOME", ".movierec"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--users-fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (one_ml100k(args.home, args.top_n) if args.shape == "ml100k"
                  else one_synthetic(args.shape, args.users_fraction, args.scale, args.top_n))
        print(json.dumps(result))
        return

    from bench.machine import machine_info

    runs = []
    for shape in args.shapes.split(","):
        common = ["--shape", shape, "--scale", str(args.scale), "--top-n", str(args.top_n), "--home", args.home]
        if shape == "ml100k":
            runs.append(_child(common))
            continue
        half = _child([*common, "--users-fraction", "0.5"])
        full = _child(common)
        full["peak_rss_half_users_mib"] = half["peak_rss_mib"]
        full["rss_ratio_full_vs_half_users"] = round(full["peak_rss_mib"] / half["peak_rss_mib"], 3)
        runs.append(full)
    report = {"machine": machine_info(), "top_n": args.top_n, "scale": args.scale, "runs": runs,
              "target_write_vs_raw_copy": 0.7}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(f"{'shape':8} {'users':>8} {'movies':>7} {'rows':>11} {'s':>7} {'users/s':>9} {'rows/s':>11} "
          f"{'write/raw':>9} {'RSS MiB':>8} {'RSS full/half':>13}")
    for r in runs:
        print(f"{r['shape']:8} {r['users']:>8,} {r['movies']:>7,} {r['rows']:>11,} {r['seconds']:>7} "
              f"{r['users_per_s']:>9,} {r['rows_written_per_s']:>11,} {r.get('write_vs_raw_copy', ''):>9} "
              f"{r['peak_rss_mib']:>8} {r.get('rss_ratio_full_vs_half_users', ''):>13}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
