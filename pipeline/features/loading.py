"""The training data read from PostgreSQL as of a cut-off date: ratings, every catalogue movie's content,
user features."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from database.bulk import read_frame
from pipeline.core.errors import MovierecError
from pipeline.features.interactions import IdMap, Interactions, build_interactions
from pipeline.features.vocab import (
    FeatureVocab,
    MovieContent,
    build_vocab,
    movie_content,
    movie_text,
    user_features,
)

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    dataset: str
    as_of: datetime | None
    interactions: Interactions
    user_map: IdMap
    item_map: IdMap
    movies: MovieContent
    users: np.ndarray  # (n_users, d) user features
    vocab: FeatureVocab
    titles: list[str]

    @property
    def ids(self) -> tuple[np.ndarray, np.ndarray]:
        """The users' and the movies' database ids by dense index: what the temporal splits break ties by
        (``pipeline.evaluation.splits.Ids``), so a split is the evaluation's whatever the indices."""
        return self.user_map.ids, self.item_map.ids


def load_training_data(
    engine: Engine,
    as_of: datetime | None = None,
    *,
    dataset: str | None = None,
    min_person_count: int = 2,
    device: str = "cpu",
    progress: bool = True,
) -> TrainingData:
    """Ratings up to ``as_of`` (inclusive; all when None), every catalogue movie, and their features."""
    from pipeline.features.text_embeddings import embed_texts

    with engine.connect() as conn:
        ratings = read_frame(
            conn,
            "SELECT user_id, movie_id, rating, extract(epoch FROM rated_at)::bigint AS ts "
            "FROM ratings WHERE %(as_of)s::timestamptz IS NULL OR rated_at <= %(as_of)s",
            {"as_of": as_of},
        )
        movies = read_frame(
            conn,
            "SELECT movie_id, title, year, runtime_minutes, overview, "
            "array_to_string(genres, '|') AS genres FROM movies ORDER BY movie_id",
        )
        credits = read_frame(
            conn,
            "SELECT mp.movie_id, p.external_id, p.name, mp.role, mp.ordering "
            "FROM movie_persons mp JOIN persons p USING (person_id)",
        )
        users = read_frame(conn, "SELECT user_id, gender, age, occupation FROM users ORDER BY user_id")
        if dataset is None:
            dataset = (
                read_frame(
                    conn,
                    "SELECT dataset FROM ingest_runs WHERE status = 'succeeded' "
                    "ORDER BY ingest_run_id DESC LIMIT 1",
                )["dataset"].tolist()
                or ["unknown"]
            )[0]
    if ratings.empty:
        when = f" up to {as_of.isoformat()}" if as_of else ""
        raise MovierecError(f"no ratings{when} in the database: ingest a dataset first (movierec ingest)")
    movies["genres"] = movies["genres"].fillna("").map(lambda s: [g for g in str(s).split("|") if g])
    item_map = IdMap.from_ids(movies["movie_id"].to_numpy())  # every catalogue movie, rated or not
    data, user_map, item_map = build_interactions(
        ratings["user_id"].to_numpy(),
        ratings["movie_id"].to_numpy(),
        ratings["rating"].to_numpy(),
        ratings["ts"].to_numpy(),
        item_map=item_map,
    )
    users = users.set_index("user_id").reindex(user_map.ids).reset_index()
    vocab = build_vocab(movies, credits, users, min_person_count)
    texts = [
        movie_text(t, o if isinstance(o, str) else None) for t, o in zip(movies["title"], movies["overview"])
    ]
    text_vectors = embed_texts(engine, texts, device=device, progress=progress)
    content = movie_content(vocab, movies, credits, text_vectors)
    log.info(
        "training data as of %s: %d ratings, %d users, %d movies",
        as_of or "now",
        len(data),
        data.n_users,
        data.n_items,
    )
    return TrainingData(
        dataset,
        as_of,
        data,
        user_map,
        item_map,
        content,
        user_features(vocab, users),
        vocab,
        movies["title"].tolist(),
    )
