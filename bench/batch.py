"""Batch scoring and publishing benchmark: ``pipeline.batch.publish.publish_batch`` end to end, and
retrieve-then-re-rank against exhaustive scoring.

    python -m bench.batch [--shapes ml100k,ml1m,ml32m] [--scale 0.1] [--top-n 100] [--candidates 500]
                          [--train-epochs 4] [--sample-users 64] [--no-retrieval] [--home DIR] [--output FILE]

* ``ml100k``: the champion of ``--home`` (a MOVIEREC_HOME after ``movierec run``; default ``.movierec``)
  scoring every real ML-100K user, SQL write included (target <= 10 s); then, when the champion's ranking
  has a rating-head term, its lists at several candidate depths against exhaustive scoring.
* ``ml1m`` (6,040 users x 3,706 movies) and ``ml32m`` (200,948 x 87,585; users multiplied by ``--scale``):
  synthetic catalogues and ratings (popularity-skewed, ~160 ratings per user like the originals, ratings
  from a latent taste model) in a fresh embedded database, published by an untrained network of the default
  architecture (the cost does not depend on the weights) with the rating head's term at weight 1 and EASE
  in the blend where the catalogue allows it (ML-1M: yes; ML-32M: above ``EASE_MAX_ITEMS``, no).
  Reported: users/s, rows written/s, and the write rate against a raw ``COPY`` of the same rows (and the
  batch's shared attributes) into tables of the same definition (``COPY ... FROM STDIN (FORMAT binary)`` of
  the rows dumped back out); peak RSS of
  the scoring process at half and at all of the users (flat = bounded by the chunk, not the user count).
  The catalogue in the database has the synthetic content's genres, directors and actors, so explanations
  find attributes to share. With all users, the cost of explanations: the same publication again without
  them and with them, alternating (``--explain-repeats`` pairs): the ratio of the medians (target <= 1.25)
  and of the fastest, and the seconds the explanations account for by the timings (the step and the
  longer write) over the median publication without them.
* Retrieval (no database): at ML-1M shape a network trained ``--train-epochs`` on the synthetic ratings
  (EASE weight 0.4, rating head 1.0) lists every user's top N exhaustively (every term for every movie) and
  by retrieve-then-re-rank at several depths: recall@N of each against exhaustive, and the speed-up. At
  ML-32M shape exhaustive scoring is timed on ``--sample-users`` users and projected to all of them.

Every measurement runs in its own child process (so peak RSS is its own). Prints a table and writes
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


def _synthetic_ratings(
    n_users: int, n_items: int, ratings_per_user: float = RATINGS_PER_USER
) -> tuple[Any, Any, Any]:
    """Popularity-skewed (user, movie) pairs, fewer than ``ratings_per_user`` per user once repeats are
    dropped (two thirds of it at ML-1M shape, three quarters at ML-25M's), with ratings from a latent taste
    model (8 factors, a movie quality, noise) so that a trained network has something to learn."""
    import numpy as np

    rng = np.random.default_rng(42)
    per_user = np.clip(
        rng.lognormal(np.log(ratings_per_user * 0.6), 0.8, n_users).astype(np.int64), 20, n_items // 2
    )
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=len(users), p=popularity)
    pairs = np.unique(users * n_items + items)
    users, items = pairs // n_items, pairs % n_items
    taste_u, taste_i = rng.normal(size=(n_users, 8)), rng.normal(size=(n_items, 8))
    quality = rng.normal(size=n_items)
    affinity = np.einsum("ij,ij->i", taste_u[users], taste_i[items]) / np.sqrt(8)
    ratings = np.clip(
        np.rint(3.6 + 0.8 * affinity + 0.4 * quality[items] + rng.normal(0, 0.6, len(users))), 1, 5
    )
    return users, items, ratings.astype(np.float32)


def _synthetic_data(n_users: int, n_items: int, users, items, ratings) -> Any:  # noqa: ANN001
    """``TrainingData`` over the synthetic catalogue: random content (genres, unit text vectors, people)."""
    import numpy as np

    from pipeline.features.interactions import IdMap, Interactions
    from pipeline.features.loading import TrainingData
    from pipeline.features.vocab import MAX_PEOPLE, FeatureVocab, MovieContent

    rng = np.random.default_rng(7)
    vocab = FeatureVocab(
        genres=[f"g{k}" for k in range(18)], persons={r: [f"{r}{k}" for k in range(500)] for r in MAX_PEOPLE}
    )
    text = rng.normal(size=(n_items, 384)).astype(np.float32)
    movies = MovieContent(
        (rng.random((n_items, 18)) < 0.15).astype(np.float32),
        text / np.linalg.norm(text, axis=1, keepdims=True),
        {r: rng.integers(0, 501, (n_items, k)) for r, k in MAX_PEOPLE.items()},
        rng.normal(size=(n_items, 4)).astype(np.float32),
    )
    stamps = 1_600_000_000 + rng.integers(0, 86_400 * 365, len(users))
    interactions = Interactions(users, items, ratings, stamps, n_users, n_items)
    return TrainingData(
        "synthetic",
        None,
        interactions,
        IdMap(np.arange(1, n_users + 1)),
        IdMap(np.arange(1, n_items + 1)),
        movies,
        np.zeros((n_users, 0), np.float32),
        vocab,
        [f"movie {k}" for k in range(1, n_items + 1)],
    )


def _synthetic_model(data: Any, train_epochs: int, weight: float, rerank_weight: float) -> Any:
    """The published blend over ``data``: a network of the default architecture trained ``train_epochs``
    epochs (0: untrained, enough where only the cost is measured), EASE where ``weight`` < 1, and the
    rating head's term at ``rerank_weight``."""
    import torch

    from pipeline.models.blend.published import PublishedBlend
    from pipeline.models.blend.weights import BlendWeights
    from pipeline.models.hybrid.artifact import HybridArtifact
    from pipeline.models.hybrid.config import HybridConfig
    from pipeline.models.hybrid.network import build_network
    from pipeline.models.hybrid.train import train_hybrid

    train = data.interactions
    if train_epochs:
        t = time.perf_counter()
        network = train_hybrid(
            data, None, HybridConfig(epochs=train_epochs, patience=0), device="cpu", progress=False
        ).model
        log(f"trained {train_epochs} epochs on {len(train):,} ratings in {time.perf_counter() - t:.0f} s")
    else:
        torch.manual_seed(7)
        cfg = HybridConfig()
        net = build_network(train.n_users, data.movies, 0, data.vocab, cfg, 3.5)
        network = HybridArtifact(
            net,
            cfg,
            data.user_map,
            data.item_map,
            data.vocab,
            data.movies,
            data.users,
            {"rating_range": [1, 5]},
            "cpu",
            (train.users, train.items),
        )
    return PublishedBlend.from_training(network, train, BlendWeights(weight, 1.0, rerank_weight))


def _fill(engine: Any, data: Any) -> None:
    """Movies, users and ratings of ``data`` by COPY, and a champion row to score under."""
    from datetime import UTC, datetime

    import numpy as np
    from sqlalchemy import text

    from database.bulk import copy_columns

    x = data.interactions
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO movies (movie_id, title, source) "
                "SELECT g, 'movie ' || g, 'synthetic' FROM generate_series(1, :n) g"
            ),
            {"n": x.n_items},
        )
        # the synthetic content's genres and people, for explanations to name
        genres = [[data.vocab.genres[g] for g in np.flatnonzero(row)] for row in data.movies.genres]
        conn.execute(
            text(
                "UPDATE movies m SET genres = CAST(g.genres AS text[]) "
                "FROM unnest(:ids, :genres) AS g(movie_id, genres) WHERE m.movie_id = g.movie_id"
            ),
            {"ids": list(range(1, x.n_items + 1)), "genres": ["{" + ",".join(g) + "}" for g in genres]},
        )
        people = sorted(
            {(role, int(k)) for role, idx in data.movies.people.items() for k in np.unique(idx) if k}
        )
        conn.execute(
            text(
                "INSERT INTO persons (external_id, name) "
                "SELECT 'synthetic:' || r || k, initcap(r) || ' ' || k FROM unnest(:roles, :ks) AS p(r, k)"
            ),
            {"roles": [r for r, _ in people], "ks": [k for _, k in people]},
        )
        credits = [
            (m + 1, role, int(k), order + 1)
            for role, idx in data.movies.people.items()
            if role in ("director", "actor")
            for m, row in enumerate(idx.tolist())
            for order, k in enumerate(dict.fromkeys(k for k in row if k))
        ]
        conn.execute(
            text(
                "INSERT INTO movie_persons (movie_id, person_id, role, ordering) "
                "SELECT c.m, p.person_id, c.r, c.o FROM unnest(:ms, :rs, :ks, :os) AS c(m, r, k, o) "
                "JOIN persons p ON p.external_id = 'synthetic:' || c.r || c.k"
            ),
            {
                "ms": [c[0] for c in credits],
                "rs": [c[1] for c in credits],
                "ks": [c[2] for c in credits],
                "os": [c[3] for c in credits],
            },
        )
        conn.execute(
            text("INSERT INTO users (user_id) SELECT g FROM generate_series(1, :n) g"), {"n": x.n_users}
        )
        copy_columns(
            conn,
            "ratings",
            {
                "user_id": (x.users + 1).astype(np.int32),
                "movie_id": (x.items + 1).astype(np.int32),
                "rating": x.ratings.astype(np.float32),
                "rated_at": datetime(2020, 1, 1, tzinfo=UTC),
            },
        )
        conn.execute(
            text(
                "INSERT INTO model_versions "
                "(registered_model, registered_version, dataset, protocol, primary_metric, "
                "status) VALUES ('movierec-hybrid', 1, 'synthetic', 'temporal', 'ndcg_at_10', 'champion')"
            )
        )


