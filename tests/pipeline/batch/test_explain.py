"""Explanations stored with every published row (``pipeline.batch.explain``), on the real ML-100K slice:
each model row names movies the user rated up to the cut-off, the sentence names their titles, fallback rows
are labelled, and the first named movie is the one the model's own term weighs most."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import Engine, text

from pipeline.batch.explain import (
    FALLBACK_REASON,
    MAX_ACTORS,
    MAX_BECAUSE,
    Explainer,
    MovieAttributes,
    shared_people,
    top_contributors,
)
from pipeline.batch.publish import movie_attributes, publish_batch
from pipeline.core.defaults import RELEVANCE_THRESHOLD
from pipeline.registry.champion import load_champion
from tests.support.database import fetch_rows
from tests.support.weekly import TOP_N, Published

pytestmark = pytest.mark.e2e

MIN_HISTORY = 60  # some of the slice's users get the fallback list


def _publish(weekly_copy: Published, engine: Engine, **kwargs: object) -> None:
    model, version = load_champion(weekly_copy.settings)
    publish_batch(engine, model, version, top_n=TOP_N, min_history=MIN_HISTORY, **kwargs)  # type: ignore[arg-type]


def _rows(engine: Engine) -> list:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return fetch_rows(
            conn,
            "SELECT c.user_id, c.movie_id, c.genres, c.source, c.because, c.because_titles, c.shared, c.reason, "
            "ARRAY(SELECT r.rating FROM unnest(c.because) WITH ORDINALITY u(movie_id, k) "
            "      JOIN ratings r ON r.user_id = c.user_id AND r.movie_id = u.movie_id "
            "      AND (c.data_cutoff IS NULL OR r.rated_at <= c.data_cutoff) ORDER BY u.k) AS because_ratings, "
            "ARRAY(SELECT DISTINCT g FROM movies m, unnest(m.genres) g WHERE m.movie_id = ANY(c.because)) "
            "      AS because_genres "
            "FROM current_recommendations c ORDER BY c.user_id, c.rank",
        )


def test_every_model_row_names_movies_the_user_rated(weekly_copy: Published, weekly_engine: Engine) -> None:
    _publish(weekly_copy, weekly_engine)
    rows = _rows(weekly_engine)
    model_rows = [r for r in rows if r.source == "model"]
    fallback_rows = [r for r in rows if r.source == "fallback_popularity"]
    assert model_rows and fallback_rows
    highly = 0
    for r in model_rows:
        assert 1 <= len(r.because) <= MAX_BECAUSE and len(set(r.because)) == len(r.because), r
        # every named movie was rated by this user up to the batch's cut-off (its rating was found)
        assert len(r.because_ratings) == len(r.because), r
        assert r.movie_id not in r.because
        assert r.reason.startswith("Because you rated ")
        assert all(title in r.reason for title in r.because_titles), r
        said_highly = " highly" in r.reason.split(";")[0]
        assert said_highly == all(x >= RELEVANCE_THRESHOLD for x in r.because_ratings), r
        highly += said_highly
        # shared genres are the movie's and one of the named movies'
        assert set(r.shared["genres"]) <= set(r.genres) & set(r.because_genres), r
        assert r.shared["directors"] == [] and r.shared["actors"] == []  # ML-100K names no people
    assert highly > 0  # the model's top contributors include movies rated highly
    assert any("; same genre" in r.reason for r in model_rows)
    for r in fallback_rows:
        assert r.because == [] and r.because_titles == [] and r.shared == {} and r.reason == FALLBACK_REASON


def test_the_views_assemble_the_sentence_explain_says(weekly_copy: Published, weekly_engine: Engine) -> None:
    """The batch stores an explanation's parts (``because``, ``rated_highly``, a key into
    ``batch_shared_attributes``); the view's ``shared`` and ``reason`` are what ``Explainer.say`` (the group
    route's whole-sentence path) gives for the same named movies, row for row."""
    _publish(weekly_copy, weekly_engine)
    model, _ = load_champion(weekly_copy.settings)
    item_map = model.network.item_map
    with weekly_engine.connect() as conn:
        rows = fetch_rows(
            conn,
            "SELECT c.movie_id, c.because, c.shared, c.reason, r.rated_highly, r.shared_key "
            "FROM current_recommendations c JOIN batch_recommendations r USING (batch_id, user_id, rank) "
            "WHERE c.source = 'model' ORDER BY c.user_id, c.rank",
        )
        explainer = Explainer(model, movie_attributes(conn, item_map.ids))
        parts = conn.execute(text("SELECT count(*) FROM batch_shared_attributes")).scalar_one()
    assert rows and all(r.shared_key != 0 for r in rows)
    assert 0 < parts < len(rows)  # each distinct shared set once
    because = np.full((len(rows), MAX_BECAUSE), -1, np.int64)
    for k, r in enumerate(rows):
        because[k, : len(r.because)] = item_map.index(np.array(r.because))
    shared, reasons = explainer.say(
        item_map.index(np.array([r.movie_id for r in rows])),
        because,
        np.array([len(r.because) for r in rows]),
        np.array([r.rated_highly for r in rows]),
    )
    assert [json.loads(s) for s in shared] == [r.shared for r in rows]
    assert reasons == [r.reason for r in rows]


