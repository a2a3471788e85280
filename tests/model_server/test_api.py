"""Every endpoint over real HTTP against a real published database and the real champion: success and errors."""

from __future__ import annotations

import json

import numpy as np
import psycopg2
import pytest
from psycopg2 import errors as pg_errors
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.models.hybrid.new_movies import NewMovie, NewMovieScorer
from pipeline.registry.champion import load_champion
from tests.support.database import fetch_rows
from tests.support.weekly import TOP_N

pytestmark = pytest.mark.e2e  # a live server over the weekly run's lists


@pytest.fixture(scope="module")
def db(published):
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def champion(published):
    model, version = load_champion(published.settings)
    return model, version, NewMovieScorer(model.network)


def _detail(response) -> str:
    body = response.json()
    assert isinstance(body["detail"], str) and "Traceback" not in response.text
    return body["detail"]


# --- GET /users/{user_id}/recommendations -----------------------------------------------------------------


def test_list_is_the_published_one_best_first(api, db, published):
    r = api.get("/users/7/recommendations", params={"limit": 5})
    assert r.status_code == 200
    body = r.json()
    with db.connect() as conn:
        rows = fetch_rows(
            conn,
            "SELECT rank, movie_id, title, score, batch_id, model_version FROM "
            "current_recommendations WHERE user_id = 7 ORDER BY rank LIMIT 5",
        )
    assert body["source"] == "model" and body["known_user"] is True and body["user_id"] == 7
    assert body["batch_id"] == rows[0].batch_id == published.results["publication"]["batch_id"]
    assert body["model_version"] == rows[0].model_version == 1
    assert [(i["rank"], i["movie_id"], i["title"]) for i in body["items"]] == [
        (r.rank, r.movie_id, r.title) for r in rows
    ]
    assert [i["score"] for i in body["items"]] == pytest.approx([r.score for r in rows])
    assert body["generated_at"] and "data_cutoff" in body


def test_list_limit_defaults_to_ten_and_never_exceeds_the_published_list(api):
    assert len(api.get("/users/7/recommendations").json()["items"]) == 10
    assert len(api.get("/users/7/recommendations", params={"limit": 1000}).json()["items"]) == TOP_N
    again = api.get("/users/7/recommendations", params={"limit": 3})  # served from memory the second time
    assert again.json()["items"] == api.get("/users/7/recommendations", params={"limit": 3}).json()["items"]


def test_answers_kept_in_memory_are_the_routes_own(api, live_api):
    first = api.get("/users/11/recommendations", params={"limit": 4})  # read through the route, then kept
    assert live_api.app.state.lists.kept(11, 4) == first.content
    for variant in (
        "/users/11/recommendations?limit=4",  # canonical: answered from memory
        "/users/11/recommendations?limit=04",  # not canonical: through the route
        "/users/11/recommendations?limit=4&x=1",
    ):
        again = api.get(variant)
        assert again.status_code == 200 and again.headers["content-type"] == "application/json"
        assert again.json() == first.json()
    assert api.get("/users/11/recommendations").json()["items"][:4] == first.json()["items"]
    metrics = api.get("/metrics").text
    assert (
        'route="/users/{user_id}/recommendations",status="200"' in metrics
        and 'route="unmatched",status="200"' not in metrics
    )


def test_unknown_user_gets_the_labelled_popularity_fallback(api, db):
    from pipeline.batch.fallback import most_rated

    body = api.get("/users/999999/recommendations", params={"limit": 8}).json()
    assert body["source"] == "fallback_popularity" and body["known_user"] is False
    with db.connect() as conn:
        movies, share = most_rated(conn, None, 8)
    assert [i["movie_id"] for i in body["items"]] == movies.tolist()
    assert [i["score"] for i in body["items"]] == pytest.approx(share.tolist())
    assert [i["rank"] for i in body["items"]] == list(range(1, 9))


@pytest.mark.parametrize(
    "path, field",
    [
        ("/users/abc/recommendations", "user_id (path)"),
        ("/users/1.5/recommendations", "user_id (path)"),
        ("/users/0/recommendations", "user_id (path)"),
        (f"/users/{2**40}/recommendations", "user_id (path)"),
        ("/users/1/recommendations?limit=0", "limit (query)"),
        ("/users/1/recommendations?limit=-3", "limit (query)"),
        ("/users/1/recommendations?limit=100001", "limit (query)"),
        ("/users/1/recommendations?limit=x", "limit (query)"),
    ],
)
def test_list_bad_input_is_a_422_naming_the_field(api, path, field):
    r = api.get(path)
    assert r.status_code == 422
    assert field in _detail(r) and r.json()["errors"][0]["loc"][0] in ("path", "query")


# --- POST /recommendations/existing ---------------------------------------------------------------------