def _retrieval_figures(model: Any, top_n: int, depths: list[int], users: Any = None) -> dict[str, Any]:
    """Lists of ``users`` (default: all) from exhaustive scoring (every term for every movie) and from
    retrieve-then-re-rank at each depth: seconds, users/s and the recall of each against exhaustive.
    The re-rank is exact, so this recall is also the share of exhaustive's top N that retrieval found."""
    import numpy as np

    from pipeline.batch.scoring import chunk_size, score_chunk
    from pipeline.evaluation.metrics import list_recall

    users = np.arange(model.n_users) if users is None else users
    step = chunk_size(model.n_items)

    def lists(candidates: int) -> tuple[Any, float]:
        t = time.perf_counter()
        out = [
            score_chunk(
                model, users[lo : lo + step], model.rated[users[lo : lo + step]], top_n, candidates=candidates
            )[0]
            for lo in range(0, len(users), step)
        ]
        return np.concatenate(out), time.perf_counter() - t

    exhaustive, seconds = lists(0)
    figures: dict[str, Any] = {
        "users": int(len(users)),
        "exhaustive_seconds": round(seconds, 2),
        "exhaustive_users_per_s": round(len(users) / seconds, 1),
        "depths": {},
    }
    for k in depths:
        found, s = lists(k)
        figures["depths"][str(k)] = {
            "seconds": round(s, 2),
            "users_per_s": round(len(users) / s, 1),
            "speedup": round(seconds / s, 2),
            f"recall@{top_n}": round(list_recall(exhaustive, found), 4),
        }
        log(
            f"  candidates {k}: recall@{top_n} {figures['depths'][str(k)][f'recall@{top_n}']}, "
            f"{s:.1f} s (exhaustive {seconds:.1f} s)"
        )
    return figures


