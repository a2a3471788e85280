"""pipeline.models.hybrid.new_movies: a movie described from outside gets exactly the features training gave it.

The network is the session's tiny one, trained on real ML-100K; the catalogue it was trained on is the
``ml100k_db`` database (movies, genres and credits)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.features.vocab import MAX_PEOPLE
from pipeline.models.hybrid.new_movies import (
    MovieFeaturizer,
    NewMovie,
    NewMovieScorer,
    TextVectors,
    UnknownGenre,
    embed_titles,
)
from tests.support.database import fetch_rows


@pytest.fixture(scope="module")
def network(tiny_blend):
    return tiny_blend.network


def _catalogue_movies(database_url: str, n: int):
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        movies = conn.execute(
            text(
                "SELECT m.movie_id, m.title, m.genres, m.year, m.runtime_minutes FROM movies m "
                "JOIN movie_persons mp USING (movie_id) GROUP BY m.movie_id ORDER BY count(*) DESC, m.movie_id "
                "LIMIT :n"
            ),
            {"n": n},
        ).all()
        credits = fetch_rows(
            conn,
            "SELECT mp.movie_id, mp.role, p.external_id FROM movie_persons mp JOIN persons p USING (person_id) "
            "ORDER BY mp.movie_id, mp.role, mp.ordering",
        )
    engine.dispose()
    people: dict[tuple[int, str], list[str]] = {}
    for movie_id, role, external_id in credits:
        people.setdefault((movie_id, role), []).append(external_id)
    return [
        (
            m.movie_id,
            NewMovie(
                m.title,
                m.genres,
                people.get((m.movie_id, "director"), []),
                people.get((m.movie_id, "actor"), []),
                people.get((m.movie_id, "writer"), []),
                m.runtime_minutes,
                m.year,
            ),
        )
        for m in movies
    ]


def test_a_catalogue_movie_described_as_new_gets_its_training_features(ml100k_db, network):
    described = _catalogue_movies(ml100k_db, 12)
    content, _ = MovieFeaturizer(network.vocab).content(
        [m for _, m in described], embed_titles([m for _, m in described])
    )
    rows = network.item_map.index([movie_id for movie_id, _ in described])
    catalogue = network.movies.rows(rows)
    np.testing.assert_array_equal(content.genres, catalogue.genres)
    np.testing.assert_array_equal(content.numeric, catalogue.numeric)
    for role in MAX_PEOPLE:
        np.testing.assert_array_equal(content.people[role], catalogue.people[role], err_msg=role)
    assert any(content.people["actor"].any(axis=1))  # the check covers people, not only empty slots
    np.testing.assert_allclose(content.text, catalogue.text, atol=1e-4)  # one encoder, batched differently


def test_people_by_name_or_id_case_insensitive_and_unknown_ones_reported(network):
    vocab = network.vocab
    director = vocab.persons["director"][0]
    named = dict(vocab.person_names)
    named["director"] = {"jane doe": director}
    vocab_with_names = type(vocab)(**{**vocab.to_dict(), "person_names": named})
    featurizer = MovieFeaturizer(vocab_with_names)
    movie = NewMovie("T", ["Drama"], directors=["Jane DOE ", director, "Ghost"], actors=["Nobody"])
    found, match = featurizer.people(movie)
    assert found["director"] == [vocab.person_index("director")[director]]  # one person, named twice
    assert match.used["directors"] == ["Jane DOE "] and match.ignored["directors"] == ["Ghost"]
    assert match.ignored["actors"] == ["Nobody"] and found["actor"] == []


def test_genres_are_matched_case_insensitively_and_unknown_ones_refused(network):
    featurizer = MovieFeaturizer(network.vocab)
    assert featurizer.genres(["drama", " COMEDY", "Drama"]) == ["Drama", "Comedy"]
    with pytest.raises(UnknownGenre, match="unknown genres 'Noir', 'Space'; the model knows: "):
        featurizer.genres(["Drama", "Noir", "Space"])


def test_missing_year_and_runtime_use_the_missing_flags(network):
    content, _ = MovieFeaturizer(network.vocab).content(
        [NewMovie("T", ["Drama"])], np.zeros((1, 384), np.float32)
    )
    assert content.numeric[0].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_scorer_ranks_users_by_predicted_rating(network):
    scorer = NewMovieScorer(network)
    content, _ = scorer.content([NewMovie("A Film", ["Drama", "Romance"], runtime=120, year=1995)])
    idx, ratings = scorer.top_users(content, 10)
    every = scorer.predict(
        np.arange(len(network.user_map)), content.rows(np.zeros(len(network.user_map), int))
    )
    assert idx.tolist() == np.argsort(-every, kind="stable")[:10].tolist()
    assert ratings == pytest.approx(every[idx], abs=1e-5)


def test_text_vectors_keep_recent_texts_and_encode_only_new_ones(monkeypatch):
    import pipeline.features.text_embeddings as te

    calls = []

    def fake_encode(texts, device="cpu"):
        calls.append(list(texts))
        return np.stack([np.full(384, len(t), np.float32) for t in texts])

    monkeypatch.setattr(te, "encode", fake_encode)
    kept = TextVectors(size=2)
    first = kept(["a", "bb", "a"])
    assert calls == [["a", "bb"]] and first[:, 0].tolist() == [1, 2, 1]
    kept(["bb", "ccc"])
    assert calls[-1] == ["ccc"]
    kept(["a"])  # evicted by the size bound
    assert calls[-1] == ["a"]
