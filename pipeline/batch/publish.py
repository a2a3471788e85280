"""Weekly top-N lists for every user, written with COPY and published in one transaction.

* Every user with ratings up to the cut-off gets a list. Users the model knows, with at least
  ``min_history`` ratings, get the champion's ranking; the others (too little history, or new since the
  champion was trained) get the most-rated movies, labelled ``fallback_popularity``. Never nothing.
* A list never holds a movie the user rated up to the cut-off: rated movies are read from ``ratings`` for
  this cut-off (not from the model, which may be an older champion) and masked before the top-N; so is
  every movie the user dismissed (``dismissals``, whenever it was recorded).
* Users are scored in chunks sized so one chunk's score matrix stays under ``score_budget`` floats:
  memory is flat in the number of users.
* Each chunk is scored by ``pipeline.batch.scoring`` (retrieve, then re-rank; then the diversity re-rank,
  ``pipeline.models.rerank``, when its settings are not zero).
* The batch's list-set figures (``pipeline.batch.list_figures``: coverage, intra-list diversity, novelty,
  long tail, Gini, and the re-rank settings) are computed from the rows written and kept in
  ``recommendation_batches.list_metrics``, in the same transaction.
* Each chunk's lists are explained by ``pipeline.batch.explain``: every model row stores the rated movies
  that drove it (``because``), whether they were all rated highly and a key to what it shares with them
  (each distinct shared set once per batch in ``batch_shared_attributes``); the views show ``shared`` and
  the sentence (``reason``) assembled from these parts. Fallback rows store a sentence of their own.
  ``explain=False`` writes none (the columns' empty defaults), for ``bench/batch`` to measure the cost.
* Writing and publishing are one transaction: a new ``recommendation_batches`` row (``pending``), its rows by
  binary COPY, the previous batch marked ``superseded``, the new one ``published``, batches beyond the last
  ``keep`` pruned (never the published one). Before publishing, every user of the cut-off must be listed
  exactly once (``check_complete``), and the publication check (``pipeline.batch.release``) compares the new
  lists' coverage and long-tail share with the published batch's: a refused batch is kept as ``refused`` and
  the published one stays. A process killed half-way leaves the previous batch published and complete
  (PostgreSQL discards the open transaction); the next run simply starts again.
* One flow, in three pieces: ``open_pending`` (the batch), ``write_lists`` (the lists of the users of a
  ``CutoffRatings``: all of them, or one range of user ids) and ``finish_batch`` (the completeness check,
  the figures, the publication check, ``publish``). ``publish_batch`` calls them in one transaction;
  ``pipeline.batch.shards`` calls the same three as separate transactions, the middle one once per shard
  (the weekly DAG's ``prepare_batch`` -> ``score_shard`` x N -> ``publish``), so both make the same lists."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypedDict

import numpy as np
import scipy.sparse as sp
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from database.bulk import IntArrays, TextColumn, copy_columns, read_frame
from database.locks import PUBLISH, duration, lock_timed_out, pipeline_lock, set_lock_timeout
from pipeline.batch.explain import (
    FALLBACK_REASON,
    MAX_ACTORS,
    NO_HISTORY_REASON,
    Explainer,
    Explanations,
    MovieAttributes,
    RatedBy,
)
from pipeline.batch.fallback import most_rated
from pipeline.batch.list_figures import batch_list_metrics, store_list_metrics
from pipeline.batch.release import ListSetRefused, ReleaseCheck, check_release
from pipeline.batch.scoring import chunk_size, score_chunk, two_stage
from pipeline.core.defaults import (
    DEFAULT_CANDIDATES,
    DEFAULT_KEEP,
    DEFAULT_TOP_N,
    LOCK_TIMEOUT_S,
    MAX_TOP_N,
    MIN_HISTORY,
    REGISTERED_MODEL,
)
from pipeline.core.device import keep_freed_memory
from pipeline.core.errors import DataQualityError, MovierecError
from pipeline.core.jsonsafe import json_safe
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.rerank import Diversifier, Rerank, RerankDict

log = logging.getLogger(__name__)


class Publication(TypedDict):
    """What one publication did (plain JSON: the weekly ``publish`` step returns it as it is)."""

    batch_id: int
    model_version_id: int
    registered_version: int | None
    users: int
    fallback_users: int
    rows: int
    top_n: int
    data_cutoff: str | None
    timings: dict[str, float]
    candidates: int | None
    list_metrics: dict[str, Any]  # what recommendation_batches.list_metrics holds


class BatchIncomplete(DataQualityError):
    """A batch's rows do not list every user of its cut-off exactly once (a shard never ran, or rows of users
    outside the cut-off): it is not published, and retrying the publication alone cannot fix it."""


class ListSettingsDict(TypedDict):
    """``ListSettings`` as plain JSON (an XCom)."""

    top_n: int
    candidates: int
    min_history: int
    explain: bool
    rerank: RerankDict
    chunk_users: int | None


@dataclass(frozen=True)
class ListSettings:
    """How every list of one batch is made, whichever process writes it."""

    top_n: int = DEFAULT_TOP_N
    candidates: int = DEFAULT_CANDIDATES  # movies per user the rating head re-ranks (0: all)
    min_history: int = MIN_HISTORY
    explain: bool = True
    rerank: Rerank = field(default_factory=Rerank)
    chunk_users: int | None = None  # users scored at once (None: from the score budget)

    def to_dict(self) -> ListSettingsDict:
        return ListSettingsDict(
            top_n=self.top_n,
            candidates=self.candidates,
            min_history=self.min_history,
            explain=self.explain,
            rerank=self.rerank.to_dict(),
            chunk_users=self.chunk_users,
        )

    @classmethod
    def from_dict(cls, d: ListSettingsDict) -> Self:
        return cls(
            int(d["top_n"]),
            int(d["candidates"]),
            int(d["min_history"]),
            bool(d["explain"]),
            Rerank(float(d["rerank"]["strength"]), float(d["rerank"]["popularity_penalty"])),
            None if d["chunk_users"] is None else int(d["chunk_users"]),
        )


class BatchPlan(TypedDict):
    """``OpenBatch`` as plain JSON (an XCom)."""

    batch_id: int
    model_version_id: int
    registered_version: int
    data_cutoff: str | None
    generated_at: str
    lists: ListSettingsDict


@dataclass(frozen=True)
class OpenBatch:
    """A pending batch: its id, the champion that scores it, its cut-off, and how its lists are made."""

    batch_id: int
    model_version_id: int
    registered_version: int
    as_of: datetime | None
    generated_at: datetime  # one time stamp for every row of the batch, whichever process writes it
    lists: ListSettings

    def writer(self, conn: Connection, shard: int = 0) -> ListWriter:
        return ListWriter(
            conn,
            {
                "batch_id": np.int32(self.batch_id),
                "model_version_id": np.int32(self.model_version_id),
                "generated_at": self.generated_at,
                "shard": np.int16(shard),
            },
        )

    def to_dict(self) -> BatchPlan:
        return BatchPlan(
            batch_id=self.batch_id,
            model_version_id=self.model_version_id,
            registered_version=self.registered_version,
            data_cutoff=self.as_of.isoformat() if self.as_of else None,
            generated_at=self.generated_at.isoformat(),
            lists=self.lists.to_dict(),
        )

    @classmethod
    def from_dict(cls, d: BatchPlan) -> Self:
        return cls(
            int(d["batch_id"]),
            int(d["model_version_id"]),
            int(d["registered_version"]),
            datetime.fromisoformat(d["data_cutoff"]) if d["data_cutoff"] else None,
            datetime.fromisoformat(d["generated_at"]),
            ListSettings.from_dict(d["lists"]),
        )


@dataclass(frozen=True)
class Written:
    """What one ``write_lists`` call wrote: users listed, of them on the fallback list, rows, seconds."""

    users: int
    fallback_users: int
    rows: int
    timings: dict[str, float]


@dataclass(frozen=True)
class Listed:
    """What a complete batch lists (``check_complete``)."""

    users: int
    fallback_users: int
    rows: int


@dataclass(frozen=True)
class Finished:
    """A batch made ``published`` or ``refused`` in the caller's transaction; ``announce`` it after commit."""

    publication: Publication
    release: ReleaseCheck