def _raw_copy_seconds(engine: Any, batch_id: int) -> float:
    """Seconds to COPY the batch's rows and its explanations' shared attributes, already in COPY's binary
    format, into same-definition tables: what the writer writes, at the raw limit."""
    from sqlalchemy import text

    from database.bulk import dbapi_cursor

    seconds = 0.0
    with engine.begin() as conn:
        cur = dbapi_cursor(conn)
        for table in ("batch_recommendations", "batch_shared_attributes"):
            buf = io.BytesIO()
            rows = f"SELECT * FROM {table} WHERE batch_id = {int(batch_id)}"
            cur.copy_expert(f"COPY ({rows}) TO STDOUT (FORMAT binary)", buf)
            conn.execute(text(f"CREATE TABLE raw_copy (LIKE {table} INCLUDING ALL)"))
            buf.seek(0)
            t = time.perf_counter()
            cur.copy_expert("COPY raw_copy FROM STDIN (FORMAT binary)", buf)
            seconds += time.perf_counter() - t
            conn.execute(text("DROP TABLE raw_copy"))
    return seconds


def _shape(shape: str, scale: float, users_fraction: float = 1.0) -> tuple[int, int]:
    full_users, n_items = SHAPES[shape]
    return max(100, int(full_users * (scale if shape == "ml32m" else 1.0) * users_fraction)), n_items


