"""The publication check's coverage comparison (``pipeline.batch.release.shared_coverage``) at ML-25M shape,
against the first form of the same query (three scans of the table and a sorted distinct count), which
stands here as the baseline.

    python -m bench.release_check [--users 162541] [--movies 59047] [--top 100] [--repeats 3] [--output FILE]

A fresh embedded PostgreSQL, migrated; ``--movies`` movies; two batches' rows written with
``generate_series``: the published one lists ``--users`` users, the new one 10,000 fewer (a past
cut-off), each ``--top`` ranks of movies spread over the catalogue. Both queries must answer the same three
numbers. Prints the median of ``--repeats`` calls of each and their ratio, and writes
``bench/results/release_check.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "release_check.json"

# The first form of shared_coverage's query, for comparison only.
BASELINE = """
WITH shared AS (
    SELECT user_id FROM batch_recommendations WHERE batch_id = :a AND rank = 1
    INTERSECT
    SELECT user_id FROM batch_recommendations WHERE batch_id = :b AND rank = 1
)
SELECT r.batch_id, count(DISTINCT r.movie_id) AS movies,
       (SELECT count(*) FROM shared) AS users, (SELECT count(*) FROM movies) AS catalogue
FROM batch_recommendations r JOIN shared USING (user_id)
WHERE r.batch_id IN (:a, :b) AND r.rank <= :k
GROUP BY r.batch_id
"""


def _fill(engine: Any, users: int, movies: int, top: int) -> dict[int, int]:
    from sqlalchemy import text

    listed = {1: users, 2: users - 10_000}  # 1: published, 2: the new batch at an earlier cut-off
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO movies (movie_id, title, source) "
                "SELECT g, 'm' || g, 'bench' FROM generate_series(1, :n) g"
            ),
            {"n": movies},
        )
        for batch, n in listed.items():
            conn.execute(
                text(
                    "INSERT INTO batch_recommendations "
                    "(batch_id, user_id, rank, movie_id, score, source, model_version_id, generated_at) "
                    "SELECT :b, u, r, 1 + ((u * 7919 + r * 104729 + :b) % :m), 0, 'model', 1, now() "
                    "FROM generate_series(1, :n) u, generate_series(1, :top) r"
                ),
                {"b": batch, "n": n, "m": movies, "top": top},
            )
        conn.execute(text("ANALYZE batch_recommendations"))
    return listed


def _median(engine: Any, fn: Any, repeats: int) -> tuple[float, Any]:
    times, answer = [], None
    for _ in range(repeats):
        with engine.begin() as conn:
            t = time.perf_counter()
            answer = fn(conn)
            times.append(time.perf_counter() - t)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=162_541)
    parser.add_argument("--movies", type=int, default=59_047)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.users <= 10_000 or args.movies < 1 or not 10 <= args.top <= 1_000 or args.repeats < 1:
        parser.error("--users must exceed 10,000, --movies be positive, --top in 10..1000, --repeats >= 1")

    from sqlalchemy import text

    from database import embedded
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.batch.release import shared_coverage
    from pipeline.core.settings import Settings

    def baseline(conn: Any) -> tuple[float, float, int]:
        rows = conn.execute(text(BASELINE), {"a": 2, "b": 1, "k": 10}).all()
        movies = {int(r.batch_id): int(r.movies) for r in rows}
        catalogue = int(rows[0].catalogue)
        return movies[2] / catalogue, movies[1] / catalogue, int(rows[0].users)

    with tempfile.TemporaryDirectory(prefix="bench-release-check-") as home:
        settings = Settings(MOVIEREC_HOME=home)
        embedded.start(settings)
        try:
            engine = get_engine(settings)
            upgrade(engine)
            t = time.perf_counter()
            listed = _fill(engine, args.users, args.movies, args.top)
            fill_s = time.perf_counter() - t
            print(f"{sum(listed.values()) * args.top:,} rows written in {fill_s:.1f} s", flush=True)
            base_s, base = _median(engine, baseline, args.repeats)
            new_s, new = _median(engine, lambda conn: shared_coverage(conn, 2, 1), args.repeats)
            engine.dispose()
        finally:
            embedded.stop(settings)
    if tuple(new) != tuple(base):
        raise SystemExit(f"the two queries disagree: {new} against {base}")
    report = {
        "users": listed,
        "movies": args.movies,
        "top": args.top,
        "rows": sum(listed.values()) * args.top,
        "answer": {"coverage_new": new[0], "coverage_published": new[1], "shared_users": new[2]},
        "median_seconds": {"baseline_three_scans": round(base_s, 3), "shared_coverage": round(new_s, 3)},
        "ratio_baseline_over_shared_coverage": round(base_s / new_s, 2),
        "repeats": args.repeats,
        "machine": machine_info(),
    }
    print(
        f"shared_coverage {new_s:.2f} s, baseline {base_s:.2f} s (median of {args.repeats}): "
        f"{base_s / new_s:.2f}x; {new[2]:,} shared users"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
