"""The UI's pages: ``/ui/`` (home), ``/ui/users/{id}``, ``/ui/movies/{id}``, ``/ui/new-movie``, ``/ui/runs``
(``?version=N``: that version's evaluation) and the runs' plots, ``/ui/runs/{version}/plots/{name}.png``.

Every page is HTML rendered on the server (Jinja2, autoescaped) from what the API itself serves: a user's
list is ``PublishedLists.answer`` (the body of ``GET /users/{id}/recommendations``, fallback included),
similar movies are ``GET /movies/{id}/similar`` and a new movie's audience ``POST /predict/new-movie``, called
as functions. Pages degrade like the API: the database unreachable, nothing published or no champion loaded
is a banner saying so on an HTTP 503 with ``Retry-After`` (the parts that need nothing missing still show),
an unknown user or movie a 404 page, and never a stack trace.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from model_server.champion import ServedModel
from model_server.db import Database, DatabaseUnavailable, PublishedBatch
from model_server.deps import DbDep
from model_server.errors import RETRY_AFTER_S, Unavailable
from model_server.routes.movies import similar_movies
from model_server.routes.predict import predict_new_movie
from model_server.schemas import DEFAULT_LIMIT, MAX_BODY_BYTES, MAX_ID, MAX_LIMIT, NewMovieRequest
from model_server.web import STATIC_URL
from model_server.web import queries as q
from model_server.web.artifacts import ArtifactMissing, RegistryUnavailable, VersionNotFound
from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.registry.report import PLOT_NAMES

log = logging.getLogger(__name__)

LIST_SHOWN = 20  # a user's list on their page (the batch's top-N when shorter)
SIMILAR_SHOWN = 10
PEOPLE_ROLES = ("directors", "actors", "writers")
PLOT_MAX_AGE_S = 86400  # a plot in a browser's cache: a day

# The pages run no script and load only from this server: a browser refuses anything else, so even data that
# escaped escaping could not act.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _when(value: datetime | date | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):  # a time as the API's JSON answers spell it
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
    return value.strftime("%Y-%m")


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,  # every value is data: escaped, whatever the template's extension
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=_when, num=_num)
ENV.globals.update(static=STATIC_URL)


class NotFound(Exception):
    """An unknown user or movie: a 404 page saying which."""


@dataclass
class Banner:
    text: str
    unavailable: bool = True  # an HTTP 503 page; False: a note that changes no status


@dataclass
class State:
    """What the server has now: the database (or why not), the published batch, the champion."""

    db_error: str | None
    batch: PublishedBatch | None
    served: ServedModel | None
    poll_seconds: float
    model_error: str | None = None
    banners: list[Banner] = field(default_factory=list)

    def need(self, *, database: bool = False, batch: bool = False, model: bool = False) -> State:
        """Add a banner for each of these the page needs and does not have."""
        if (database or batch) and self.db_error is not None:
            self.banners.append(Banner(f"Database unavailable, retrying: {self.db_error}."))
        elif batch and self.batch is None:
            self.banners.append(
                Banner("No batch published yet: run the weekly pipeline (movierec run) to publish the lists.")
            )
        if model and self.served is None:
            why = f" ({self.model_error})" if self.model_error else ""
            self.banners.append(
                Banner(
                    f"No champion model loaded yet{why}; the server checks the registry again every "
                    f"{self.poll_seconds:g} s."
                )
            )
        return self

    @property
    def degraded(self) -> bool:
        return any(b.unavailable for b in self.banners)


async def _state(request: Request, db: Database) -> State:
    champion = request.app.state.champion
    try:
        batch, db_error = await db.published_batch(), None
    except DatabaseUnavailable as exc:
        batch, db_error = None, str(exc)
    return State(db_error, batch, champion.current, request.app.state.poll_seconds, champion.last_error)


def _render(template: str, state: State | None = None, status: int = 200, **context: Any) -> HTMLResponse:
    banners = state.banners if state else []
    if state is not None and state.degraded and status < 400:
        status = 503
    return _html(ENV.get_template(template).render(banners=banners, state=state, **context), status)


def _error(status: int, title: str, message: str) -> HTMLResponse:
    banners = [Banner(message, unavailable=status == 503)]
    return _html(
        ENV.get_template("error.html").render(banners=banners, state=None, title=title, status=status), status
    )


def _html(html: str, status: int) -> HTMLResponse:
    headers = dict(SECURITY_HEADERS)
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return HTMLResponse(html, status_code=status, headers=headers)


def _page(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn what a page raises into an HTML answer: 404 page, 503 banner, or a generic 500 (logged)."""

    @functools.wraps(handler)
    async def page(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except NotFound as exc:
            return _error(404, "Not found", str(exc))
        except DatabaseUnavailable as exc:
            return _error(503, "Database unavailable", f"Database unavailable, retrying: {exc}.")
        except Unavailable as exc:
            return _error(503, "Unavailable", exc.detail)
        except Exception:
            log.exception("web page %s failed", handler.__name__)
            return _error(500, "Internal error", "Internal error: the server logged it.")

    return page


def _id(value: str, what: str) -> int:
    """A path id as the API bounds it; anything else names no user or movie (404)."""
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise NotFound(f"No {what} {value!r}: ids are whole numbers from 1 to {MAX_ID}.")
    return int(value)


# --- pages -------------------------------------------------------------------------------------------------


@router.get("", response_class=RedirectResponse)
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/", response_class=HTMLResponse)
@_page
async def home(request: Request, db: DbDep) -> Response:
    state = (await _state(request, db)).need(batch=True, model=True)
    examples: dict[str, list[dict[str, Any]]] = {"users": [], "movies": []}
    if state.batch is not None:
        examples = {
            "users": [dict(r) for r in await db.fetch(q.EXAMPLE_USERS)],
            "movies": [dict(r) for r in await db.fetch(q.EXAMPLE_MOVIES)],
        }
    return _render("home.html", state, examples=examples, error=None)


@router.get("/jump", response_class=HTMLResponse)
@_page
async def jump(request: Request, db: DbDep) -> Response:
    """The home page's search boxes: to a user's or a movie's page."""
    for name, path, what in (("user_id", "users", "user"), ("movie_id", "movies", "movie")):
        value = request.query_params.get(name, "").strip()
        if value:
            return RedirectResponse(f"/ui/{path}/{_id(value, what)}", status_code=303)
    raise NotFound("Enter a user id or a movie id.")


@router.get("/users/{user_id}", response_class=HTMLResponse)
@_page
async def user_page(request: Request, db: DbDep, user_id: str) -> Response:
    uid = _id(user_id, "user")
    state = (await _state(request, db)).need(batch=True)
    if state.degraded:
        return _render("user.html", state, user_id=uid, answer=None, rated=[], rated_total=0, history=[])
    answer = json.loads(await request.app.state.lists.answer(uid, LIST_SHOWN))
    rated_total, rated = await q.user_rated(db, uid)
    history = await q.user_history(db, uid)
    if not answer["known_user"] and rated_total == 0 and not history:
        raise NotFound(f"No user {uid}: no ratings and no list in any kept batch.")
    return _render(
        "user.html", state, user_id=uid, answer=answer, rated=rated, rated_total=rated_total, history=history
    )


@router.get("/movies/{movie_id}", response_class=HTMLResponse)
@_page
async def movie_page(request: Request, db: DbDep, movie_id: str) -> Response:
    mid = _id(movie_id, "movie")
    state = (await _state(request, db)).need(batch=True, model=True)
    if state.db_error is not None:
        return _render("movie.html", state, movie=None)
    movie = (await db.movies([mid])).get(mid)
    if movie is None:
        raise NotFound(f"No movie {mid} in the catalogue.")
    similar, similar_note = None, None
    if state.served is not None:
        try:
            similar = await similar_movies(state.served, db, mid, SIMILAR_SHOWN)
        except HTTPException as exc:  # a movie added after the champion was trained
            similar_note = str(exc.detail)
    audience_total, audience = await q.movie_audience(db, mid)
    months = await q.movie_ratings_per_month(db, mid)
    return _render(
        "movie.html",
        state,
        movie=dict(movie),
        similar=similar,
        similar_note=similar_note,
        audience=audience,
        audience_total=audience_total,
        months=months,
        busiest=max((m["ratings"] for m in months), default=0),
    )


def _people(text: str) -> list[str]:
    """One person per line or comma: how the form's text areas read."""
    return [p.strip() for line in text.splitlines() for p in line.split(",") if p.strip()]


def _new_movie_request(form: dict[str, list[str]]) -> tuple[dict[str, Any], int]:
    """The ``POST /predict/new-movie`` body and ``limit`` of a submitted form (validated by the caller)."""

    def one(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    body: dict[str, Any] = {"title": one("title"), "genres": form.get("genres", [])}
    body.update({role: _people(one(role)) for role in PEOPLE_ROLES})
    for name in ("year", "runtime", "user_id"):
        if one(name):
            body[name] = one(name)  # pydantic checks it is a number in range
    limit = one("limit")
    return body, int(limit) if limit.isascii() and limit.isdigit() else -1


@router.get("/new-movie", response_class=HTMLResponse)
@_page
async def new_movie_form(request: Request, db: DbDep) -> Response:
    state = (await _state(request, db)).need(model=True)
    return _render("new_movie.html", state, form={}, result=None, errors=[], limit=DEFAULT_LIMIT)


@router.post("/new-movie", response_class=HTMLResponse)
@_page
async def new_movie_submit(request: Request, db: DbDep) -> Response:
    state = (await _state(request, db)).need(model=True)
    raw = await request.body()  # bounded by the app's body limit (MAX_BODY_BYTES)
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_BODY_BYTES)
    body, limit = _new_movie_request(form)
    shown = {**body, **{role: "\n".join(body[role]) for role in PEOPLE_ROLES}}
    if state.served is None:
        return _render("new_movie.html", state, form=shown, result=None, errors=[], limit=limit)
    errors: list[str] = []
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(f"Users to show: a whole number from 1 to {MAX_LIMIT}.")
    try:
        request_body = NewMovieRequest.model_validate(body)
    except ValidationError as exc:
        errors += [f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()]
    result, status = None, 200
    if not errors:
        try:
            result = await predict_new_movie(request_body, state.served, request.app.state.batcher, limit)
        except HTTPException as exc:  # an unknown genre (422) or user (404)
            errors.append(str(exc.detail))
            status = exc.status_code
    return _render(
        "new_movie.html",
        state,
        status=422 if errors and status == 200 else status,
        form=shown,
        result=result,
        errors=errors,
        limit=limit if limit > 0 else DEFAULT_LIMIT,
    )


@router.get("/runs", response_class=HTMLResponse)
@_page
async def runs_page(request: Request, db: DbDep) -> Response:
    state = (await _state(request, db)).need(batch=True)
    asked = request.query_params.get("version")
    wanted = _id(asked, "model version") if asked is not None else None
    runs: dict[str, Any] = {"batches": [], "versions": [], "churn": None}
    if state.db_error is None:
        runs = await q.runs(db)
        known = {
            v["registered_version"] for v in runs["versions"] if v["registered_model"] == REGISTERED_MODEL
        }
        if wanted is not None and wanted not in known:
            raise NotFound(f"No model version {wanted} of {REGISTERED_MODEL}.")
    version = wanted if wanted is not None else _champion_version(state, runs["versions"])
    evaluation, note = None, None
    if version is None:
        note = "No champion yet: the evaluation of the first promoted version shows here."
    else:
        try:
            evaluation = await asyncio.to_thread(request.app.state.run_artifacts.evaluation, version)
        except VersionNotFound as exc:
            if wanted is not None:
                raise NotFound(str(exc)) from None
            note = f"v{version} is not in the MLflow registry: no evaluation to show."
        except ArtifactMissing as exc:
            note = f"No evaluation report for v{version}: {exc}."
        except RegistryUnavailable as exc:
            note = f"MLflow registry unavailable, no evaluation for v{version}: {exc}."
    return _render(
        "runs.html",
        state,
        **runs,
        evaluation=evaluation,
        evaluation_version=version,
        evaluation_note=note,
        champion=state.served.version if state.served else None,
        model_name=REGISTERED_MODEL,
    )


def _champion_version(state: State, versions: list[dict[str, Any]]) -> int | None:
    """The version the server serves; else the one the gate last made champion."""
    if state.served is not None:
        return state.served.version
    return next(
        (v["registered_version"] for v in versions if v["status"] == "champion" and v["registered_version"]),
        None,
    )


@router.get("/runs/{version}/plots/{name}.png")
@_page
async def run_plot(request: Request, version: str, name: str) -> Response:
    """One of a version's plots (``PLOT_NAMES`` only), read from its run's artifacts."""
    number = _id(version, "model version")
    if name not in PLOT_NAMES:
        raise NotFound(f"No plot {name!r}: the plots are {', '.join(PLOT_NAMES)}.")
    try:
        png = await asyncio.to_thread(request.app.state.run_artifacts.plot, number, name)
    except (VersionNotFound, ArtifactMissing) as exc:
        raise NotFound(str(exc)) from None
    except RegistryUnavailable as exc:
        raise Unavailable(f"MLflow registry unavailable: {exc}.") from None
    # A registered version's plots never change.
    headers = {**SECURITY_HEADERS, "Cache-Control": f"public, max-age={PLOT_MAX_AGE_S}"}
    return Response(png, media_type="image/png", headers=headers)