def one_synthetic(
    shape: str, users_fraction: float, scale: float, top_n: int, candidates: int, explain_repeats: int = 0
) -> dict[str, Any]:
    """``publish_batch`` end to end over an untrained network (the cost does not depend on the
    weights), EASE in the blend where the catalogue allows it, the rating head's term at weight 1; then
    ``explain_repeats`` pairs of publications without and with explanations (their cost)."""
    from database import embedded
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.batch.publish import publish_batch
    from pipeline.core.settings import Settings
    from pipeline.models.blend.published import EASE_MAX_ITEMS

    n_users, n_items = _shape(shape, scale, users_fraction)
    data = _synthetic_data(n_users, n_items, *_synthetic_ratings(n_users, n_items))
    model = _synthetic_model(data, 0, 0.6 if n_items <= EASE_MAX_ITEMS else 1.0, 1.0)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as home:
        settings = Settings(MOVIEREC_HOME=home)
        embedded.start(settings)
        try:
            engine = get_engine(settings)
            upgrade(engine)
            t = time.perf_counter()
            _fill(engine, data)
            log(
                f"{shape}: {n_users:,} users x {n_items:,} movies, {len(data.interactions):,} ratings "
                f"loaded in {time.perf_counter() - t:.1f} s"
            )
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            result = publish_batch(engine, model, 1, top_n=top_n, candidates=candidates)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            raw = _raw_copy_seconds(engine, result["batch_id"])
            explain_cost = _explain_cost(engine, model, top_n, candidates, explain_repeats)
            engine.dispose()
        finally:
            embedded.stop(settings)
    write, copy = result["timings"]["write"], result["timings"]["copy"]
    return {
        "shape": shape,
        "users": n_users,
        "movies": n_items,
        "ratings": int(len(data.interactions)),
        "rows": result["rows"],
        "candidates": result["candidates"],
        "seconds": round(seconds, 2),
        "timings": result["timings"],
        "users_per_s": round(n_users / seconds, 1),
        "rows_written_per_s": round(result["rows"] / write, 1),
        "raw_copy_seconds": round(raw, 3),
        "raw_copy_rows_per_s": round(result["rows"] / raw, 1),
        "write_vs_raw_copy": round(raw / write, 3),
        "copy_vs_raw_copy": round(raw / copy, 3),
        "blend": model.describe(),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_before_scoring_mib": round(rss_before / 1024, 1),
        **({"explanations": explain_cost} if explain_cost else {}),
    }