def test_existing_movies_get_the_published_rating_blend(api, db, champion):
    model, version, _ = champion
    r = api.post("/recommendations/existing", json={"user_id": 3, "movie_ids": [50, 1, 181, 50]})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == 3 and body["model_version"] == version
    assert [p["movie_id"] for p in body["predictions"]] == [50, 1, 181, 50]
    net = model.network
    expected = model.predict_index(
        np.full(4, net.user_map.index([3])[0]), net.item_map.index([50, 1, 181, 50])
    )
    assert [p["predicted_rating"] for p in body["predictions"]] == pytest.approx(expected.tolist(), abs=1e-5)
    with db.connect() as conn:
        rated = {m for (m,) in conn.execute(text("SELECT movie_id FROM ratings WHERE user_id = 3"))}
    assert [p["rated"] for p in body["predictions"]] == [m in rated for m in (50, 1, 181, 50)]
    assert body["predictions"][0]["title"] == "Star Wars"


@pytest.mark.parametrize(
    "payload, status, needle",
    [
        ({"user_id": 999999, "movie_ids": [50]}, 404, "user 999999 is not known"),
        ({"user_id": 3, "movie_ids": [50, 999998, 999999]}, 404, "999998, 999999"),
        ({"user_id": 3, "movie_ids": []}, 422, "movie_ids (body)"),
        ({"user_id": 3, "movie_ids": list(range(1, 1002))}, 422, "movie_ids (body)"),
        ({"movie_ids": [50]}, 422, "user_id (body): Field required"),
        ({"user_id": "three", "movie_ids": [50]}, 422, "user_id (body)"),
        ({"user_id": 3, "movie_ids": [50, "x"]}, 422, "movie_ids.1 (body)"),
        ({"user_id": 3, "movie_ids": [-5]}, 422, "movie_ids.0 (body)"),
        ({"user_id": 3, "movie_ids": [50], "extra": 1}, 422, "extra (body): Extra inputs are not permitted"),
    ],
)
def test_existing_bad_input(api, payload, status, needle):
    r = api.post("/recommendations/existing", json=payload)
    assert r.status_code == status
    assert needle in _detail(r)