def test_the_first_named_movie_is_the_largest_contribution(
    weekly_copy: Published, weekly_engine: Engine
) -> None:
    """For EASE, rated movie j adds B[j, i] to movie i's score: weighted by the rating, the first named is the
    largest positive such term among the user's rated movies."""
    _publish(weekly_copy, weekly_engine)
    model, _ = load_champion(weekly_copy.settings)
    assert model.ease is not None and model.ease.weights_ is not None
    weights, item_map = model.ease.weights_, model.network.item_map
    with weekly_engine.connect() as conn:
        cutoff = conn.execute(
            text("SELECT data_cutoff FROM recommendation_batches WHERE status = 'published'")
        )
        as_of = cutoff.scalar_one()
        ratings = fetch_rows(
            conn,
            "SELECT user_id, movie_id, rating FROM ratings WHERE CAST(:c AS timestamptz) IS NULL OR rated_at <= :c",
            c=as_of,
        )
    rated: dict[int, list[tuple[int, float]]] = {}
    for u, m, x in ratings:
        rated.setdefault(u, []).append((m, x))
    checked = 0
    for r in _rows(weekly_engine):
        if r.source != "model":
            continue
        movies = np.array([m for m, _ in rated[r.user_id]])
        stars = np.array([x for _, x in rated[r.user_id]])
        j = item_map.index(movies)
        terms = weights[j[j >= 0], item_map.index(np.array([r.movie_id]))[0]] * stars[j >= 0]
        if terms.max() <= 0:
            continue  # no positive term: named by content similarity instead
        assert r.because[0] == movies[j >= 0][np.argmax(terms)], r
        checked += 1
    assert checked > 0


def test_explain_off_writes_the_empty_defaults(weekly_copy: Published, weekly_engine: Engine) -> None:
    _publish(weekly_copy, weekly_engine, explain=False)
    rows = _rows(weekly_engine)
    assert rows and all(r.because == [] and r.shared == {} and r.reason == "" for r in rows)


def test_movie_attributes_read_the_credits_the_model_can_name(
    weekly_copy: Published, weekly_engine: Engine
) -> None:
    """The credits come out of the database in bulk: directors and leading actors of the model's movies, each
    person once per movie and role, names sorted; unnamed people, actors billed past ``MAX_ACTORS``, other
    roles and movies outside the model are left out; the same attributes as from the rows one by one."""
    model, _ = load_champion(weekly_copy.settings)
    ids = model.network.item_map.ids
    a, b = int(ids[0]), int(ids[1])
    credits = [  # (movie, name, role, ordering)
        (a, "Joel Coen", "director", 1),
        (b, "Joel Coen", "director", 1),
        (b, "Ethan Coen", "director", 2),
        (a, "Frances McDormand", "actor", 1),
        (a, "William H. Macy", "actor", 2),
        (b, "Frances McDormand", "actor", 1),
        (b, "Late Billing", "actor", MAX_ACTORS + 1),
        (a, None, "actor", 3),
        (a, "Joel Coen", "writer", 1),
    ]
    with weekly_engine.begin() as conn:
        for k, name in enumerate(dict.fromkeys(c[1] for c in credits)):
            conn.execute(
                text("INSERT INTO persons (external_id, name) VALUES (:e, :n)"),
                {"e": f"test:nm{k}", "n": name},
            )
        for movie, name, role, ordering in credits:
            conn.execute(
                text(
                    "INSERT INTO movie_persons (movie_id, person_id, role, ordering) SELECT :m, person_id, :r, :o "
                    "FROM persons WHERE name IS NOT DISTINCT FROM :n AND external_id LIKE 'test:%'"
                ),
                {"m": movie, "n": name, "r": role, "o": ordering},
            )
    with weekly_engine.connect() as conn:
        attributes = movie_attributes(conn, ids)
    assert attributes.director_names == ["Ethan Coen", "Joel Coen"]
    assert attributes.actor_names == ["Frances McDormand", "William H. Macy"]
    directors, actors = attributes.directors.toarray(), attributes.actors.toarray()
    assert directors.shape == actors.shape[:1] + (2,) and directors.shape[0] == len(ids) + 1
    assert directors[:2].tolist() == [[0, 1], [1, 1]] and directors[2:].sum() == 0
    assert actors[:2].tolist() == [[1, 1], [1, 0]] and actors[2:].sum() == 0
    shared = shared_people(
        attributes.directors, attributes.director_names, np.array([0]), np.array([[1, -1]])
    )
    assert shared == [("Joel Coen",)]
    # the rows one by one (the API's group route) give the same attributes, a duplicated credit once
    rows = [(m, r, n) for m, n, r, o in credits if n and r in ("director", "actor") and o <= MAX_ACTORS]
    one_by_one = MovieAttributes.build(ids, [], rows + rows[:1] + [(-1, "actor", "Not In The Model")])
    assert one_by_one.actor_names == attributes.actor_names
    assert (one_by_one.directors != attributes.directors).nnz == 0
    assert (one_by_one.actors != attributes.actors).nnz == 0


def test_tied_contributions_name_the_earlier_rated_movie(weekly_copy: Published) -> None:
    """Every rated movie twice: each pair's contributions are equal, and the lists' own tie rule
    (``pipeline.models.topn.top_k``: the lower position first) names the first copy, then the second."""
    model, _ = load_champion(weekly_copy.settings)
    n = 20
    rated = np.concatenate([np.arange(n), np.arange(n)])
    items = np.arange(n, n + 30)
    top, counts = top_contributors(model, rated, None, items)
    assert (counts == MAX_BECAUSE).any()
    for named, count in zip(top, counts):
        if count >= 2:
            assert named[0] < n and named[1] == named[0] + n, named
        if count == MAX_BECAUSE:
            assert named[2] < n, named  # the next value's first copy; its second falls past the cut
