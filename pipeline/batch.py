"""Weekly top-N lists for every user, written with COPY and published in one transaction.

* Every user with ratings up to the cut-off gets a list. Users the model knows, with at least
  ``min_history`` ratings, get the champion's ranking; the others (too little history, or new since the
  champion was trained) get the most-rated movies, labelled ``fallback_popularity``. Never nothing.
* A list never holds a movie the user rated up to the cut-off: rated movies are read from ``ratings`` for
  this cut-off (not from the model, which may be an older champion) and masked before the top-N.
* Users are scored in chunks sized so one chunk's score matrix stays under ``score_budget`` floats:
  memory is flat in the number of users.
* Retrieve, then re-rank: the ranking's cheap terms (the network's dot product, EASE) are computed for
  every movie, its costly one (the network's rating head, an MLP per pair) only for each user's top
  ``candidates`` by the cheap terms. The re-ranked scores are the exact ranking scores of those movies, so
  the lists equal exhaustive scoring's wherever a movie of the exhaustive top N is among the candidates
  (``bench/batch`` measures how often). ``candidates=0``: every term for every movie.
* Writing and publishing are one transaction: a new ``recommendation_batches`` row, its rows by binary
  COPY, the previous batch marked ``superseded``, the new one ``published``, batches beyond the last
  ``keep`` pruned. A process killed half-way leaves the previous batch published and complete
  (PostgreSQL discards the open transaction); the next run simply starts again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import Connection, Engine, text

from database.bulk import copy_columns, read_frame
from pipeline.errors import MovierecError
from pipeline.published import PublishedModel
from pipeline.ranking import DEFAULT_CANDIDATES, mask_rows, retrieve_and_rerank, top_n

log = logging.getLogger(__name__)

DEFAULT_TOP_N = 100
DEFAULT_KEEP = 3
MIN_HISTORY = 5          # fewer ratings than this: the fallback list
SCORE_BUDGET = 16 << 20  # floats in one chunk's user x movie score matrix (64 MB)
_PUBLISH_LOCK = "movierec.publish"


@dataclass
class BatchResult:
    batch_id: int
    model_version_id: int
    registered_version: int | None
    users: int
    fallback_users: int
    rows: int
    top_n: int
    data_cutoff: datetime | None
    timings: dict[str, float] = field(default_factory=dict)
    candidates: int | None = None   # movies per user the rating head re-ranked (None: every movie)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "model_version_id": self.model_version_id,
                "registered_version": self.registered_version, "users": self.users,
                "fallback_users": self.fallback_users, "rows": self.rows, "top_n": self.top_n,
                "data_cutoff": self.data_cutoff.isoformat() if self.data_cutoff else None,
                "timings": self.timings, "candidates": self.candidates}


# --- pure scoring -------------------------------------------------------------------------------------------

def score_chunk(model: PublishedModel, users: np.ndarray, exclude: sp.csr_matrix, n: int,
                catalogue: np.ndarray | None = None, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` movie indices and scores for model user indices ``users``; ``exclude`` rows (aligned with
    ``users``) mark movies to leave out; ``catalogue``: a boolean mask of the movies that may be listed.

    ``candidates`` K: when the ranking has a rating-head term and K is below the catalogue size, the
    rating head scores only each user's top K by the cheap terms (see the module doc); None or 0: all.
    """
    two_stage = _two_stage(model, candidates, n)
    scores = (model.retrieval_scores if two_stage else model.score_users)(users).astype(np.float32, copy=False)
    mask_rows(scores, exclude)
    if catalogue is not None:
        scores[:, ~catalogue] = -np.inf
    if not two_stage:
        return top_n(scores, n)
    found, full = retrieve_and_rerank(scores, max(int(candidates), n),  # type: ignore[arg-type]
                                      lambda cols: model.rerank_scores(users, cols))
    order, values = top_n(full, n)
    idx = np.take_along_axis(found, np.maximum(order, 0), axis=1)
    idx[order < 0] = -1
    return idx, values


def _two_stage(model: PublishedModel, candidates: int | None, n: int) -> bool:
    return bool(model.rerank_weight > 0 and candidates and max(candidates, n) < model.n_items)


