"""The batch masks dismissed movies as it masks rated ones: after the next publish a dismissed movie is
gone from the user's list (model list or fallback list), which still holds top-N movies."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline.batch.publish import publish_batch
from pipeline.registry.champion import load_champion
from tests.support.weekly import TOP_N

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch


def _list(engine, user_id: int) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [
            (r.movie_id, r.source)
            for r in conn.execute(
                text("SELECT movie_id, source FROM current_recommendations WHERE user_id = :u ORDER BY rank"),
                {"u": user_id},
            )
        ]


def test_the_next_batch_leaves_out_dismissed_movies(weekly_copy, weekly_engine):
    with weekly_engine.begin() as conn:
        user = conn.execute(
            text("SELECT min(user_id) FROM current_recommendations WHERE source = 'model'")
        ).scalar_one()
        # a thin new user gets the fallback list
        conn.execute(text("INSERT INTO users (user_id) VALUES (9001)"))
        conn.execute(
            text("INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (9001, 50, 5, now())")
        )
    model_before = _list(weekly_engine, user)
    model, version = load_champion(weekly_copy.settings)
    publish_batch(weekly_engine, model, version, top_n=TOP_N)
    thin_before = _list(weekly_engine, 9001)
    assert {s for _, s in thin_before} == {"fallback_popularity"}
    dismissed = {user: [m for m, _ in model_before[:2]], 9001: [thin_before[0][0]]}
    with weekly_engine.begin() as conn:
        for u, movies in dismissed.items():
            for m in movies:
                conn.execute(
                    text("INSERT INTO dismissals (user_id, movie_id) VALUES (:u, :m)"), {"u": u, "m": m}
                )

    publish_batch(weekly_engine, model, version, top_n=TOP_N)

    model_after, thin_after = _list(weekly_engine, user), _list(weekly_engine, 9001)
    assert len(model_after) == len(thin_after) == TOP_N
    assert not set(dismissed[user]) & {m for m, _ in model_after}
    assert {s for _, s in model_after} == {"model"}
    assert [m for m, _ in model_after[: TOP_N - 2]] == [m for m, _ in model_before[2:]]  # the rest moved up
    assert [m for m, _ in thin_after] == [m for m, _ in thin_before[1:]] + [thin_after[-1][0]]
    assert dismissed[9001][0] not in {m for m, _ in thin_after} and 50 not in {m for m, _ in thin_after}