def _explain_cost(engine: Any, model: Any, top_n: int, candidates: int, repeats: int) -> dict[str, Any]:
    """Publications without and with explanations, alternating ``repeats`` times: seconds and timings of
    each; the ratio of the fastest and of the medians (the target: <= 1.25), and the part of the difference
    the explanations account for by the timings (the step itself and the longer write) over the median
    publication without, which the scoring's run-to-run noise does not move."""
    from statistics import median

    from pipeline.batch.publish import publish_batch

    seconds: dict[bool, list[float]] = {False: [], True: []}
    timings: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(repeats):
        for explain in (False, True):
            t = time.perf_counter()
            result = publish_batch(engine, model, 1, top_n=top_n, candidates=candidates, explain=explain)
            seconds[explain].append(round(time.perf_counter() - t, 2))
            timings[explain].append(result["timings"])
    if not repeats:
        return {}
    reading = _read_cost(engine)

    def piece(explain: bool, key: str) -> float:
        return median(t.get(key, 0.0) for t in timings[explain])

    ratio = min(seconds[True]) / min(seconds[False])
    ratio_medians = median(seconds[True]) / median(seconds[False])
    added = piece(True, "explain") + piece(True, "write") - piece(False, "write")
    attributed = 1 + added / median(seconds[False])
    log(
        f"  explanations: fastest {min(seconds[True])} s with, {min(seconds[False])} s without: "
        f"{ratio:.3f}x; medians {ratio_medians:.3f}x; the step and the longer write, {added:.1f} s: "
        f"{attributed:.3f}x"
    )
    return {
        "seconds_without": seconds[False],
        "seconds_with": seconds[True],
        "timings_without": timings[False],
        "timings_with": timings[True],
        "explain_step_seconds": [t["explain"] for t in timings[True]],
        "ratio": round(ratio, 3),
        "ratio_of_medians": round(ratio_medians, 3),
        "added_seconds": round(added, 2),
        "ratio_attributed": round(attributed, 3),
        "target_ratio": 1.25,
        "reading": reading,
    }


def _read_cost(engine: Any, users: int = 200) -> dict[str, float]:
    """What assembling the sentences in the view costs its readers: the published batch's explanations read
    whole (every row's titles, ``shared`` and ``reason``) and one user's list at a time (the API's query),
    from ``current_recommendations`` and from the same rows with ``shared`` and ``reason`` stored on them,
    read as the view read them before migration 0012 (the same joins, the titles of ``because`` per row)."""
    from statistics import median

    from sqlalchemy import text

    titles = (
        "ARRAY(SELECT t.title FROM unnest(c.because) WITH ORDINALITY u(movie_id, k) "
        "JOIN movies t ON t.movie_id = u.movie_id ORDER BY u.k)"
    )
    sources = {
        "view": "SELECT c.user_id, c.rank, c.movie_id, c.title, c.model_version, c.data_cutoff, c.because, "
        "c.because_titles, c.shared, c.reason FROM current_recommendations c",
        # the view before migration 0012, over rows that store their JSON and sentence
        "stored": "SELECT c.user_id, c.rank, c.movie_id, m.title, v.registered_version, b.data_cutoff, "
        f"c.because, {titles} AS because_titles, c.shared, c.reason FROM stored_lists c "
        "JOIN recommendation_batches b ON b.batch_id = c.batch_id JOIN movies m ON m.movie_id = c.movie_id "
        "JOIN model_versions v ON v.model_version_id = c.model_version_id",
    }
    out: dict[str, float] = {}
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TEMP TABLE stored_lists AS SELECT batch_id, model_version_id, user_id, rank, "
                "movie_id, because, shared, reason FROM current_recommendations"
            )
        )
        conn.execute(text("ALTER TABLE stored_lists ADD PRIMARY KEY (user_id, rank)"))
        conn.execute(text("ANALYZE stored_lists"))
        first = text("SELECT DISTINCT user_id FROM stored_lists ORDER BY 1 LIMIT :n")
        sample = list(conn.execute(first, {"n": users}).scalars())
        for name, rows in sources.items():
            whole = (
                f"SELECT sum(length(reason)), count(shared), sum(cardinality(because_titles)) FROM ({rows}) x"
            )
            t = time.perf_counter()
            conn.execute(text(whole)).one()
            out[f"whole_{name}_s"] = round(time.perf_counter() - t, 3)
            one = text(f"SELECT * FROM ({rows}) x WHERE user_id = :u ORDER BY rank LIMIT 10")
            per_user = []
            for u in sample:
                t = time.perf_counter()
                conn.execute(one, {"u": u}).all()
                per_user.append(time.perf_counter() - t)
            out[f"user_top10_{name}_ms"] = round(1000 * median(per_user), 2)
        conn.execute(text("DROP TABLE stored_lists"))
    log(
        f"  reading the explanations: whole batch {out['whole_view_s']} s from the view, "
        f"{out['whole_stored_s']} s stored; one user's top 10 {out['user_top10_view_ms']} ms, "
        f"{out['user_top10_stored_ms']} ms"
    )
    return out