def chunk_size(n_items: int, budget: int = SCORE_BUDGET) -> int:
    return int(max(16, min(4096, budget // max(n_items, 1))))


# --- reading what the cut-off allows ------------------------------------------------------------------------

def _rated_pairs(conn: Connection, as_of: datetime | None) -> tuple[np.ndarray, np.ndarray]:
    frame = read_frame(conn, "SELECT user_id, movie_id FROM ratings"
                       + (" WHERE rated_at <= %(as_of)s" if as_of else ""), {"as_of": as_of})
    return frame["user_id"].to_numpy(np.int64), frame["movie_id"].to_numpy(np.int64)


def most_rated(conn: Connection, as_of: datetime | None, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The popularity fallback list: movies by how many users rated them up to ``as_of`` (ties: lower id
    first), best first, with each one's share of those users as its score.

    One definition for both places that serve it: the batch (minus what each fallback user rated) and the
    API (as it is, for users without a published list, at the published batch's cut-off).
    """
    frame = read_frame(conn, "WITH r AS (SELECT user_id, movie_id FROM ratings"
                       + (" WHERE rated_at <= %(as_of)s" if as_of else "") + ") "
                       "SELECT movie_id, count(*)::float8 / (SELECT count(DISTINCT user_id) FROM r) AS share "
                       "FROM r GROUP BY movie_id ORDER BY count(*) DESC, movie_id"
                       + (" LIMIT %(limit)s" if limit is not None else ""), {"as_of": as_of, "limit": limit})
    return frame["movie_id"].to_numpy(np.int64), frame["share"].to_numpy(np.float32)


def champion_version_id(conn: Connection, registered_version: int) -> int:
    """The ``model_versions`` row of the champion the lists are scored with."""
    from pipeline.registry import REGISTERED_MODEL

    row = conn.execute(text(
        "SELECT model_version_id FROM model_versions WHERE registered_model = :m AND registered_version = :v "
        "ORDER BY (status = 'champion') DESC, model_version_id DESC LIMIT 1"),
        {"m": REGISTERED_MODEL, "v": registered_version}).first()
    if row is None:
        raise MovierecError(f"no model_versions row for champion v{registered_version}: was it promoted "
                            "against this database?")
    return int(row[0])


# --- the batch ----------------------------------------------------------------------------------------------

def publish_recommendations(engine: Engine, model: PublishedModel, registered_version: int, *,
                            as_of: datetime | None = None, top_n_items: int = DEFAULT_TOP_N,
                            keep: int = DEFAULT_KEEP, min_history: int = MIN_HISTORY,
                            chunk_users: int | None = None, candidates: int = DEFAULT_CANDIDATES,
                            progress: bool = False,
                            _after_chunk: Any = None) -> BatchResult:
    """Score every user with ``model`` (the champion, ``registered_version``), write and publish the lists.

    ``candidates``: how many movies per user the rating head re-ranks (0: all; see ``score_chunk``).
    ``_after_chunk(k)`` is called after the k-th chunk is written (tests use it to die mid-write).
    """
    if top_n_items < 1 or top_n_items > 10_000:
        raise MovierecError(f"top-N must be between 1 and 10000, got {top_n_items}")
    if keep < 1:
        raise MovierecError(f"keep must be at least 1, got {keep}")
    if candidates < 0:
        raise MovierecError(f"candidates must be at least 1 (or 0: score every movie), got {candidates}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    generated_at = datetime.now(UTC)
    net = model.network
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _PUBLISH_LOCK})
        model_version_id = champion_version_id(conn, registered_version)
        pair_users, pair_movies = _rated_pairs(conn, as_of)
        if len(pair_users) == 0:
            raise MovierecError("no ratings up to the cut-off: nothing to recommend from")
        user_ids, counts = np.unique(pair_users, return_counts=True)
        t = time.perf_counter()
        timings["read"] = round(t - started, 3)

        # Exclusions in the model's index space; movies outside the model's catalogue cannot be listed anyway.
        u_idx, i_idx = net.user_map.index(pair_users), net.item_map.index(pair_movies)
        known = (u_idx >= 0) & (i_idx >= 0)
        exclude = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (u_idx[known], i_idx[known])),
                                shape=(model.n_users, model.n_items))
        catalogue = _catalogue_mask(conn, net.item_map.ids)
        model_users = net.user_map.index(user_ids)
        scored = (model_users >= 0) & (counts >= min_history)

        batch_id = int(conn.execute(text(
            "INSERT INTO recommendation_batches (model_version_id, data_cutoff, top_n, users, fallback_users, "
            "rows, status) VALUES (:mv, :cutoff, :n, 0, 0, 0, 'superseded') RETURNING batch_id"),
            {"mv": model_version_id, "cutoff": as_of, "n": top_n_items}).scalar_one())
        writer = _ListWriter(conn, {"batch_id": np.int32(batch_id), "model_version_id": np.int32(model_version_id),
                                    "generated_at": generated_at})
        chunk = chunk_users or chunk_size(model.n_items)
        todo = np.flatnonzero(scored)
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="scoring users", unit="user", disable=not progress, leave=False)
        score_seconds = 0.0
        for k, lo in enumerate(range(0, len(todo), chunk)):
            sel = todo[lo:lo + chunk]
            users = model_users[sel]
            s0 = time.perf_counter()
            idx, values = score_chunk(model, users, exclude[users], top_n_items, catalogue, candidates)
            score_seconds += time.perf_counter() - s0
            writer.write(user_ids[sel], idx, values, net.item_map.ids, "model")
            bar.update(len(sel))
            if _after_chunk is not None:
                _after_chunk(k)
        bar.close()
        timings["score"] = round(score_seconds, 3)

        fallback_users = user_ids[~scored]
        if len(fallback_users):
            _write_fallback(writer, fallback_users, pair_users, pair_movies, top_n_items, as_of)
        rows = writer.rows
        timings["write"] = round(time.perf_counter() - t - score_seconds, 3)
        timings["copy"] = round(writer.copy_seconds, 3)

        # Publish: one statement order readers never observe half of (same transaction).
        conn.execute(text("UPDATE recommendation_batches SET status = 'superseded' WHERE status = 'published'"))
        timings["total"] = round(time.perf_counter() - started, 3)
        conn.execute(text(
            "UPDATE recommendation_batches SET status = 'published', published_at = now(), users = :users, "
            "fallback_users = :fallback, rows = :rows, timings = CAST(:timings AS jsonb) WHERE batch_id = :b"),
            {"users": len(user_ids), "fallback": len(fallback_users), "rows": rows, "b": batch_id,
             "timings": json.dumps(timings)})
        pruned = [r[0] for r in conn.execute(text(
            "DELETE FROM recommendation_batches WHERE batch_id NOT IN "
            "(SELECT batch_id FROM recommendation_batches ORDER BY batch_id DESC LIMIT :keep) RETURNING batch_id"),
            {"keep": keep})]
        if pruned:
            conn.execute(text("DELETE FROM batch_recommendations WHERE batch_id = ANY(:ids)"), {"ids": pruned})
    log.info("published batch %s: %s users (%s fallback), %s rows", batch_id, len(user_ids),
             len(fallback_users), rows)
    two_stage = _two_stage(model, candidates, top_n_items)
    return BatchResult(batch_id, model_version_id, registered_version, len(user_ids), len(fallback_users), rows,
                       top_n_items, as_of, timings, max(candidates, top_n_items) if two_stage else None)


def _catalogue_mask(conn: Connection, item_ids: np.ndarray) -> np.ndarray | None:
    """Movies of the model that are still in ``movies`` (None: all of them)."""
    present = np.array(conn.execute(text("SELECT movie_id FROM movies")).scalars().all(), np.int64)
    mask = np.isin(item_ids, present)
    return None if mask.all() else mask


class _ListWriter:
    """Rank-ordered lists into ``batch_recommendations`` by binary COPY, counting rows and time in COPY."""

    def __init__(self, conn: Connection, fixed: dict[str, Any]) -> None:
        self.conn, self.fixed = conn, fixed
        self.rows, self.copy_seconds = 0, 0.0

    def write(self, user_ids: np.ndarray, idx: np.ndarray, values: np.ndarray, item_ids: np.ndarray,
              source: str) -> None:
        """Row r of ``idx``/``values`` is ``user_ids[r]``'s list, best first; index -1 ends a short list."""
        keep = idx >= 0
        ranks = np.cumsum(keep, axis=1).astype(np.int16)
        columns = {"user_id": np.repeat(user_ids.astype(np.int32), keep.sum(axis=1)),
                   "rank": ranks[keep], "movie_id": item_ids[idx[keep]].astype(np.int32),
                   "score": values[keep].astype(np.float32), "source": source, **self.fixed}
        t = time.perf_counter()
        self.rows += copy_columns(self.conn, "batch_recommendations", columns)
        self.copy_seconds += time.perf_counter() - t


def _write_fallback(writer: _ListWriter, users: np.ndarray, pair_users: np.ndarray, pair_movies: np.ndarray,
                    n: int, as_of: datetime | None) -> None:
    """``most_rated`` up to the cut-off, minus what each user rated."""
    movies, share = most_rated(writer.conn, as_of)
    in_fallback = np.isin(pair_users, users)
    rated_by = {}
    for u, m in zip(pair_users[in_fallback], pair_movies[in_fallback], strict=True):
        rated_by.setdefault(int(u), set()).add(int(m))
    for lo in range(0, len(users), 4096):
        block = users[lo:lo + 4096]
        idx = np.full((len(block), n), -1, np.int64)
        for r, u in enumerate(block):
            seen = rated_by.get(int(u), set())
            picks = [k for k, m in enumerate(movies[: n + len(seen)]) if int(m) not in seen][:n]
            idx[r, :len(picks)] = picks
        values = np.where(idx >= 0, share[np.maximum(idx, 0)], np.float32(0))
        writer.write(block, idx, values, movies, "fallback_popularity")