def test_malformed_and_oversized_bodies_are_refused_cleanly(api):
    r = api.post(
        "/recommendations/existing",
        content=b'{"user_id": 3, "movie_ids": [50',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "JSON" in _detail(r)
    big = json.dumps({"user_id": 3, "movie_ids": [50] * 40_000}).encode()
    r = api.post("/recommendations/existing", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 65536 bytes" in _detail(r)

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b" " * 8192

    r = api.post("/predict/new-movie", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


# --- POST /predict/new-movie ----------------------------------------------------------------------------


def test_new_movie_for_a_user_is_scored_from_content(api, champion):
    model, version, scorer = champion
    payload = {
        "title": "The Quiet Orbit",
        "genres": ["sci-fi", "Drama"],
        "runtime": 118,
        "year": 1997,
        "directors": ["Nobody Known"],
        "user_id": 3,
    }
    r = api.post("/predict/new-movie", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == version and body["user_id"] == 3 and body["genres"] == ["Sci-Fi", "Drama"]
    assert (
        body["people"]["ignored"]["directors"] == ["Nobody Known"]
        and body["people"]["used"]["directors"] == []
    )
    content, _ = scorer.content(
        [NewMovie("The Quiet Orbit", ["Sci-Fi", "Drama"], ["Nobody Known"], runtime=118, year=1997)]
    )
    expected = scorer.predict(model.network.user_map.index([3]), content)[0]
    assert body["predicted_rating"] == pytest.approx(float(expected), abs=1e-5)
    assert 1.0 <= body["predicted_rating"] <= 5.0


def test_new_movie_people_known_to_the_model_are_used(api, champion):
    model = champion[0]
    director = model.network.vocab.persons["director"][0]  # external id: this dataset's people have no names
    body = api.post(
        "/predict/new-movie",
        json={"title": "Sequel", "genres": ["Comedy"], "directors": [director, "Someone Else"], "user_id": 3},
    ).json()
    assert body["people"]["used"]["directors"] == [director]
    assert body["people"]["ignored"]["directors"] == ["Someone Else"]


def test_new_movie_without_user_ranks_users(api, champion):
    model = champion[0]
    r = api.post(
        "/predict/new-movie",
        params={"limit": 7},
        json={"title": "Midnight Heist", "genres": ["Crime", "Thriller"]},
    )
    assert r.status_code == 200
    top = r.json()["top_users"]
    assert len(top) == 7 and "predicted_rating" not in r.json()
    ratings = [u["predicted_rating"] for u in top]
    assert ratings == sorted(ratings, reverse=True)
    assert set(u["user_id"] for u in top) <= set(model.network.user_map.ids.tolist())


@pytest.mark.parametrize(
    "change, status, needle",
    [
        ({"title": None}, 422, "title (body)"),
        ({"title": "   "}, 422, "title (body)"),
        ({"title": "x" * 301}, 422, "title (body)"),
        ({"title": "\ud800bad"}, 422, "title (body)"),
        ({"genres": []}, 422, "genres (body)"),
        ({"genres": ["Space Opera"]}, 422, "unknown genre 'Space Opera'; the model knows: "),
        ({"runtime": 0}, 422, "runtime (body)"),
        ({"runtime": 100_000}, 422, "runtime (body)"),
        ({"runtime": "long"}, 422, "runtime (body)"),
        ({"year": 1500}, 422, "year (body)"),
        ({"year": 3000}, 422, "year (body)"),
        ({"actors": ["a"] * 51}, 422, "actors (body)"),
        ({"director": ["typo"]}, 422, "director (body): Extra inputs are not permitted"),
        ({"user_id": 999999}, 404, "user 999999 is not known"),
        ({"user_id": -1}, 422, "user_id (body)"),
    ],
)
def test_new_movie_bad_input(api, change, status, needle):
    payload = {"title": "Fine Title", "genres": ["Drama"], "runtime": 100, "year": 1990, "user_id": 3}
    payload.update(change)
    payload = {k: v for k, v in payload.items() if v is not None}
    r = api.post(
        "/predict/new-movie", content=json.dumps(payload), headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    assert needle in _detail(r)


def test_new_movie_limit_is_bounded(api):
    for limit in (0, -1, 1001):
        r = api.post("/predict/new-movie", params={"limit": limit}, json={"title": "T", "genres": ["Drama"]})
        assert r.status_code == 422 and "limit (query)" in _detail(r)


# --- GET /movies/{movie_id}/similar ---------------------------------------------------------------------


def test_similar_movies_by_model_vectors(api, champion):
    model, version, scorer = champion
    r = api.get("/movies/50/similar", params={"limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["movie_id"] == 50 and body["title"] == "Star Wars" and body["model_version"] == version
    idx, sims = scorer.similar(int(model.network.item_map.index([50])[0]), 5)
    assert [i["movie_id"] for i in body["items"]] == model.network.item_map.ids[idx].tolist()
    assert [i["similarity"] for i in body["items"]] == pytest.approx(sims.tolist(), abs=1e-6)
    assert 50 not in [i["movie_id"] for i in body["items"]]
    assert all(i["title"] for i in body["items"])


@pytest.mark.parametrize(
    "path, status, needle",
    [
        ("/movies/999999/similar", 404, "no movie 999999"),
        ("/movies/abc/similar", 422, "movie_id (path)"),
        ("/movies/50/similar?limit=0", 422, "limit (query)"),
        ("/movies/50/similar?limit=5000", 422, "limit (query)"),
    ],
)
def test_similar_bad_input(api, path, status, needle):
    r = api.get(path)
    assert r.status_code == status and needle in _detail(r)


# --- the service ---------------------------------------------------------------------------------------


def test_health_reports_database_role_batch_and_model(api, published):
    r = api.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok" and body["database"]["role"] == "movierec_reader"
    assert body["database"]["batch_id"] == published.results["publication"]["batch_id"]
    assert (
        body["model"]["status"] == "loaded"
        and body["model"]["version"] == 1
        and body["model"]["users"] == 150
    )


def test_metrics_count_requests_per_route_with_latency_and_model_version(api):
    api.get("/users/5/recommendations")
    api.get("/users/abc/recommendations")
    api.get("/no/such/route")
    text_ = api.get("/metrics").text
    assert (
        'movierec_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}'
        in text_
    )
    assert (
        'movierec_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="422"}'
        in text_
    )
    assert 'route="unmatched",status="404"' in text_
    assert (
        'movierec_http_request_duration_seconds_bucket{le="0.005",method="GET",'
        'route="/users/{user_id}/recommendations"}' in text_
    )
    assert "movierec_model_version 1.0" in text_


def test_openapi_documents_every_endpoint_with_examples(api):
    spec = api.get("/openapi.json").json()
    assert {
        "/users/{user_id}/recommendations",
        "/recommendations/existing",
        "/predict/new-movie",
        "/movies/{movie_id}/similar",
        "/health",
        "/metrics",
    } <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["NewMovieRequest"]["examples"] and schemas["ExistingMoviesRequest"]["examples"]
    assert schemas["ExplainedMovie"]["properties"]["title"]["examples"]  # a user's list entry
    assert schemas["Explanation"]["properties"]["reason"]["examples"]
    assert "422" in spec["paths"]["/predict/new-movie"]["post"]["responses"]
    genres = schemas["NewMovieRequest"]["properties"]["genres"]["items"]["enum"]
    assert "Drama" in genres and "Sci-Fi" in genres  # the served model's genres, for clients and fuzzers
    assert api.get("/docs").status_code == 200


def test_the_servers_connection_is_read_only(live_api):
    dsn = live_api.app.state.db.dsn  # the very URL the server's pool connects with
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, count(*) FROM current_recommendations")
            role, rows = cur.fetchone()
            assert role == "movierec_reader" and rows > 0
            for statement in (
                "INSERT INTO users (user_id) VALUES (424242)",
                "UPDATE movies SET title = 'x' WHERE movie_id = 50",
                "DELETE FROM batch_recommendations",
                "TRUNCATE ratings",
                "CREATE TABLE public.intruder (x int)",
                "UPDATE recommendation_batches SET status = 'superseded'",
            ):
                with pytest.raises(pg_errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()
