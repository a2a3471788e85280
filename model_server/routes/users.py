"""GET /users/{user_id}/recommendations: the published list, or the labelled fallback list; POST
/users/{user_id}/dismissals: the user is not interested in a movie (the API's only write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from model_server.db import MissingReference
from model_server.routes.responses import errors
from model_server.schemas import (
    DEFAULT_LIMIT,
    MAX_EXCLUDE,
    MAX_ID,
    MAX_LIMIT,
    Dismissal,
    DismissalRequest,
    MovieId,
    UserRecommendations,
)

router = APIRouter(prefix="/users", tags=["users"])

UserPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a user id", examples=[1])]


@router.get("/{user_id}/recommendations", response_model=UserRecommendations, responses=errors(422, 503))
async def user_recommendations(
    request: Request,
    user_id: UserPath,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="how many movies, best first")
    ] = DEFAULT_LIMIT,
    exclude: Annotated[
        list[MovieId],
        Query(
            max_length=MAX_EXCLUDE,
            description=f"movies to leave out (repeat the parameter: exclude=50&exclude=181; at most "
            f"{MAX_EXCLUDE}); the answer still holds `limit` movies when the list has enough",
        ),
    ] = [],  # noqa: B006 (FastAPI copies a default list per request)
) -> Response:
    """The user's list from the published batch (``current_recommendations``), best first, without the
    movies in ``exclude`` and those the user dismissed (``POST /users/{user_id}/dismissals``); ``rank`` is
    the position in this answer.

    A user without a list in that batch (unknown, or new since it was published) gets the fallback list
    the batch gives users it cannot score: the most-rated movies up to the batch's data cut-off, labelled
    ``source: fallback_popularity`` and ``known_user: false``. Lists of a new batch are served within a
    second of its publication; a dismissal shows on the next request.
    """
    # No dependency: the hottest route reads its kept answers straight from the app (see bench/api).
    body = await request.app.state.lists.answer(user_id, limit, frozenset(exclude))
    return Response(body, media_type="application/json")


@router.post(
    "/{user_id}/dismissals",
    response_model=Dismissal,
    status_code=201,
    responses={
        200: {"model": Dismissal, "description": "Recorded already: nothing changed"},
        **errors(404, 413, 422, 503),
    },
)
async def dismiss(request: Request, user_id: UserPath, body: DismissalRequest) -> Response:
    """Record that the user is not interested in ``movie_id``: it leaves the user's answers at once and the
    next batch's list. 201 when recorded now, 200 when it was already (idempotent: nothing changes).

    404 for a user or movie the database does not hold (nothing is written).
    """
    app = request.app.state
    try:
        row = await app.feedback.dismiss(user_id, body.movie_id)
    except MissingReference as exc:
        what = "user" if "user" in exc.constraint else "movie"
        raise HTTPException(404, f"unknown {what} {user_id if what == 'user' else body.movie_id}") from None
    app.lists.forget(user_id)
    answer = Dismissal.model_validate(dict(row))
    return JSONResponse(answer.model_dump(mode="json"), status_code=201 if answer.created else 200)
