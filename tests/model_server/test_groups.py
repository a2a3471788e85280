"""POST /groups/recommendations over real HTTP: the served champion's scores, standardised per member and
aggregated, never a movie any member rated."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from model_server.app import create_app
from pipeline.models.group import aggregate, candidates, standardise_over
from pipeline.registry.champion import load_champion

pytestmark = pytest.mark.e2e  # a live server over the weekly run's champion

GROUP = [7, 13]


@pytest.fixture(scope="module")
def db(published):
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def champion(published):
    return load_champion(published.settings)


def _rated(db, user_ids: list[int]) -> set[int]:
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT DISTINCT movie_id FROM ratings WHERE user_id = ANY(:ids)"), {"ids": user_ids}
        )
        return {m for (m,) in rows}


def _group(api, user_ids, strategy="average", limit=10):
    r = api.post("/groups/recommendations", json={"user_ids": user_ids, "strategy": strategy, "limit": limit})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("strategy", ["average", "least_misery"])
def test_group_list_holds_nothing_any_member_rated(api, db, champion, strategy):
    body = _group(api, [*GROUP, 1], strategy, limit=50)
    _, version = champion
    assert body["model_version"] == version and body["strategy"] == strategy
    assert body["user_ids"] == [*GROUP, 1]
    ids = [item["movie_id"] for item in body["items"]]
    assert len(ids) == 50 == len(set(ids))
    assert not set(ids) & _rated(db, [*GROUP, 1])
    assert [item["rank"] for item in body["items"]] == list(range(1, 51))
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    first = body["items"][0]
    assert first["title"] and isinstance(first["genres"], list)
    assert [m["user_id"] for m in first["members"]] == [*GROUP, 1]
    combine = np.mean if strategy == "average" else np.min
    for item in body["items"]:  # the group score is the strategy over the members' scores it explains
        assert item["score"] == pytest.approx(float(combine([m["score"] for m in item["members"]])), abs=1e-5)
        assert all(1 <= m["rank"] <= body["candidates"] for m in item["members"])


def test_average_top_movie_has_the_highest_mean_standardised_score(api, db, champion):
    model, _ = champion
    body = _group(api, GROUP, "average", limit=5)
    net = model.network
    users = net.user_map.index(np.asarray(GROUP))
    rated = model.rated[users].toarray() > 0
    known_later = net.item_map.index(np.asarray(sorted(_rated(db, GROUP))))
    rated[:, known_later[known_later >= 0]] = True  # every rating of theirs, after the cut-off too
    mask = candidates(sp.csr_matrix(rated))
    assert body["candidates"] == int(mask.sum())
    z = standardise_over(model.score_users(users), mask)
    mean = aggregate(z, "average")
    best = int(np.argmax(np.where(mask, mean, -np.inf)))
    assert body["items"][0]["movie_id"] == int(net.item_map.ids[best])
    assert body["items"][0]["score"] == pytest.approx(float(mean[best]), abs=1e-4)
    top = body["items"][0]["members"]
    assert [m["score"] for m in top] == pytest.approx(z[:, best].tolist(), abs=1e-4)
    own_rank = [int((np.where(mask, z[j], -np.inf) > z[j, best]).sum()) + 1 for j in range(2)]
    assert [m["rank"] for m in top] == own_rank


def test_a_movie_a_member_dismissed_leaves_the_group_list(api, db, live_api):
    top = _group(api, GROUP)["items"][0]["movie_id"]
    try:
        r = api.post(f"/users/{GROUP[1]}/dismissals", json={"movie_id": top})
        assert r.status_code == 201, r.text
        ids = [item["movie_id"] for item in _group(api, GROUP)["items"]]
        assert top not in ids and len(ids) == 10
    finally:
        with db.begin() as conn:
            conn.execute(
                text("DELETE FROM dismissals WHERE user_id = :u AND movie_id = :m"), {"u": GROUP[1], "m": top}
            )
        live_api.app.state.lists.forget(GROUP[1])


def test_least_misery_top_is_no_more_miserable_than_averages(api):
    average = _group(api, GROUP, "average", limit=1)["items"][0]
    misery = _group(api, GROUP, "least_misery", limit=1)["items"][0]
    assert min(m["score"] for m in misery["members"]) >= min(m["score"] for m in average["members"]) - 1e-9


def test_group_defaults_to_average_and_ten(api):
    r = api.post("/groups/recommendations", json={"user_ids": GROUP})
    assert r.status_code == 200
    assert r.json()["strategy"] == "average" and len(r.json()["items"]) == 10


@pytest.mark.parametrize(
    "payload, status, needle",
    [
        ({"user_ids": [7, 999998, 999999]}, 404, "users 999998, 999999 not known to model"),
        ({"user_ids": [7, 7]}, 422, "repeated: 7"),
        ({"user_ids": [7]}, 422, "user_ids (body)"),
        ({"user_ids": list(range(1, 22))}, 422, "user_ids (body)"),
        ({"user_ids": GROUP, "strategy": "median"}, 422, "strategy (body)"),
        ({"user_ids": GROUP, "limit": 101}, 422, "limit (body)"),
        ({"user_ids": GROUP, "limit": 0}, 422, "limit (body)"),
        ({"user_ids": GROUP, "extra": 1}, 422, "extra (body)"),
    ],
)
def test_group_bad_input(api, payload, status, needle):
    r = api.post("/groups/recommendations", json=payload)
    assert r.status_code == status
    assert needle in r.json()["detail"] and "Traceback" not in r.text


def test_openapi_documents_the_route_and_its_bounds(api):
    spec = api.get("/openapi.json").json()
    operation = spec["paths"]["/groups/recommendations"]["post"]
    assert {"404", "422", "503"} <= set(operation["responses"])
    members = spec["components"]["schemas"]["GroupRequest"]["properties"]["user_ids"]
    assert members["uniqueItems"] is True and (members["minItems"], members["maxItems"]) == (2, 20)


def test_no_champion_or_no_database_is_a_503_with_retry_after(published, pg_proxy, tmp_path):
    empty = published.settings.model_copy(
        update={"mlflow_reader_tracking_uri": f"sqlite:///{tmp_path / 'empty-registry.db'}"}
    )
    with TestClient(create_app(empty, poll_seconds=3600), raise_server_exceptions=False) as client:
        r = client.post("/groups/recommendations", json={"user_ids": GROUP})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["detail"].startswith("no champion model loaded")
    app = create_app(published.settings, poll_seconds=3600, database_url=pg_proxy.url)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/groups/recommendations", json={"user_ids": GROUP}).status_code == 200
        pg_proxy.stop()
        r = client.post("/groups/recommendations", json={"user_ids": GROUP})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["detail"].startswith("database unavailable")