@dataclass
class CutoffRatings:
    """What the cut-off allows, read once: every (user, movie) rated up to it, and each user's count; and
    every (user, movie) dismissed, masked like a rating but counting as none."""

    pair_users: np.ndarray  # database ids
    pair_movies: np.ndarray
    user_ids: np.ndarray  # distinct users, sorted
    counts: np.ndarray  # ratings per user in ``user_ids``
    dismissed_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    dismissed_movies: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pair_ratings: np.ndarray | None = None  # aligned with the pairs: what explanations weigh them by

    def masked(self) -> tuple[np.ndarray, np.ndarray]:
        """The (user, movie) pairs no list may hold: rated up to the cut-off, or dismissed."""
        return (
            np.concatenate([self.pair_users, self.dismissed_users]),
            np.concatenate([self.pair_movies, self.dismissed_movies]),
        )


def check_batch_args(top_n: int, keep: int, candidates: int) -> None:
    if not 1 <= top_n <= MAX_TOP_N:
        raise MovierecError(f"top-N must be between 1 and {MAX_TOP_N}, got {top_n}")
    if keep < 1:
        raise MovierecError(f"keep must be at least 1, got {keep}")
    if candidates < 0:
        raise MovierecError(f"candidates must be at least 1 (or 0: score every movie), got {candidates}")


