"""The FastAPI application: ``create_app()`` wires settings, the read-only database, the champion and routes.

Start-up loads the champion from the MLflow registry and warms the sentence encoder, so the first request
pays for neither; neither is required to start: without a database or a champion the server answers 503
on the routes that need them (and says why in ``/health``) until they appear. A background task polls the
registry for a newer champion (``MOVIEREC_MODEL_POLL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from database.engine import feedback_database_url, reader_database_url
from model_server import web
from model_server.champion import Champion
from model_server.db import Database
from model_server.errors import BodyLimitMiddleware, install_handlers
from model_server.lists import KeptListMiddleware, PublishedLists
from model_server.metrics import Metrics, MetricsMiddleware
from model_server.routes import for_ratings, groups, movies, predict, recommendations, system, users
from model_server.schemas import MAX_BODY_BYTES
from model_server.scoring import NewMovieBatcher
from pipeline.core.device import resolve_device
from pipeline.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

DOCS_ASSETS = "/docs-assets"  # where the API docs' scripts, styles and icon are served

DESCRIPTION = """
Reads the weekly lists the batch published (`current_recommendations`) and scores movies on demand with the
champion model of the MLflow registry (`movierec-hybrid@champion`), including movies nobody has rated yet.

* The server reads PostgreSQL as the read-only role `movierec_reader`; its one write, a dismissal
  (`POST /users/{user_id}/dismissals`), goes through `movierec_feedback`, which may insert there and nowhere
  else.
* Errors are JSON `{"detail": "..."}`: 404 unknown user or movie (or a path with a trailing `/`: no
  redirect), 413 body over 64 KiB, 422 invalid input, 431 request line and headers over 32 KiB,
  503 database unreachable / nothing published / no model yet (with `Retry-After`, `/health` included).
"""


def _warm_encoder(device: str) -> None:
    from pipeline.features.text_embeddings import encode

    encode(["warm-up"], device=device)


def _openapi(app: FastAPI, champion: Champion) -> dict[str, Any]:
    """FastAPI's schema, with the served model's genres as the allowed values of a new movie's ``genres``
    (rebuilt when another model is swapped in)."""
    served = champion.current
    version = served.version if served else None
    if app.openapi_schema is None or getattr(app.state, "openapi_for", None) != version:
        app.openapi_schema = None
        schema = FastAPI.openapi(app)
        if served is not None:
            genres = schema["components"]["schemas"]["NewMovieRequest"]["properties"]["genres"]
            genres["items"]["enum"] = list(served.model.network.vocab.genres)
            genres["description"] += f" ({', '.join(served.model.network.vocab.genres)})"
            # a fold-in's ratings: the served model's own scale (the route refuses any other)
            rating = schema["components"]["schemas"]["GivenRating"]["properties"]["rating"]
            rating["minimum"], rating["maximum"] = served.model.network.rating_range
        app.state.openapi_for = version
    return app.openapi_schema  # type: ignore[return-value]


def create_app(
    settings: Settings | None = None, *, poll_seconds: float | None = None, database_url: str | None = None
) -> FastAPI:
    """The app for ``settings`` (default: the environment). ``database_url`` overrides the reader URL."""
    settings = settings or get_settings()
    device = resolve_device(settings.device)
    interval = poll_seconds if poll_seconds is not None else settings.model_poll_seconds
    champion = Champion(settings, device=device)
    db = Database(database_url or reader_database_url(settings))
    # Dismissals, the one write, as movierec_feedback: a small pool, connected on the first dismissal.
    feedback = Database(feedback_database_url(settings), pool_size=2)
    lists = PublishedLists(db, max_bytes=settings.api_cache_mb << 20)
    batcher = NewMovieBatcher()
    metrics = Metrics(lambda: champion.current.version if champion.current else None)

    async def poll() -> None:
        while True:
            await asyncio.sleep(interval)
            if await asyncio.to_thread(champion.refresh):
                metrics.reloads.inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        if not await asyncio.to_thread(champion.refresh):
            log.warning("starting without a model: %s", champion.last_error)
        await asyncio.to_thread(_warm_encoder, device)
        # Everything loaded so far lives as long as the server: keep the collector from walking it again and
        # again (long gen-2 pauses are what a p99 sees).
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(poll()), asyncio.create_task(lists.watch())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            batcher.stop()
            await db.close()
            await feedback.close()

    # redirect_slashes=False: a path with a stray "/" is a 404, not a redirect built from the Host header.
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from DOCS_ASSETS, served by this app, not
    # from a CDN (the pages work offline and fetch nothing from another host).
    app = FastAPIOffline(
        title="movierec",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )
    app.state.settings, app.state.champion, app.state.db, app.state.lists = settings, champion, db, lists
    app.state.batcher, app.state.metrics, app.state.poll_seconds = batcher, metrics, interval
    app.state.feedback = feedback
    for module in (users, recommendations, for_ratings, groups, predict, movies, system):
        app.include_router(module.router)
    web.install(app)  # the web UI's pages under /ui/ and their static files
    app.openapi = lambda: _openapi(app, champion)  # type: ignore[method-assign]
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    lookup = next(r for r in app.routes if getattr(r, "endpoint", None) is users.user_recommendations)
    app.add_middleware(KeptListMiddleware, lists=lists, route=lookup)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
