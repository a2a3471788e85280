"""Scoring new movies off the event loop, many requests per MiniLM call.

The sentence encoder is the expensive step of ``POST /predict/new-movie`` and costs nearly as much for a
batch of titles as for one. One worker thread takes every request queued while it was busy and scores them
together (``NewMovieScorer.content`` once, then one small product per request), so under load the cost per
request falls instead of the queue growing; an idle server scores a lone request at once, with no waiting
for company. The event loop never runs the encoder, so list lookups are not held up behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_server.champion import ServedModel
from model_server.errors import Unavailable
from pipeline.models.hybrid.new_movies import NewMovie, PeopleMatch

log = logging.getLogger(__name__)

MAX_BATCH = 64
SCORE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NewMovieScore:
    people: PeopleMatch
    predicted_rating: float | None = None  # with a user
    top_users: list[tuple[int, float]] | None = None  # without: (user_id, predicted rating), best first


@dataclass
class _Job:
    served: ServedModel
    movie: NewMovie
    user_idx: int | None
    limit: int
    future: asyncio.Future[NewMovieScore]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class NewMovieBatcher:
    """One worker thread scoring queued new-movie requests in batches of up to ``max_batch``."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="new-movie-scorer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def score(
        self, served: ServedModel, movie: NewMovie, user_idx: int | None, limit: int
    ) -> NewMovieScore:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[NewMovieScore] = loop.create_future()
        self._queue.put(_Job(served, movie, user_idx, limit, future, loop))
        try:
            return await asyncio.wait_for(future, SCORE_TIMEOUT_S)
        except TimeoutError:
            raise Unavailable(
                f"scoring took longer than {SCORE_TIMEOUT_S:g} s: the server is overloaded"
            ) from None

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            by_model: dict[int, list[_Job]] = {}
            for j in jobs:  # a model swap may split one batch between two models
                by_model.setdefault(id(j.served), []).append(j)
            for group in by_model.values():
                self._score(group)
            if stop:
                return

    def _score(self, jobs: list[_Job]) -> None:
        results: Sequence[NewMovieScore | None]
        errors: Sequence[BaseException | None]
        try:
            results = score_new_movies(jobs[0].served, [(j.movie, j.user_idx, j.limit) for j in jobs])
            errors = [None] * len(jobs)
        except Exception as exc:  # answered per request by the route (4xx for input errors)
            log.debug("new-movie batch failed", exc_info=True)
            results, errors = [None] * len(jobs), [exc] * len(jobs)
        for j, result, error in zip(jobs, results, errors):
            j.loop.call_soon_threadsafe(_settle, j.future, result, error)


def score_new_movies(
    served: ServedModel, requests: list[tuple[NewMovie, int | None, int]]
) -> list[NewMovieScore]:
    """Score ``(movie, model user index or None, limit)`` requests with one encoder call."""
    scorer = served.scorer
    content, matches = scorer.content([movie for movie, _, _ in requests])
    out: list[NewMovieScore | None] = [None] * len(requests)
    with_user = [k for k, (_, user, _) in enumerate(requests) if user is not None]
    if with_user:
        ratings = scorer.predict(
            np.asarray([requests[k][1] for k in with_user], np.int64), content.rows(np.asarray(with_user))
        )
        for k, rating in zip(with_user, ratings):
            out[k] = NewMovieScore(matches[k], predicted_rating=float(rating))
    user_ids = served.model.network.user_map.ids
    for k, (_, user, limit) in enumerate(requests):
        if user is None:
            idx, values = scorer.top_users(content.rows(np.asarray([k])), limit)
            out[k] = NewMovieScore(
                matches[k], top_users=[(int(user_ids[i]), float(v)) for i, v in zip(idx, values)]
            )
    return out  # type: ignore[return-value]