def _where(*clauses: str | None) -> str:
    kept = [c for c in clauses if c]
    return " WHERE " + " AND ".join(kept) if kept else ""


_IN_RANGE = "user_id BETWEEN %(first)s AND %(last)s"


def read_cutoff(
    conn: Connection, as_of: datetime | None, users: tuple[int, int] | None = None
) -> CutoffRatings:
    """Every rating's (user, movie) up to ``as_of``; raises when there is none. ``users``: only the users
    whose ids lie in this inclusive range (a shard's; it may hold none)."""
    in_range = _IN_RANGE if users else None
    first, last = users or (0, 0)
    frame = read_frame(
        conn,
        "SELECT user_id, movie_id, rating FROM ratings"
        + _where("rated_at <= %(as_of)s" if as_of else None, in_range),
        {"as_of": as_of, "first": first, "last": last},
    )
    pair_users, pair_movies = frame["user_id"].to_numpy(np.int64), frame["movie_id"].to_numpy(np.int64)
    if len(pair_users) == 0 and users is None:
        raise MovierecError("no ratings up to the cut-off: nothing to recommend from")
    user_ids, counts = np.unique(pair_users, return_counts=True)
    # Every dismissal, whatever the cut-off: "not interested" is the user's wish now, not a past rating.
    dismissed = read_frame(
        conn, "SELECT user_id, movie_id FROM dismissals" + _where(in_range), {"first": first, "last": last}
    )
    return CutoffRatings(
        pair_users,
        pair_movies,
        user_ids,
        counts,
        dismissed["user_id"].to_numpy(np.int64),
        dismissed["movie_id"].to_numpy(np.int64),
        frame["rating"].to_numpy(np.float32),
    )


def cutoff_users(conn: Connection, as_of: datetime | None) -> np.ndarray:
    """The distinct users with a rating up to ``as_of``, sorted (``read_cutoff``'s ``user_ids``, without
    reading every rating); raises when there is none."""
    frame = read_frame(
        conn,
        "SELECT DISTINCT user_id FROM ratings"
        + _where("rated_at <= %(as_of)s" if as_of else None)
        + " ORDER BY user_id",
        {"as_of": as_of},
    )
    users = frame["user_id"].to_numpy(np.int64)
    if len(users) == 0:
        raise MovierecError("no ratings up to the cut-off: nothing to recommend from")
    return users


def movie_attributes(conn: Connection, item_ids: np.ndarray) -> MovieAttributes:
    """Titles, genres, directors and leading actors of the model's movies, for explanations."""
    movies = conn.execute(text("SELECT movie_id, title, genres FROM movies")).tuples().all()
    people = read_frame(
        conn,
        "SELECT mp.movie_id, mp.role, p.name FROM movie_persons mp JOIN persons p USING (person_id) "
        "WHERE p.name IS NOT NULL AND (mp.role = 'director' OR (mp.role = 'actor' AND mp.ordering <= %(n)s))",
        {"n": MAX_ACTORS},
    )
    return MovieAttributes.build(item_ids, movies, people)


