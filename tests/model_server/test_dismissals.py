"""``POST /users/{user_id}/dismissals`` (the API's only write, as ``movierec_feedback``) and ``exclude=`` on a
user's list, on the live server over the weekly run's lists.

The published database is shared by the module's tests: each test here dismisses for users no other test
reads, and removes its dismissals (and the server's kept answers for those users) when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2 import errors as pg_errors
from sqlalchemy import Engine, create_engine, text

from database.engine import sqlalchemy_url
from model_server.db import Database
from tests.support.servers import LiveServer
from tests.support.weekly import TOP_N

pytestmark = pytest.mark.e2e  # a live server over the weekly run's lists

USER = 142  # a user of the slice with a model list; no other test reads its list
NEW_USER = 9142  # added here: no list in the batch, so the fallback list


@pytest.fixture(scope="module")
def db(published) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def clean(db: Engine, live_api: LiveServer) -> Iterator[None]:
    """Leave the shared database and the server's memory as the test found them."""
    with db.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (:u) ON CONFLICT DO NOTHING"), {"u": NEW_USER})
    yield
    with db.begin() as conn:
        conn.execute(text("DELETE FROM dismissals WHERE user_id IN (:a, :b)"), {"a": USER, "b": NEW_USER})
        conn.execute(text("DELETE FROM users WHERE user_id = :u"), {"u": NEW_USER})
    for user in (USER, NEW_USER):
        live_api.app.state.lists.forget(user)


def _dismissals(db: Engine) -> list[tuple[int, int]]:
    """This module's users' dismissals (the fuzz test may record others in the shared database)."""
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, movie_id FROM dismissals WHERE user_id IN (:a, :b) ORDER BY 1, 2"),
            {"a": USER, "b": NEW_USER},
        )
        return [tuple(r) for r in rows]


def _all_dismissals(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM dismissals")).scalar_one()


def _movies(answer) -> list[int]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    return [i["movie_id"] for i in answer.json()["items"]]


@pytest.mark.usefixtures("clean")
def test_an_unknown_user_or_movie_is_a_404_and_writes_nothing(api, db: Engine) -> None:  # type: ignore[no-untyped-def]
    before = _all_dismissals(db)
    unknown_user = api.post("/users/999999/dismissals", json={"movie_id": 50})
    unknown_movie = api.post(f"/users/{USER}/dismissals", json={"movie_id": 999999})
    assert unknown_user.status_code == unknown_movie.status_code == 404
    assert unknown_user.json()["detail"] == "unknown user 999999"
    assert unknown_movie.json()["detail"] == "unknown movie 999999"
    for body in ({}, {"movie_id": 0}, {"movie_id": 50, "extra": 1}, {"movie_id": "x"}):
        assert api.post(f"/users/{USER}/dismissals", json=body).status_code == 422, body
    assert _all_dismissals(db) == before


@pytest.mark.usefixtures("clean")
def test_a_dismissal_is_idempotent_and_leaves_the_list_at_once(api, db: Engine) -> None:  # type: ignore[no-untyped-def]
    full = _movies(api.get(f"/users/{USER}/recommendations", params={"limit": TOP_N}))
    first = _movies(api.get(f"/users/{USER}/recommendations", params={"limit": 5}))
    kept = _movies(api.get(f"/users/{USER}/recommendations", params={"limit": 5}))  # from memory
    assert first == kept == full[:5]

    created = api.post(f"/users/{USER}/dismissals", json={"movie_id": full[1]})
    again = api.post(f"/users/{USER}/dismissals", json={"movie_id": full[1]})
    assert created.status_code == 201 and again.status_code == 200
    assert created.json()["created"] is True and again.json()["created"] is False
    assert again.json()["dismissed_at"] == created.json()["dismissed_at"]
    assert {k: created.json()[k] for k in ("user_id", "movie_id")} == {"user_id": USER, "movie_id": full[1]}
    assert _dismissals(db) == [(USER, full[1])]

    after = api.get(f"/users/{USER}/recommendations", params={"limit": 5})
    assert _movies(after) == [full[0], *full[2:6]]  # still five, the rest moved up
    assert [i["rank"] for i in after.json()["items"]] == [1, 2, 3, 4, 5]
    assert _movies(api.get(f"/users/{USER}/recommendations", params={"limit": 5})) == [full[0], *full[2:6]]


@pytest.mark.usefixtures("clean")
def test_exclude_leaves_movies_out_and_keeps_limit(api) -> None:  # type: ignore[no-untyped-def]
    full = _movies(api.get(f"/users/{USER}/recommendations", params={"limit": TOP_N}))
    left_out = [full[0], full[3], 999999]  # a movie not in the list changes nothing
    answer = api.get(f"/users/{USER}/recommendations", params={"limit": 5, "exclude": left_out})
    assert _movies(answer) == [m for m in full if m not in left_out][:5]
    # the answer was not kept: the plain lookup still holds every movie
    assert _movies(api.get(f"/users/{USER}/recommendations", params={"limit": 5})) == full[:5]
    fallback = _movies(api.get(f"/users/{NEW_USER}/recommendations", params={"limit": 5}))
    fewer = _movies(
        api.get(f"/users/{NEW_USER}/recommendations", params={"limit": 5, "exclude": fallback[:2]})
    )
    assert len(fewer) == 5 and fewer[:3] == fallback[2:] and not set(fallback[:2]) & set(fewer)
    too_many = api.get(f"/users/{USER}/recommendations", params={"exclude": list(range(1, 102))})
    assert too_many.status_code == 422
    assert api.get(f"/users/{USER}/recommendations", params={"exclude": "0"}).status_code == 422


@pytest.mark.usefixtures("clean")
def test_a_user_without_a_list_dismisses_from_the_fallback_list(api, db: Engine) -> None:  # type: ignore[no-untyped-def]
    first = api.get(f"/users/{NEW_USER}/recommendations", params={"limit": 5})
    assert first.json()["source"] == "fallback_popularity"
    fallback = _movies(first)
    assert api.post(f"/users/{NEW_USER}/dismissals", json={"movie_id": fallback[0]}).status_code == 201
    after = _movies(api.get(f"/users/{NEW_USER}/recommendations", params={"limit": 5}))
    assert after[:4] == fallback[1:] and len(after) == 5 and fallback[0] not in after
    assert _dismissals(db) == [(NEW_USER, fallback[0])]


def test_the_servers_writer_is_the_feedback_role_and_writes_nothing_else(live_api: LiveServer) -> None:
    dsn = live_api.app.state.feedback.dsn  # the very URL the server's feedback pool connects with
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == "movierec_feedback"
            for statement in (
                "SELECT count(*) FROM ratings",
                "SELECT movie_id FROM current_recommendations",
                "DELETE FROM dismissals",
                "INSERT INTO users (user_id) VALUES (424242)",
            ):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()


def test_a_dismissal_without_the_database_is_a_503_with_retry_after(api, live_api: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """The feedback pool degrades like the reader's: the server's writer pointed at a port nothing listens
    on answers 503 with ``Retry-After``, and the lists are still served."""
    from tests.support.servers import free_port

    state = live_api.app.state
    served = state.feedback
    state.feedback = Database(f"postgresql://movierec_feedback@127.0.0.1:{free_port()}/movierec", pool_size=1)
    try:
        down = api.post(f"/users/{USER}/dismissals", json={"movie_id": 50})
    finally:
        state.feedback = served
    assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0
    assert down.json()["detail"].startswith("database unavailable")
    assert api.get(f"/users/{USER}/recommendations").status_code == 200
