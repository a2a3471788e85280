"""The published lists as the API serves them, with the answers kept in memory per published batch.

A list changes once a week, when the batch publishes; reading it from ``current_recommendations`` for every
request would make the database the cost of the busiest route. So each answer (its JSON bytes) is kept
under (batch id, user, limit) in a size-bounded LRU, and a watcher asks the database every ``watch_s``
seconds which batch is published:

* a new batch makes every kept answer unreachable (entries carry their batch id) and they are dropped; an
  answer is never a mix of two batches, and is at most ``watch_s`` seconds late to see a new publication;
* when the last query (the watcher's or any route's) could not reach the database, nothing is served from
  memory: requests go to the database and get its 503, so "database down" looks the same on every route;
  the first query that gets an answer again lets memory serve again.

A dismissal (``forget``) drops that user's kept answers, and an answer read while one was being recorded
is not kept, so no kept answer holds a movie the user has dismissed. Answers that leave movies out on
request (``exclude``) are never kept.

``max_bytes=0`` turns the memory off: every request reads the view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from typing import Any

from model_server.db import Database, DatabaseUnavailable
from model_server.errors import Unavailable
from model_server.schemas import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, UserRecommendations
from pipeline.batch.explain import FALLBACK_REASON

# The fallback list's entries, as the batch explains its fallback rows: no rated movie behind them.
FALLBACK_EXPLANATION = {"because": [], "shared": {}, "reason": FALLBACK_REASON}

log = logging.getLogger(__name__)

WATCH_S = 1.0


class PublishedLists:
    def __init__(self, db: Database, max_bytes: int, watch_s: float = WATCH_S) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.watch_s = watch_s
        self._answers: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._batch_id: int | None = None  # what the watcher last saw published
        self._seen_at = 0.0  # when (monotonic); 0: not trusted
        self._forgotten = 0  # dismissals recorded: an answer read across one is not kept

    # --- the watcher ----------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Follow the published batch until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:  # never let the watcher die: memory would stop serving for good
                log.exception("published-batch check failed")
                self._seen_at = 0.0
            await asyncio.sleep(self.watch_s)

    async def check(self) -> None:
        try:
            batch = await self.db.published_batch()
        except DatabaseUnavailable:
            self._seen_at = 0.0
            self._clear()
            return
        batch_id = batch.batch_id if batch else None
        if batch_id != self._batch_id:
            self._clear()
            self._batch_id = batch_id
        self._seen_at = time.monotonic()

    def _trusted(self) -> bool:
        """Serve from memory only while the last query, the watcher's or any route's, reached the database."""
        return (
            self.max_bytes > 0
            and self._batch_id is not None
            and self.db.reachable
            and time.monotonic() - self._seen_at < 3 * self.watch_s
        )

    def _clear(self) -> None:
        self._answers.clear()
        self._bytes = 0

    def _keep(self, key: tuple[int, int, int], body: bytes) -> None:
        if key[0] != self._batch_id or len(body) > self.max_bytes // 4 or key in self._answers:
            return  # an answer from a batch the watcher has moved past is not kept
        self._answers[key] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, dropped = self._answers.popitem(last=False)
            self._bytes -= len(dropped)

    # --- answers ---------------------------------------------------------------------------------------

    def kept(self, user_id: int, limit: int) -> bytes | None:
        """The answer kept in memory for the published batch, if there is one and memory may serve."""
        if not self._trusted():
            return None
        key = (self._batch_id, user_id, limit)
        body = self._answers.get(key)  # type: ignore[arg-type]
        if body is not None:
            self._answers.move_to_end(key)  # type: ignore[arg-type]
        return body

    def forget(self, user_id: int) -> None:
        """Drop ``user_id``'s kept answers: they may hold a movie the user has just dismissed."""
        self._forgotten += 1
        for key in [k for k in self._answers if k[1] == user_id]:
            self._bytes -= len(self._answers.pop(key))

    async def answer(self, user_id: int, limit: int, exclude: frozenset[int] = frozenset()) -> bytes:
        """The JSON body of ``GET /users/{user_id}/recommendations?limit=&exclude=``."""
        body = None if exclude else self.kept(user_id, limit)
        if body is not None:
            return body
        forgotten = self._forgotten
        batch_id, answer = await self._read(user_id, limit, exclude)
        body = UserRecommendations.model_validate(answer).model_dump_json().encode()
        if not exclude and forgotten == self._forgotten and self._trusted():
            self._keep((batch_id, user_id, limit), body)
        return body

    async def _read(self, user_id: int, limit: int, exclude: frozenset[int]) -> tuple[int, dict[str, Any]]:
        """The list, ranked 1.. after leaving out ``exclude`` and the user's dismissals."""
        rows = await self.db.user_list(user_id, limit, sorted(exclude))
        if rows:
            head = rows[0]
            return head["batch_id"], {
                "user_id": user_id,
                "source": head["source"],
                "known_user": True,
                "model_version": head["model_version"],
                "batch_id": head["batch_id"],
                "data_cutoff": head["data_cutoff"],
                "generated_at": head["generated_at"],
                "items": [
                    {
                        "rank": k + 1,
                        "movie_id": r["movie_id"],
                        "title": r["title"],
                        "year": r["year"],
                        "genres": r["genres"] or [],
                        "score": r["score"],
                        "explanation": {
                            "because": [
                                {"movie_id": m, "title": t}
                                for m, t in zip(r["because"] or [], r["because_titles"] or [], strict=False)
                            ],
                            "shared": json.loads(r["shared"] or "{}"),
                            "reason": r["reason"] or "",
                        },
                    }
                    for k, r in enumerate(rows)
                ],
            }
        batch = await self.db.published_batch()
        if batch is None:
            raise Unavailable("no recommendations published yet: run the weekly pipeline (movierec run)")
        fallback = await self.db.fallback(batch)
        left_out = exclude | await self.db.dismissed(user_id)
        listed = [row for row in fallback.rows if row["movie_id"] not in left_out][:limit]
        return batch.batch_id, {
            "user_id": user_id,
            "source": "fallback_popularity",
            "known_user": False,
            "model_version": batch.model_version,
            "batch_id": batch.batch_id,
            "data_cutoff": batch.data_cutoff,
            "generated_at": batch.generated_at,
            "items": [
                {"rank": k + 1, **row, "explanation": FALLBACK_EXPLANATION} for k, row in enumerate(listed)
            ],
        }


class KeptListMiddleware:
    """Answers ``GET /users/{id}/recommendations[?limit=N]`` from memory ahead of the framework's parameter
    handling, which costs more than the rest of such a request: only a request in canonical form (digits
    only, no other query parameter) whose ids are within the route's bounds and whose answer is kept.
    Everything else (a first read, invalid input, the database down) goes through the route itself, so
    the answers, errors and metrics are the route's own."""

    _PATH = re.compile(r"/users/([1-9][0-9]{0,9})/recommendations")
    _QUERY = re.compile(rb"(?:limit=([1-9][0-9]{0,3}))?")

    def __init__(self, app: Any, lists: PublishedLists, route: Any) -> None:
        self.app, self.lists, self.route = app, lists, route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path, query = self._PATH.fullmatch(scope["path"]), self._QUERY.fullmatch(scope["query_string"])
            if path and query:
                user_id = int(path[1])
                limit = int(query[1]) if query[1] else DEFAULT_LIMIT
                body = self.lists.kept(user_id, limit) if user_id <= MAX_ID and limit <= MAX_LIMIT else None
                if body is not None:
                    scope["route"] = self.route  # the metrics label, as if the route had answered
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