def champion_version_id(conn: Connection, registered_version: int) -> int:
    """The ``model_versions`` row of the champion the lists are scored with."""
    row = conn.execute(
        text(
            "SELECT model_version_id FROM model_versions "
            "WHERE registered_model = :m AND registered_version = :v "
            "ORDER BY (status = 'champion') DESC, model_version_id DESC LIMIT 1"
        ),
        {"m": REGISTERED_MODEL, "v": registered_version},
    ).first()
    if row is None:
        raise MovierecError(
            f"no model_versions row for champion v{registered_version}: was it promoted "
            "against this database?"
        )
    return int(row[0])


def open_batch(conn: Connection, model_version_id: int, as_of: datetime | None, top_n: int) -> int:
    """A new ``pending`` ``recommendation_batches`` row (no view shows it, no rollback returns to it); its
    id."""
    return int(
        conn.execute(
            text(
                "INSERT INTO recommendation_batches "
                "(model_version_id, data_cutoff, top_n, users, fallback_users, "
                "rows, status) VALUES (:mv, :cutoff, :n, 0, 0, 0, 'pending') RETURNING batch_id"
            ),
            {"mv": model_version_id, "cutoff": as_of, "n": top_n},
        ).scalar_one()
    )


def open_pending(
    conn: Connection, registered_version: int, as_of: datetime | None, lists: ListSettings
) -> OpenBatch:
    """The first piece of a publication: a pending batch for the champion ``registered_version``."""
    model_version_id = champion_version_id(conn, registered_version)
    batch_id = open_batch(conn, model_version_id, as_of, lists.top_n)
    return OpenBatch(batch_id, model_version_id, registered_version, as_of, datetime.now(UTC), lists)


def lock_pending(conn: Connection, batch_id: int, *, share: bool, timeout_s: float | None = None) -> None:
    """Lock batch ``batch_id``'s row until the transaction ends and check that it is still ``pending``.
    ``share``: FOR SHARE (shards write side by side; a prune of the batch waits for them), else FOR UPDATE
    (the publication: no shard writes meanwhile). ``timeout_s``: how long to wait for the row lock."""
    if timeout_s is not None:
        set_lock_timeout(conn, timeout_s)
    try:
        status = conn.execute(
            text(
                "SELECT status FROM recommendation_batches WHERE batch_id = :b "
                + ("FOR SHARE" if share else "FOR UPDATE")
            ),
            {"b": batch_id},
        ).scalar_one_or_none()
    except DBAPIError as exc:
        if timeout_s is not None and lock_timed_out(exc):
            raise MovierecError(
                f"batch {batch_id} is locked by another session (a publication or a prune): gave up after "
                f"{duration(timeout_s)} (MOVIEREC_LOCK_TIMEOUT_S)"
            ) from None
        raise
    if status != "pending":
        now = "no longer kept (pruned)" if status is None else f"{status.replace('_', ' ')}"
        raise MovierecError(
            f"batch {batch_id} is {now}, not pending: its lists can no longer be written or published "
            "(prepare a new batch)"
        )