def one_retrieval(
    shape: str, scale: float, top_n: int, candidates: int, train_epochs: int, sample_users: int
) -> dict[str, Any]:
    """Retrieve-then-re-rank against exhaustive scoring, no database involved.

    ML-1M shape: a network trained ``train_epochs`` epochs on the synthetic ratings, EASE at the weight
    ML-100K's validation chose, every user; recall of the two-stage lists at several depths. ML-32M shape:
    exhaustive rating-head scoring of 87,585 movies is measured on ``sample_users`` users only and
    projected to all of them.
    """
    import numpy as np

    from pipeline.models.blend.published import EASE_MAX_ITEMS

    n_users, n_items = _shape(shape, scale)
    data = _synthetic_data(n_users, n_items, *_synthetic_ratings(n_users, n_items))
    trained = shape == "ml1m"
    model = _synthetic_model(
        data, train_epochs if trained else 0, 0.6 if n_items <= EASE_MAX_ITEMS else 1.0, 1.0
    )
    figures: dict[str, Any] = {
        "shape": shape,
        "users": n_users,
        "movies": n_items,
        "blend": model.describe(),
        "trained_epochs": train_epochs if trained else 0,
    }
    if trained:
        figures.update(_retrieval_figures(model, top_n, sorted({top_n, 200, candidates, 1000})))
    else:
        sample = _retrieval_figures(model, top_n, [candidates], np.arange(sample_users))
        per_user = sample["exhaustive_seconds"] / sample["users"]
        figures.update(sample, exhaustive_projected_seconds_all_users=round(per_user * n_users, 1))
    return figures


