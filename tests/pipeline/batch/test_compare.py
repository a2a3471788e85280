"""``compare_batches`` (SQL function, migration 0006) and ``movierec compare-batches``: a batch against
itself, and two different batches against the same figures computed here from the rows themselves."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text

from pipeline.batch.compare import compare_batches, default_pair
from pipeline.batch.publish import publish_batch
from pipeline.core.errors import MovierecError
from pipeline.registry.champion import load_champion
from tests.support.cli import movierec
from tests.support.weekly import SLICE_USERS, TOP_N

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch

EARLIER = datetime(1998, 1, 1, tzinfo=UTC)


def _lists(conn: Connection, batch: int) -> dict[int, list[int]]:
    """Each user's list of ``batch``, best first."""
    lists: dict[int, list[int]] = defaultdict(list)
    for user, movie in conn.execute(
        text(
            "SELECT user_id, movie_id FROM batch_recommendations WHERE batch_id = :b ORDER BY user_id, rank"
        ),
        {"b": batch},
    ):
        lists[user].append(movie)
    return lists


def _novelty(conn: Connection, batch: int, lists: dict[int, list[int]]) -> float:
    """Mean -log2 of each listed movie's add-one smoothed share of the ratings up to the batch's cut-off."""
    cutoff = conn.execute(
        text("SELECT data_cutoff FROM recommendation_batches WHERE batch_id = :b"), {"b": batch}
    ).scalar_one()
    rated = conn.execute(
        text("SELECT movie_id FROM ratings WHERE CAST(:t AS timestamptz) IS NULL OR rated_at <= :t"),
        {"t": cutoff},
    ).scalars()
    counts = Counter(rated)
    movies = conn.execute(text("SELECT count(*) FROM movies")).scalar_one()
    total = sum(counts.values()) + movies
    listed = [m for movies_ in lists.values() for m in movies_]
    return sum(-math.log2((counts[m] + 1) / total) for m in listed) / len(listed)


def test_a_batch_against_itself_overlaps_fully(weekly_engine):
    with weekly_engine.connect() as conn:
        batch = conn.execute(text("SELECT batch_id FROM recommendation_batches")).scalar_one()
        c = compare_batches(conn, batch, batch, k=10)
        with pytest.raises(MovierecError, match="no earlier kept batch"):
            default_pair(conn)
        with pytest.raises(MovierecError, match="no kept batch 999"):
            compare_batches(conn, batch, 999)
    assert c.users_a == c.users_b == c.users_both == SLICE_USERS
    assert c.overlap_at_k == c.jaccard_at_k == 1.0 and c.churn == 0.0
    assert c.coverage_change == 0.0 and c.novelty_change == 0.0
    assert c.coverage_a is not None and 0 < c.coverage_a < 1
    assert c.novelty_a is not None and c.novelty_a > 0


def test_two_batches_match_the_figures_computed_from_their_rows(weekly_copy, weekly_engine):
    with weekly_engine.connect() as conn:
        first = conn.execute(text("SELECT batch_id FROM recommendation_batches")).scalar_one()
    model, version = load_champion(weekly_copy.settings)
    second = publish_batch(weekly_engine, model, version, as_of=EARLIER, top_n=TOP_N)["batch_id"]
    k = 5
    with weekly_engine.connect() as conn:
        assert default_pair(conn) == (first, second)
        c = compare_batches(conn, first, second, k=k)
        a, b = _lists(conn, first), _lists(conn, second)
        movies = conn.execute(text("SELECT count(*) FROM movies")).scalar_one()
        novelty = (_novelty(conn, first, a), _novelty(conn, second, b))

    both = sorted(a.keys() & b.keys())
    top_a, top_b = ({u: set(lists[u][:k]) for u in both} for lists in (a, b))
    overlap = sum(len(top_a[u] & top_b[u]) / len(top_a[u]) for u in both) / len(both)
    jaccard = sum(len(top_a[u] & top_b[u]) / len(top_a[u] | top_b[u]) for u in both) / len(both)
    churn = sum(1 - len(set(a[u]) & set(b[u])) / len(b[u]) for u in both) / len(both)
    coverage = tuple(len({m for ms in lists.values() for m in ms}) / movies for lists in (a, b))

    assert (c.batch_a, c.batch_b, c.top_k) == (first, second, k)
    assert (c.users_a, c.users_b, c.users_both) == (len(a), len(b), len(both))
    assert len(b) < len(a) == SLICE_USERS  # the earlier cut-off knows fewer users
    assert c.overlap_at_k == pytest.approx(overlap) and c.jaccard_at_k == pytest.approx(jaccard)
    assert c.churn == pytest.approx(churn)
    assert 0 < jaccard <= overlap < 1 and 0 < churn < 1  # different lists, not unrelated ones
    assert (c.coverage_a, c.coverage_b) == pytest.approx(coverage)
    assert c.coverage_change == pytest.approx(coverage[1] - coverage[0])
    assert (c.novelty_a, c.novelty_b) == pytest.approx(novelty)
    assert c.novelty_change == pytest.approx(novelty[1] - novelty[0])

    env = {
        **os.environ,
        "MOVIEREC_HOME": str(weekly_copy.settings.home),
        "DATABASE_URL": weekly_copy.settings.database_url,
        "MLFLOW_TRACKING_URI": "",
    }
    cli = movierec(env, "compare-batches", "-k", str(k))
    assert cli.returncode == 0, cli.stderr
    assert f"batch {second} against batch {first} (k={k})" in cli.stdout
    assert f"{overlap:.4f}" in cli.stdout and f"{churn:.4f}" in cli.stdout
    print(cli.stdout)
    refused = movierec(env, "compare-batches", str(first))
    assert refused.returncode != 0 and "give two batch ids, or none" in refused.stderr