def write_model_lists(
    writer: ListWriter,
    model: PublishedBlend,
    cutoff: CutoffRatings,
    *,
    top_n: int,
    min_history: int,
    candidates: int,
    chunk_users: int | None,
    progress: bool,
    after_chunk: Callable[[int], None] | None = None,
    diversifier: Diversifier | None = None,
    explain: bool = True,
) -> tuple[np.ndarray, float, float]:
    """Score, explain and write the lists of every user the model knows with at least ``min_history``
    ratings, chunk by chunk; returns the users it could not rank (database ids) and the seconds spent
    scoring and explaining."""
    net = model.network
    # Exclusions in the model's index space; movies outside the model's catalogue cannot be listed anyway.
    masked_users, masked_movies = cutoff.masked()
    u_idx, i_idx = net.user_map.index(masked_users), net.item_map.index(masked_movies)
    known = (u_idx >= 0) & (i_idx >= 0)
    exclude = sp.csr_matrix(
        (np.ones(int(known.sum()), np.float32), (u_idx[known], i_idx[known])),
        shape=(model.n_users, model.n_items),
    )
    catalogue = _catalogue_mask(writer.conn, net.item_map.ids)
    model_users = net.user_map.index(cutoff.user_ids)
    scored = (model_users >= 0) & (cutoff.counts >= min_history)
    chunk = chunk_users or chunk_size(model.n_items)
    todo = np.flatnonzero(scored)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="scoring users", unit="user", disable=not progress, leave=False)
    score_seconds = explain_seconds = 0.0
    if explain:
        s0 = time.perf_counter()
        explainer = Explainer(model, movie_attributes(writer.conn, net.item_map.ids))
        rated_by = RatedBy(cutoff.pair_users, net.item_map.index(cutoff.pair_movies), cutoff.pair_ratings)
        explain_seconds += time.perf_counter() - s0
    # Every chunk allocates the same users x catalogue score matrices: kept, not faulted in afresh each time.
    with keep_freed_memory():
        for k, lo in enumerate(range(0, len(todo), chunk)):
            sel = todo[lo : lo + chunk]
            users = model_users[sel]
            s0 = time.perf_counter()
            idx, values = score_chunk(model, users, exclude[users], top_n, catalogue, candidates, diversifier)
            score_seconds += time.perf_counter() - s0
            explained = None
            if explain:
                s0 = time.perf_counter()
                explained = explainer.explain_block(rated_by.rows(cutoff.user_ids[sel]), idx)
                explain_seconds += time.perf_counter() - s0
            writer.write(cutoff.user_ids[sel], idx, values, net.item_map.ids, "model", explained)
            bar.update(len(sel))
            if after_chunk is not None:
                after_chunk(k)
    bar.close()
    return cutoff.user_ids[~scored], score_seconds, explain_seconds


def publish(
    conn: Connection,
    batch_id: int,
    *,
    users: int,
    fallback_users: int,
    rows: int,
    timings: dict[str, float],
    keep: int,
    status: str = "published",
) -> None:
    """Make ``batch_id`` the published batch, retire the previous one, prune beyond the last ``keep``: in the
    caller's transaction, so readers see the old batch or the new one, never half of either.
    ``status="refused"`` (the publication check said no) keeps the batch without publishing it."""
    if status == "published":
        conn.execute(
            text("UPDATE recommendation_batches SET status = 'superseded' WHERE status = 'published'")
        )
    conn.execute(
        text(
            "UPDATE recommendation_batches SET status = :status, "
            "published_at = CASE WHEN :status = 'published' THEN now() END, users = :users, "
            "fallback_users = :fallback, rows = :rows, timings = CAST(:timings AS jsonb) WHERE batch_id = :b"
        ),
        {
            "status": status,
            "users": users,
            "fallback": fallback_users,
            "rows": rows,
            "b": batch_id,
            "timings": json.dumps(timings),
        },
    )
    # the published batch is never pruned, however many refused ones came after it
    pruned = [
        r[0]
        for r in conn.execute(
            text(
                "DELETE FROM recommendation_batches WHERE status <> 'published' AND batch_id NOT IN "
                "(SELECT batch_id FROM recommendation_batches ORDER BY batch_id DESC LIMIT :keep) "
                "RETURNING batch_id"
            ),
            {"keep": keep},
        )
    ]
    if pruned:
        conn.execute(text("DELETE FROM batch_recommendations WHERE batch_id = ANY(:ids)"), {"ids": pruned})


def write_lists(
    conn: Connection,
    batch: OpenBatch,
    model: PublishedBlend,
    cutoff: CutoffRatings,
    *,
    progress: bool = False,
    after_chunk: Callable[[int], None] | None = None,
    shard: int = 0,
) -> Written:
    """The second piece of a publication: the lists of every user of ``cutoff`` (all users of the cut-off,
    or shard ``shard``'s range of them) into ``batch``, the model's then the fallback lists, by the one COPY
    writer. A user's list depends on that user's ratings, dismissals and the model only, so the same user
    gets the same list whichever range it is written with."""
    lists = batch.lists
    t = time.perf_counter()
    rerank = lists.rerank
    diversifier = Diversifier.build(rerank, model.network.movies, model.rated) if rerank.active else None
    writer = batch.writer(conn, shard)
    fallback_users, score_seconds, explain_seconds = write_model_lists(
        writer,
        model,
        cutoff,
        top_n=lists.top_n,
        min_history=lists.min_history,
        candidates=lists.candidates,
        chunk_users=lists.chunk_users,
        progress=progress,
        after_chunk=after_chunk,
        explain=lists.explain,
        diversifier=diversifier,
    )
    if len(fallback_users):
        write_fallback_lists(writer, fallback_users, cutoff, lists.top_n, batch.as_of, lists.explain)
    timings = {
        "score": round(score_seconds, 3),
        "explain": round(explain_seconds, 3),
        "write": round(time.perf_counter() - t - score_seconds - explain_seconds, 3),
        "copy": round(writer.copy_seconds, 3),
    }
    return Written(len(cutoff.user_ids), len(fallback_users), writer.rows, timings)


