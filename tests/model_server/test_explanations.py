"""Explanations in the API's answers over real HTTP: a user's list carries each entry's stored explanation
(the batch's, ``pipeline.batch.explain``); a group list explains each movie per member from that member's
rated movies only."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.batch.explain import FALLBACK_REASON

pytestmark = pytest.mark.e2e  # a live server over the weekly run's champion and batch

GROUP = [7, 13, 21]


@pytest.fixture(scope="module")
def db(published):
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    yield engine
    engine.dispose()


def _rated(db, user_id: int) -> set[int]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT movie_id FROM ratings WHERE user_id = :u"), {"u": user_id})
        return {m for (m,) in rows}


def test_a_users_list_carries_the_stored_explanations(api, db):
    r = api.get("/users/7/recommendations", params={"limit": 15})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "model" and len(body["items"]) == 15
    with db.connect() as conn:
        stored = {
            row.movie_id: row
            for row in conn.execute(
                text(
                    "SELECT movie_id, because, shared, reason FROM current_recommendations WHERE user_id = 7"
                )
            )
        }
    rated = _rated(db, 7)
    for item in body["items"]:
        why = item["explanation"]
        row = stored[item["movie_id"]]
        assert [b["movie_id"] for b in why["because"]] == row.because and why["because"]
        assert set(row.because) <= rated
        assert why["reason"] == row.reason and all(b["title"] in why["reason"] for b in why["because"])
        assert why["shared"] == row.shared


def test_the_fallback_list_is_labelled(api):
    body = api.get("/users/999999/recommendations", params={"limit": 5}).json()
    assert body["source"] == "fallback_popularity"
    assert all(
        item["explanation"] == {"because": [], "shared": {"genres": [], "directors": [], "actors": []},
                                "reason": FALLBACK_REASON}
        for item in body["items"]
    )  # fmt: skip


def test_group_explanations_name_only_that_members_rated_movies(api, db):
    r = api.post("/groups/recommendations", json={"user_ids": GROUP, "strategy": "least_misery", "limit": 20})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 20
    rated = {u: _rated(db, u) for u in GROUP}
    distinct = set()
    for item in items:
        assert [m["user_id"] for m in item["members"]] == GROUP
        for member in item["members"]:
            why = member["explanation"]
            named = [b["movie_id"] for b in why["because"]]
            assert 1 <= len(named) <= 3 and set(named) <= rated[member["user_id"]], (member, item)
            assert why["reason"].startswith("Because you rated ") and " highly" not in why["reason"]
            assert all(b["title"] and b["title"] in why["reason"] for b in why["because"])
            assert set(why["shared"]["genres"]) <= set(item["genres"])
            distinct.add((member["user_id"], tuple(named)))
    # members with different histories get different reasons
    assert len({named for _, named in distinct}) > 1


def test_a_members_dismissed_movies_are_masked_never_named(api, db):
    """A dismissed movie the member never rated is left out of the list and never said to be rated."""
    first = api.post("/groups/recommendations", json={"user_ids": GROUP, "limit": 10}).json()["items"]
    dismissed = [item["movie_id"] for item in first]  # close to what the group likes: strong contributors
    with db.begin() as conn:
        for movie_id in dismissed:
            conn.execute(text("INSERT INTO dismissals (user_id, movie_id) VALUES (7, :m)"), {"m": movie_id})
    try:
        r = api.post("/groups/recommendations", json={"user_ids": GROUP, "limit": 20})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
    finally:
        with db.begin() as conn:
            conn.execute(
                text("DELETE FROM dismissals WHERE user_id = 7 AND movie_id = ANY(:ms)"), {"ms": dismissed}
            )
    assert not {item["movie_id"] for item in items} & set(dismissed)
    rated = _rated(db, 7)
    for item in items:
        member = item["members"][0]
        named = {b["movie_id"] for b in member["explanation"]["because"]}
        assert named and named <= rated and not named & set(dismissed), member
