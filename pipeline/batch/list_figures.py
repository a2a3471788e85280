"""A batch's list-set figures, as ``recommendation_batches.list_metrics`` keeps them (migration 0008).

Computed from the rows just written (every user's list, model and fallback alike, as the API serves them),
in the index space of the ``movies`` table, the catalogue ``compare_batches`` counts too: coverage over every
movie, novelty and the long tail from the ratings up to the batch's cut-off, intra-list diversity from the
champion's content vectors (``models.rerank.content_vectors``; a movie the champion does not know counts as
unlike every other). Flat figures of the whole lists (``evaluation.list_metrics.list_set_metrics``), the
same of each list's top 10 under ``at_10``, and the re-rank settings the lists were made with."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from database.bulk import read_frame
from pipeline.core.jsonsafe import json_text
from pipeline.evaluation.list_metrics import list_set_metrics
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.rerank import Rerank, content_vectors

HEAD_K = 10  # the list head figured apart (what a page of recommendations shows first)


def batch_lists(conn: Connection, batch_id: int, movie_ids: np.ndarray) -> np.ndarray:
    """The batch's lists as a ``(users, longest list)`` array of positions in ``movie_ids`` (sorted ids),
    best first, -1 padded; rows in user id order."""
    frame = read_frame(
        conn,
        "SELECT user_id, rank, movie_id FROM batch_recommendations WHERE batch_id = %(b)s",
        {"b": batch_id},
    )
    users = frame["user_id"].to_numpy(np.int64)
    if len(users) == 0:
        return np.full((0, 1), -1, np.int64)
    ranks = frame["rank"].to_numpy(np.int64)
    movies = np.searchsorted(movie_ids, frame["movie_id"].to_numpy(np.int64))
    distinct, row = np.unique(users, return_inverse=True)
    lists = np.full((len(distinct), int(ranks.max())), -1, np.int64)
    lists[row, ranks - 1] = movies
    return lists


def batch_list_metrics(
    conn: Connection,
    batch_id: int,
    model: PublishedBlend,
    rated_movies: np.ndarray,
    rerank: Rerank,
) -> dict[str, Any]:
    """The figures of batch ``batch_id``'s rows (see the module doc). ``rated_movies``: the movie id of every
    rating up to the cut-off (popularity)."""
    movie_ids = np.array(
        conn.execute(text("SELECT movie_id FROM movies ORDER BY movie_id")).scalars().all(), np.int64
    )
    counts = np.bincount(
        np.searchsorted(movie_ids, rated_movies[np.isin(rated_movies, movie_ids)]), minlength=len(movie_ids)
    )
    known = model.network.item_map.ids
    own = content_vectors(model.network.movies)
    vectors = np.zeros((len(movie_ids), own.shape[1]), np.float32)
    present = np.isin(known, movie_ids)
    vectors[np.searchsorted(movie_ids, known[present])] = own[present]
    lists = batch_lists(conn, batch_id, movie_ids)
    return {
        **list_set_metrics(lists, counts, vectors),
        f"at_{HEAD_K}": list_set_metrics(lists, counts, vectors, k=HEAD_K),
        "rerank": rerank.to_dict(),
    }


def store_list_metrics(conn: Connection, batch_id: int, figures: dict[str, Any]) -> None:
    """Write ``figures`` into the batch's ``list_metrics`` (JSON; NaN, which JSON lacks, as null)."""
    conn.execute(
        text("UPDATE recommendation_batches SET list_metrics = CAST(:m AS jsonb) WHERE batch_id = :b"),
        {"m": json_text(figures), "b": batch_id},
    )