def check_complete(conn: Connection, batch_id: int, user_ids: np.ndarray) -> Listed:
    """Every user of ``user_ids`` (the cut-off's) listed exactly once in batch ``batch_id`` and nobody else:
    each with one list ranked 1..n (the key (batch, user, rank) already forbids a repeated rank). Raises
    ``BatchIncomplete`` with one line otherwise."""
    frame = read_frame(
        conn,
        "SELECT user_id, count(*) AS n, min(rank) AS first, max(rank) AS last, "
        "count(*) FILTER (WHERE source = 'fallback_popularity') AS fallback "
        "FROM batch_recommendations WHERE batch_id = %(b)s GROUP BY user_id",
        {"b": batch_id},
    )
    listed = frame["user_id"].to_numpy(np.int64)
    n, fallback = frame["n"].to_numpy(np.int64), frame["fallback"].to_numpy(np.int64)
    problems = []
    if len(missing := np.setdiff1d(user_ids, listed)):
        problems.append(
            f"{len(missing):,} of the cut-off's {len(user_ids):,} users have no list (user {missing[0]})"
        )
    if len(outside := np.setdiff1d(listed, user_ids)):
        problems.append(f"{len(outside):,} listed users have no rating up to the cut-off (user {outside[0]})")
    gaps = (frame["first"].to_numpy(np.int64) != 1) | (frame["last"].to_numpy(np.int64) != n)
    mixed = (fallback > 0) & (fallback < n)
    if (bad := gaps | mixed).any():
        problems.append(f"{int(bad.sum()):,} lists are not one list ranked 1..n (user {listed[bad][0]})")
    if problems:
        raise BatchIncomplete(
            f"batch {batch_id} not published: {'; '.join(problems)}; every user of the cut-off must be "
            "listed exactly once (did a shard not finish?)"
        )
    return Listed(len(listed), int((fallback > 0).sum()), int(n.sum()))


def finish_batch(
    conn: Connection,
    batch: OpenBatch,
    model: PublishedBlend,
    cutoff: CutoffRatings,
    *,
    keep: int,
    force: bool,
    timings: dict[str, float],
    started: float,
    earlier_s: float = 0.0,
) -> Finished:
    """The last piece of a publication, in the caller's transaction (under the publish lock): the batch
    still pending, every user of ``cutoff`` listed exactly once (``check_complete``), its list figures, the
    publication check, then ``publish`` (or ``refused``). ``timings``: the seconds of the pieces before;
    ``total`` counts from ``started`` (``time.perf_counter``) plus ``earlier_s`` spent in other processes."""
    lock_pending(conn, batch.batch_id, share=False)
    t = time.perf_counter()
    listed = check_complete(conn, batch.batch_id, cutoff.user_ids)
    lists = batch.lists
    list_metrics = batch_list_metrics(conn, batch.batch_id, model, cutoff.pair_movies, lists.rerank)
    release = check_release(conn, batch.batch_id, list_metrics, force=force)
    list_metrics["release_check"] = release.record()
    store_list_metrics(conn, batch.batch_id, list_metrics)
    timings["list_metrics"] = round(time.perf_counter() - t, 3)
    timings["total"] = round(time.perf_counter() - started + earlier_s, 3)
    publish(
        conn,
        batch.batch_id,
        users=listed.users,
        fallback_users=listed.fallback_users,
        rows=listed.rows,
        timings=timings,
        keep=keep,
        status="refused" if release.refused else "published",
    )
    reranked = max(lists.candidates, lists.top_n) if two_stage(model, lists.candidates, lists.top_n) else None
    publication = Publication(
        batch_id=batch.batch_id,
        model_version_id=batch.model_version_id,
        registered_version=batch.registered_version,
        users=listed.users,
        fallback_users=listed.fallback_users,
        rows=listed.rows,
        top_n=lists.top_n,
        data_cutoff=batch.as_of.isoformat() if batch.as_of else None,
        timings=timings,
        candidates=reranked,
        list_metrics=json_safe(list_metrics),
    )
    return Finished(publication, release)