def one_ml100k(home: str, top_n: int, candidates: int) -> dict[str, Any]:
    from database.engine import get_engine
    from pipeline.batch.publish import publish_batch
    from pipeline.core.settings import Settings
    from pipeline.registry.champion import load_champion

    settings = Settings(MOVIEREC_HOME=home)
    model, version = load_champion(settings)
    engine = get_engine(settings)
    t = time.perf_counter()
    result = publish_batch(engine, model, version, top_n=top_n, candidates=candidates)
    seconds = time.perf_counter() - t
    figures = {
        "shape": "ml100k",
        "users": result["users"],
        "movies": model.n_items,
        "rows": result["rows"],
        "candidates": result["candidates"],
        "seconds": round(seconds, 2),
        "timings": result["timings"],
        "users_per_s": round(result["users"] / seconds, 1),
        "rows_written_per_s": round(result["rows"] / result["timings"]["write"], 1),
        "blend": model.describe(),
        "target_seconds": 10.0,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if model.rerank_weight > 0:  # the champion's own lists against exhaustive scoring, every user it knows
        figures["retrieval"] = _retrieval_figures(model, top_n, sorted({top_n, 200, candidates}))
    return figures


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.batch", "--child", *args], check=True, capture_output=True, text=True
    )
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="ml100k,ml1m,ml32m")
    parser.add_argument("--scale", type=float, default=0.1, help="users multiplier for the ml32m shape")
    parser.add_argument("--top-n", type=int, default=100)
    parser.add_argument("--home", default=os.environ.get("MOVIEREC_HOME", ".movierec"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--candidates",
        type=int,
        default=500,
        help="movies per user the rating head re-ranks (the batch's default)",
    )
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=4,
        help="epochs of the network the ML-1M-shape recall is measured with",
    )
    parser.add_argument(
        "--sample-users", type=int, default=64, help="users exhaustive scoring is timed on at ML-32M shape"
    )
    parser.add_argument("--no-retrieval", action="store_true", help="skip retrieval-vs-exhaustive figures")
    parser.add_argument(
        "--explain-repeats",
        type=int,
        default=2,
        help="pairs of publications without and with explanations (all users of a synthetic shape; 0: none)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--users-fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--retrieval", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.shape == "ml100k":
            result = one_ml100k(args.home, args.top_n, args.candidates)
        elif args.retrieval:
            result = one_retrieval(
                args.shape, args.scale, args.top_n, args.candidates, args.train_epochs, args.sample_users
            )
        else:
            result = one_synthetic(
                args.shape, args.users_fraction, args.scale, args.top_n, args.candidates, args.explain_repeats
            )
        print(json.dumps(result))
        return

    from bench.machine import machine_info

    runs = []
    for shape in args.shapes.split(","):
        common = [
            "--shape",
            shape,
            "--scale",
            str(args.scale),
            "--top-n",
            str(args.top_n),
            "--home",
            args.home,
            "--candidates",
            str(args.candidates),
            "--train-epochs",
            str(args.train_epochs),
            "--sample-users",
            str(args.sample_users),
        ]
        if shape == "ml100k":
            runs.append(_child(common))
            continue
        half = _child([*common, "--users-fraction", "0.5", "--explain-repeats", "0"])
        full = _child([*common, "--explain-repeats", str(args.explain_repeats)])
        full["peak_rss_half_users_mib"] = half["peak_rss_mib"]
        full["rss_ratio_full_vs_half_users"] = round(full["peak_rss_mib"] / half["peak_rss_mib"], 3)
        if not args.no_retrieval:
            full["retrieval"] = _child([*common, "--retrieval"])
        runs.append(full)
    report = {
        "machine": machine_info(),
        "top_n": args.top_n,
        "scale": args.scale,
        "runs": runs,
        "target_write_vs_raw_copy": 0.7,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(
        f"{'shape':8} {'users':>8} {'movies':>7} {'rows':>11} {'s':>7} {'users/s':>9} {'rows/s':>11} "
        f"{'write/raw':>9} {'RSS MiB':>8} {'RSS full/half':>13}"
    )
    for r in runs:
        print(
            f"{r['shape']:8} {r['users']:>8,} {r['movies']:>7,} {r['rows']:>11,} {r['seconds']:>7} "
            f"{r['users_per_s']:>9,} {r['rows_written_per_s']:>11,} {r.get('write_vs_raw_copy', ''):>9} "
            f"{r['peak_rss_mib']:>8} {r.get('rss_ratio_full_vs_half_users', ''):>13}"
        )
    for r in runs:
        if cost := r.get("explanations"):
            print(
                f"{r['shape']}: explanations, {len(cost['seconds_with'])} pairs: medians "
                f"{cost['ratio_of_medians']}x (target <= 1.25), fastest {cost['ratio']}x, accounted for by "
                f"the step and the longer write ({cost['added_seconds']} s) {cost['ratio_attributed']}x"
            )
    for r in runs:
        if ret := r.get("retrieval"):
            print(
                f"{r['shape']}: exhaustive (every term, every movie) "
                f"{ret['exhaustive_users_per_s']:,} users/s over {ret['users']:,} users; "
                + "; ".join(
                    f"{k} candidates: " + ", ".join(f"{key} {v}" for key, v in d.items() if key != "seconds")
                    for k, d in ret["depths"].items()
                )
            )
            if "exhaustive_projected_seconds_all_users" in ret:
                print(
                    f"  exhaustive for all {r['users']:,} users, projected: "
                    f"{ret['exhaustive_projected_seconds_all_users']:,} s"
                )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