def announce(finished: Finished) -> Publication:
    """After the publication's commit: a refused batch (kept as ``refused``, the published one stays) raises
    ``ListSetRefused``; otherwise the publication, logged."""
    release, publication = finished.release, finished.publication
    if release.refused:
        reason = release.reason()
        log.warning(reason)
        raise ListSetRefused(reason)
    if release.failed:
        log.warning(release.reason())
    log.info(
        "published batch %s: %s users (%s fallback), %s rows",
        publication["batch_id"],
        publication["users"],
        publication["fallback_users"],
        publication["rows"],
    )
    return publication


def publish_batch(
    engine: Engine,
    model: PublishedBlend,
    registered_version: int,
    *,
    as_of: datetime | None = None,
    top_n: int = DEFAULT_TOP_N,
    keep: int = DEFAULT_KEEP,
    min_history: int = MIN_HISTORY,
    chunk_users: int | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    explain: bool = True,
    rerank: Rerank | None = None,
    force: bool = False,
    _after_chunk: Callable[[int], None] | None = None,
) -> Publication:
    """Score every user with ``model`` (the champion, ``registered_version``), write and publish the lists:
    read what the cut-off allows, open a batch, write the model's lists and the fallback lists, publish; all
    in one transaction under the publication lock (the ``publish`` row of ``pipeline_locks``).

    ``lock_timeout_s``: how long to wait for that lock, and for each table or row lock after it, before
    failing with a one-line error naming it (``MOVIEREC_LOCK_TIMEOUT_S``).
    ``candidates``: how many movies per user the rating head re-ranks (0: all; see ``score_chunk``).
    ``explain``: store each row's explanation (``pipeline.batch.explain``); False leaves them empty.
    ``rerank``: the diversity re-rank's settings (None: the defaults), recorded in ``list_metrics``.
    ``force``: publish even when the publication check (``pipeline.batch.release``) refuses the lists; a
    refusal otherwise keeps the batch as ``refused`` and raises ``ListSetRefused`` once that is committed.
    ``_after_chunk(k)`` is called after the k-th chunk is written (tests use it to die mid-write).
    """
    check_batch_args(top_n, keep, candidates)
    lists = ListSettings(top_n, candidates, min_history, explain, rerank or Rerank(), chunk_users)
    started = time.perf_counter()
    with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, lock_timeout_s):
        batch = open_pending(conn, registered_version, as_of, lists)
        cutoff = read_cutoff(conn, as_of)
        timings = {"read": round(time.perf_counter() - started, 3)}
        written = write_lists(conn, batch, model, cutoff, progress=progress, after_chunk=_after_chunk)
        finished = finish_batch(
            conn,
            batch,
            model,
            cutoff,
            keep=keep,
            force=force,
            timings=timings | written.timings,
            started=started,
        )
    return announce(finished)


def _catalogue_mask(conn: Connection, item_ids: np.ndarray) -> np.ndarray | None:
    """Movies of the model that are still in ``movies`` (None: all of them)."""
    present = np.array(conn.execute(text("SELECT movie_id FROM movies")).scalars().all(), np.int64)
    mask = np.isin(item_ids, present)
    return None if mask.all() else mask


class ListWriter:
    """Rank-ordered lists into ``batch_recommendations`` by binary COPY, counting rows and time in COPY: the
    one list writer every publishing path goes through."""

    def __init__(self, conn: Connection, fixed: dict[str, Any]) -> None:
        self.conn, self.fixed = conn, fixed
        self.rows, self.copy_seconds = 0, 0.0

    def write(
        self,
        user_ids: np.ndarray,
        idx: np.ndarray,
        values: np.ndarray,
        item_ids: np.ndarray,
        source: str,
        explained: Explanations | str | None = None,
    ) -> None:
        """Row r of ``idx``/``values`` is ``user_ids[r]``'s list, best first; index -1 ends a short list.
        ``explained``: each entry's explanation (model movie indices, as ``idx``), or one sentence for every
        row (fallback lists: nothing in ``because`` or ``shared``); None leaves the columns' defaults."""
        keep = idx >= 0
        ranks = np.cumsum(keep, axis=1).astype(np.int16)
        columns = {
            "user_id": np.repeat(user_ids.astype(np.int32), keep.sum(axis=1)),
            "rank": ranks[keep],
            "movie_id": item_ids[idx[keep]].astype(np.int32),
            "score": values[keep].astype(np.float32),
            "source": source,
            **self.fixed,
        }
        parts: dict[int, tuple[str, str]] = {}
        if isinstance(explained, str):
            columns["reason"] = explained
        elif explained is not None:
            because = np.where(explained.because >= 0, item_ids[np.maximum(explained.because, 0)], 0)
            columns["because"] = IntArrays(because, explained.counts)
            columns["rated_highly"] = explained.highly
            columns["shared_key"] = explained.shared_keys
            nothing_named = explained.counts == 0
            if nothing_named.any():  # these rows carry their own sentence (no parts to assemble one from)
                columns["reason"] = TextColumn(np.where(nothing_named, NO_HISTORY_REASON, "").tolist())
            parts = explained.parts
        t = time.perf_counter()
        if parts:
            self._write_parts(parts)
        self.rows += copy_columns(self.conn, "batch_recommendations", columns)
        self.copy_seconds += time.perf_counter() - t

    def _write_parts(self, parts: dict[int, tuple[str, str]]) -> None:
        """The shared attributes first named in this chunk, under this writer's batch and shard."""
        copy_columns(
            self.conn,
            "batch_shared_attributes",
            {
                "batch_id": self.fixed["batch_id"],
                "shard": self.fixed["shard"],
                "shared_key": np.fromiter(parts, np.int64, len(parts)),
                "shared": TextColumn([j for j, _ in parts.values()], jsonb=True),
                "clause": TextColumn([c for _, c in parts.values()]),
            },
        )


def write_fallback_lists(
    writer: ListWriter,
    users: np.ndarray,
    cutoff: CutoffRatings,
    n: int,
    as_of: datetime | None,
    explain: bool = True,
) -> None:
    """``most_rated`` up to the cut-off, minus what each user rated or dismissed."""
    movies, share = most_rated(writer.conn, as_of)
    masked_users, masked_movies = cutoff.masked()
    in_fallback = np.isin(masked_users, users)
    rated_by: dict[int, set[int]] = {}
    for u, m in zip(masked_users[in_fallback], masked_movies[in_fallback], strict=True):
        rated_by.setdefault(int(u), set()).add(int(m))
    for lo in range(0, len(users), 4096):
        block = users[lo : lo + 4096]
        idx = np.full((len(block), n), -1, np.int64)
        for r, u in enumerate(block):
            seen = rated_by.get(int(u), set())
            picks = [k for k, m in enumerate(movies[: n + len(seen)]) if int(m) not in seen][:n]
            idx[r, : len(picks)] = picks
        values = np.where(idx >= 0, share[np.maximum(idx, 0)], np.float32(0))
        reason = FALLBACK_REASON if explain else None
        writer.write(block, idx, values, movies, "fallback_popularity", reason)


def sample_lists(conn: Connection, users: int = 3, k: int = 10) -> dict[int, list[dict[str, Any]]]:
    """The top ``k`` of the first ``users`` users' published lists (``current_recommendations``), for a
    look."""
    picked = [
        r[0]
        for r in conn.execute(
            text(
                "SELECT user_id FROM (SELECT DISTINCT user_id FROM current_recommendations) u "
                "ORDER BY user_id LIMIT :n"
            ),
            {"n": users},
        )
    ]
    return {
        user: [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT rank, title, year, genres, score, source FROM current_recommendations "
                    "WHERE user_id = :u AND rank <= :k ORDER BY rank"
                ),
                {"u": user, "k": k},
            )
        ]
        for user in picked
    }
